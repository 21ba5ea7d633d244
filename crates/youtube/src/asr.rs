//! Speech-to-text: audio prepared with ffmpeg (16 kHz mono, cut into chunks), then sent to an
//! OpenAI-compatible `/audio/transcriptions` endpoint (`verbose_json` segments), or to local
//! Whisper when the `whisper` feature is built. The API key only ever goes into the header.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::options::{ApiKey, AsrProvider, YoutubeOptions};
use crate::process::{Cmd, run};
use crate::progress::{Progress, ProgressFn, Stage};
use crate::segment::Segment;

/// Converts `input` to 16 kHz mono MP3 chunks of `opts.asr_chunk_seconds` in `dir`
/// (`chunk_000.mp3`, …) and returns them with their start offsets.
pub(crate) async fn prepare_audio(
    opts: &YoutubeOptions,
    input: &Path,
    dir: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<(f64, PathBuf)>> {
    crate::frames::probe(opts, input, cancel).await?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let chunk = opts.asr_chunk_seconds.max(10);
    let mut c = Cmd::new("ffmpeg", &opts.ffmpeg, opts.timeouts.ffmpeg);
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-y", "-i"])
        .arg(input);
    c.args([
        "-vn",
        "-ac",
        "1",
        "-ar",
        "16000",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "32k",
    ]);
    c.args([
        "-f",
        "segment",
        "-segment_time",
        &chunk.to_string(),
        "-reset_timestamps",
        "1",
    ]);
    c.arg(dir.join("chunk_%03d.mp3"));
    let out = run(&c, cancel, None).await?;
    if !out.status.success() {
        return Err(Error::Media {
            path: input.to_path_buf(),
            reason: crate::process::last_lines(&out.stderr, 4),
        });
    }
    let mut chunks: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("chunk_") && n.ends_with(".mp3"))
        })
        .collect();
    chunks.sort();
    if chunks.is_empty() {
        return Err(Error::Media {
            path: input.to_path_buf(),
            reason: "no audio stream to transcribe".into(),
        });
    }
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(i, p)| (i as f64 * f64::from(chunk), p))
        .collect())
}

/// Transcribes prepared chunks with the configured provider; `None` when no provider is set.
pub(crate) async fn transcribe_chunks(
    opts: &YoutubeOptions,
    chunks: &[(f64, PathBuf)],
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> Result<Vec<Segment>> {
    let mut all = Vec::new();
    for (i, (offset, path)) in chunks.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        progress(
            &Progress::new(Stage::Transcribe, "transcribing audio")
                .counts(i as u64, Some(chunks.len() as u64)),
        );
        let segs = transcribe_file(opts, path, cancel).await?;
        all.extend(segs.into_iter().map(|s| Segment {
            start: s.start + offset,
            end: s.end + offset,
            text: s.text,
        }));
    }
    Ok(all)
}

/// Transcribes one audio file (any format the provider accepts) into segments.
pub async fn transcribe_file(
    opts: &YoutubeOptions,
    audio: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<Segment>> {
    match &opts.asr {
        AsrProvider::None => Err(Error::Config("no ASR provider configured".into())),
        AsrProvider::OpenAiCompatible {
            base_url,
            api_key,
            model,
            language,
        } => {
            let fut = openai_transcribe(
                base_url,
                api_key,
                model,
                language.as_deref(),
                audio,
                opts.timeouts.asr,
            );
            tokio::select! {
                r = fut => r,
                _ = cancel.cancelled() => Err(Error::Cancelled),
            }
        }
        AsrProvider::LocalWhisper { model_dir } => {
            local_whisper(opts, model_dir, audio, cancel).await
        }
    }
}

#[cfg(not(feature = "whisper"))]
async fn local_whisper(
    _opts: &YoutubeOptions,
    model_dir: &Path,
    _audio: &Path,
    _cancel: &CancellationToken,
) -> Result<Vec<Segment>> {
    Err(Error::Config(format!(
        "local Whisper ({}) needs hlbot-youtube built with the `whisper` feature",
        model_dir.display()
    )))
}

#[cfg(feature = "whisper")]
async fn local_whisper(
    opts: &YoutubeOptions,
    model_dir: &Path,
    audio: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<Segment>> {
    let lang = opts.caption_languages.first().map(String::as_str);
    crate::whisper::transcribe(opts, model_dir, lang, audio, cancel).await
}

async fn openai_transcribe(
    base_url: &str,
    api_key: &ApiKey,
    model: &str,
    language: Option<&str>,
    audio: &Path,
    timeout: std::time::Duration,
) -> Result<Vec<Segment>> {
    let bytes = tokio::fs::read(audio)
        .await
        .map_err(|e| Error::io(format!("reading {}", audio.display()), e))?;
    let name = audio
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("audio.mp3")
        .to_string();
    let mime = match audio.extension().and_then(|e| e.to_str()) {
        Some("wav") => "audio/wav",
        Some("flac") => "audio/flac",
        Some("ogg" | "opus") => "audio/ogg",
        Some("m4a" | "mp4") => "audio/mp4",
        Some("webm") => "audio/webm",
        _ => "audio/mpeg",
    };
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name)
        .mime_str(mime)
        .map_err(|e| Error::AsrRequest(e.to_string()))?;
    let mut form = reqwest::multipart::Form::new()
        .part("file", part)
        .text("model", model.to_string())
        .text("response_format", "verbose_json")
        .text("timestamp_granularities[]", "segment");
    if let Some(lang) = language {
        form = form.text("language", lang.to_string());
    }
    let url = format!("{}/audio/transcriptions", base_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| Error::AsrRequest(e.to_string()))?;
    let mut req = client.post(&url).multipart(form);
    if !api_key.is_empty() {
        req = req.bearer_auth(api_key.expose());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Error::AsrRequest(e.without_url().to_string()))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| Error::AsrRequest(e.without_url().to_string()))?;
    if !status.is_success() {
        let mut body: String = body.chars().take(500).collect();
        if !api_key.is_empty() {
            body = body.replace(api_key.expose(), "***");
        }
        return Err(Error::AsrStatus {
            status: status.as_u16(),
            body,
        });
    }
    parse_transcription(&body)
}

/// `verbose_json` (`segments`), plain `json` (`text` only) or a bare text body.
pub(crate) fn parse_transcription(body: &str) -> Result<Vec<Segment>> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        let text = body.trim();
        return Ok(if text.is_empty() {
            vec![]
        } else {
            vec![Segment {
                start: 0.0,
                end: 0.0,
                text: text.to_string(),
            }]
        });
    };
    if let Some(segs) = v.get("segments").and_then(|s| s.as_array()) {
        let out: Vec<Segment> = segs
            .iter()
            .filter_map(|s| {
                let text = s.get("text")?.as_str()?.trim().to_string();
                let start = s.get("start").and_then(|x| x.as_f64()).unwrap_or(0.0);
                let end = s.get("end").and_then(|x| x.as_f64()).unwrap_or(start);
                (!text.is_empty()).then_some(Segment { start, end, text })
            })
            .collect();
        if !out.is_empty() {
            return Ok(out);
        }
    }
    match v.get("text").and_then(|t| t.as_str()) {
        Some(t) if !t.trim().is_empty() => {
            let end = v.get("duration").and_then(|d| d.as_f64()).unwrap_or(0.0);
            Ok(vec![Segment {
                start: 0.0,
                end,
                text: t.trim().to_string(),
            }])
        }
        Some(_) => Ok(vec![]),
        None => Err(Error::AsrRequest(
            "transcription response has neither segments nor text".into(),
        )),
    }
}
