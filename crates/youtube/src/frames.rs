//! Frames at scene changes: one ffmpeg analysis pass (scene scores + 16×16 grey thumbnails), then
//! the choice (first frame, minimum interval, near-duplicates dropped, best scores up to the
//! maximum count), then one JPEG per kept timestamp. ffmpeg's autorotate honours rotation metadata.

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

/// One extracted frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Seconds from the start of the video.
    pub timestamp: f64,
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// ffmpeg's scene-change score of this frame (0 for the first frame).
    pub scene_score: f64,
}

#[derive(Debug, Clone)]
struct Candidate {
    time: f64,
    score: f64,
    thumb: Vec<u8>,
}

/// Checks that `path` is decodable media and returns its duration (seconds) if known.
/// A truncated or corrupt file fails here, fast, with ffprobe's reason.
pub(crate) async fn probe(
    opts: &YoutubeOptions,
    path: &Path,
    cancel: &CancellationToken,
) -> Result<Option<f64>> {
    let mut c = Cmd::new("ffprobe", &opts.ffprobe, opts.timeouts.ffmpeg);
    c.args([
        "-v",
        "error",
        "-show_entries",
        "format=duration:stream=codec_type",
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
        .map(Vec::len)
        .unwrap_or(0);
    if streams == 0 {
        return Err(media_err("no audio or video stream".into()));
    }
    Ok(v.pointer("/format/duration")
        .and_then(|d| d.as_str())
        .and_then(|d| d.parse().ok()))
}

/// Extracts scene-change frames of `video` into `out_dir` (`frame_0001.jpg`, …).
pub(crate) async fn extract_frames(
    opts: &YoutubeOptions,
    video: &Path,
    out_dir: &Path,
    cancel: &CancellationToken,
) -> Result<(Vec<Frame>, Vec<String>)> {
    let mut warnings = Vec::new();
    let duration = probe(opts, video, cancel).await?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| Error::io(format!("creating {}", out_dir.display()), e))?;
    let scenes_file = out_dir.join("scenes.txt");
    let candidates = analyse(opts, video, &scenes_file, cancel).await?;
    let _ = std::fs::remove_file(&scenes_file);
    if candidates.is_empty() {
        return Err(Error::Media {
            path: video.to_path_buf(),
            reason: "no video frames could be decoded".into(),
        });
    }
    if let (Some(d), Some(last)) = (duration, candidates.last())
        && last.time > d + 1.0
    {
        warnings.push(format!(
            "frame timestamps run past the container duration {d:.1}s"
        ));
    }
    let chosen = choose(&candidates, opts);
    let mut frames = Vec::with_capacity(chosen.len());
    for (i, cand) in chosen.iter().enumerate() {
        let path = out_dir.join(format!("frame_{:04}.jpg", i + 1));
        let mut c = Cmd::new("ffmpeg", &opts.ffmpeg, opts.timeouts.ffmpeg);
        c.args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-ss",
            &format!("{:.6}", cand.time),
        ]);
        c.arg("-i").arg(video);
        let h = opts.max_frame_height;
        c.args([
            "-frames:v",
            "1",
            "-an",
            "-vf",
            &format!("scale=-2:'min({h},ih)'"),
            "-q:v",
            "2",
        ]);
        c.arg(&path);
        run(&c, cancel, None).await?.check("ffmpeg")?;
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let (width, height) = jpeg_size(&bytes).ok_or_else(|| Error::Media {
            path: path.clone(),
            reason: "ffmpeg wrote an unreadable JPEG".into(),
        })?;
        frames.push(Frame {
            timestamp: cand.time,
            path,
            width,
            height,
            scene_score: cand.score,
        });
    }
    Ok((frames, warnings))
}

