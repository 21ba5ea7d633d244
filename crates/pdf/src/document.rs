//! The result of `process_document`, exactly the JSON the `process_pdf_document` task returns,
//! plus the `Progress` events reported while it runs. Pure data.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One processed PDF.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PdfDocument {
    /// Hex sha256 of the file's bytes.
    pub document_id: String,
    pub path: PathBuf,
    pub page_count: u32,
    pub metadata: Metadata,
    /// The text of all processed pages, in page order, separated by blank lines (`"\n\n"`).
    pub text: String,
    pub pages: Vec<PdfPage>,
    pub warnings: Vec<String>,
    pub stats: Stats,
}

/// Document information dictionary (all optional; dates as ISO 8601 when parseable).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metadata {
    pub title: Option<String>,
    pub author: Option<String>,
    pub subject: Option<String>,
    pub keywords: Option<String>,
    pub creator: Option<String>,
    pub producer: Option<String>,
    pub creation_date: Option<String>,
    pub modification_date: Option<String>,
}

/// Where a page's text came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TextSource {
    /// The PDF's own text layer.
    Text,
    /// Tesseract on the rendered page (no usable text layer).
    Ocr,
    /// The page had a thin text layer and was OCR'd too; the richer of the two is kept.
    Mixed,
}

/// One page of the result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PdfPage {
    /// 1-based page number.
    pub number: u32,
    pub text: String,
    pub source: TextSource,
    /// Mean tesseract word confidence (0–100) when OCR ran.
    pub ocr_confidence: Option<f32>,
    /// Why OCR ran (or would have run with `ocr="never"`), e.g. `"no text layer"`.
    pub ocr_reason: Option<String>,
    /// Page size in points as displayed (after /Rotate).
    pub width: f32,
    pub height: f32,
    pub rotation: u32,
    pub images: Vec<PdfImage>,
}

/// One embedded image, saved once per document under the cache folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PdfImage {
    pub path: PathBuf,
    /// Pixel size of the image as stored in the PDF.
    pub width: u32,
    pub height: u32,
    /// `"jpeg"` (original DCT stream, byte for byte) or `"png"` (decoded by PDFium).
    pub format: String,
    /// Placement on the page in points, `[left, bottom, right, top]`, PDF user space
    /// (origin bottom-left, before /Rotate).
    pub bbox: [f32; 4],
    /// Hex sha256 of the saved file (images with equal hashes share one file).
    pub sha256: String,
}

/// Time per stage, in milliseconds, and counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub hash_ms: u64,
    pub open_ms: u64,
    pub text_ms: u64,
    pub images_ms: u64,
    pub render_ms: u64,
    pub ocr_ms: u64,
    pub total_ms: u64,
    pub pages_processed: u32,
    pub pages_ocr: u32,
    pub images_saved: u32,
    /// True when this result was served from the cache.
    pub cached: bool,
    /// The PDFium worker processes that read the document (several when its pages were split).
    #[serde(default)]
    pub workers: Vec<WorkerUse>,
}

/// One PDFium worker process's part in a document: which process, and how many documents it
/// had finished with this one (workers are reused, see `PdfOptions::worker_max_documents`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerUse {
    pub pid: u32,
    pub documents: u32,
}

/// Stage of a running `process_document`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Hashing,
    Opening,
    Pages,
    Ocr,
    Done,
}

/// A progress report: `done` of `total` units in `stage` (pages for `Pages` and `Ocr`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub stage: Stage,
    pub done: u32,
    pub total: u32,
}
