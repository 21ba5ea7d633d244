//! Local speech-to-text with Whisper through CTranslate2 (`ct2rs`, cargo feature `whisper`) on a
//! faster-whisper model folder (`model.bin`, `config.json`, `tokenizer.json`). Audio is decoded by
//! ffmpeg to 16 kHz mono f32; inference runs on a blocking thread in 30 s windows.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::asr::Transcribed;
use crate::error::{Error, Result};
use crate::mel;
use crate::options::YoutubeOptions;
use crate::process::{Cmd, run};
use crate::segment::Segment;

const SAMPLE_RATE: u32 = 16_000;

/// Whisper's standard feature extractor settings; faster-whisper folders often lack this file,
/// which `ct2rs` requires.
const PREPROCESSOR_CONFIG: &str = r#"{
  "chunk_length": 30,
  "feature_extractor_type": "WhisperFeatureExtractor",
  "feature_size": 80,
  "hop_length": 160,
  "n_fft": 400,
  "n_samples": 480000,
  "nb_max_frames": 3000,
  "padding_side": "right",
  "padding_value": 0.0,
  "processor_class": "WhisperProcessor",
  "return_attention_mask": false,
  "sampling_rate": 16000
}"#;

/// Transcribes `audio` (any format ffmpeg reads) with the model in `model_dir`.
pub(crate) async fn transcribe(
    opts: &YoutubeOptions,
    model_dir: &Path,
    language: Option<&str>,
    audio: &Path,
    cancel: &CancellationToken,
) -> Result<Transcribed> {
    let model = prepared_model_dir(model_dir, &opts.cache_dir)?;
    let samples = decode_pcm(opts, audio, cancel).await?;
    if samples.is_empty() {
        return Ok(Transcribed::default());
    }
    let language = language.map(str::to_string);
    let stop = cancel.clone();
    let job =
        tokio::task::spawn_blocking(move || infer(&model, language.as_deref(), &samples, &stop));
    tokio::select! {
        r = job => r.map_err(|e| Error::LocalAsr(format!("whisper thread: {e}")))?,
        // The inference thread stops at its next batch of windows.
        _ = cancel.cancelled() => Err(Error::Cancelled),
    }
}

/// Windows decoded per call: bounds the features held at once (80 x 3000 floats each) and how
/// long a cancellation waits.
const BATCH: usize = 4;

fn infer(
    model: &Path,
    language: Option<&str>,
    samples: &[f32],
    cancel: &CancellationToken,
) -> Result<Transcribed> {
    use ct2rs::Tokenizer as _;
    let cfg = ct2rs::Config {
        num_threads_per_replica: 1,
        ..Default::default()
    };
    let loading = |e: &dyn std::fmt::Display| {
        Error::Config(format!("loading Whisper model {}: {e}", model.display()))
    };
    let whisper = ct2rs::sys::Whisper::new(model, cfg).map_err(|e| loading(&e))?;
    let tokenizer = ct2rs::tokenizers::hf::Tokenizer::new(model).map_err(|e| loading(&e))?;
    let n_mels = whisper.n_mels();
    let windows: Vec<&[f32]> = samples.chunks(mel::WINDOW_SAMPLES).collect();
    let window_secs = mel::WINDOW_SAMPLES as f64 / f64::from(SAMPLE_RATE);
    let total = samples.len() as f64 / f64::from(SAMPLE_RATE);
    // English-only models (tiny.en, …) only know English.
    let mut lang_token = match language {
        _ if !whisper.is_multilingual() => Some("<|en|>".to_string()),
        Some(l) => Some(format!("<|{l}|>")),
        None => None,
    };
    let opts = ct2rs::sys::WhisperOptions {
        return_scores: true,
        return_no_speech_prob: true,
        ..Default::default()
    };
    let mut windows_read = Vec::new();
    for (b, batch) in windows.chunks(BATCH).enumerate() {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let lang = match &lang_token {
            Some(l) => l.clone(),
            None => {
                let (mut data, shape) = mel::features(&batch[..1], n_mels);
                let view = ct2rs::sys::StorageView::new(&shape, &mut data, Default::default())
                    .map_err(asr)?;
                let l = detect_language(&whisper, &view)?;
                lang_token = Some(l.clone());
                l
            }
        };
        let (mut data, shape) = mel::features(batch, n_mels);
        let view =
            ct2rs::sys::StorageView::new(&shape, &mut data, Default::default()).map_err(asr)?;
        let prompt = vec![
            "<|startoftranscript|>",
            lang.as_str(),
            "<|transcribe|>",
            "<|notimestamps|>",
        ];
        let results = whisper
            .generate(&view, &vec![prompt; batch.len()], &opts)
            .map_err(asr)?;
        for (i, r) in results.into_iter().enumerate() {
            let tokens = r.sequences.into_iter().next().unwrap_or_default();
            let text = tokenizer.decode(tokens).map_err(asr)?.trim().to_string();
            let start = (b * BATCH + i) as f64 * window_secs;
            let score = r.scores.first().copied().unwrap_or(0.0);
            tracing::debug!(
                start,
                no_speech = r.no_speech_prob,
                score,
                text,
                "whisper window"
            );
            let seg = Segment {
                start,
                end: (start + window_secs).min(total),
                text,
            };
            windows_read.push((
                seg,
                Some(f64::from(r.no_speech_prob)),
                Some(f64::from(score)),
            ));
        }
    }
    Ok(Transcribed::sift(windows_read))
}

