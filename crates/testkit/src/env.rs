//! Where things are: the workspace, the shared corpus (`$HLBOT_SHARED`, else `../shared` beside
//! the workspace), the tools `scripts/setup.sh` installs. Anything missing goes through
//! [`missing`]: a printed skip on a developer's machine, a failure under `CI`.

use std::path::PathBuf;

/// The workspace root.
pub fn workspace() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// Report that `what` is missing: under `CI` the test fails (a suite never passes by returning
/// early there); elsewhere it prints why it skips. Returns `None` so callers can `?` or `else`.
pub fn missing<T>(what: &str) -> Option<T> {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false") {
        panic!(
            "{what} is missing, and CI requires it (scripts/setup.sh installs the tools; ../shared holds the corpus)"
        );
    }
    eprintln!("SKIP: {what} is missing");
    None
}

/// The shared folder (`$HLBOT_SHARED`, else `<workspace>/../shared`) when it holds a corpus.
pub fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("HLBOT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"));
    if p.join("corpus").is_dir() {
        Some(p)
    } else {
        missing(&format!("the shared corpus ({}/corpus)", p.display()))
    }
}

/// `corpus/<sub>` of the shared folder (`""` for the corpus itself).
pub fn corpus(sub: &str) -> Option<PathBuf> {
    let dir = shared()?.join("corpus").join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        missing(&format!("corpus folder {}", dir.display()))
    }
}

/// True if `prog` runs with `arg` (e.g. `-version`, `--version`); else [`missing`].
pub fn tool(prog: &str, arg: &str) -> bool {
    let ok = std::process::Command::new(prog)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    ok || missing::<()>(&format!("the program {prog}")).is_some()
}

/// A file `scripts/setup.sh` installs: `$var`, else `<workspace>/<default>`; else [`missing`].
pub fn installed(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(default));
    if p.is_file() {
        Some(p)
    } else {
        missing(&format!("{} (${var}; run scripts/setup.sh)", p.display()))
    }
}

/// libpdfium.so (`$HLBOT_PDFIUM_LIB`).
pub fn pdfium_lib() -> Option<PathBuf> {
    installed("HLBOT_PDFIUM_LIB", ".hlbot/pdfium/libpdfium.so")
}

/// yt-dlp (`$HLBOT_YTDLP`).
pub fn ytdlp() -> Option<PathBuf> {
    installed("HLBOT_YTDLP", ".hlbot/venv/bin/yt-dlp")
}
