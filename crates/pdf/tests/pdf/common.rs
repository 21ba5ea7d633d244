//! Shared test setup: where libpdfium, the worker binary, tesseract and the shared corpus are,
//! options pointing at a fresh cache, and small text helpers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hlbot_pdf::{PdfDocument, PdfOptions, PdfRequest, Progress, Result, process_document};
use tokio_util::sync::CancellationToken;

/// libpdfium.so from HLBOT_PDFIUM_LIB or the setup script's default location.
pub fn pdfium_lib() -> Option<PathBuf> {
    hlbot_testkit::env::pdfium_lib()
}

/// The shared corpus `pdf/` folder (`HLBOT_SHARED` overrides `<workspace>/../shared`).
pub fn corpus() -> Option<PathBuf> {
    hlbot_testkit::corpus("pdf")
}

/// Skips the calling test (with a printed reason; a failure under CI) unless libpdfium is
/// installed.
macro_rules! need_pdfium {
    () => {
        match crate::common::pdfium_lib() {
            Some(p) => p,
            None => return,
        }
    };
}

/// Skips (fails under CI) unless tesseract is on PATH.
macro_rules! need_tesseract {
    () => {
        if !hlbot_testkit::tool("tesseract", "--version") {
            return;
        }
    };
}

/// Skips (fails under CI) unless the shared corpus is present; yields the corpus `pdf/` folder.
macro_rules! need_corpus {
    () => {
        match crate::common::corpus() {
            Some(p) => p,
            None => return,
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
