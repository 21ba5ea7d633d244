//! Synthetic media for tests, made with ffmpeg at test time: the quiet ffmpeg runner and a
//! two-scene slide video (lavfi colour sources, text drawn in DejaVu Sans).

use std::path::Path;
use std::process::Command;

/// The font `scripts/setup.sh` installs (fonts-dejavu-core), used to draw slide text.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Runs ffmpeg with `args` (quiet, overwrite), panicking with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 4 s, 640×360, 25 fps H.264 video at `path`: a dark blue scene (0–2 s) and a lighter blue
/// one (2–4 s), each with its text (if any) drawn centred in white, 28 px.
pub fn slide_video(path: &Path, scenes: [Option<&str>; 2]) {
    let mut graph = String::new();
    for (i, text) in scenes.iter().enumerate() {
        match text {
            Some(t) => graph.push_str(&format!(
                "[{i}]drawtext=fontfile={FONT}:text='{t}':fontsize=28:fontcolor=white:x=(w-tw)/2:y=(h-th)/2[s{i}];"
            )),
            None => graph.push_str(&format!("[{i}]null[s{i}];")),
        }
    }
    graph.push_str("[s0][s1]concat=n=2:v=1:a=0,format=yuv420p[v]");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0x102040:s=640x360:r=25:d=2",
        "-f",
        "lavfi",
        "-i",
        "color=c=0x203060:s=640x360:r=25:d=2",
        "-filter_complex",
        &graph,
        "-map",
        "[v]",
        "-c:v",
        "libx264",
        path.to_str().expect("UTF-8 path"),
    ]);
}
