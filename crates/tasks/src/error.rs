//! The glue's errors, and the one place that decides what is retryable: domain errors become
//! `TaskError::Retry` (with backoff) or `TaskError::Fail` with a Python-style exception name.

use std::path::PathBuf;
use std::time::Duration;

use hlbot_engine::TaskError;
use hlbot_proto::ExceptionInfo;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Beneath an input root, nothing by that name.
    #[error("input file not found: {path}")]
    InputMissing { path: PathBuf },
    /// Outside the roots, a symlink out of them, or not a regular file. Says nothing about what
    /// exists outside the roots.
    #[error("reading {path} is not allowed: {why}")]
    NotAllowed { path: PathBuf, why: String },
    /// No input roots configured: a worker reads no files but its own cache.
    #[error(
        "reading {path} is not allowed: no input roots are configured on this worker (set {})",
        crate::inputs::SETTING
    )]
    NoInputRoots { path: PathBuf },
    /// A file over a configured size cap. Never retried.
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("bad arguments: {0}")]
    BadArguments(String),
    #[error(transparent)]
    Pdf(#[from] hlbot_pdf::PdfError),
    #[error(transparent)]
    Youtube(#[from] hlbot_youtube::Error),
    #[error(transparent)]
    Llm(#[from] hlbot_llm::Error),
    #[error(
        "cannot tell what {0} is (expected a PDF, a video or audio file, an image, a caption/text file or a YouTube URL)"
    )]
    UnknownSource(String),
    #[error("{0}")]
    Other(String),
}

/// Module name Python clients see for hlbot's exceptions (not importable → synthesized class).
const MODULE: &str = "hlbot.exceptions";

impl Error {
    /// Python-style exception class name.
    pub fn exc_type(&self) -> &'static str {
        match self {
            Error::InputMissing { .. } => "FileNotFoundError",
            Error::NotAllowed { .. } | Error::NoInputRoots { .. } => "PermissionError",
            Error::BadArguments(_) => "TypeError",
            Error::TooLarge(_) => "ValueError",
            Error::Pdf(_) => "PdfError",
            Error::Youtube(_) => "YoutubeError",
            Error::Llm(_) => "LlmError",
            Error::UnknownSource(_) => "ValueError",
            Error::Other(_) => "RuntimeError",
        }
    }

    /// Whether trying again later can help, and after how long at the least.
    pub fn retry(&self) -> Option<Option<Duration>> {
        match self {
            Error::Youtube(e) if e.retryable() => Some(e.retry_after()),
            Error::Llm(e) if e.retryable() => Some(e.retry_after()),
            Error::Pdf(hlbot_pdf::PdfError::Timeout { .. }) => None,
            _ => None,
        }
    }
}

impl From<Error> for TaskError {
    fn from(e: Error) -> Self {
        let module = match e.exc_type() {
            "FileNotFoundError" | "PermissionError" | "TypeError" | "ValueError"
            | "RuntimeError" => "builtins",
            _ => MODULE,
        };
        let exc = ExceptionInfo::new(
            e.exc_type(),
            module,
            vec![serde_json::Value::String(e.to_string())],
        );
        match e.retry() {
            Some(after) => TaskError::Retry { exc, after },
            None => TaskError::Fail {
                exc,
                traceback: None,
            },
        }
    }
}