fn asr(e: impl std::fmt::Display) -> Error {
    Error::LocalAsr(e.to_string())
}

/// The language token (`<|de|>`) the model predicts first after `<|startoftranscript|>` for the
/// first window; `<|en|>` when it predicts something else.
fn detect_language(
    whisper: &ct2rs::sys::Whisper,
    view: &ct2rs::sys::StorageView,
) -> Result<String> {
    let opts = ct2rs::sys::WhisperOptions {
        max_length: 1,
        beam_size: 1,
        ..Default::default()
    };
    let first = whisper
        .generate(view, &[vec!["<|startoftranscript|>"]], &opts)
        .map_err(asr)?;
    let token = first
        .into_iter()
        .next()
        .and_then(|r| r.sequences.into_iter().next())
        .and_then(|s| s.into_iter().next())
        .unwrap_or_default();
    let lang = token.strip_prefix("<|").and_then(|t| t.strip_suffix("|>"));
    Ok(match lang {
        Some(l) if (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase()) => token,
        _ => "<|en|>".to_string(),
    })
}

/// The model folder itself when complete, else a sibling folder in the cache with links to its
/// files plus the standard `preprocessor_config.json`.
fn prepared_model_dir(model_dir: &Path, cache_dir: &Path) -> Result<PathBuf> {
    for f in ["model.bin", "config.json", "tokenizer.json"] {
        if !model_dir.join(f).is_file() {
            return Err(Error::Config(format!(
                "Whisper model folder {} has no {f}",
                model_dir.display()
            )));
        }
    }
    if model_dir.join("preprocessor_config.json").is_file() {
        return Ok(model_dir.to_path_buf());
    }
    let abs = std::fs::canonicalize(model_dir)
        .map_err(|e| Error::io(format!("resolving {}", model_dir.display()), e))?;
    let tag =
        hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(abs.to_string_lossy().as_bytes())[..8]);
    let dir = cache_dir.join(format!(".whisper-model-{tag}"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let rd =
        std::fs::read_dir(&abs).map_err(|e| Error::io(format!("listing {}", abs.display()), e))?;
    for entry in rd.flatten() {
        let link = dir.join(entry.file_name());
        if !link.exists() {
            std::os::unix::fs::symlink(entry.path(), &link)
                .map_err(|e| Error::io(format!("linking {}", link.display()), e))?;
        }
    }
    let pre = dir.join("preprocessor_config.json");
    if !pre.is_file() {
        std::fs::write(&pre, PREPROCESSOR_CONFIG)
            .map_err(|e| Error::io(format!("writing {}", pre.display()), e))?;
    }
    Ok(dir)
}

/// 16 kHz mono little-endian f32 samples of `audio`, decoded by ffmpeg.
async fn decode_pcm(
    opts: &YoutubeOptions,
    audio: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<f32>> {
    let mut c = Cmd::new("ffmpeg", &opts.ffmpeg, opts.timeouts.ffmpeg);
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(audio);
    c.args([
        "-vn",
        "-ac",
        "1",
        "-ar",
        &SAMPLE_RATE.to_string(),
        "-f",
        "f32le",
        "-",
    ]);
    let out = run(&c, cancel, None).await?;
    if !out.status.success() {
        return Err(Error::Media {
            path: audio.to_path_buf(),
            reason: crate::process::last_lines(&out.stderr, 4),
        });
    }
    Ok(out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
