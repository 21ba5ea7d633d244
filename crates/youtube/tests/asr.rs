//! Speech-to-text through an OpenAI-compatible `/v1/audio/transcriptions` server on 127.0.0.1 that
//! checks the request (auth, model, verbose_json, an MP3 file part) — on speech synthesised with
//! espeak-ng and fetched with the real yt-dlp.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hlbot_youtube::{ApiKey, AsrProvider, Error, YoutubeOptions, no_progress, process_video};
use tokio_util::sync::CancellationToken;

const KEY: &str = "sk-test-very-secret-key";

#[derive(Clone, Default)]
struct Seen {
    calls: Arc<Mutex<Vec<String>>>,
    /// `response_format`s answered with a 400, as OpenAI answers a format a model does not give.
    refused: Arc<Mutex<Vec<String>>>,
    fail: bool,
}

fn field(body: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let marker = format!("name=\"{name}\"\r\n\r\n");
    let start = text.find(&marker)? + marker.len();
    let end = text[start..].find("\r\n")? + start;
    Some(text[start..end].to_string())
}

async fn transcriptions(
    State(seen): State<Seen>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if seen.fail {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("upstream exploded for key {KEY}"),
        );
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {KEY}") {
        return (StatusCode::UNAUTHORIZED, "bad auth".into());
    }
    let ctype = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("multipart/form-data") {
        return (StatusCode::BAD_REQUEST, "not multipart".into());
    }
    // whisper-1 gives verbose_json (segments with scores) or json; OpenAI's GPT transcription
    // models, and some self-hosted servers ("picky-local"), only json (the text).
    let model = field(&body, "model").unwrap_or_default();
    let format = field(&body, "response_format").unwrap_or_default();
    let granular = field(&body, "timestamp_granularities[]").is_some();
    let accepted = match model.as_str() {
        "whisper-1" => format == "verbose_json" || (format == "json" && !granular),
        "gpt-4o-mini-transcribe" | "picky-local" => format == "json" && !granular,
        _ => false,
    };
    if !accepted {
        seen.refused.lock().unwrap().push(format.clone());
        let msg = format!(
            "response_format '{format}' is not compatible with model '{model}'. Use 'json' or 'text' instead."
        );
        let err = serde_json::json!({"error": {"message": msg, "type": "invalid_request_error",
            "param": "response_format", "code": "unsupported_value"}});
        return (StatusCode::BAD_REQUEST, err.to_string());
    }
    // The file part: an MP3 (ID3 tag or MPEG frame sync) of real size.
    let text = String::from_utf8_lossy(&body);
    let Some(pos) = text.find("name=\"file\"; filename=\"chunk_") else {
        return (StatusCode::BAD_REQUEST, "no file part".into());
    };
    let head_end = body[pos..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap()
        + pos
        + 4;
    let audio = &body[head_end..];
    let is_mp3 = audio.starts_with(b"ID3") || (audio[0] == 0xFF && audio[1] & 0xE0 == 0xE0);
    if !is_mp3 || audio.len() < 2000 {
        return (StatusCode::BAD_REQUEST, "file is not mp3 audio".into());
    }
    let mut calls = seen.calls.lock().unwrap();
    calls.push(format!("{} bytes", audio.len()));
    let n = calls.len();
    if format == "json" {
        let json = serde_json::json!({"text": format!("chunk {n} text"),
            "usage": {"type": "tokens", "input_tokens": 14, "output_tokens": 45, "total_tokens": 59}});
        return (StatusCode::OK, json.to_string());
    }
    // Whisper's scores per segment, as whisper-1 gives them; the second chunk ends with what
    // Whisper writes over music (a no-speech probability over 0.5, a mean log-probability under -1).
    let mut segments = vec![serde_json::json!({"id": 0, "start": 0.5, "end": 2.0,
        "text": format!(" chunk {n} text "), "no_speech_prob": 0.02, "avg_logprob": -0.3})];
    if n == 2 {
        segments.push(serde_json::json!({"id": 1, "start": 5.0, "end": 9.0,
            "text": " Thank you for watching!", "no_speech_prob": 0.82, "avg_logprob": -1.9}));
    }
    let json = serde_json::json!({
        "task": "transcribe", "language": "english", "duration": 10.0,
        "text": format!("chunk {n} text"),
        "segments": segments
    });
    (StatusCode::OK, json.to_string())
}

