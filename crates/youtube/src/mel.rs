//! Whisper's input features: the log-mel spectrogram of each 30 s window of 16 kHz audio
//! (25 ms frames every 10 ms, normalised as OpenAI's feature extractor does), computed as ct2rs
//! computes it, so that `whisper.rs` can call CTranslate2 itself and read each window's scores.

use mel_spec::mel::{log_mel_spectrogram, mel, norm_mel};
use mel_spec::stft::Spectrogram;
use ndarray::{Array2, s};

/// Samples per window (30 s at 16 kHz).
pub(crate) const WINDOW_SAMPLES: usize = 480_000;
const N_FFT: usize = 400;
const HOP: usize = 160;
/// Feature frames per window.
const FRAMES: usize = WINDOW_SAMPLES / HOP;

/// The features of `windows` as one `[windows, n_mels, 3000]` array (row-major) and its shape.
/// A short last window is padded with silence, as Whisper pads it.
pub(crate) fn features(windows: &[&[f32]], n_mels: usize) -> (Vec<f32>, [usize; 3]) {
    let filters = mel(f64::from(16_000u16), N_FFT, n_mels, None, None, false, true);
    let mut out = Vec::with_capacity(windows.len() * n_mels * FRAMES);
    for window in windows {
        let mut stft = Spectrogram::new(N_FFT, HOP);
        let mut m = Array2::<f32>::zeros((n_mels, FRAMES));
        for (i, hop) in window.chunks(HOP).enumerate() {
            if let Some(fft) = stft.add(hop) {
                let frame = norm_mel(&log_mel_spectrogram(&fft, &filters)).mapv(|v| v as f32);
                m.slice_mut(s![.., i]).assign(&frame.slice(s![.., 0]));
            }
        }
        out.extend(m.iter().copied());
    }
    (out, [windows.len(), n_mels, FRAMES])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_windows_by_mels_by_frames() {
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin() * 0.5)
            .collect();
        let (data, shape) = features(&[&tone, &tone[..800]], 80);
        assert_eq!(shape, [2, 80, 3000]);
        assert_eq!(data.len(), 2 * 80 * 3000);
        assert!(data.iter().all(|v| v.is_finite()));
    }
}
