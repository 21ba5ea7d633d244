//! PDF ingestion as a plain library: text in reading order, images, OCR. Knows nothing about queues.
//!
//! Entry points: [`process_document`] (one PDF → [`PdfDocument`]), [`prestart_workers`] (at
//! start-up), [`cleanup_cache`], and [`child::serve_stdio`], the PDFium worker process every
//! document runs in (PDFium is not thread-safe and may hang or crash on hostile files). See
//! `docs/pdf-engine.md`.

mod cache;
pub mod child;
mod document;
mod engine;
mod error;
mod images;
mod layout;
mod ocr;
mod options;
mod pool;
mod process;
mod processor;
mod render;
mod source;
mod triage;

pub use cache::{CleanupReport, cleanup_cache};
pub use document::{Metadata, PdfDocument, PdfImage, PdfPage, Progress, Stage, Stats, TextSource};
pub use error::{PdfError, Result};
pub use options::{OcrMode, PageSelection, PdfOptions, PdfRequest};
pub use pool::prestart_workers;
pub use processor::process_document;
