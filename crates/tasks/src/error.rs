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
    #[error("input file not found: {path}{hint}")]
    InputMissing {
        path: PathBuf,
        /// What the user may have meant (`""` when nothing comes to mind).
        hint: String,
    },
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

    /// Whether trying again later can help, and after how long at the least. A full disk is
    /// worth waiting out (the cache cleanups or an operator free space), whichever step hit it.
    pub fn retry(&self) -> Option<Option<Duration>> {
        match self {
            _ if self.storage_full() => Some(None),
            Error::Youtube(e) if e.retryable() => Some(e.retry_after()),
            Error::Llm(e) if e.retryable() => Some(e.retry_after()),
            Error::Pdf(hlbot_pdf::PdfError::Timeout { .. }) => None,
            _ => None,
        }
    }
}

impl Error {
    /// True when the failure is a full disk or an exhausted quota (`ENOSPC`, `EDQUOT`), ours or
    /// a tool's (ffmpeg, yt-dlp, tesseract print the same system message).
    fn storage_full(&self) -> bool {
        let text = self.to_string();
        ["No space left on device", "Disk quota exceeded"]
            .iter()
            .any(|m| text.contains(m))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn retried(e: Error) -> bool {
        matches!(TaskError::from(e), TaskError::Retry { .. })
    }

    #[test]
    fn a_full_disk_is_retried_bad_input_is_not() {
        let full = std::io::Error::from_raw_os_error(28);
        let pdf = hlbot_pdf::PdfError::Json(serde_json::Error::io(full));
        assert!(retried(Error::Pdf(pdf)));
        let quota = std::io::Error::from_raw_os_error(122);
        assert!(retried(Error::Other(format!("writing frames: {quota}"))));
        let tool =
            "ffmpeg failed (exit status: 1): av_interleaved_write_frame(): No space left on device";
        assert!(retried(Error::Other(tool.into())));
        let damaged = hlbot_pdf::PdfError::Damaged {
            path: "x.pdf".into(),
            detail: "no usable trailer/xref".into(),
        };
        assert!(!retried(Error::Pdf(damaged)));
        assert!(!retried(Error::Other("disk I/O error".into())));
    }
}
