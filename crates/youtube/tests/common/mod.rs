//! Shared test helpers: locating the shared corpus and the installed tools.
#![allow(dead_code)]

use std::path::PathBuf;

/// `<workspace>/../shared/corpus/<sub>` (or `$HLBOT_SHARED/corpus/<sub>`); `None` with a printed
/// reason if absent (a failure under CI).
pub fn corpus(sub: &str) -> Option<PathBuf> {
    hlbot_testkit::corpus(sub)
}

pub fn workspace() -> PathBuf {
    hlbot_testkit::workspace()
}

/// yt-dlp from `$HLBOT_YTDLP` or the setup venv; `None` with a printed reason if absent (a
/// failure under CI).
pub fn ytdlp() -> Option<PathBuf> {
    hlbot_testkit::env::ytdlp()
}

/// True if `prog` runs; prints a skip reason otherwise (a failure under CI).
pub fn have(prog: &str) -> bool {
    hlbot_testkit::tool(prog, "-version")
}

/// `text` spoken by espeak-ng at `speed` words a minute into the WAV file `path`; false, with a
/// printed reason (a failure under CI), when espeak-ng is missing.
pub fn speak(path: &std::path::Path, speed: u32, text: &str) -> bool {
    let ok = std::process::Command::new("espeak-ng")
        .args(["-s", &speed.to_string(), "-w"])
        .arg(path)
        .arg(text)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok || hlbot_testkit::missing::<()>("espeak-ng").is_some()
}

/// Collapses whitespace runs to one space.
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[allow(unused_imports)] // each test binary uses a different part
pub use hlbot_testkit::http::{Server, serve_dir as serve};

#[allow(unused_imports)]
pub use hlbot_testkit::media::ffmpeg;

/// 6 s, 640×360: a dark title card (0–2 s), a candlestick-like chart (2–4 s) and the same chart
/// with three more candles (4–6 s) — the second cut is subtle (scene score ≈ 0.05).
pub fn make_scenes_video(path: &std::path::Path) {
    let candles_a = "drawgrid=w=40:h=40:c=gray,drawbox=x=60:y=100:w=20:h=120:c=green:t=fill,drawbox=x=120:y=140:w=20:h=100:c=red:t=fill,drawbox=x=180:y=90:w=20:h=150:c=green:t=fill,drawbox=x=240:y=130:w=20:h=80:c=red:t=fill";
    let candles_b = format!(
        "{candles_a},drawbox=x=300:y=60:w=20:h=170:c=green:t=fill,drawbox=x=360:y=80:w=20:h=120:c=green:t=fill,drawbox=x=420:y=150:w=20:h=90:c=red:t=fill"
    );
    let graph = format!(
        "[0]drawbox=x=100:y=120:w=440:h=60:c=yellow:t=fill[a];[1]{candles_a}[b];[2]{candles_b}[c];[a][b][c]concat=n=3:v=1:a=0,format=yuv420p[v]"
    );
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0x203060:s=640x360:r=25:d=2",
        "-f",
        "lavfi",
        "-i",
        "color=c=white:s=640x360:r=25:d=2",
        "-f",
        "lavfi",
        "-i",
        "color=c=white:s=640x360:r=25:d=2",
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=44100:cl=mono",
        "-filter_complex",
        &graph,
        "-map",
        "[v]",
        "-map",
        "3:a",
        "-t",
        "6",
        "-c:v",
        "libx264",
        "-g",
        "250",
        "-c:a",
        "aac",
        "-shortest",
        path.to_str().unwrap(),
    ]);
}

/// A WebVTT caption file for the scenes video.
pub const SCENES_VTT: &str = "WEBVTT\n\n00:00.000 --> 00:02.000\nWelcome to the &amp; lesson\n\n00:02.000 --> 00:04.000\nthis chart bounced at support\n\n00:04.000 --> 00:06.000\nthree new candles broke out\n";
pub const SCENES_TRANSCRIPT: &str =
    "Welcome to the & lesson this chart bounced at support three new candles broke out";

/// Processes still running whose command line contains `needle` (zombies excluded).
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && !cmd.contains("cargo") && !cmd.contains("/deps/") {
            found.push(cmd);
        }
    }
    found
}
