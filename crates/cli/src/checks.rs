//! Start-up checks of the tools a worker's queues need (pdfium, tesseract and its language
//! packs, yt-dlp, ffmpeg): what was found goes into the banner; what is missing becomes one sentence
//! saying what fails and which setting or script fixes it. A warning by default; `--strict`
//! refuses to start. Which task needs what is `hlbot_tasks::needs`. `hlbot doctor` runs the
//! same probes, one line each.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hlbot_engine::{Registry, Router};
use hlbot_tasks::TaskSettings;
use hlbot_tasks::needs::{Tool, needs};

/// What the checks found.
#[derive(Debug, Default)]
pub struct Report {
    /// `pdfium /path/libpdfium.so`, `yt-dlp 2026.10.26`, … for the banner.
    pub found: Vec<String>,
    /// One per missing tool.
    pub problems: Vec<Problem>,
}

/// What is missing and how to fix it; displayed as one sentence (`{what}. {fix}`).
#[derive(Debug, Clone)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}. {}", self.what, self.fix)
    }
}

/// The tools the tasks routed to `queues` need.
pub fn tools_for(reg: &Registry, router: &Router, queues: &[String]) -> BTreeSet<Tool> {
    reg.names()
        .iter()
        .filter(|n| queues.iter().any(|q| q == router.queue_for(n)))
        .flat_map(|n| needs(n).iter().copied())
        .collect()
}

/// Check `tools` as `ts` configures them.
pub fn check(ts: &TaskSettings, tools: &BTreeSet<Tool>) -> Report {
    let mut r = Report::default();
    for t in tools {
        match t {
            Tool::Pdfium => pdfium(&ts.pdf.pdfium_lib, &mut r),
            Tool::Tesseract => tesseract(&ts.pdf.tesseract, &ts.pdf.default_languages, &mut r),
            Tool::YtDlp => ytdlp(&ts.youtube.ytdlp, &mut r),
            Tool::Ffmpeg => ffmpeg(&ts.youtube.ffmpeg, &ts.youtube.ffprobe, &mut r),
        }
    }
    r
}

pub fn pdfium(lib: &Path, r: &mut Report) {
    match locate_library(lib) {
        Some(p) => r.found.push(format!("pdfium {}", p.display())),
        None => r.problems.push(Problem {
            what: format!(
                "pdfium is missing: no library at {}, so every PDF task would fail",
                lib.display()
            ),
            fix: "Set HLBOT_PDFIUM_LIB (or `pdf.pdfium_lib` in the config) to the path of \
                  libpdfium.so, or run scripts/install.sh, which puts it in \
                  ~/.local/share/hlbot; in a checkout, run scripts/setup.sh and `source \
                  scripts/env.sh`."
                .into(),
        }),
    }
}

/// A library path as the dynamic loader would find it: a path with a `/` as is, a bare name in
/// `LD_LIBRARY_PATH` and the usual system folders.
fn locate_library(lib: &Path) -> Option<PathBuf> {
    if lib.components().count() > 1 {
        return lib.is_file().then(|| lib.to_path_buf());
    }
    let mut dirs: Vec<PathBuf> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    for d in [
        "/usr/local/lib",
        "/usr/lib",
        "/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter().map(|d| d.join(lib)).find(|p| p.is_file())
}

/// Run `prog args`; its stdout when it exits 0.
pub fn output(prog: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn tesseract(prog: &Path, languages: &str, r: &mut Report) {
    let Some(list) = output(prog, &["--list-langs"]) else {
        r.problems.push(Problem {
            what: format!(
                "tesseract is missing ({} does not run), so scanned PDF pages cannot be OCRed",
                prog.display()
            ),
            fix: "Install it (Debian: apt-get install tesseract-ocr tesseract-ocr-eng) or set \
                  `pdf.tesseract` in the config to its path."
                .into(),
        });
        return;
    };
    // First line is "List of available languages in "...":"
    let have: BTreeSet<&str> = list.lines().skip(1).map(str::trim).collect();
    let want: Vec<&str> = languages.split('+').filter(|l| !l.is_empty()).collect();
    let missing: Vec<&str> = want.iter().copied().filter(|l| !have.contains(l)).collect();
    let shown: Vec<&str> = want.iter().copied().filter(|l| have.contains(l)).collect();
    r.found
        .push(format!("tesseract (languages {})", shown.join("+")));
    if !missing.is_empty() {
        let packs: Vec<String> = missing
            .iter()
            .map(|l| format!("tesseract-ocr-{l}"))
            .collect();
        r.problems.push(Problem {
            what: format!(
                "tesseract language pack(s) {} missing for languages = \"{languages}\": pages \
                 in those languages would be OCRed badly or fail",
                missing.join(", ")
            ),
            fix: format!(
                "Install {} (Debian), or change `pdf.languages` in the config.",
                packs.join(" ")
            ),
        });
    }
}

pub fn ytdlp(prog: &Path, r: &mut Report) {
    match output(prog, &["--version"]) {
        Some(v) => r.found.push(format!("yt-dlp {}", v.trim())),
        None => r.problems.push(Problem {
            what: format!(
                "yt-dlp is missing ({} does not run), so every YouTube task would fail",
                prog.display()
            ),
            fix: "Set HLBOT_YTDLP (or `youtube.ytdlp` in the config) to its path, put yt-dlp on \
                  PATH, or run scripts/install.sh; in a checkout, run scripts/setup.sh and \
                  `source scripts/env.sh`."
                .into(),
        }),
    }
}

pub fn ffmpeg(ffmpeg: &Path, ffprobe: &Path, r: &mut Report) {
    for (name, prog) in [("ffmpeg", ffmpeg), ("ffprobe", ffprobe)] {
        match output(prog, &["-version"]) {
            Some(v) => r
                .found
                .push(v.lines().next().unwrap_or(name).trim().to_string()),
            None => r.problems.push(Problem {
                what: format!(
                    "{name} is missing ({} does not run), so local video and audio files \
                     cannot be read",
                    prog.display()
                ),
                fix: format!(
                    "Install ffmpeg (Debian: apt-get install ffmpeg) or set `youtube.{name}` in \
                     the config to its path."
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_pdfium_is_a_sentence_naming_the_fix() {
        let mut r = Report::default();
        pdfium(Path::new("/nonexistent/libpdfium.so"), &mut r);
        let msg = &r.problems[0].to_string();
        assert!(msg.contains("HLBOT_PDFIUM_LIB"), "{msg}");
        assert!(msg.contains("pdf.pdfium_lib"), "{msg}");
        assert!(msg.contains("scripts/install.sh"), "{msg}");
        assert!(!msg.contains("DlOpen"), "{msg}");
    }

    #[test]
    fn missing_language_pack_is_named() {
        let mut r = Report::default();
        tesseract(Path::new("tesseract"), "eng+zzz", &mut r);
        if r.found.is_empty() {
            hlbot_testkit::missing::<()>("the program tesseract");
            return;
        }
        assert!(
            r.problems
                .iter()
                .any(|p| p.to_string().contains("tesseract-ocr-zzz")),
            "{:?}",
            r.problems
        );
    }
}
