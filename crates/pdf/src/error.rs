//! The crate's one error type: every way PDF ingestion can fail, typed so the glue can decide
//! what is retryable. Messages never contain passwords.

use std::path::PathBuf;

/// Everything `hlbot-pdf` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("PDF file not found: {0}")]
    NotFound(PathBuf),
    #[error("not a regular file: {0}")]
    NotAFile(PathBuf),
    #[error("empty file (0 bytes): {0}")]
    EmptyFile(PathBuf),
    #[error("not a PDF (no %PDF- header): {0}")]
    NotPdf(PathBuf),
    #[error("password required: {0} is encrypted")]
    PasswordRequired(PathBuf),
    #[error("wrong password for {0}")]
    WrongPassword(PathBuf),
    #[error("damaged PDF beyond repair: {path}: {detail}")]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "PDF engine unavailable: libpdfium could not be loaded from {path} ({detail}). Set \
         HLBOT_PDFIUM_LIB or `pdf.pdfium_lib` in the config to the path of libpdfium.so, or run \
         scripts/install.sh"
    )]
    EngineMissing { path: PathBuf, detail: String },
    #[error("program not found: {program} ({detail})")]
    ToolMissing { program: String, detail: String },
    #[error("OCR failed on page {page}: {detail}")]
    Ocr { page: u32, detail: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{what} timed out after {seconds:.1} s")]
    Timeout { what: String, seconds: f64 },
    #[error("cancelled")]
    Cancelled,
    #[error("PDF worker process failed: {detail}; stderr: {stderr}")]
    Child { detail: String, stderr: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Over a configured cap (file size, pages): never retried.
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
}

impl PdfError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PdfError::Io {
            path: path.into(),
            source,
        }
    }

    /// True for failures that may succeed when tried again unchanged (timeouts, a crashed or
    /// killed worker, I/O hiccups). Bad input (not a PDF, wrong password) is never retryable.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            PdfError::Timeout { .. } | PdfError::Child { .. } | PdfError::Io { .. }
        )
    }

    /// A short stable name for the error kind (used on the child protocol and in results).
    pub fn kind(&self) -> &'static str {
        match self {
            PdfError::NotFound(_) => "not_found",
            PdfError::NotAFile(_) => "not_a_file",
            PdfError::EmptyFile(_) => "empty_file",
            PdfError::NotPdf(_) => "not_pdf",
            PdfError::PasswordRequired(_) => "password_required",
            PdfError::WrongPassword(_) => "wrong_password",
            PdfError::Damaged { .. } => "damaged",
            PdfError::EngineMissing { .. } => "engine_missing",
            PdfError::ToolMissing { .. } => "tool_missing",
            PdfError::Ocr { .. } => "ocr",
            PdfError::InvalidRequest(_) => "invalid_request",
            PdfError::Timeout { .. } => "timeout",
            PdfError::Cancelled => "cancelled",
            PdfError::Child { .. } => "child",
            PdfError::Io { .. } => "io",
            PdfError::TooLarge(_) => "too_large",
            PdfError::Json(_) => "json",
        }
    }
}

/// The crate's result alias.
pub type Result<T, E = PdfError> = std::result::Result<T, E>;
