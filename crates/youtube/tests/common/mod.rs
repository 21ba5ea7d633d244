//! Shared test helpers: locating the shared corpus and the installed tools.
#![allow(dead_code)]

use std::path::PathBuf;

/// `<workspace>/../shared/corpus` (or `$HLBOT_SHARED/corpus`), `None` with a printed reason if absent.
pub fn corpus(sub: &str) -> Option<PathBuf> {
    let shared = std::env::var_os("HLBOT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"));
    let dir = shared.join("corpus").join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: shared corpus {} not found (set HLBOT_SHARED)",
            dir.display()
        );
        None
    }
}

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// yt-dlp from `$HLBOT_YTDLP` or the setup venv; `None` with a printed reason if absent.
pub fn ytdlp() -> Option<PathBuf> {
    let p = std::env::var_os("HLBOT_YTDLP")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".hlbot/venv/bin/yt-dlp"));
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: yt-dlp not found at {} (run scripts/setup.sh)",
            p.display()
        );
        None
    }
}

/// True if `prog` runs; prints a skip reason otherwise.
pub fn have(prog: &str) -> bool {
    let ok = std::process::Command::new(prog)
        .arg("-version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("SKIP: {prog} not installed");
    }
    ok
}

/// Collapses whitespace runs to one space.
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
