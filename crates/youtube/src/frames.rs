//! Frames at scene cuts: one ffmpeg pass streams 64×36 grey thumbnails at a forced constant rate
//! (frame time = index / rate, exact to the analysed frame); a cut is a mean absolute change to
//! the previous thumbnail above an adaptive threshold (median + 6·MAD of the last 2 s of
//! changes, never below a floor), so low-contrast cuts in still slides count while noise in
//! moving footage does not. Then the choice (first frame, minimum scene length, near-duplicates
//! dropped, best scores up to the maximum count) and one JPEG per scene, taken once the picture
//! has settled after the cut (not on a blended transition frame). ffmpeg's autorotate honours
//! rotation metadata.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::options::YoutubeOptions;
use crate::process::{Cmd, run};

/// Size of the grey thumbnail used to spot near-duplicate frames.
const THUMB_W: usize = 64;
const THUMB_H: usize = 36;
/// Grey-level difference above which a thumbnail pixel counts as changed.
const PIXEL_DELTA: u8 = 24;
/// Most thumbnails analysed per video (the rate drops for long videos): ~70 MB of grey pixels.
const MAX_SAMPLES: f64 = 30_000.0;
/// Highest analysis rate (frames per second); a video's own rate when lower.
const MAX_RATE: f64 = 30.0;
/// Seconds of past changes the adaptive threshold looks at.
const WINDOW: f64 = 2.0;
/// Median absolute deviations above the median a change must be to count as a cut.
const MAD_K: f64 = 6.0;
/// Mean change (0..1) below which a frame with few changed pixels is a near-duplicate: a
/// low-contrast cut (grey 40→55 changes no pixel by more than `PIXEL_DELTA` but moves the mean
/// by 0.059) is not one.
const DUPLICATE_MEAN: f64 = 0.02;
/// Longest wait after a cut before its JPEG is taken (less in short scenes).
const SETTLE: f64 = 0.1;
/// JPEGs one ffmpeg run writes (each its own input seeked to its time): one process start for
/// many frames, the same pictures as one run per frame.
const GRAB_BATCH: usize = 16;

/// What ffprobe says about a media file.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Probe {
    /// Container duration, seconds.
    pub duration: Option<f64>,
    /// The first video stream's frame rate (`avg_frame_rate`, else `r_frame_rate`), if sane.
    pub rate: Option<f64>,
}

/// One extracted frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Seconds from the start of the video.
    pub timestamp: f64,
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// Mean absolute grey change (0..1) at the cut that starts this scene (0 for the first).
    pub scene_score: f64,
}

/// A scene start chosen for a frame.
#[derive(Debug, Clone)]
struct Candidate {
    /// Scene start (the cut), seconds.
    time: f64,
    /// When its JPEG is taken, seconds (the picture settled after the cut).
    grab: f64,
    score: f64,
    thumb: Vec<u8>,
}

