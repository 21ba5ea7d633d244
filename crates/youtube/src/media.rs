//! Local media files (any video or audio ffmpeg reads): streams probed with ffprobe, the
//! transcript from an embedded text subtitle track, else speech-to-text (silence detected first
//! and skipped with a warning), then frames at scene cuts and the text on them. The result has the shape of a
//! [`VideoResult`] so everything downstream (charts, library, extraction) reads it the same.
//! Opening the file safely (input roots, one descriptor) is the caller's: this module is given
//! a path ffmpeg may open (e.g. `/proc/<pid>/fd/<n>`) and the name to show.

use std::path::Path;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cache;
use crate::error::{Error, Result};
use crate::options::{AsrProvider, YoutubeOptions};
use crate::process::{Cmd, run};
use crate::progress::{Progress, ProgressFn, Stage};
use crate::segment::{Segment, read_captions, transcript_text};
use crate::sidecar::Sidecar;
use crate::video::VideoResult;

/// Loudest sample (dBFS) at or below which the audio counts as silent.
const SILENCE_DB: f64 = -60.0;

/// Subtitle codecs ffmpeg can turn into WebVTT (bitmap subtitles cannot be read as text).
const TEXT_SUBS: &[&str] = &[
    "subrip",
    "srt",
    "ass",
    "ssa",
    "webvtt",
    "mov_text",
    "text",
    "microdvd",
    "subviewer",
    "subviewer1",
    "sami",
    "realtext",
    "jacosub",
    "mpl2",
    "pjs",
    "vplayer",
    "stl",
    "eia_608",
];

/// What ffprobe found in a file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaStreams {
    pub duration: Option<f64>,
    /// A real picture stream (cover art is not video).
    pub video: bool,
    pub audio: bool,
    /// Text subtitle tracks: stream index and language tag.
    pub subtitles: Vec<(u64, Option<String>)>,
    /// The container's `title` tag.
    pub title: Option<String>,
}

/// `ffprobe -show_streams -show_format -of json` of `input` (a duration the container does not
/// state is measured, [`crate::frames::measured_duration`]); an empty file, one ffprobe cannot
/// read, or one with no audio, video or subtitle stream, is [`Error::Media`] naming `name`.
pub async fn probe_media(
    opts: &YoutubeOptions,
    input: &Path,
    name: &Path,
    cancel: &CancellationToken,
) -> Result<MediaStreams> {
    let media_err = |reason: String| Error::Media {
        path: name.to_path_buf(),
        reason,
    };
    if std::fs::metadata(input).is_ok_and(|m| m.len() == 0) {
        return Err(media_err("the file is empty (0 bytes)".into()));
    }
    let mut c = Cmd::new("ffprobe", &opts.ffprobe, opts.timeouts.ffmpeg);
    c.args([
        "-v",
        "error",
        "-show_streams",
        "-show_format",
        "-of",
        "json",
    ]);
    c.arg(input);
    let out = run(&c, cancel, None).await?;
    if !out.status.success() {
        let why = crate::process::last_lines(&out.stderr, 4);
        let why = why.replace(&input.display().to_string(), &name.display().to_string());
        return Err(media_err(format!(
            "not a media file ffmpeg can read ({})",
            why.trim()
        )));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| media_err(format!("ffprobe output: {e}")))?;
    let mut m = streams_of(&v);
    if !m.video && !m.audio && m.subtitles.is_empty() {
        return Err(media_err(
            "no audio, video or text subtitle stream in it".into(),
        ));
    }
    if m.duration.is_none() && (m.video || m.audio) {
        m.duration = crate::frames::measured_duration(opts, input, cancel).await?;
    }
    Ok(m)
}

fn streams_of(v: &Value) -> MediaStreams {
    let mut m = MediaStreams {
        duration: v
            .pointer("/format/duration")
            .and_then(Value::as_str)
            .and_then(|d| d.parse().ok()),
        title: v
            .pointer("/format/tags/title")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .map(str::to_string),
        ..Default::default()
    };
    for s in v["streams"].as_array().into_iter().flatten() {
        let codec = s["codec_name"].as_str().unwrap_or_default();
        match s["codec_type"].as_str() {
            Some("video") if s["disposition"]["attached_pic"].as_i64() != Some(1) => m.video = true,
            Some("audio") => m.audio = true,
            Some("subtitle") if TEXT_SUBS.contains(&codec) => {
                let lang = s["tags"]["language"]
                    .as_str()
                    .filter(|l| !l.is_empty() && *l != "und")
                    .map(str::to_string);
                m.subtitles
                    .push((s["index"].as_u64().unwrap_or_default(), lang));
            }
            _ => {}
        }
    }
    m
}

