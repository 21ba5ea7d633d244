//! Synthetic media for tests, made with ffmpeg at test time: the quiet ffmpeg runner and a
//! slide video (lavfi colour sources, text drawn in DejaVu Sans).

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

/// A 640×360, 25 fps H.264 video at `path` of 2 s scenes, one per entry of `scenes`, alternately
/// dark and lighter blue, each with its text (if any) drawn centred in white, 28 px.
pub fn slide_video(path: &Path, scenes: &[Option<&str>]) {
    const COLOURS: [&str; 2] = ["0x102040", "0x203060"];
    let mut args: Vec<String> = Vec::new();
    let mut graph = String::new();
    for (i, text) in scenes.iter().enumerate() {
        args.extend(["-f", "lavfi", "-i"].map(String::from));
        args.push(format!("color=c={}:s=640x360:r=25:d=2", COLOURS[i % 2]));
        match text {
            Some(t) => graph.push_str(&format!(
                "[{i}]drawtext=fontfile={FONT}:text='{t}':fontsize=28:fontcolor=white:x=(w-tw)/2:y=(h-th)/2[s{i}];"
            )),
            None => graph.push_str(&format!("[{i}]null[s{i}];")),
        }
    }
    for i in 0..scenes.len() {
        graph.push_str(&format!("[s{i}]"));
    }
    graph.push_str(&format!(
        "concat=n={}:v=1:a=0,format=yuv420p[v]",
        scenes.len()
    ));
    args.extend(["-filter_complex".to_string(), graph]);
    args.extend(["-map", "[v]", "-c:v", "libx264"].map(String::from));
    args.push(path.to_str().expect("UTF-8 path").to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&args);
}
