//! What a caller configures: `PdfOptions` (machine settings, built once by the CLI) and
//! `PdfRequest` (one document, the task's kwargs). Pure data plus page-selection parsing.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{PdfError, Result};

/// Machine-level settings, built once by the CLI from flags/env/config and passed in.
#[derive(Debug, Clone)]
pub struct PdfOptions {
    /// Path to `libpdfium.so`.
    pub pdfium_lib: PathBuf,
    /// Where results and extracted images are kept, one folder per document hash.
    pub cache_dir: PathBuf,
    /// Program that runs the PDFium worker (`hlbot-pdf-child`, or `hlbot` itself)...
    pub child_program: PathBuf,
    /// ...and its arguments (e.g. `["pdf-child"]` for the main binary).
    pub child_args: Vec<String>,
    /// The `tesseract` binary.
    pub tesseract: PathBuf,
    /// Languages used when a request does not name any (tesseract `-l` syntax, e.g. `eng+deu`).
    pub default_languages: String,
    /// Images whose width or height (pixels) is below this are treated as decoration and skipped.
    pub min_image_side: u32,
    /// Render resolution for OCR of pages without a text layer and of 10 pt text; a page with a
    /// text layer is rendered at `ocr_dpi × 10 / its text size` within `ocr_dpi/2 ..= ocr_dpi·4/3`
    /// (`render::dpi_for_text`), then within the pixel caps.
    pub ocr_dpi: u32,
    /// Upper bound on the pixels of one rendered page (poster pages get a lower DPI).
    pub max_render_pixels: u64,
    /// Upper bound on either side of a rendered page, in pixels.
    pub max_render_side: u32,
    /// Hard wall-clock limit for one document (PDFium worker plus OCR).
    pub timeout: Duration,
    /// Address-space cap for the PDFium worker process, in bytes (`None` = unlimited).
    pub child_memory_limit: Option<u64>,
    /// Limit for the OCR of one page.
    pub ocr_page_timeout: Duration,
    /// How many warm tesseract processes (one page at a time each) a document uses at most, and
    /// how many pages this process recognises at once across all its documents (concurrent
    /// documents share the cores instead of each keeping `ocr_workers` tesseracts busy).
    pub ocr_workers: usize,
    /// How many PDFium worker processes share one big document (every n-th page each).
    pub worker_processes: usize,
    /// Documents at least this large (bytes; default 256 KiB) are split across
    /// `worker_processes`; so is every `ocr="always"` request (rendering then runs in parallel).
    pub shard_min_bytes: u64,
    /// Smaller documents with at least this many selected pages are split as well, once the
    /// first worker has opened them and counted their pages (it asks for the other workers;
    /// 0 = never). Default 8: each extra worker opens the document and loads its fonts again,
    /// which 2–4 short pages do not repay (measured on the corpus, `docs/bench-pdf.md`).
    pub split_min_pages: u32,
    /// Keep PDFium workers started (and libpdfium loaded) ahead of the next document.
    pub prestart_workers: bool,
    /// A PDFium worker serves this many documents, then is replaced (default 200; 1 = a new
    /// process per document). A worker that failed, crashed or timed out is never reused.
    pub worker_max_documents: u32,
    /// A PDFium worker whose resident memory exceeds this (bytes, checked after each document;
    /// default 512 MiB) is replaced instead of reused.
    pub worker_max_rss: u64,
    /// Reuse (and store) results for the same bytes and request; off = always process afresh
    /// and write no result file (extracted images are still saved under `cache_dir`).
    pub use_cache: bool,
    /// Largest PDF accepted, in bytes (default 512 MiB); bigger files fail with `TooLarge`.
    pub max_bytes: u64,
    /// Most pages a document may have (default 5 000); checked right after opening, before
    /// any page is read.
    pub max_pages: u32,
}

impl PdfOptions {
    /// Settings with the documented defaults; the CLI overrides fields from its configuration.
    pub fn new(
        pdfium_lib: impl Into<PathBuf>,
        cache_dir: impl Into<PathBuf>,
        child_program: impl Into<PathBuf>,
        child_args: Vec<String>,
    ) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        PdfOptions {
            pdfium_lib: pdfium_lib.into(),
            cache_dir: cache_dir.into(),
            child_program: child_program.into(),
            child_args,
            tesseract: PathBuf::from("tesseract"),
            default_languages: "eng".to_string(),
            min_image_side: 32,
            ocr_dpi: 300,
            max_render_pixels: 25_000_000,
            max_render_side: 8_000,
            timeout: Duration::from_secs(600),
            child_memory_limit: Some(2 << 30),
            ocr_page_timeout: Duration::from_secs(180),
            ocr_workers: cores,
            worker_processes: cores,
            shard_min_bytes: 256 * 1024,
            split_min_pages: 8,
            prestart_workers: true,
            worker_max_documents: 200,
            worker_max_rss: 512 << 20,
            use_cache: true,
            max_bytes: 512 << 20,
            max_pages: 5_000,
        }
    }
}

/// When to OCR a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OcrMode {
    /// OCR pages without a usable text layer (see `triage`).
    #[default]
    Auto,
    /// OCR every selected page.
    Always,
    /// Never run OCR; pages without a text layer come back empty with a warning.
    Never,
}

/// Which pages to process: a list of 1-based numbers or a range string such as `"1-3,7,10-"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PageSelection {
    List(Vec<u32>),
    Spec(String),
}

