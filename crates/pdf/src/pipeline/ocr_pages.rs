//! OCR of the pages the workers rendered, parent side: each render is handed to tesseract as it
//! arrives (at most `ocr_workers` at once, bounded by the document's deadline), and `collect`
//! gathers the texts once the workers are done.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{ms, step};
use crate::document::{Progress, Stage};
use crate::error::{PdfError, Result};
use crate::ocr::{self, OcrJob, OcrText};
use crate::options::PdfOptions;

type OcrOutcome = (u32, Result<OcrText>);

/// The OCR jobs of one document.
pub(super) struct OcrPages {
    tesseract: PathBuf,
    languages: String,
    page_timeout: Duration,
    deadline: Instant,
    cancel: CancellationToken,
    sem: Arc<Semaphore>,
    tasks: JoinSet<OcrOutcome>,
    started: Option<Instant>,
}

/// The OCR'd texts by page number, the failures, and the time OCR took.
pub(super) struct OcrRead {
    pub texts: HashMap<u32, OcrText>,
    pub errors: Vec<PdfError>,
    pub ms: u64,
    /// No page failed (a failed page keeps its text layer; the result is then not cached).
    pub errors_none: bool,
}

impl OcrPages {
    pub(super) fn new(
        opts: &PdfOptions,
        languages: &str,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Self {
        OcrPages {
            tesseract: opts.tesseract.clone(),
            languages: languages.to_string(),
            page_timeout: opts.ocr_page_timeout,
            deadline,
            cancel: cancel.clone(),
            sem: Arc::new(Semaphore::new(opts.ocr_workers.max(1))),
            tasks: JoinSet::new(),
            started: None,
        }
    }

    /// Start OCR of one rendered page (waits for a slot off this task); the render is deleted
    /// when tesseract is done with it.
    pub(super) fn spawn(&mut self, image: PathBuf, dpi: u32, page: u32) {
        self.started.get_or_insert_with(Instant::now);
        let job = OwnedJob {
            tesseract: self.tesseract.clone(),
            image,
            languages: self.languages.clone(),
            dpi,
            page,
            timeout: self
                .page_timeout
                .min(self.deadline.saturating_duration_since(Instant::now())),
        };
        let (sem, cancel) = (self.sem.clone(), self.cancel.clone());
        self.tasks.spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else {
                return (job.page, Err(PdfError::Cancelled));
            };
            let res = ocr::recognise(job.borrow(), &cancel).await;
            let _ = std::fs::remove_file(&job.image);
            (job.page, res)
        });
    }

    /// Wait for every page, as they finish. A missing tesseract, a cancel or the deadline ends
    /// the document; any other failure costs only that page its OCR.
    pub(super) async fn collect(
        mut self,
        path: &Path,
        opts: &PdfOptions,
        progress: &(impl Fn(Progress) + Send + Sync),
    ) -> Result<OcrRead> {
        let total = self.tasks.len() as u32;
        let mut texts = HashMap::new();
        let mut errors = Vec::new();
        while !self.tasks.is_empty() {
            step(progress, Stage::Ocr, total - self.tasks.len() as u32, total);
            let next = tokio::select! {
                r = self.tasks.join_next() => r,
                _ = self.cancel.cancelled() => return Err(PdfError::Cancelled),
                _ = tokio::time::sleep_until(self.deadline.into()) => return Err(PdfError::Timeout {
                    what: format!("processing {}", path.display()),
                    seconds: opts.timeout.as_secs_f64(),
                }),
            };
            match next {
                Some(Ok((page, Ok(text)))) => {
                    texts.insert(page, text);
                }
                Some(Ok((_, Err(e @ PdfError::ToolMissing { .. })))) => return Err(e),
                Some(Ok((_, Err(PdfError::Cancelled)))) => return Err(PdfError::Cancelled),
                Some(Ok((_, Err(e)))) => errors.push(e),
                Some(Err(e)) => errors.push(PdfError::Child {
                    detail: format!("OCR task failed: {e}"),
                    stderr: String::new(),
                }),
                None => break,
            }
        }
        Ok(OcrRead {
            texts,
            errors_none: errors.is_empty(),
            errors,
            ms: self.started.map(|t| ms(t.elapsed())).unwrap_or(0),
        })
    }
}

struct OwnedJob {
    tesseract: PathBuf,
    image: PathBuf,
    languages: String,
    dpi: u32,
    page: u32,
    timeout: Duration,
}

impl OwnedJob {
    fn borrow(&self) -> OcrJob<'_> {
        OcrJob {
            tesseract: &self.tesseract,
            image: &self.image,
            languages: &self.languages,
            dpi: self.dpi,
            page: self.page,
            timeout: self.timeout,
        }
    }
}
