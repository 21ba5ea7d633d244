//! Speech-to-text: audio prepared with ffmpeg (16 kHz mono, cut into chunks), then sent to an
//! OpenAI-compatible `/audio/transcriptions` endpoint (`verbose_json` segments, or `json` text
//! for the models and servers that give only that), or to local
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

/// What speech-to-text made of some audio: the segments it heard, and how many stretches it
/// returned were left out as hallucinations over music or noise ([`heard`]).
#[derive(Debug, Default)]
pub(crate) struct Transcribed {
    pub segments: Vec<Segment>,
    pub not_speech: usize,
}

impl Transcribed {
    /// `segments` kept when [`heard`], the others counted.
    pub fn sift(
        segments: impl IntoIterator<Item = (Segment, Option<f64>, Option<f64>)>,
    ) -> Transcribed {
        let mut t = Transcribed::default();
        for (seg, no_speech, logprob) in segments {
            if seg.text.is_empty() {
                continue;
            }
            if heard(no_speech, logprob, &seg.text) {
                t.segments.push(seg);
            } else {
                t.not_speech += 1;
            }
        }
        t
    }

    /// The warning for stretches left out, if any.
    pub fn warning(&self) -> Option<String> {
        (self.not_speech > 0).then(|| {
            format!(
                "speech-to-text: {} stretch(es) of audio judged music or noise, not speech, and left out",
                self.not_speech
            )
        })
    }
}

/// Whether a stretch of speech-to-text output was speech. Whisper writes text over music and
/// noise ("I'm going to go to the city." over a cartoon's score, ".. ..", "x3", "1.0" over rain
/// and tones); its own scores tell: such a stretch is dropped when the model's no-speech
/// probability is over 0.5 and its mean token log-probability under -1 — OpenAI's rule with the
/// no-speech bar lowered from 0.6 (music, rain and tones measured 0.52-0.97 and -1.8 to -4.4;
/// speech, also under music or rain, 0.05-0.36 and -0.25 to -0.62). Text without a letter or
/// digit (`.. ..`, `🎵 🎵`) is dropped whatever the scores (an API may not give them).
pub(crate) fn heard(no_speech_prob: Option<f64>, avg_logprob: Option<f64>, text: &str) -> bool {
    if !text.chars().any(char::is_alphanumeric) {
        return false;
    }
    match (no_speech_prob, avg_logprob) {
        (Some(p), Some(l)) => !(p > 0.5 && l < -1.0),
        _ => true,
    }
}

/// Transcribes prepared chunks with the configured provider.
pub(crate) async fn transcribe_chunks(
    opts: &YoutubeOptions,
    chunks: &[(f64, PathBuf)],
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> Result<Transcribed> {
    let mut all = Transcribed::default();
    for (i, (offset, path)) in chunks.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        progress(
            &Progress::new(Stage::Transcribe, "transcribing audio")
                .counts(i as u64, Some(chunks.len() as u64)),
        );
        let t = transcribe_one(opts, path, cancel).await?;
        all.not_speech += t.not_speech;
        all.segments.extend(t.segments.into_iter().map(|s| Segment {
            start: s.start + offset,
            end: s.end + offset,
            text: s.text,
        }));
    }
    Ok(all)
}

/// Transcribes one audio file (any format the provider accepts) into segments; stretches judged
/// music or noise, not speech, are left out.
pub async fn transcribe_file(
    opts: &YoutubeOptions,
    audio: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<Segment>> {
    Ok(transcribe_one(opts, audio, cancel).await?.segments)
}

async fn transcribe_one(
    opts: &YoutubeOptions,
    audio: &Path,
    cancel: &CancellationToken,
) -> Result<Transcribed> {
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
) -> Result<Transcribed> {
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
) -> Result<Transcribed> {
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
) -> Result<Transcribed> {
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
    let first = response_format(model);
    let post = |format| {
        post_transcription(
            base_url, api_key, model, language, &bytes, &name, mime, format, timeout,
        )
    };
    let body = match post(first).await {
        Err(Error::AsrStatus { status: 400, body })
            if first == "verbose_json"
                && (body.contains("response_format") || body.contains("verbose_json")) =>
        {
            tracing::info!(
                "speech-to-text model {model} does not give verbose_json (HTTP 400: {}): asking for json",
                body.chars().take(200).collect::<String>()
            );
            post("json").await?
        }
        r => r?,
    };
    parse_transcription(&body)
}

/// `verbose_json` gives segments with Whisper's scores (`whisper-1`, faster-whisper-server,
/// whisper.cpp's server). OpenAI's GPT transcription models (`gpt-4o-transcribe`,
/// `gpt-4o-mini-transcribe`, …) accept only `json` — the text — and are asked for it at once; a
/// server that answers a `verbose_json` request with a 400 naming the format is asked again with
/// `json` ([`openai_transcribe`]).
fn response_format(model: &str) -> &'static str {
    if model.to_ascii_lowercase().starts_with("gpt-") {
        "json"
    } else {
        "verbose_json"
    }
}

