//! Shared test setup: where libpdfium, the worker binary, tesseract and the shared corpus are,
//! options pointing at a fresh cache, and small text helpers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hlbot_pdf::{PdfDocument, PdfOptions, PdfRequest, Progress, Result, process_document};
use tokio_util::sync::CancellationToken;

/// Workspace root (two levels above this crate).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// libpdfium.so from HLBOT_PDFIUM_LIB or the setup script's default location.
pub fn pdfium_lib() -> Option<PathBuf> {
    let p = std::env::var_os("HLBOT_PDFIUM_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".hlbot/pdfium/libpdfium.so"));
    p.is_file().then_some(p)
}

pub fn has_tesseract() -> bool {
    std::process::Command::new("tesseract")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The shared corpus folder, if present (`HLBOT_SHARED` overrides `<workspace>/../shared`).
pub fn corpus() -> Option<PathBuf> {
    let shared = std::env::var_os("HLBOT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"));
    let dir = shared.join("corpus/pdf");
    dir.is_dir().then_some(dir)
}

/// Skips the calling test (with a printed reason) unless libpdfium is installed.
macro_rules! need_pdfium {
    () => {
        match crate::common::pdfium_lib() {
            Some(p) => p,
            None => {
                eprintln!("SKIP: libpdfium.so not found (run scripts/setup.sh; HLBOT_PDFIUM_LIB)");
                return;
            }
        }
    };
}

/// Skips unless tesseract is on PATH.
macro_rules! need_tesseract {
    () => {
        if !crate::common::has_tesseract() {
            eprintln!("SKIP: tesseract not installed (scripts/setup.sh installs tesseract-ocr)");
            return;
        }
    };
}

/// Skips unless the shared corpus is present; yields the corpus `pdf/` folder.
macro_rules! need_corpus {
    () => {
        match crate::common::corpus() {
            Some(p) => p,
            None => {
                eprintln!("SKIP: ../shared/corpus/pdf not present (HLBOT_SHARED overrides)");
                return;
            }
        }
    };
}

pub(crate) use {need_corpus, need_pdfium, need_tesseract};

/// A test environment: options with a private cache folder.
pub struct Env {
    pub opts: PdfOptions,
    pub _cache: tempfile::TempDir,
}

pub fn env(lib: &Path) -> Env {
    let cache = tempfile::tempdir().expect("cache dir");
    let mut opts = PdfOptions::new(
        lib,
        cache.path(),
        env!("CARGO_BIN_EXE_hlbot-pdf-child"),
        vec![],
    );
    opts.timeout = Duration::from_secs(120);
    Env {
        opts,
        _cache: cache,
    }
}

pub async fn run(opts: &PdfOptions, req: &PdfRequest) -> Result<PdfDocument> {
    process_document(opts, req, |_: Progress| {}, CancellationToken::new()).await
}

/// Collapses runs of whitespace to one space (the MANIFEST's phrase-check rule).
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Asserts `text` contains `phrase`, whitespace-insensitively.
#[track_caller]
pub fn assert_has(text: &str, phrase: &str) {
    let t = squash(text);
    assert!(
        t.contains(&squash(phrase)),
        "missing {phrase:?} in: {}",
        t.chars().take(600).collect::<String>().escape_debug()
    );
}
