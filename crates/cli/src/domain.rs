//! Domain-task settings (PDF, YouTube, LLM, input roots), built once from the TOML file's
//! sections and the environment. API keys come only from the environment and stay wrapped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hlbot_tasks::{InputRoots, TaskSettings};
use serde::Deserialize;

/// `[pdf]` in the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPdf {
    pub pdfium_lib: Option<PathBuf>,
    pub tesseract: Option<PathBuf>,
    pub languages: Option<String>,
    pub min_image_side: Option<u32>,
    /// PDFium worker processes one document may use (default: the number of cores).
    pub worker_processes: Option<usize>,
    /// Keep PDFium workers started ahead of the next document (default true).
    pub prestart_workers: Option<bool>,
    /// Documents one PDFium worker process serves before it is replaced (default 200).
    pub worker_max_documents: Option<u32>,
    /// Resident memory above which a PDFium worker is replaced after a document, bytes
    /// (default 512 MiB).
    pub worker_max_rss: Option<u64>,
    /// Largest PDF accepted, bytes (default 512 MiB).
    pub max_bytes: Option<u64>,
    /// Most pages a PDF may have (default 5 000).
    pub max_pages: Option<u32>,
}

/// `[youtube]` in the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawYoutube {
    pub ytdlp: Option<PathBuf>,
    pub ffmpeg: Option<PathBuf>,
    pub ffprobe: Option<PathBuf>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub languages: Vec<String>,
    pub cookies_file: Option<PathBuf>,
    pub js_runtime: Option<String>,
    pub sleep_requests: Option<f64>,
    /// Most frames kept per video (default 60).
    pub max_frames: Option<usize>,
    /// Largest media download, bytes (default 2 GiB).
    pub max_filesize: Option<u64>,
    /// Longest video, seconds, checked from metadata before downloading (default 14 400).
    pub max_duration: Option<f64>,
    /// Most transcript characters per video (default 2 000 000).
    pub max_transcript_chars: Option<usize>,
    /// Route non-YouTube fetches through the egress guard (default true).
    pub egress_guard: Option<bool>,
    /// Floor of the adaptive scene-cut threshold, mean grey change 0..1 (default 0.006).
    pub scene_threshold: Option<f64>,
    /// Shortest scene kept, seconds (default 0.4; at most 1).
    pub min_frame_interval: Option<f64>,
    /// OCR video frames into `[on screen]` transcript segments (default: when tesseract runs).
    pub frame_ocr: Option<bool>,
    /// Folder of a faster-whisper (CTranslate2) model for local speech-to-text; used when no
    /// ASR API key is set and hlbot was built with the `whisper` feature.
    pub whisper_model: Option<PathBuf>,
}

/// `[llm]` in the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLlm {
    pub model: Option<String>,
    pub anthropic_base_url: Option<String>,
    pub openai_base_url: Option<String>,
    pub ollama_base_url: Option<String>,
    #[serde(default)]
    pub aliases: std::collections::BTreeMap<String, String>,
    pub max_concurrency: Option<usize>,
    /// Models a task may name (default: only the configured default model; `rules` always).
    pub allowed_models: Option<Vec<String>>,
    /// Per-task spend cap, USD (default 2.00; 0 = no cap).
    pub max_cost_usd: Option<f64>,
    /// Daily spend cap across the fleet, USD (default 50.00; 0 = no cap).
    pub max_daily_cost_usd: Option<f64>,
    /// Most characters of content per extraction (default 2 000 000).
    pub max_content_chars: Option<usize>,
    /// Most chunks per extraction (default 64).
    pub max_chunks: Option<usize>,
    /// Largest chart image, bytes (default 32 MiB).
    pub max_image_bytes: Option<u64>,
    /// Most decoded pixels of a chart image (default 100 000 000).
    pub max_image_pixels: Option<u64>,
}

/// The domain sections of the config file.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawDomain {
    #[serde(default)]
    pub input_roots: Vec<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    #[serde(default)]
    pub pdf: RawPdf,
    #[serde(default)]
    pub youtube: RawYoutube,
    #[serde(default)]
    pub llm: RawLlm,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A file shipped by `scripts/setup.sh` under `.hlbot/`: looked up from the current directory