/// Transcript and frames of one local media file. `input` is what ffmpeg opens, `name` what the
/// user named (shown in the result and errors), `key` the file's content hash (its cache
/// folder). `sidecar` is a subtitle file found next to it ([`crate::sidecar_names`]): its
/// transcript comes first. Never fails for want of speech: silence, no audio or no ASR provider
/// are warnings.
#[allow(clippy::too_many_arguments)]
pub async fn process_media_file(
    opts: &YoutubeOptions,
    input: &Path,
    name: &Path,
    key: &str,
    extract_frames: bool,
    sidecar: Option<&Sidecar>,
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> Result<VideoResult> {
    progress(&Progress::new(Stage::Metadata, "reading the media streams"));
    let m = probe_media(opts, input, name, cancel).await?;
    if let Some(d) = m
        .duration
        .filter(|d| opts.max_duration > 0.0 && *d > opts.max_duration)
    {
        return Err(Error::TooLarge(format!(
            "{} lasts {d:.0} s; the limit is {:.0} s (youtube.max_duration)",
            name.display(),
            opts.max_duration
        )));
    }
    let short: String = key.chars().take(20).collect();
    let dir = cache::video_dir(&opts.cache_dir, &format!("file-{short}"))?;
    let _lock = cache::lock_folder(&dir, cancel).await?;
    let mut warnings = Vec::new();
    let (source, mut segments) = match sidecar.and_then(|s| sidecar_transcript(s, &mut warnings)) {
        Some(found) => found,
        None => transcript(opts, input, &m, &dir, &mut warnings, progress, cancel).await?,
    };
    let mut frames = Vec::new();
    if extract_frames && m.video {
        progress(&Progress::new(
            Stage::Frames,
            "extracting frames at scene changes",
        ));
        let frames_dir = dir.join("frames");
        let _ = std::fs::remove_dir_all(&frames_dir);
        let (f, w) =
            crate::frames::extract_frames(opts, input, &frames_dir, m.duration, cancel).await?;
        frames = f;
        warnings.extend(w);
        crate::slides::add_on_screen(opts, &frames, &mut segments, &mut warnings, cancel).await?;
    }
    cache::touch(&dir);
    progress(&Progress::new(Stage::Done, "done"));
    let title = m
        .title
        .clone()
        .or_else(|| name.file_name().map(|n| n.to_string_lossy().into_owned()));
    Ok(VideoResult {
        video_id: key.to_string(),
        url: std::path::absolute(name)
            .unwrap_or_else(|_| name.to_path_buf())
            .display()
            .to_string(),
        title,
        channel: None,
        duration: m.duration,
        upload_date: None,
        description: None,
        chapters: Vec::new(),
        transcript: transcript_text(&segments),
        transcript_segments: segments,
        transcript_source: source,
        frames,
        warnings,
        extractor: Some("file".into()),
        live_status: None,
        cache_dir: dir,
    })
}

/// The transcript of a subtitle file next to the media, or a warning saying why not.
fn sidecar_transcript(s: &Sidecar, warnings: &mut Vec<String>) -> Option<(String, Vec<Segment>)> {
    let lang = crate::encoding::lang_from_path(&s.path);
    match read_captions(&s.bytes, lang.as_deref()) {
        Ok(c) => Some((
            format!("captions:file:{}", lang.as_deref().unwrap_or("und")),
            c.segments,
        )),
        Err(e) => {
            warnings.push(format!("subtitle file {} not used: {e}", s.path.display()));
            None
        }
    }
}

/// Embedded subtitles (`captions:embedded:LANG`), else speech-to-text (`asr:whisper` or
/// `asr:api`), else `none` with a warning saying why.
async fn transcript(
    opts: &YoutubeOptions,
    input: &Path,
    m: &MediaStreams,
    dir: &Path,
    warnings: &mut Vec<String>,
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> Result<(String, Vec<Segment>)> {
    if let Some((index, lang)) = pick_track(&m.subtitles, &opts.caption_languages) {
        progress(&Progress::new(
            Stage::Captions,
            "reading embedded subtitles",
        ));
        let mut c = Cmd::new("ffmpeg", &opts.ffmpeg, opts.timeouts.ffmpeg);
        c.args(["-hide_banner", "-nostdin", "-v", "error", "-i"]);
        c.arg(input);
        c.args(["-map", &format!("0:{index}"), "-f", "webvtt", "-"]);
        let out = run(&c, cancel, None).await?;
        if out.status.success() {
            let caps = read_captions(&out.stdout, lang.as_deref())?;
            if !caps.segments.is_empty() {
                let lang = lang.unwrap_or_else(|| "und".into());
                return Ok((format!("captions:embedded:{lang}"), caps.segments));
            }
            warnings.push("the embedded subtitle track is empty".into());
        } else {
            warnings.push(format!(
                "the embedded subtitle track could not be read: {}",
                crate::process::last_lines(&out.stderr, 2).trim()
            ));
        }
    }
    if !m.audio {
        warnings.push(
            "no audio stream and no readable subtitle track: there is no speech to transcribe"
                .into(),
        );
        return Ok(("none".into(), Vec::new()));
    }
    if let Some(db) = max_volume(opts, input, cancel).await?
        && db <= SILENCE_DB
    {
        warnings.push(format!(
            "the audio is silent (loudest sample {db:.0} dB): no speech to transcribe"
        ));
        return Ok(("none".into(), Vec::new()));
    }
    let kind = match &opts.asr {
        AsrProvider::None => {
            warnings.push(
                "no subtitle track and no speech-to-text configured (a local Whisper model: \
                 HLBOT_WHISPER_MODEL; or an API: HLBOT_ASR_API_KEY): no transcript"
                    .into(),
            );
            return Ok(("none".into(), Vec::new()));
        }
        AsrProvider::LocalWhisper { .. } => "asr:whisper",
        AsrProvider::OpenAiCompatible { .. } => "asr:api",
    };
    let chunk_dir = dir.join("asr");
    let _ = std::fs::remove_dir_all(&chunk_dir);
    let chunks = crate::asr::prepare_audio(opts, input, &chunk_dir, cancel).await?;
    let heard = crate::asr::transcribe_chunks(opts, &chunks, progress, cancel).await?;
    let _ = std::fs::remove_dir_all(&chunk_dir);
    warnings.extend(heard.warning());
    let segments = heard.segments;
    if segments.is_empty() {
        warnings.push("speech-to-text heard no words".into());
    }
    Ok((kind.into(), segments))
}

/// The first track in a preferred language, else the first track.
fn pick_track(
    tracks: &[(u64, Option<String>)],
    languages: &[String],
) -> Option<(u64, Option<String>)> {
    let matches = |l: &Option<String>, want: &str| {
        l.as_deref().is_some_and(|l| {
            let l = l.to_ascii_lowercase();
            l == want || l.starts_with(&format!("{want}-")) || iso639_2(want) == Some(l.as_str())
        })
    };
    languages
        .iter()
        .find_map(|w| tracks.iter().find(|(_, l)| matches(l, w)))
        .or_else(|| tracks.first())
        .cloned()
}

/// Containers tag languages with ISO 639-2 (`eng`); captions are configured with 639-1 (`en`).
fn iso639_2(code: &str) -> Option<&'static str> {
    Some(match code {
        "en" => "eng",
        "de" => "deu",
        "fr" => "fra",
        "es" => "spa",
        "it" => "ita",
        "pt" => "por",
        "ru" => "rus",
        "tr" => "tur",
        "ja" => "jpn",
        "zh" => "zho",
        "ar" => "ara",
        "nl" => "nld",
        "pl" => "pol",
        _ => return None,
    })
}

/// The loudest sample of the first audio stream in dBFS (ffmpeg `volumedetect`); `None` when
/// ffmpeg does not say.
async fn max_volume(
    opts: &YoutubeOptions,
    input: &Path,
    cancel: &CancellationToken,
) -> Result<Option<f64>> {
    let mut c = Cmd::new("ffmpeg", &opts.ffmpeg, opts.timeouts.ffmpeg);
    c.args(["-hide_banner", "-nostdin", "-nostats", "-v", "info", "-i"]);
    c.arg(input);
    c.args(["-map", "0:a:0", "-af", "volumedetect", "-f", "null", "-"]);
    let out = run(&c, cancel, None).await?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(parse_max_volume(&out.stderr))
}

fn parse_max_volume(stderr: &str) -> Option<f64> {
    let v = stderr.lines().find_map(|l| {
        let (_, rest) = l.split_once("max_volume:")?;
        Some(rest.trim().trim_end_matches("dB").trim().to_string())
    })?;
    if v == "-inf" {
        return Some(f64::NEG_INFINITY);
    }
    v.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn streams_skip_cover_art_and_bitmap_subtitles() {
        let v = json!({"format": {"duration": "6.0", "tags": {"title": "Lesson"}},
        "streams": [
            {"index": 0, "codec_type": "video", "codec_name": "mjpeg", "disposition": {"attached_pic": 1}},
            {"index": 1, "codec_type": "audio", "codec_name": "aac"},
            {"index": 2, "codec_type": "subtitle", "codec_name": "hdmv_pgs_subtitle"},
            {"index": 3, "codec_type": "subtitle", "codec_name": "mov_text", "tags": {"language": "eng"}}
        ]});
        let m = streams_of(&v);
        assert_eq!(m.duration, Some(6.0));
        assert!(!m.video && m.audio);
        assert_eq!(m.subtitles, vec![(3, Some("eng".to_string()))]);
        assert_eq!(m.title.as_deref(), Some("Lesson"));
        let tracks = vec![(2, Some("deu".into())), (4, Some("eng".into()))];
        assert_eq!(pick_track(&tracks, &["en".into()]).unwrap().0, 4);
        assert_eq!(pick_track(&tracks, &["fr".into()]).unwrap().0, 2);
    }

    #[test]
    fn max_volume_is_read_from_volumedetect() {
        let s = "[Parsed_volumedetect_0 @ 0x1] mean_volume: -91.0 dB\n[Parsed_volumedetect_0 @ 0x1] max_volume: -91.0 dB\n";
        assert_eq!(parse_max_volume(s), Some(-91.0));
        assert_eq!(
            parse_max_volume("max_volume: -inf dB"),
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(parse_max_volume("nothing"), None);
    }
}
