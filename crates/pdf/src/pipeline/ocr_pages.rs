//! OCR of the pages the workers rendered, parent side: rendered pages queue up as they arrive
//! and up to `ocr_workers` warm recognisers (`ocr::Recogniser`, one tesseract process each,
//! started when there are pages for it) take them one at a time, so the PDFium workers render
//! page n+1 while tesseract reads page n. Across the documents of this process at most
//! `ocr_workers` pages are recognised at once (`budget`): a worker running several PDF tasks
//! keeps every core busy with tesseract without starting more than it has cores for. A
//! recogniser whose page failed is replaced for the next page; `collect` gathers the texts once the workers are done, bounded by the document's
//! deadline. Dropping `OcrPages` (cancel, deadline, error) kills every recogniser.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{ms, step};
use crate::document::{Progress, Stage};
use crate::error::{PdfError, Result};
use crate::ocr::{self, OcrText, Recogniser};
use crate::options::PdfOptions;

type OcrOutcome = (u32, Result<OcrText>);

/// Mean word confidence below which a page's orientation is checked (one `tesseract --psm 0`
/// run): upside-down pages measure 35–41 %, good scans 80–96 % (median 87).
const TURN_CHECK_CONFIDENCE: f32 = 60.0;

/// A rendered page waiting for a recogniser.
struct Job {
    image: PathBuf,
    page: u32,
}

/// What every recogniser task shares.
struct Shared {
    tesseract: PathBuf,
    languages: String,
    page_timeout: Duration,
    deadline: Instant,
    cancel: CancellationToken,
    /// The queue of rendered pages; a recogniser holds the lock only while it waits for one.
    queue: tokio::sync::Mutex<UnboundedReceiver<Job>>,
    /// Pages being recognised in this process, shared by every document (`budget`).
    budget: Arc<Semaphore>,
}

/// The process-wide OCR slots for an `ocr_workers` setting: one permit per page being
/// recognised. Documents with the same setting share one semaphore.
fn budget(slots: usize) -> Arc<Semaphore> {
    static BUDGETS: Mutex<Vec<(usize, Arc<Semaphore>)>> = Mutex::new(Vec::new());
    let mut all = BUDGETS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, s)) = all.iter().find(|(n, _)| *n == slots) {
        return s.clone();
    }
    let s = Arc::new(Semaphore::new(slots));
    all.push((slots, s.clone()));
    s
}