impl PageSelection {
    /// Resolves to sorted, de-duplicated 1-based page numbers within `1..=page_count`, plus the
    /// numbers that were asked for but do not exist.
    pub fn resolve(&self, page_count: u32) -> Result<(Vec<u32>, Vec<u32>)> {
        // Inclusive ranges first, merged, then expanded: the work is bounded by `page_count`
        // however many overlapping ranges a request repeats ("1-,1-,1-,…" found by review of
        // the fuzzed child protocol: expanding each range cost O(ranges × pages) memory).
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        match self {
            PageSelection::List(list) => ranges.extend(list.iter().map(|&n| (n, n))),
            PageSelection::Spec(spec) => {
                for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let bad = || PdfError::InvalidRequest(format!("bad page range {part:?}"));
                    match part.split_once('-') {
                        None => {
                            let n = part.parse().map_err(|_| bad())?;
                            ranges.push((n, n));
                        }
                        Some((a, b)) => {
                            let a: u32 = if a.trim().is_empty() {
                                1
                            } else {
                                a.trim().parse().map_err(|_| bad())?
                            };
                            let b: u32 = if b.trim().is_empty() {
                                page_count.max(a)
                            } else {
                                b.trim().parse().map_err(|_| bad())?
                            };
                            if a > b {
                                return Err(bad());
                            }
                            ranges.push((a, b));
                        }
                    }
                }
            }
        }
        if ranges.iter().any(|r| r.0 == 0) {
            return Err(PdfError::InvalidRequest(
                "page numbers start at 1".to_string(),
            ));
        }
        // Missing pages are reported by the first and last number past the end of each range.
        let mut missing: Vec<u32> = Vec::new();
        for &(a, b) in &ranges {
            if b > page_count {
                missing.push(a.max(page_count.saturating_add(1)));
                missing.push(b);
            }
        }
        missing.sort_unstable();
        missing.dedup();
        let mut inside: Vec<(u32, u32)> = ranges
            .into_iter()
            .filter(|r| r.0 <= page_count)
            .map(|(a, b)| (a, b.min(page_count)))
            .collect();
        inside.sort_unstable();
        let mut ok: Vec<u32> = Vec::new();
        let mut next = 1u32; // first page not yet emitted
        for (a, b) in inside {
            let from = a.max(next);
            if from <= b {
                ok.extend(from..=b);
                next = b.saturating_add(1);
            }
        }
        Ok((ok, missing))
    }
}

/// One document to process (the `process_pdf_document` kwargs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PdfRequest {
    pub pdf_path: PathBuf,
    #[serde(default = "default_true")]
    pub extract_images: bool,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub ocr: OcrMode,
    /// Tesseract languages, e.g. `"eng"` or `"eng+deu"`; `None` uses `PdfOptions::default_languages`.
    #[serde(default)]
    pub languages: Option<String>,
    #[serde(default)]
    pub pages: Option<PageSelection>,
    /// The file, already opened by the caller (e.g. beneath an input root): when set, every
    /// read — the checks, the hash, the PDFium worker's — goes through this descriptor and the
    /// path is only a name for messages.
    #[serde(skip)]
    pub file: Option<std::sync::Arc<std::fs::File>>,
}

fn default_true() -> bool {
    true
}

impl PdfRequest {
    /// A request with the issue's defaults: images on, no password, OCR auto, all pages.
    pub fn new(pdf_path: impl Into<PathBuf>) -> Self {
        PdfRequest {
            pdf_path: pdf_path.into(),
            extract_images: true,
            password: None,
            ocr: OcrMode::Auto,
            languages: None,
            pages: None,
            file: None,
        }
    }
}

/// Checks a tesseract language string so it cannot smuggle options onto the command line.
pub(crate) fn validate_languages(langs: &str) -> Result<()> {
    let ok = !langs.is_empty()
        && langs.len() <= 200
        && langs
            .split('+')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if ok {
        Ok(())
    } else {
        Err(PdfError::InvalidRequest(format!(
            "bad OCR language list {langs:?} (expected e.g. \"eng\" or \"eng+deu\")"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ranges_resolve() {
        let s = PageSelection::Spec("1-3, 5,9-".into());
        assert_eq!(s.resolve(10).unwrap(), (vec![1, 2, 3, 5, 9, 10], vec![]));
        let s = PageSelection::Spec("2,12".into());
        assert_eq!(s.resolve(10).unwrap(), (vec![2], vec![12]));
        let s = PageSelection::List(vec![3, 1, 3]);
        assert_eq!(s.resolve(3).unwrap(), (vec![1, 3], vec![]));
        assert!(PageSelection::Spec("0".into()).resolve(3).is_err());
        assert!(PageSelection::Spec("a-b".into()).resolve(3).is_err());
        assert!(PageSelection::Spec("5-2".into()).resolve(9).is_err());
        let (ok, missing) = PageSelection::Spec("1-4000000000".into())
            .resolve(2)
            .unwrap();
        assert_eq!(ok, vec![1, 2]);
        assert_eq!(missing, vec![3, 4000000000]);
    }

    #[test]
    fn request_from_kwargs() {
        let r: PdfRequest =
            serde_json::from_str(r#"{"pdf_path":"/x.pdf","ocr":"never","pages":"1-2"}"#).unwrap();
        assert!(r.extract_images);
        assert_eq!(r.ocr, OcrMode::Never);
        assert_eq!(r.pages, Some(PageSelection::Spec("1-2".into())));
        let r: PdfRequest = serde_json::from_str(r#"{"pdf_path":"/x.pdf","pages":[2]}"#).unwrap();
        assert_eq!(r.pages, Some(PageSelection::List(vec![2])));
    }

    #[test]
    fn languages_are_checked() {
        assert!(validate_languages("eng+deu").is_ok());
        assert!(validate_languages("eng --psm").is_err());
        assert!(validate_languages("").is_err());
    }
}