/// One decode pass: the first frame plus every frame whose scene score passes the threshold, with
/// its score (from the `metadata` filter) and a grey thumbnail (raw video on stdout).
async fn analyse(
    opts: &YoutubeOptions,
    video: &Path,
    scenes_file: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<Candidate>> {
    let t = opts.scene_threshold;
    // Filter-graph escaping of a path is fragile; use a plain temp path when the cache path is not plain.
    let plain = |p: &Path| {
        p.to_str().is_some_and(|s| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
        })
    };
    let alt;
    let scenes_file = if plain(scenes_file) {
        scenes_file
    } else {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        alt = std::env::temp_dir().join(format!("hlbot-scenes-{}-{nanos}.txt", std::process::id()));
        &alt
    };
    let meta_path = scenes_file.display();
    let filter = format!(
        "scale=480:-2,select='eq(n\\,0)+gt(scene\\,{t})',metadata=mode=print:file={meta_path},scale={THUMB_W}:{THUMB_H},format=gray"
    );
    let mut c = Cmd::new("ffmpeg", &opts.ffmpeg, opts.timeouts.ffmpeg);
    c.args(["-hide_banner", "-nostdin", "-nostats", "-v", "error", "-i"]);
    c.arg(video);
    c.args([
        "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", &filter, "-vsync", "vfr", "-f", "rawvideo",
        "-",
    ]);
    let out = run(&c, cancel, None).await?;
    if !out.status.success() {
        return Err(Error::Media {
            path: video.to_path_buf(),
            reason: crate::process::last_lines(&out.stderr, 4),
        });
    }
    let meta = std::fs::read_to_string(scenes_file).unwrap_or_default();
    let _ = std::fs::remove_file(scenes_file);
    let mut times: Vec<(f64, f64)> = Vec::new();
    for line in meta.lines() {
        if let Some(pos) = line.find("pts_time:") {
            let t: f64 = line[pos + 9..]
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            times.push((t, 0.0));
        } else if let Some(v) = line.strip_prefix("lavfi.scene_score=")
            && let Some(last) = times.last_mut()
        {
            last.1 = v.trim().parse().unwrap_or(0.0);
        }
    }
    let thumbs = out.stdout.chunks_exact(THUMB_W * THUMB_H);
    Ok(times
        .into_iter()
        .zip(thumbs)
        .map(|((time, score), thumb)| Candidate {
            time,
            score,
            thumb: thumb.to_vec(),
        })
        .collect())
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

/// Keeps the first frame, then each scene change at least `min_frame_interval` after the last kept
/// one and not a near-duplicate of any kept frame; above `max_frames`, the highest scores win.
fn choose(cands: &[Candidate], opts: &YoutubeOptions) -> Vec<Candidate> {
    let mut kept: Vec<Candidate> = Vec::new();
    for c in cands {
        if let Some(last) = kept.last() {
            if c.time - last.time < opts.min_frame_interval {
                continue;
            }
            if kept
                .iter()
                .any(|k| changed_share(&k.thumb, &c.thumb) < opts.duplicate_threshold)
            {
                continue;
            }
        }
        kept.push(c.clone());
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

    fn cand(time: f64, score: f64, level: u8) -> Candidate {
        Candidate {
            time,
            score,
            thumb: vec![level; THUMB_W * THUMB_H],
        }
    }

    #[test]
    fn choice_applies_interval_duplicates_and_cap() {
        let mut opts = YoutubeOptions {
            min_frame_interval: 2.0,
            duplicate_threshold: 0.005,
            max_frames: 10,
            ..Default::default()
        };
        let cands = [
            cand(0.0, 0.0, 10),
            cand(1.0, 0.5, 200), // too soon
            cand(4.0, 0.2, 100),
            cand(8.0, 0.3, 12), // near-duplicate of the first
            cand(12.0, 0.9, 180),
        ];
        let times: Vec<f64> = choose(&cands, &opts).iter().map(|c| c.time).collect();
        assert_eq!(times, [0.0, 4.0, 12.0]);
        opts.max_frames = 2;
        let times: Vec<f64> = choose(&cands, &opts).iter().map(|c| c.time).collect();
        assert_eq!(times, [0.0, 12.0]);
    }
}