/// One multipart POST to `{base_url}/audio/transcriptions`; the body of a 2xx answer, else
/// [`Error::AsrStatus`] with the key scrubbed from the body.
#[allow(clippy::too_many_arguments)]
async fn post_transcription(
    base_url: &str,
    api_key: &ApiKey,
    model: &str,
    language: Option<&str>,
    bytes: &[u8],
    name: &str,
    mime: &str,
    format: &str,
    timeout: std::time::Duration,
) -> Result<String> {
    let part = reqwest::multipart::Part::bytes(bytes.to_vec())
        .file_name(name.to_string())
        .mime_str(mime)
        .map_err(|e| Error::AsrRequest(e.to_string()))?;
    let mut form = reqwest::multipart::Form::new()
        .part("file", part)
        .text("model", model.to_string())
        .text("response_format", format.to_string());
    if format == "verbose_json" {
        form = form.text("timestamp_granularities[]", "segment");
    }
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
    Ok(body)
}

/// `verbose_json` (`segments`, each with Whisper's `no_speech_prob` and `avg_logprob` when the
/// service gives them), plain `json` (`text` only) or a bare text body.
pub(crate) fn parse_transcription(body: &str) -> Result<Transcribed> {
    // The whole text as one segment from the chunk's start (no scores to judge it by).
    let whole = |text: &str, end: f64| {
        Transcribed::sift([(
            Segment {
                start: 0.0,
                end,
                text: text.trim().to_string(),
            },
            None,
            None,
        )])
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Ok(whole(body, 0.0));
    };
    if let Some(segs) = v.get("segments").and_then(|s| s.as_array())
        && !segs.is_empty()
    {
        // Segments given: the whole `text` is never read instead, it holds the left-out ones too.
        return Ok(Transcribed::sift(segs.iter().filter_map(|s| {
            let text = s.get("text")?.as_str()?.trim().to_string();
            let start = s.get("start").and_then(|x| x.as_f64()).unwrap_or(0.0);
            let end = s.get("end").and_then(|x| x.as_f64()).unwrap_or(start);
            let num = |k: &str| s.get(k).and_then(|x| x.as_f64());
            Some((
                Segment { start, end, text },
                num("no_speech_prob"),
                num("avg_logprob"),
            ))
        })));
    }
    match v.get("text").and_then(|t| t.as_str()) {
        Some(t) => Ok(whole(
            t,
            v.get("duration").and_then(|d| d.as_f64()).unwrap_or(0.0),
        )),
        None => Err(Error::AsrRequest(
            "transcription response has neither segments nor text".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_over_music_are_left_out_by_their_scores() {
        assert!(heard(Some(0.05), Some(-0.25), "ask not what your country"));
        assert!(heard(None, None, "no scores given"));
        assert!(heard(Some(0.9), Some(-0.5), "sure of its words"));
        assert!(heard(Some(0.3), Some(-2.0), "unsure, but speech"));
        assert!(!heard(
            Some(0.59),
            Some(-2.47),
            "I'm going to go to the city."
        ));
        assert!(!heard(None, None, ".. .."));
        assert!(!heard(Some(0.0), Some(0.0), "🎵 🎵"));
    }

    #[test]
    fn segments_all_left_out_do_not_fall_back_to_the_whole_text() {
        let body = r#"{"text": "Thank you.", "segments": [
            {"start": 0, "end": 3, "text": " Thank you.", "no_speech_prob": 0.8, "avg_logprob": -2.1}]}"#;
        let t = parse_transcription(body).unwrap();
        assert!(t.segments.is_empty());
        assert_eq!(t.not_speech, 1);
        assert!(t.warning().unwrap().contains("1 stretch(es)"));
        let t = parse_transcription(r#"{"text": " Buy the dip. ", "duration": 4}"#).unwrap();
        assert_eq!(t.segments[0].text, "Buy the dip.");
        assert_eq!(t.segments[0].end, 4.0);
        assert!(parse_transcription("").unwrap().segments.is_empty());
        assert!(parse_transcription(r#"{"error": 1}"#).is_err());
    }
}
