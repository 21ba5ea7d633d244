//! Local speech-to-text with Whisper through CTranslate2 (`ct2rs`, cargo feature `whisper`) on a
//! faster-whisper model folder (`model.bin`, `config.json`, `tokenizer.json`). Audio is decoded by
//! ffmpeg to 16 kHz mono f32; inference runs on a blocking thread in 30 s windows.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
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
) -> Result<Vec<Segment>> {
    let model = prepared_model_dir(model_dir, &opts.cache_dir)?;
    let samples = decode_pcm(opts, audio, cancel).await?;
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    let language = language.map(str::to_string);
    let job = tokio::task::spawn_blocking(move || infer(&model, language.as_deref(), &samples));
    tokio::select! {
        r = job => r.map_err(|e| Error::LocalAsr(format!("whisper thread: {e}")))?,
        // Inference cannot be interrupted; the result is dropped when it arrives.
        _ = cancel.cancelled() => Err(Error::Cancelled),
    }
}

fn infer(model: &Path, language: Option<&str>, samples: &[f32]) -> Result<Vec<Segment>> {
    let cfg = ct2rs::Config {
        num_threads_per_replica: 1,
        ..Default::default()
    };
    let whisper = ct2rs::Whisper::new(model, cfg)
        .map_err(|e| Error::Config(format!("loading Whisper model {}: {e}", model.display())))?;
    // ct2rs always sends a language token; English-only models (tiny.en, …) only know English,
    // and language detection is not available on them.
    let lang = if whisper.is_multilingual() {
        language
    } else {
        Some("en")
    };
    let texts = whisper
        .generate(samples, lang, false, &Default::default())
        .map_err(|e| Error::LocalAsr(e.to_string()))?;
    let window = whisper.n_samples() as f64 / whisper.sampling_rate() as f64;
    let total = samples.len() as f64 / f64::from(SAMPLE_RATE);
    Ok(texts
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let text = t.trim().to_string();
            let start = i as f64 * window;
            (!text.is_empty()).then_some(Segment {
                start,
                end: (start + window).min(total),
                text,
            })
        })
        .collect())
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
