//! PDF ingestion as a plain library: text in reading order, images, OCR. Knows nothing about queues.
//!
//! Entry points: [`process_document`] (one PDF → [`PdfDocument`]), [`prestart_workers`] (at
//! start-up), [`cleanup_cache`], and [`worker::serve_stdio`], the long-lived PDFium worker
//! process documents run in, one at a time (PDFium is not thread-safe and may hang or crash on
//! hostile files). See
//! `docs/pdf-engine.md`.

// Parent side (the caller's process): the pipeline of one document, its worker processes'
// pool (long-lived, reused), the subprocess wrapper, the result cache, tesseract.
mod cache;
mod document;
mod error;
mod ocr;
mod options;
mod pipeline;
mod pool;
mod source;
mod subprocess;
// The wire between the two sides.
mod protocol;
// Child side (the PDFium worker process): its entry point and everything PDFium does.
mod bidi;
mod images;
mod layout;
mod pdfium;
mod render;
mod triage;
pub mod worker;

pub use cache::{CleanupReport, cleanup_cache};
pub use document::{
    Metadata, PdfDocument, PdfImage, PdfPage, Progress, Stage, Stats, TextSource, WorkerUse,
};
pub use error::{PdfError, Result};
pub use options::{OcrMode, PageSelection, PdfOptions, PdfRequest};
pub use pipeline::process_document;
pub use pool::{prestart_workers, shutdown_workers};