/// and from the binary's folder upwards (so `target/debug/hlbot` finds the checkout's copy).
fn find_local(rel: &str) -> Option<PathBuf> {
    let mut starts = vec![std::env::current_dir().ok()];
    starts.push(
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
    );
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors().take(5) {
            let p = dir.join(rel);
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

/// hlbot's data folder: `$XDG_DATA_HOME/hlbot`, else `~/.local/share/hlbot` (where
/// `scripts/install.sh` puts libpdfium.so and yt-dlp).
pub fn data_dir() -> Option<PathBuf> {
    env("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("hlbot"))
}

/// A tool's path, in the documented search order (docs/reference.md): the config key, the
/// environment variable, next to the binary, the data folder, a checkout's `.hlbot/` (found from
/// the working directory or the binary's folder upwards). `None`: the caller falls back to the
/// bare name (the system library path / `PATH`).
fn locate(config: Option<PathBuf>, var: &str, names: &[&str], local: &str) -> Option<PathBuf> {
    if config.is_some() {
        return config;
    }
    if let Some(v) = env(var) {
        return Some(PathBuf::from(v));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    for dir in beside.into_iter().chain(data_dir()) {
        if let Some(p) = names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
            return Some(p);
        }
    }
    find_local(local)
}

fn default_cache_dir() -> PathBuf {
    if let Some(d) = env("HLBOT_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("hlbot")
}

/// The cache folder (config `cache_dir`, else `$HLBOT_CACHE_DIR`, else the user's cache).
pub fn cache_dir(raw: &RawDomain) -> PathBuf {
    raw.cache_dir.clone().unwrap_or_else(default_cache_dir)
}

/// Folders of the files a `hlbot call` names (`pdf_path`, `image_path`): the operator named
/// them at the terminal, so they are allowed like `hlbot ingest FILE`'s folder.
pub fn named_file_folders(kwargs: &serde_json::Map<String, serde_json::Value>) -> Vec<PathBuf> {
    ["pdf_path", "image_path"]
        .iter()
        .filter_map(|k| kwargs.get(*k)?.as_str())
        .filter_map(|p| {
            let parent = Path::new(p).parent()?;
            Some(if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent.to_path_buf()
            })
        })
        .collect()
}

/// The configured input roots: the config's `input_roots`, then `HLBOT_INPUT_ROOTS` (`:`- or
/// `,`-separated).
pub fn input_roots(raw: &RawDomain) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = raw.input_roots.clone();
    if let Some(list) = env("HLBOT_INPUT_ROOTS") {
        roots.extend(
            list.split([':', ','])
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        );
    }
    roots
}

/// Build the domain settings. `extra_roots` are allowed too (the folders of files named on the
/// command line, by `hlbot ingest FILE` and `hlbot call`).
pub fn task_settings(raw: &RawDomain, extra_roots: &[&Path]) -> TaskSettings {
    let cache_dir = cache_dir(raw);
    let roots = input_roots(raw);
    // No roots configured: fail closed (only hlbot's own cache is readable), never the
    // working directory — that is `/` under systemd or in a bare container.
    let mut input_roots = InputRoots::new(roots).with_internal(&cache_dir);
    for r in extra_roots {
        input_roots = input_roots.with(r);
    }

    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hlbot"));
    let pdfium = locate(
        raw.pdf.pdfium_lib.clone(),
        "HLBOT_PDFIUM_LIB",
        &["libpdfium.so", "pdfium/libpdfium.so"],
        ".hlbot/pdfium/libpdfium.so",
    )
    .unwrap_or_else(|| PathBuf::from("libpdfium.so"));
    let mut pdf =
        hlbot_pdf::PdfOptions::new(pdfium, cache_dir.join("pdf"), exe, vec!["pdf-child".into()]);
    if let Some(t) = &raw.pdf.tesseract {
        pdf.tesseract = t.clone();
    }
    if let Some(l) = &raw.pdf.languages {
        pdf.default_languages = l.clone();
    }
    if let Some(m) = raw.pdf.min_image_side {
        pdf.min_image_side = m;
    }
    if let Some(n) = raw.pdf.worker_processes {
        pdf.worker_processes = n.max(1);
    }
    if let Some(on) = raw.pdf.prestart_workers {
        pdf.prestart_workers = on;
    }
    if let Some(n) = raw.pdf.worker_max_documents {
        pdf.worker_max_documents = n.max(1);
    }
    if let Some(n) = raw.pdf.worker_max_rss {
        pdf.worker_max_rss = n;
    }
    if let Some(n) = raw.pdf.max_bytes {
        pdf.max_bytes = n;
    }
    if let Some(n) = raw.pdf.max_pages {
        pdf.max_pages = n;
    }

    let mut yt = hlbot_youtube::YoutubeOptions {
        cache_dir: cache_dir.join("youtube"),
        ..Default::default()
    };
    yt.ytdlp = locate(
        raw.youtube.ytdlp.clone(),
        "HLBOT_YTDLP",
        &["yt-dlp", "venv/bin/yt-dlp"],
        ".hlbot/venv/bin/yt-dlp",
    )
    .unwrap_or_else(|| PathBuf::from("yt-dlp"));
    if let Some(p) = &raw.youtube.ffmpeg {
        yt.ffmpeg = p.clone();
    }
    if let Some(p) = &raw.youtube.ffprobe {
        yt.ffprobe = p.clone();
    }
    yt.extra_allowed_hosts = raw.youtube.allowed_hosts.clone();
    if let Some(list) = env("HLBOT_YOUTUBE_ALLOWED_HOSTS") {
        yt.extra_allowed_hosts
            .extend(hlbot_youtube::YoutubeOptions::parse_host_list(&list));
    }
    if !raw.youtube.languages.is_empty() {
        yt.caption_languages = raw.youtube.languages.clone();
    }
    yt.cookies_file = raw.youtube.cookies_file.clone();
    yt.js_runtime = raw.youtube.js_runtime.clone();
    yt.sleep_requests = raw.youtube.sleep_requests;
    if let Some(m) = raw.youtube.max_frames {
        yt.max_frames = m;
    }
    if let Some(v) = raw.youtube.max_filesize {
        yt.max_filesize = v;
    }
    if let Some(v) = raw.youtube.max_duration {
        yt.max_duration = v;
    }
    if let Some(v) = raw.youtube.max_transcript_chars {
        yt.max_transcript_chars = v;
    }
    if let Some(v) = raw.youtube.egress_guard {
        yt.egress_guard = v;
    }
    yt.frame_ocr = raw.youtube.frame_ocr;
    yt.tesseract = pdf.tesseract.clone();
    if let Some(v) = raw.youtube.scene_threshold {
        yt.scene_threshold = v.clamp(0.0, 1.0);
    }
    if let Some(v) = raw.youtube.min_frame_interval {
        // A longer minimum would miss short scenes (#18): at most one second.
        if v > 1.0 {
            tracing::warn!("youtube.min_frame_interval = {v} is above 1 s; using 1 s");
        }
        yt.min_frame_interval = v.clamp(0.0, 1.0);
    }
    if let Some(key) = env("HLBOT_ASR_API_KEY") {
        yt.asr = hlbot_youtube::AsrProvider::OpenAiCompatible {
            base_url: env("HLBOT_ASR_BASE_URL")
                .unwrap_or_else(|| "https://api.openai.com/v1".into()),
            api_key: hlbot_youtube::ApiKey::new(key),
            model: env("HLBOT_ASR_MODEL").unwrap_or_else(|| "whisper-1".into()),
            language: None,
        };
    } else if cfg!(feature = "whisper")
        && let Some(dir) = env("HLBOT_WHISPER_MODEL")
            .map(PathBuf::from)
            .or_else(|| raw.youtube.whisper_model.clone())
    {
        yt.asr = hlbot_youtube::AsrProvider::LocalWhisper { model_dir: dir };
    }

    let mut llm = hlbot_llm::LlmOptions::default();
    llm.anthropic.api_key = env("ANTHROPIC_API_KEY").map(hlbot_llm::Secret::new);
    if let Some(u) = env("ANTHROPIC_BASE_URL").or_else(|| raw.llm.anthropic_base_url.clone()) {
        llm.anthropic.base_url = u;
    }
    llm.anthropic.aliases.extend(raw.llm.aliases.clone());
    if let Some(o) = llm.openai.get_mut("openai") {
        o.api_key = env("OPENAI_API_KEY").map(hlbot_llm::Secret::new);
        if let Some(u) = env("OPENAI_BASE_URL").or_else(|| raw.llm.openai_base_url.clone()) {
            o.base_url = u;
        }
    }
    if let (Some(o), Some(u)) = (
        llm.openai.get_mut("ollama"),
        raw.llm.ollama_base_url.clone(),
    ) {
        o.base_url = u;
    }
    if let Some(c) = raw.llm.max_concurrency {
        llm.max_concurrency = c;
    }
    llm.cache = Arc::new(hlbot_llm::DiskCache::new(cache_dir.join("llm")));
    let default_model = env("HLBOT_MODEL")
        .or_else(|| raw.llm.model.clone())
        .unwrap_or_else(|| "claude-sonnet-4".into());
    let r = &raw.llm;
    llm.allowed_models = r
        .allowed_models
        .clone()
        .unwrap_or_else(|| vec![default_model.clone()]);
    let usd = |v: f64| (v > 0.0).then_some(v);
    if let Some(v) = r.max_cost_usd {
        llm.max_cost_usd = usd(v);
    }
    if let Some(v) = r.max_daily_cost_usd {
        llm.max_daily_cost_usd = usd(v);
    }
    if let Some(v) = r.max_content_chars {
        llm.max_content_chars = v;
    }
    if let Some(v) = r.max_chunks {
        llm.max_chunks = v;
    }
    if let Some(v) = r.max_image_bytes {
        llm.max_image_bytes = v;
    }
    if let Some(v) = r.max_image_pixels {
        llm.max_image_pixels = v;
    }
    TaskSettings {
        input_roots,
        pdf,
        youtube: yt,
        llm,
        default_model,
        cache_dir,
        library: None,
    }
}