/// The OCR jobs of one document.
pub(super) struct OcrPages {
    shared: Arc<Shared>,
    workers: usize,
    queue: Option<UnboundedSender<Job>>,
    results: UnboundedSender<OcrOutcome>,
    outcomes: UnboundedReceiver<OcrOutcome>,
    recognisers: JoinSet<()>,
    /// The blank image sent after each page (`ocr` module), written with the first page.
    marker: Option<Result<PathBuf>>,
    queued: u32,
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
        let (queue, rx) = unbounded_channel();
        let (results, outcomes) = unbounded_channel();
        OcrPages {
            shared: Arc::new(Shared {
                tesseract: opts.tesseract.clone(),
                languages: languages.to_string(),
                page_timeout: opts.ocr_page_timeout,
                deadline,
                cancel: cancel.clone(),
                queue: tokio::sync::Mutex::new(rx),
                budget: budget(opts.ocr_workers.max(1)),
            }),
            workers: opts.ocr_workers.max(1),
            queue: Some(queue),
            results,
            outcomes,
            recognisers: JoinSet::new(),
            marker: None,
            queued: 0,
            started: None,
        }
    }

    /// Queue OCR of one rendered page (a recogniser is started for it if fewer than
    /// `ocr_workers` run); the render is deleted when tesseract is done with it.
    pub(super) fn spawn(&mut self, image: PathBuf, page: u32) {
        self.started.get_or_insert_with(Instant::now);
        let marker = self.marker.get_or_insert_with(|| {
            let dir = image.parent().unwrap_or(Path::new("."));
            ocr::write_marker(dir)
        });
        let marker = match marker {
            Ok(m) => m.clone(),
            Err(e) => {
                let err = PdfError::Ocr {
                    page,
                    detail: e.to_string(),
                };
                let _ = std::fs::remove_file(&image);
                let _ = self.results.send((page, Err(err)));
                self.queued += 1;
                return;
            }
        };
        let Some(queue) = &self.queue else { return };
        if queue.send(Job { image, page }).is_err() {
            return;
        }
        self.queued += 1;
        if self.recognisers.len() < self.workers.min(self.queued as usize) {
            let (shared, results) = (self.shared.clone(), self.results.clone());
            self.recognisers
                .spawn(recognise_queue(shared, marker, results));
        }
    }

    /// Wait for every page, as they finish. A missing tesseract, a cancel or the deadline ends
    /// the document; any other failure costs only that page its OCR.
    pub(super) async fn collect(
        mut self,
        path: &Path,
        opts: &PdfOptions,
        progress: &(impl Fn(Progress) + Send + Sync),
    ) -> Result<OcrRead> {
        // No more pages: recognisers end when the queue is empty, and so does `outcomes`.
        self.queue = None;
        let (dummy, _) = unbounded_channel();
        drop(std::mem::replace(&mut self.results, dummy));
        let total = self.queued;
        let mut texts = HashMap::new();
        let mut errors = Vec::new();
        let mut seen = 0u32;
        while seen < total {
            step(progress, Stage::Ocr, seen, total);
            let next = tokio::select! {
                r = self.outcomes.recv() => r,
                _ = self.shared.cancel.cancelled() => return Err(PdfError::Cancelled),
                _ = tokio::time::sleep_until(self.shared.deadline.into()) => {
                    return Err(PdfError::Timeout {
                        what: format!("processing {}", path.display()),
                        seconds: opts.timeout.as_secs_f64(),
                    });
                }
            };
            let Some((page, res)) = next else {
                // Every recogniser ended (one panicked?) with pages left.
                errors.push(PdfError::Child {
                    detail: format!("OCR ended with {} of {total} pages unread", total - seen),
                    stderr: String::new(),
                });
                break;
            };
            seen += 1;
            match res {
                Ok(text) => {
                    texts.insert(page, text);
                }
                Err(e @ PdfError::ToolMissing { .. }) => return Err(e),
                Err(PdfError::Cancelled) => return Err(PdfError::Cancelled),
                Err(e) => errors.push(e),
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

/// One recogniser's loop: take the next queued page, read it with the warm tesseract (started
/// on the first page, and again after a page that failed), report, repeat until the queue is
/// closed and empty.
async fn recognise_queue(
    shared: Arc<Shared>,
    marker: PathBuf,
    results: UnboundedSender<OcrOutcome>,
) {
    let mut warm: Option<Recogniser> = None;
    loop {
        let job = shared.queue.lock().await.recv().await;
        let Some(job) = job else { break };
        let res = recognise_one(&shared, &marker, &mut warm, &job).await;
        let _ = std::fs::remove_file(&job.image);
        if res.is_err() {
            // Mid-page or gone: the next page gets a fresh process.
            warm = None;
        }
        if results.send((job.page, res)).is_err() {
            break;
        }
    }
}

async fn recognise_one(
    shared: &Shared,
    marker: &Path,
    warm: &mut Option<Recogniser>,
    job: &Job,
) -> Result<OcrText> {
    if shared.cancel.is_cancelled() {
        return Err(PdfError::Cancelled);
    }
    // A slot first (another document may hold them all); the page timeout starts once it is
    // ours, the document's deadline and cancel bound the wait.
    let asked = Instant::now();
    let _slot = tokio::select! {
        slot = shared.budget.clone().acquire_owned() => slot.map_err(|_| PdfError::Cancelled)?,
        _ = shared.cancel.cancelled() => return Err(PdfError::Cancelled),
        _ = tokio::time::sleep_until(shared.deadline.into()) => {
            return Err(PdfError::Timeout {
                what: format!("waiting for an OCR slot for page {}", job.page),
                seconds: asked.elapsed().as_secs_f64(),
            });
        }
    };
    let rec = match warm {
        Some(r) => r,
        None => warm.insert(Recogniser::start(
            &shared.tesseract,
            &shared.languages,
            marker,
        )?),
    };
    // The page's limit, within what is left of the document's.
    let timeout = || {
        shared
            .page_timeout
            .min(shared.deadline.saturating_duration_since(Instant::now()))
    };
    let first = rec
        .recognise(&job.image, job.page, timeout(), &shared.cancel)
        .await?;
    if first.confidence.is_none_or(|c| c >= TURN_CHECK_CONFIDENCE) {
        return Ok(first);
    }
    // Unsure text: a page scanned sideways or upside down reads as garbage (OCRmyPDF's
    // cardinal.pdf: 35 % at 180° and 270°, 95 % upright). Turned upright, it is read again; the
    // surer reading wins.
    let Some(turn) = ocr::orientation(&shared.tesseract, &job.image, timeout()).await else {
        return Ok(first);
    };
    let Ok(upright) = crate::render::rotate_png(&job.image, turn) else {
        return Ok(first);
    };
    let second = rec
        .recognise(&upright, job.page, timeout(), &shared.cancel)
        .await;
    let _ = std::fs::remove_file(&upright);
    let second = second?;
    Ok(if second.confidence > first.confidence {
        second
    } else {
        first
    })
}
