//! `YoutubeOptions`: every knob of the crate in one validated-by-construction struct, built by the
//! CLI from flags/env/file. Holds the ASR API key in a wrapper that never prints it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// YouTube's own hosts, always allowed.
pub const DEFAULT_ALLOWED_HOSTS: &[&str] = &[
    "youtube.com",
    "www.youtube.com",
    "m.youtube.com",
    "music.youtube.com",
    "youtu.be",
    "youtube-nocookie.com",
    "www.youtube-nocookie.com",
];

/// A secret string (API key). `Debug`/`Display` print `***`; read it with [`ApiKey::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }
    /// The key itself, for the Authorization header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Where speech-to-text runs when no captions are usable.
#[derive(Debug, Clone, Default)]
pub enum AsrProvider {
    /// No ASR: transcript source `none` plus a warning.
    #[default]
    None,
    /// An OpenAI-compatible `POST {base_url}/audio/transcriptions` endpoint
    /// (`base_url` like `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`).
    OpenAiCompatible {
        base_url: String,
        api_key: ApiKey,
        model: String,
        /// Optional language hint (ISO-639-1), sent as `language`.
        language: Option<String>,
    },
    /// Whisper through CTranslate2 on a faster-whisper model folder (cargo feature `whisper`).
    LocalWhisper { model_dir: PathBuf },
}

/// Time limits per step; each kills the child's whole process group when exceeded.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// yt-dlp metadata (`-J`), playlist listing and caption downloads.
    pub metadata: Duration,
    /// yt-dlp media downloads (audio / video for frames).
    pub download: Duration,
    /// One ffmpeg/ffprobe run.
    pub ffmpeg: Duration,
    /// One ASR HTTP request.
    pub asr: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            metadata: Duration::from_secs(120),
            download: Duration::from_secs(1800),
            ffmpeg: Duration::from_secs(900),
            asr: Duration::from_secs(600),
        }
    }
}

/// Settings for every call of this crate. `Default` gives working values except `cache_dir`
/// (a relative `youtube-cache`), which callers normally set.
#[derive(Debug, Clone)]
pub struct YoutubeOptions {
    pub ytdlp: PathBuf,
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// One sub-folder per video (info, captions, audio, frames).
    pub cache_dir: PathBuf,
    /// Caption languages in order of preference, e.g. `["en"]`; `en` also matches `en-US`, `en-orig`.
    pub caption_languages: Vec<String>,
    /// Hosts allowed in addition to [`DEFAULT_ALLOWED_HOSTS`] (`host` or `host:port`).
    pub extra_allowed_hosts: Vec<String>,
    /// Netscape cookies file; every yt-dlp run gets a private copy (`--cookies`), since yt-dlp
    /// rewrites the file it is given and concurrent runs would race on one.
    pub cookies_file: Option<PathBuf>,
    /// Proxy URL for yt-dlp; may hold credentials, so it travels in the child's environment
    /// (`HTTP(S)_PROXY`), never on its command line, and is never logged.
    pub proxy: Option<ApiKey>,
    /// `--sleep-requests` / `--sleep-subtitles` seconds between requests.
    pub sleep_requests: Option<f64>,
    /// JavaScript runtime for YouTube's player challenges, `RUNTIME[:PATH]` (e.g. `node`, `deno:/usr/bin/deno`).
    pub js_runtime: Option<String>,
    /// Maximum video height downloaded for frames.
    pub max_frame_height: u32,
    /// Floor of the adaptive cut threshold: the mean absolute grey change (0..1) between two
    /// 64×36 thumbnails below which nothing is a cut, however still the video was. Default 0.006:
    /// a still video changes 0.000, a candle added to a chart 0.023, a grey 40→55 cut 0.059.
    pub scene_threshold: f64,
    /// Shortest scene, seconds: a cut sooner than this after the last kept frame is skipped
    /// (default 0.4; at most 1).
    pub min_frame_interval: f64,
    /// Maximum number of frames kept per video.
    pub max_frames: usize,
    /// Share of pixels (0..1) of a 64×36 grey thumbnail that must differ from every kept frame for a
    /// frame to count as new; below it the frame is a near-duplicate.
    pub duplicate_threshold: f64,
    /// OCR kept frames and add their text to the transcript as `[on screen]` segments:
    /// `None` = when tesseract is present, `Some(true)` = warn when it is not, `Some(false)` = off.
    pub frame_ocr: Option<bool>,
    /// The tesseract program (slide OCR).
    pub tesseract: PathBuf,
    /// Speech-to-text used when captions are missing or not preferred.
    pub asr: AsrProvider,
    /// Audio chunk length sent to ASR per request.
    pub asr_chunk_seconds: u32,
    /// External downloader for yt-dlp (`--downloader`, e.g. `ffmpeg`, `aria2c`); `None` = native.
    pub downloader: Option<String>,
    pub timeouts: Timeouts,
    /// Largest media download, bytes (yt-dlp `--max-filesize`, and watched while the download
    /// runs for servers that send no length). Default 2 GiB.
    pub max_filesize: u64,
    /// Longest video accepted, seconds, checked from the metadata before any download.
    /// Default 4 h (0 = no limit).
    pub max_duration: f64,
    /// Most characters of transcript kept for one video (default 2 000 000); longer fails.
    pub max_transcript_chars: usize,
    /// Fetches for hosts outside YouTube's own go through hlbot's egress guard, which refuses
    /// private, loopback, link-local and metadata addresses (default on).
    pub egress_guard: bool,
}

impl Default for YoutubeOptions {
    fn default() -> Self {
        YoutubeOptions {
            ytdlp: PathBuf::from("yt-dlp"),
            ffmpeg: PathBuf::from("ffmpeg"),
            ffprobe: PathBuf::from("ffprobe"),
            cache_dir: PathBuf::from("youtube-cache"),
            caption_languages: vec!["en".to_string()],
            extra_allowed_hosts: Vec::new(),
            cookies_file: None,
            proxy: None,
            sleep_requests: None,
            js_runtime: None,
            max_frame_height: 720,
            scene_threshold: 0.006,
            min_frame_interval: 0.4,
            max_frames: 60,
            duplicate_threshold: 0.005,
            frame_ocr: None,
            tesseract: PathBuf::from("tesseract"),
            asr: AsrProvider::None,
            asr_chunk_seconds: 600,
            downloader: None,
            timeouts: Timeouts::default(),
            max_filesize: 2 << 30,
            max_duration: 4.0 * 3600.0,
            max_transcript_chars: 2_000_000,
            egress_guard: true,
        }
    }
}

impl YoutubeOptions {
    /// Parses a comma-separated host list (the `HLBOT_YOUTUBE_ALLOWED_HOSTS` format) into
    /// `extra_allowed_hosts` entries, trimmed and lower-cased.
    pub fn parse_host_list(list: &str) -> Vec<String> {
        list.split(',')
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect()
    }
}