/// Checks that `path` is decodable media and returns its duration and video frame rate (one
/// ffprobe run). A truncated or corrupt file fails here, fast, with ffprobe's reason.
pub(crate) async fn probe(
    opts: &YoutubeOptions,
    path: &Path,
    cancel: &CancellationToken,
) -> Result<Probe> {
    let mut c = Cmd::new("ffprobe", &opts.ffprobe, opts.timeouts.ffmpeg);
    c.args([
        "-v",
        "error",
        "-show_entries",
        "format=duration:stream=codec_type,avg_frame_rate,r_frame_rate",
        "-of",
        "json",
    ]);
    c.arg(path);
    let out = run(&c, cancel, None).await?;
    let media_err = |reason: String| Error::Media {
        path: path.to_path_buf(),
        reason,
    };
    if !out.status.success() {
        return Err(media_err(crate::process::last_lines(&out.stderr, 4)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| media_err(format!("ffprobe output: {e}")))?;
    let streams = v
        .get("streams")
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_default();
    if streams.is_empty() {
        return Err(media_err("no audio or video stream".into()));
    }
    let rate = streams
        .iter()
        .find(|s| s.get("codec_type").and_then(|t| t.as_str()) == Some("video"))
        .and_then(|s| {
            ["avg_frame_rate", "r_frame_rate"]
                .iter()
                .filter_map(|k| s.get(*k)?.as_str())
                .filter_map(parse_rate)
                .find(|r| (0.1..=1000.0).contains(r))
        });
    Ok(Probe {
        duration: v
            .pointer("/format/duration")
            .and_then(|d| d.as_str())
            .and_then(|d| d.parse().ok()),
        rate,
    })
}

/// The duration of a file whose container states none (a WebM recorded by a browser's
/// MediaRecorder or written to a pipe, a live capture), read off its last packet: one ffmpeg pass
/// that copies the audio and video packets to nowhere — demuxing only, nothing decoded. `None`
/// when even that tells nothing. Without it such a file had no length: `youtube.max_duration`
/// did not apply and frame sampling was not thinned for length.
pub(crate) async fn measured_duration(
    opts: &YoutubeOptions,
    path: &Path,
    cancel: &CancellationToken,
) -> Result<Option<f64>> {
    let mut c = Cmd::new("ffmpeg", &opts.ffmpeg, opts.timeouts.ffmpeg);
    c.args(["-hide_banner", "-nostdin", "-nostats", "-v", "error", "-i"]);
    c.arg(path);
    c.args([
        "-map",
        "0:v?",
        "-map",
        "0:a?",
        "-c",
        "copy",
        "-f",
        "null",
        "-progress",
        "pipe:1",
        "-",
    ]);
    let out = run(&c, cancel, None).await?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .filter_map(|us| us.trim().parse::<i64>().ok())
        .next_back()
        .filter(|us| *us > 0)
        .map(|us| us as f64 / 1e6))
}

/// Extracts scene-change frames of `video` into `out_dir` (`frame_0001.jpg`, …). `measured`:
/// the duration the caller already measured ([`measured_duration`]) when the container states
/// none; measured here when it is `None` too.
pub(crate) async fn extract_frames(
    opts: &YoutubeOptions,
    video: &Path,
    out_dir: &Path,
    measured: Option<f64>,
    cancel: &CancellationToken,
) -> Result<(Vec<Frame>, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut probed = probe(opts, video, cancel).await?;
    if probed.duration.is_none() {
        probed.duration = match measured {
            Some(d) => Some(d),
            None => measured_duration(opts, video, cancel).await?,
        };
    }
    let duration = probed.duration;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| Error::io(format!("creating {}", out_dir.display()), e))?;
    let rate = analysis_rate(probed);
    let thumbs = thumbnails(opts, video, rate, cancel).await?;
    if thumbs.is_empty() {
        return Err(Error::Media {
            path: video.to_path_buf(),
            reason: "no video frames could be decoded".into(),
        });
    }
    let last = (thumbs.len() - 1) as f64 / rate;
    if let Some(d) = duration
        && last > d + 1.0
    {
        warnings.push(format!(
            "frame timestamps run past the container duration {d:.1}s"
        ));
    }
    let chosen = choose(&thumbs, rate, opts);
    let paths: Vec<PathBuf> = (0..chosen.len())
        .map(|i| out_dir.join(format!("frame_{:04}.jpg", i + 1)))
        .collect();
    let mut frames = Vec::with_capacity(chosen.len());
    for (cands, paths) in chosen.chunks(GRAB_BATCH).zip(paths.chunks(GRAB_BATCH)) {
        grab(opts, video, cands, paths, cancel).await?;
        for (cand, path) in cands.iter().zip(paths) {
            let bytes = std::fs::read(path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            let (width, height) = jpeg_size(&bytes).ok_or_else(|| Error::Media {
                path: path.clone(),
                reason: "ffmpeg wrote an unreadable JPEG".into(),
            })?;
            frames.push(Frame {
                timestamp: cand.time,
                path: path.clone(),
                width,
                height,
                scene_score: cand.score,
            });
        }
    }
    Ok((frames, warnings))
}

/// One JPEG per candidate at its grab time, all from one ffmpeg run: the video opened once per
/// frame with an input seek (`-ss` before `-i`, as a run per frame does), one output each.
async fn grab(
    opts: &YoutubeOptions,
    video: &Path,
    cands: &[Candidate],
    paths: &[PathBuf],
    cancel: &CancellationToken,
) -> Result<()> {
    let mut c = Cmd::new("ffmpeg", &opts.ffmpeg, opts.timeouts.ffmpeg);
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-y"]);
    for cand in cands {
        c.args(["-ss", &format!("{:.6}", cand.grab)]);
        c.arg("-i").arg(video);
    }
    let h = opts.max_frame_height;
    let scale = format!("scale=-2:'min({h},ih)'");
    for (i, path) in paths.iter().enumerate() {
        c.args(["-map", &format!("{i}:v:0"), "-frames:v", "1", "-an"]);
        c.args(["-vf", &scale, "-q:v", "2"]);
        c.arg(path);
    }
    run(&c, cancel, None).await?.check("ffmpeg")?;
    Ok(())
}

/// The analysis rate: the video's own frame rate (so cuts are exact to its frames) up to
/// [`MAX_RATE`], lowered for long videos to at most [`MAX_SAMPLES`] thumbnails.
fn analysis_rate(probed: Probe) -> f64 {
    let mut rate = probed.rate.unwrap_or(10.0).min(MAX_RATE);
    if let Some(d) = probed.duration.filter(|d| *d > 0.0)
        && d * rate > MAX_SAMPLES
    {
        rate = (MAX_SAMPLES / d).max(0.2);
    }
    rate
}

/// `30000/1001` or `25`.
fn parse_rate(s: &str) -> Option<f64> {
    let (n, d) = s.split_once('/').unwrap_or((s, "1"));
    let (n, d): (f64, f64) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
    (d > 0.0).then(|| n / d)
}

/// One decode pass: every frame at `rate` as a 64×36 grey thumbnail (raw video on stdout).
async fn thumbnails(
    opts: &YoutubeOptions,
    video: &Path,
    rate: f64,
    cancel: &CancellationToken,
) -> Result<Vec<Vec<u8>>> {
    let filter = format!("fps={rate:.6},scale={THUMB_W}:{THUMB_H},format=gray");
    let mut c = Cmd::new("ffmpeg", &opts.ffmpeg, opts.timeouts.ffmpeg);
    c.args(["-hide_banner", "-nostdin", "-nostats", "-v", "error", "-i"]);
    c.arg(video);
    c.args([
        "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", &filter, "-f", "rawvideo", "-",
    ]);
    let out = run(&c, cancel, None).await?;
    if !out.status.success() {
        return Err(Error::Media {
            path: video.to_path_buf(),
            reason: crate::process::last_lines(&out.stderr, 4),
        });
    }
    Ok(out
        .stdout
        .chunks_exact(THUMB_W * THUMB_H)
        .map(<[u8]>::to_vec)
        .collect())
}

/// Mean absolute grey difference of two thumbnails, 0..1.
fn mean_change(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / (a.len().max(1) as f64 * 255.0)
}

/// Share of thumbnail pixels that changed noticeably: near 0 for re-encoded copies of the same
/// slide, a few percent when a chart gains a few candles (a mean difference would miss that).
fn changed_share(a: &[u8], b: &[u8]) -> f64 {
    let changed = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.abs_diff(**y) > PIXEL_DELTA)
        .count();
    changed as f64 / a.len().max(1) as f64
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The cut threshold after the changes in `window`: median + 6·MAD, at least `floor`.
fn threshold(window: &[f64], floor: f64) -> f64 {
    let mut w = window.to_vec();
    let med = median(&mut w);
    let mut dev: Vec<f64> = window.iter().map(|d| (d - med).abs()).collect();
    let mad = median(&mut dev);
    (med + MAD_K * mad).max(floor)
}

/// Indices where a scene starts (after 0) with their change, each above the threshold of the
/// [`WINDOW`] seconds before it.
fn cuts(changes: &[f64], rate: f64, floor: f64) -> Vec<(usize, f64)> {
    let w = ((WINDOW * rate).round() as usize).max(2);
    let mut out = Vec::new();
    for i in 1..changes.len() {
        let window = &changes[i.saturating_sub(w).max(1)..i];
        if changes[i] > threshold(window, floor) {
            out.push((i, changes[i]));
        }
    }
    out
}

/// Keeps the first frame, then each cut at least `min_frame_interval` after the last kept one
/// whose settled picture is not a near-duplicate of a kept frame (few changed pixels AND a small
/// mean change); above `max_frames`, the highest scores win.
fn choose(thumbs: &[Vec<u8>], rate: f64, opts: &YoutubeOptions) -> Vec<Candidate> {
    let changes: Vec<f64> = std::iter::once(0.0)
        .chain(thumbs.windows(2).map(|w| mean_change(&w[0], &w[1])))
        .collect();
    let floor = opts.scene_threshold;
    let starts: Vec<(usize, f64)> = std::iter::once((0, 0.0))
        .chain(cuts(&changes, rate, floor))
        .collect();
    let mut kept: Vec<Candidate> = Vec::new();
    for (n, &(start, score)) in starts.iter().enumerate() {
        let time = start as f64 / rate;
        if let Some(last) = kept.last()
            && time - last.time < opts.min_frame_interval - 0.5 / rate
        {
            continue;
        }
        let end = starts.get(n + 1).map_or(thumbs.len(), |s| s.0);
        let grab = settled(&changes, start, end, rate, floor);
        let thumb = &thumbs[grab];
        let duplicate = kept.iter().any(|k| {
            changed_share(&k.thumb, thumb) < opts.duplicate_threshold
                && mean_change(&k.thumb, thumb) < DUPLICATE_MEAN
        });
        if !kept.is_empty() && duplicate {
            continue;
        }
        kept.push(Candidate {
            time,
            grab: grab as f64 / rate,
            score,
            thumb: thumb.clone(),
        });
    }
    if kept.len() > opts.max_frames.max(1) {
        let first = kept.remove(0);
        kept.sort_by(|a, b| b.score.total_cmp(&a.score));
        kept.truncate(opts.max_frames.max(1) - 1);
        kept.push(first);
        kept.sort_by(|a, b| a.time.total_cmp(&b.time));
    }
    kept
}

/// The index in the scene `start..end` whose picture has settled: at least [`SETTLE`] s (a
/// quarter of a short scene) after the cut, then the first whose change to the next is below
/// the floor (a dissolve is still moving), else the last of the scene.
fn settled(changes: &[f64], start: usize, end: usize, rate: f64, floor: f64) -> usize {
    let len = end.saturating_sub(start).max(1);
    let wait = ((SETTLE * rate).round() as usize).min(len / 4);
    let last = start + len - 1;
    (start + wait..last)
        .find(|&j| changes.get(j + 1).is_none_or(|d| *d < floor))
        .unwrap_or(last)
        .min(last)
}

/// Width and height from a JPEG's SOF marker.
pub(crate) fn jpeg_size(b: &[u8]) -> Option<(u32, u32)> {
    if b.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    while i + 9 < b.len() {
        if b[i] != 0xFF {
            i += 1;
            continue;
        }
        let marker = b[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]);
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]);
            return Some((u32::from(w), u32::from(h)));
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(level: u8, n: usize) -> Vec<Vec<u8>> {
        vec![vec![level; THUMB_W * THUMB_H]; n]
    }

    fn times(thumbs: &[Vec<u8>], opts: &YoutubeOptions) -> Vec<f64> {
        choose(thumbs, 10.0, opts).iter().map(|c| c.time).collect()
    }

    #[test]
    fn low_contrast_cuts_short_scenes_and_stills() {
        let opts = YoutubeOptions::default();
        // A still video: exactly one frame.
        assert_eq!(times(&scene(40, 50), &opts), [0.0]);
        // grey 40 → 55 (mean change 0.059) after a 0.5 s first scene, then 70.
        let mut v = scene(40, 5);
        v.extend(scene(55, 20));
        v.extend(scene(70, 20));
        assert_eq!(times(&v, &opts), [0.0, 0.5, 2.5]);
    }

    #[test]
    fn interval_duplicates_and_cap() {
        let mut opts = YoutubeOptions {
            min_frame_interval: 1.0,
            max_frames: 10,
            ..Default::default()
        };
        let mut v = scene(10, 20);
        v.extend(scene(200, 5)); // 2.0: kept
        v.extend(scene(100, 20)); // 2.5: too soon after 2.0
        v.extend(scene(12, 20)); // 4.5: near-duplicate of the first
        v.extend(scene(180, 20)); // 6.5
        assert_eq!(times(&v, &opts), [0.0, 2.0, 6.5]);
        opts.max_frames = 2;
        assert_eq!(times(&v, &opts), [0.0, 2.0]);
    }

    #[test]
    fn noisy_footage_raises_the_threshold() {
        // Changes of ±0.01 every frame (moving footage) are not cuts; a 0.2 jump is.
        let mut v: Vec<Vec<u8>> = (0..40)
            .map(|i| vec![if i % 2 == 0 { 100 } else { 103 }; THUMB_W * THUMB_H])
            .collect();
        v.extend(scene(160, 20));
        assert_eq!(times(&v, &YoutubeOptions::default()), [0.0, 4.0]);
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("25/1"), Some(25.0));
        assert!((parse_rate("30000/1001").unwrap() - 29.97).abs() < 0.01);
        assert_eq!(parse_rate("0/0"), None);
    }
}