async fn asr_server(fail: bool) -> (String, Seen) {
    let seen = Seen {
        fail,
        ..Default::default()
    };
    let app = axum::Router::new()
        .route(
            "/v1/audio/transcriptions",
            axum::routing::post(transcriptions),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

/// ~14 s of espeak-ng speech as WAV in `dir/speech.wav`.
fn speech(dir: &std::path::Path) -> bool {
    common::have("ffmpeg")
        && common::speak(
            &dir.join("speech.wav"),
            120,
            "Support is a price level where buyers keep stepping in. Resistance is where sellers keep showing up. The pair bounced off one point zero eight five zero three separate times before it broke out.",
        )
}

/// `speech.wav` on the local file server through `process_video` (no frames, speech-to-text).
async fn speech_video(
    o: &YoutubeOptions,
    files: &common::Server,
) -> hlbot_youtube::Result<hlbot_youtube::VideoResult> {
    process_video(
        o,
        &files.url("speech.wav"),
        false,
        false,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
}

fn opts(ytdlp: std::path::PathBuf, cache: &std::path::Path, base_url: String) -> YoutubeOptions {
    YoutubeOptions {
        ytdlp,
        cache_dir: cache.to_path_buf(),
        extra_allowed_hosts: vec!["127.0.0.1".into()],
        asr: AsrProvider::OpenAiCompatible {
            base_url,
            api_key: ApiKey::new(KEY),
            model: "whisper-1".into(),
            language: Some("en".into()),
        },
        asr_chunk_seconds: 10,
        ..Default::default()
    }
}

#[tokio::test]
async fn asr_through_openai_compatible_server_in_chunks() {
    let Some(ytdlp) = common::ytdlp() else { return };
    let media = tempfile::tempdir().unwrap();
    if !speech(media.path()) {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let files = common::serve(media.path().to_path_buf()).await;
    let (base, seen) = asr_server(false).await;
    let o = opts(ytdlp, cache.path(), base);
    assert!(!format!("{o:?}").contains(KEY), "key printed by Debug");
    let r = speech_video(&o, &files).await.unwrap();
    assert_eq!(r.transcript_source, "asr");
    let calls = seen.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "two 10 s chunks expected, got {calls:?}");
    assert_eq!(r.transcript, "chunk 1 text chunk 2 text");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("1 stretch(es) of audio judged music or noise")),
        "{:?}",
        r.warnings
    );
    assert_eq!(
        (
            r.transcript_segments[0].start,
            r.transcript_segments[1].start
        ),
        (0.5, 10.5)
    );
    assert!(!serde_json::to_string(&r).unwrap().contains(KEY));
}

/// `gpt-4o-mini-transcribe` (and `gpt-4o-transcribe`) give only `json`: it is asked for at once.
/// A server that refuses `verbose_json` with a 400 naming the format is asked again with `json`.
/// Both transcripts are the text of each chunk, at the chunk's start.
#[tokio::test]
async fn models_and_servers_without_verbose_json_are_asked_for_json() {
    let Some(ytdlp) = common::ytdlp() else { return };
    let media = tempfile::tempdir().unwrap();
    if !speech(media.path()) {
        return;
    }
    let files = common::serve(media.path().to_path_buf()).await;
    for (model, refused) in [("gpt-4o-mini-transcribe", 0), ("picky-local", 1)] {
        let cache = tempfile::tempdir().unwrap();
        let (base, seen) = asr_server(false).await;
        let mut o = opts(ytdlp.clone(), cache.path(), base);
        if let AsrProvider::OpenAiCompatible { model: m, .. } = &mut o.asr {
            *m = model.into();
        }
        let r = speech_video(&o, &files)
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        assert_eq!(r.transcript, "chunk 1 text chunk 2 text", "{model}");
        assert_eq!(r.transcript_segments[1].start, 10.0, "{model}");
        let refused_formats = seen.refused.lock().unwrap().clone();
        assert_eq!(
            refused_formats.len(),
            refused * 2,
            "{model}: {refused_formats:?}"
        );
        assert!(refused_formats.iter().all(|f| f == "verbose_json"));
    }
}

#[tokio::test]
async fn asr_server_error_is_retryable_and_hides_the_key() {
    let Some(ytdlp) = common::ytdlp() else { return };
    let media = tempfile::tempdir().unwrap();
    if !speech(media.path()) {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let files = common::serve(media.path().to_path_buf()).await;
    let (base, _) = asr_server(true).await;
    let err = speech_video(&opts(ytdlp, cache.path(), base), &files)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AsrStatus { status: 500, .. }), "{err}");
    assert!(err.retryable());
    assert!(
        !err.to_string().contains(KEY) && !format!("{err:?}").contains(KEY),
        "{err}"
    );
}

#[tokio::test]
async fn no_provider_means_source_none_with_warning() {
    let Some(ytdlp) = common::ytdlp() else { return };
    let media = tempfile::tempdir().unwrap();
    if !speech(media.path()) {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let files = common::serve(media.path().to_path_buf()).await;
    let mut o = opts(ytdlp, cache.path(), String::new());
    o.asr = AsrProvider::None;
    let r = speech_video(&o, &files).await.unwrap();
    assert_eq!(r.transcript_source, "none");
    assert!(
        r.warnings.iter().any(|w| w.contains("no ASR provider")),
        "{:?}",
        r.warnings
    );
}
