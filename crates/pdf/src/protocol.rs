//! The wire between the parent (`pipeline`, `pool`) and a PDFium worker process (`worker`): one
//! `WorkerInit` line, then one `ChildRequest` line per document on the worker's stdin;
//! `ChildEvent`s as JSON lines on its stdout, each document's ending in `Done` (the worker then
//! waits for the next request) or `Error` (with `alive`, the worker refused the document cleanly
//! and waits for the next request; without, it exits). Pure data; both sides use it, neither's
//! logic lives here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::document::{Metadata, PdfImage};
use crate::error::PdfError;
use crate::options::{OcrMode, PageSelection};

/// What the parent asks the worker to do with one document. The password travels here, on
/// stdin, never on the command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildRequest {
    pub pdf_path: PathBuf,
    pub password: Option<String>,
    pub pages: Option<PageSelection>,
    pub extract_images: bool,
    pub image_dir: PathBuf,
    pub min_image_side: u32,
    pub ocr: OcrMode,
    pub render_dir: PathBuf,
    pub ocr_dpi: u32,
    pub max_render_pixels: u64,
    pub max_render_side: u32,
    /// (k, n): this worker handles every n-th selected page starting at the k-th.
    #[serde(default = "single_shard")]
    pub shard: (u32, u32),
    /// For a lone worker (shard (0, 1)): with at least this many selected pages (0 = never),
    /// take shard (0, `split_into`) instead and say so in `Opened::shards`; the parent then
    /// starts the other shards.
    #[serde(default)]
    pub split_min_pages: u32,
    #[serde(default)]
    pub split_into: u32,
    /// Refuse documents with more pages than this, before reading any (0 = no limit).
    #[serde(default)]
    pub max_pages: u32,
}

fn single_shard() -> (u32, u32) {
    (0, 1)
}

fn one() -> u32 {
    1
}

/// A page image rendered for OCR.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Rendered {
    pub path: PathBuf,
    pub dpi: u32,
    pub width: u32,
    pub height: u32,
}

/// One page as the worker saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildPage {
    pub number: u32,
    pub text: String,
    pub width: f32,
    pub height: f32,
    pub rotation: u32,
    pub ocr_reason: Option<String>,
    pub render: Option<Rendered>,
    pub images: Vec<PdfImage>,
    pub warnings: Vec<String>,
    pub text_ms: u64,
    pub images_ms: u64,
    pub render_ms: u64,
}

/// The document opened: what the parent needs before pages arrive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Opened {
    pub page_count: u32,
    /// How many pages all workers of this document process together.
    #[serde(default)]
    pub selected: u32,
    /// How many workers share the document (more than the parent started: it starts the rest).
    #[serde(default = "one")]
    pub shards: u32,
    /// This worker's pages.
    pub pages: Vec<u32>,
    pub metadata: Metadata,
    pub open_ms: u64,
    pub warnings: Vec<String>,
}

/// One line of the worker's stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum ChildEvent {
    /// The init line was read and PDFium loaded (a load failure is reported once the request
    /// arrives): the worker now waits for its request.
    Ready,
    Opened(Box<Opened>),
    Page(Box<ChildPage>),
    /// End of this document: the worker is clean and waits for the next request line.
    Done {
        /// The worker's process id and how many documents it has finished, this one included
        /// (reported in `Stats::workers`, so reuse is visible).
        #[serde(default)]
        pid: u32,
        #[serde(default)]
        documents: u32,
    },
    Error {
        kind: String,
        message: String,
        /// True when PDFium refused the document cleanly (damaged, encrypted, over the page cap,
        /// no such page): the document is closed and the worker waits for the next request, as
        /// after `Done`. False (the default, also for older workers) when the worker exits.
        #[serde(default)]
        alive: bool,
    },
}

/// Whether a line of worker output is the `done` event (checked without parsing the line, which
/// may hold a whole page of text: the tag is serialised first).
pub(crate) fn is_done_line(line: &str) -> bool {
    line.starts_with(r#"{"event":"done""#)
}

/// Whether a line of worker output is the `error` event.
pub(crate) fn is_error_line(line: &str) -> bool {
    line.starts_with(r#"{"event":"error""#)
}

/// Whether an `error` line says the worker stays alive for the next request (the line is small:
/// it is parsed). Anything unparsable counts as an exiting worker.
pub(crate) fn error_keeps_worker(line: &str) -> bool {
    matches!(
        serde_json::from_str::<ChildEvent>(line),
        Ok(ChildEvent::Error { alive: true, .. })
    )
}

impl ChildEvent {
    /// The `error` event for `e`; `alive` says whether the worker waits for the next request.
    pub(crate) fn from_error(e: &PdfError, alive: bool) -> Self {
        // The parent rebuilds the typed error around `message`, so send only the detail.
        let message = match e {
            PdfError::Damaged { detail, .. } | PdfError::EngineMissing { detail, .. } => {
                detail.clone()
            }
            PdfError::InvalidRequest(m) | PdfError::TooLarge(m) => m.clone(),
            other => other.to_string(),
        };
        ChildEvent::Error {
            kind: e.kind().to_string(),
            message,
            alive,
        }
    }
}

/// First line a worker reads: what to prepare before any document arrives, so a worker can
/// be started (and PDFium loaded) ahead of time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerInit {
    pub pdfium_lib: PathBuf,
    pub memory_limit: Option<u64>,
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_line_is_recognised() {
        let done = serde_json::to_string(&ChildEvent::Done {
            pid: 7,
            documents: 2,
        })
        .unwrap();
        assert!(is_done_line(&done));
        assert!(!is_error_line(&done));
        let err = ChildEvent::Error {
            kind: "damaged".into(),
            message: "x".into(),
            alive: false,
        };
        let line = serde_json::to_string(&err).unwrap();
        assert!(is_error_line(&line));
        assert!(!error_keeps_worker(&line));
        assert!(!is_done_line(
            &serde_json::to_string(&ChildEvent::Ready).unwrap()
        ));
    }

    #[test]
    fn an_error_that_keeps_the_worker_says_so() {
        let e = PdfError::Damaged {
            path: "x.pdf".into(),
            detail: "no trailer".into(),
        };
        let line = serde_json::to_string(&ChildEvent::from_error(&e, true)).unwrap();
        assert!(is_error_line(&line) && error_keeps_worker(&line), "{line}");
        let line = serde_json::to_string(&ChildEvent::from_error(&e, false)).unwrap();
        assert!(is_error_line(&line) && !error_keeps_worker(&line), "{line}");
        // An older worker's line (no `alive`) means the worker exits.
        assert!(!error_keeps_worker(
            r#"{"event":"error","kind":"damaged","message":"m"}"#
        ));
        // A message that merely contains the words does not count.
        assert!(!error_keeps_worker(
            r#"{"event":"error","kind":"damaged","message":"\"alive\":true"}"#
        ));
        assert!(!error_keeps_worker(r#"{"event":"error","alive":true"#));
    }
}
