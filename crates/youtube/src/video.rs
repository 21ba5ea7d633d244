//! `process_video`: metadata, transcript (captions → ASR → none) and frames for one URL, each step
//! reusing what the video's cache folder already holds.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cache;
use crate::error::{Error, Result};
use crate::frames::Frame;
use crate::info::{Chapter, VideoInfo, choose_track};
use crate::options::{AsrProvider, YoutubeOptions};
use crate::progress::{Progress, ProgressFn, Stage};
use crate::segment::{Segment, read_captions, transcript_text};
use crate::ytdlp::{self, Media, MediaSource};

/// Info JSON younger than this is used for downloads directly (its media URLs are still valid).
const FRESH_INFO: Duration = Duration::from_secs(3 * 3600);

/// The result of one video, serialised as the task's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoResult {
    pub video_id: String,
    pub url: String,
    pub title: Option<String>,
    pub channel: Option<String>,
    /// Seconds.
    pub duration: Option<f64>,
    /// `YYYY-MM-DD`.
    pub upload_date: Option<String>,
    pub description: Option<String>,
    pub chapters: Vec<Chapter>,
    pub transcript: String,
    pub transcript_segments: Vec<Segment>,
    /// `captions:manual:LANG`, `captions:auto:LANG`, `asr` or `none`.
    pub transcript_source: String,
    pub frames: Vec<Frame>,
    pub warnings: Vec<String>,
    pub extractor: Option<String>,
    pub live_status: Option<String>,
    /// The video's cache folder (frames live in `frames/` below it).
    pub cache_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedTranscript {
    source: String,
    segments: Vec<Segment>,
    warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FrameParams {
    max_frame_height: u32,
    scene_threshold: f64,
    min_frame_interval: f64,
    max_frames: usize,
    duplicate_threshold: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedFrames {
    params: FrameParams,
    frames: Vec<Frame>,
    warnings: Vec<String>,
}

/// Downloads metadata, transcript and (optionally) frames of one video. The URL is checked against
/// the allowed hosts before anything else; repeated calls reuse the cache folder.
pub async fn process_video(
    opts: &YoutubeOptions,
    url: &str,
    extract_frames: bool,
    prefer_captions: bool,
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> Result<VideoResult> {
    let parsed = crate::link::check_url(opts, url)?;
    let (guarded, guard) = crate::guard::guarded(opts, &parsed).await?;
    let r = process_checked(
        &guarded,
        url,
        parsed,
        extract_frames,
        prefer_captions,
        progress,
        cancel,
    )
    .await;
    crate::guard::explain(r, guard.as_ref())
}

async fn process_checked(
    opts: &YoutubeOptions,
    url: &str,
    parsed: url::Url,
    extract_frames: bool,
    prefer_captions: bool,
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> Result<VideoResult> {
    let dir = cache::video_dir(&opts.cache_dir, &cache::key_for(&parsed))?;
    let _lock = cache::lock_folder(&dir, cancel).await?;
    let info_path = dir.join("info.json");
    let mut warnings = Vec::new();

    progress(&Progress::new(Stage::Metadata, "reading video metadata"));
    let raw: serde_json::Value = match cache::read_json(&info_path) {
        Some(v) => v,
        None => {
            let (v, w) = ytdlp::dump_json(opts, &parsed, &["--no-playlist"], cancel).await?;
            warnings.extend(w);
            cache::write_json(&info_path, &v)?;
            v
        }
    };
    let info: VideoInfo =
        serde_json::from_value(raw).map_err(|e| Error::Output(format!("info JSON: {e}")))?;
    if info.kind.as_deref().is_some_and(|k| k != "video") {
        let _ = std::fs::remove_file(&info_path);
        return Err(Error::Output(format!(
            "URL resolved to a {} rather than a video; use process_playlist",
            info.kind.as_deref().unwrap_or("?")
        )));
    }
    if let Some(d) = info
        .duration
        .filter(|d| opts.max_duration > 0.0 && *d > opts.max_duration)
    {
        return Err(Error::TooLarge(format!(
            "the video lasts {d:.0} s; the limit is {:.0} s (youtube.max_duration)",
            opts.max_duration
        )));
    }
    let live = matches!(info.live_status.as_deref(), Some("is_live" | "is_upcoming"));
    if live {
        warnings.push("video is live right now: only metadata and captions are read".into());
    }

    let source = |dir: &Path| -> bool { is_fresh(&dir.join("info.json")) };
    let media_source = if source(&dir) {
        MediaSource::InfoJson(&info_path)
    } else {
        MediaSource::Url(&parsed)
    };

    let transcript = transcript(
        opts,
        &info,
        &dir,
        prefer_captions,
        live,
        media_source,
        progress,
        cancel,
    )
    .await?;
    warnings.extend(transcript.warnings.iter().cloned());
    let chars: usize = transcript
        .segments
        .iter()
        .map(|g| g.text.chars().count())
        .sum();
    if opts.max_transcript_chars > 0 && chars > opts.max_transcript_chars {
        return Err(Error::TooLarge(format!(
            "the transcript has {chars} characters; the limit is {} (youtube.max_transcript_chars)",
            opts.max_transcript_chars
        )));
    }

    let mut frames = Vec::new();
    let mut segments = transcript.segments;
    if extract_frames && !live {
        let (f, w) = frames_for(opts, &dir, media_source, progress, cancel).await?;
        frames = f;
        warnings.extend(w);
        crate::slides::add_on_screen(opts, &frames, &mut segments, &mut warnings, cancel).await?;
    }
    cache::touch(&dir);
    progress(&Progress::new(Stage::Done, "done"));
    let video_id = crate::link::video_id(url)
        .filter(|_| crate::link::is_youtube_host(&parsed))
        .or_else(|| info.id.clone())
        .unwrap_or_else(|| cache::key_for(&parsed));
    Ok(VideoResult {
        video_id,
        url: info
            .webpage_url
            .clone()
            .unwrap_or_else(|| parsed.to_string()),
        title: info.title.clone(),
        channel: info.channel(),
        duration: info.duration,
        upload_date: info.upload_date_iso(),
        description: info.description.clone(),
        chapters: info.chapters.clone().unwrap_or_default(),
        transcript: transcript_text(&segments),
        transcript_segments: segments,
        transcript_source: transcript.source,
        frames,
        warnings,
        extractor: info.extractor.clone(),
        live_status: info.live_status.clone(),
        cache_dir: dir,
    })
}

fn is_fresh(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age < FRESH_INFO)
}

#[allow(clippy::too_many_arguments)]
async fn transcript(
    opts: &YoutubeOptions,
    info: &VideoInfo,
    dir: &Path,
    prefer_captions: bool,
    live: bool,
    media: MediaSource<'_>,
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> Result<CachedTranscript> {
    let has_asr = !matches!(opts.asr, AsrProvider::None);
    let mode = if prefer_captions || !has_asr {
        "captions"
    } else {
        "asr"
    };
    let cache_file = dir.join(format!("transcript.{mode}.json"));
    if let Some(t) = cache::read_json::<CachedTranscript>(&cache_file) {
        return Ok(t);
    }
    let mut warnings = Vec::new();
    if !prefer_captions && !has_asr {
        warnings.push(
            "captions not preferred but no ASR provider is configured; using captions".into(),
        );
    }
    if mode == "captions" {
        match captions(opts, info, dir, progress, cancel).await {
            Ok(Some((source, segments, w))) => {
                warnings.extend(w);
                let t = CachedTranscript {
                    source,
                    segments,
                    warnings,
                };
                cache::write_json(&cache_file, &t)?;
                return Ok(t);
            }
            Ok(None) => warnings.push(format!(
                "no captions in {} (manual or automatic)",
                opts.caption_languages.join(", ")
            )),
            Err(e) if matches!(e, Error::Cancelled) => return Err(e),
            // Without ASR, a retryable caption failure (429) must surface so the task retries.
            Err(e) if e.retryable() && !has_asr => return Err(e),
            Err(e) => warnings.push(format!("captions failed: {e}")),
        }
    }
    if !has_asr {
        warnings.push("no transcript: no usable captions and no ASR provider configured".into());
        // Not cached: captions may appear later (auto captions are generated after upload).
        return Ok(CachedTranscript {
            source: "none".into(),
            segments: vec![],
            warnings,
        });
    }
    if live {
        warnings.push("live video: speech-to-text skipped".into());
        return Ok(CachedTranscript {
            source: "none".into(),
            segments: vec![],
            warnings,
        });
    }
    let audio = match ytdlp::find_stem(dir, "audio") {
        Some(p) => p,
        None => ytdlp::download_media(opts, media, Media::Audio, dir, progress, cancel).await?,
    };
    let chunk_dir = dir.join("asr");
    let _ = std::fs::remove_dir_all(&chunk_dir);
    let chunks = crate::asr::prepare_audio(opts, &audio, &chunk_dir, cancel).await?;
    let heard = crate::asr::transcribe_chunks(opts, &chunks, progress, cancel).await?;
    let _ = std::fs::remove_dir_all(&chunk_dir);
    warnings.extend(heard.warning());
    let segments = heard.segments;
    if segments.is_empty() {
        warnings.push("speech-to-text returned no text".into());
    }
    let t = CachedTranscript {
        source: "asr".into(),
        segments,
        warnings,
    };
    cache::write_json(&dir.join("transcript.asr.json"), &t)?;
    Ok(t)
}

/// `Ok(None)` when the video has no caption track in the preferred languages.
async fn captions(
    opts: &YoutubeOptions,
    info: &VideoInfo,
    dir: &Path,
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> Result<Option<(String, Vec<Segment>, Vec<String>)>> {
    let Some(track) = choose_track(info, &opts.caption_languages) else {
        return Ok(None);
    };
    progress(&Progress::new(
        Stage::Captions,
        format!("downloading {}", track.source()),
    ));
    let file = dir.join(format!("subs.{}.{}", track.lang, track.ext));
    let mut warnings = Vec::new();
    let path = if file.is_file() {
        file
    } else {
        let (p, w) =
            ytdlp::download_captions(opts, &dir.join("info.json"), &track, dir, cancel).await?;
        warnings.extend(w);
        p
    };
    let bytes =
        std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let parsed = read_captions(&bytes, Some(&track.lang))?;
    if parsed.encoding.name != "UTF-8" {
        warnings.push(format!("captions decoded from {}", parsed.encoding));
    }
    let segments = parsed.segments;
    if segments.is_empty() {
        return Ok(None);
    }
    Ok(Some((track.source(), segments, warnings)))
}

async fn frames_for(
    opts: &YoutubeOptions,
    dir: &Path,
    media: MediaSource<'_>,
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> Result<(Vec<Frame>, Vec<String>)> {
    let params = FrameParams {
        max_frame_height: opts.max_frame_height,
        scene_threshold: opts.scene_threshold,
        min_frame_interval: opts.min_frame_interval,
        max_frames: opts.max_frames,
        duplicate_threshold: opts.duplicate_threshold,
    };
    let manifest = dir.join("frames.json");
    if let Some(c) = cache::read_json::<CachedFrames>(&manifest)
        && c.params == params
        && c.frames.iter().all(|f| f.path.is_file())
    {
        return Ok((c.frames, c.warnings));
    }
    let video = match ytdlp::find_stem(dir, "video") {
        Some(p) => p,
        None => ytdlp::download_media(opts, media, Media::Video, dir, progress, cancel).await?,
    };
    progress(&Progress::new(
        Stage::Frames,
        "extracting frames at scene changes",
    ));
    let frames_dir = dir.join("frames");
    let _ = std::fs::remove_dir_all(&frames_dir);
    let result = crate::frames::extract_frames(opts, &video, &frames_dir, None, cancel).await;
    if let Err(Error::Media { .. }) = &result {
        // A truncated download must not be reused by the next attempt.
        let _ = std::fs::remove_file(&video);
    }
    let (frames, warnings) = result?;
    cache::write_json(
        &manifest,
        &CachedFrames {
            params,
            frames: frames.clone(),
            warnings: warnings.clone(),
        },
    )?;
    // Frames are what we keep; the video itself is the bulk of the folder.
    let _ = std::fs::remove_file(&video);
    Ok((frames, warnings))
}
