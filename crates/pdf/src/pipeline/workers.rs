//! The PDFium workers of one document, parent side: `Plan` decides how many processes share the
//! pages and what each is asked (`ChildRequest`); `run` takes them from the pool, reads
//! their event lines, starts more when the first asks for them, hands rendered pages to OCR as
//! they arrive, and turns what the processes did into `Ran` or a typed error.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::assemble::child_error;
use super::ocr_pages::OcrPages;
use super::step;
use crate::cache;
use crate::document::{Metadata, Progress, Stage, WorkerUse};
use crate::error::{PdfError, Result};
use crate::options::{OcrMode, PdfOptions, PdfRequest};
use crate::pool;
use crate::protocol::{ChildEvent, ChildPage, ChildRequest};
use crate::source::child_path;
use crate::subprocess;

type Workers = JoinSet<Result<subprocess::Finished>>;
type Lines = tokio::sync::mpsc::UnboundedSender<String>;

/// How the document is split across worker processes.
pub(super) struct Plan {
    request: ChildRequest,
    /// Processes started at once.
    shards: u32,
    /// The most a worker may ask for (each shard is a process).
    max: u32,
    /// Start new worker processes instead of taking idle ones from the pool (the second read of
    /// a document a worker crashed on).
    fresh: bool,
}

impl Plan {
    /// Big documents (and OCR of every page) are split across worker processes, every n-th page
    /// each: PDFium is single-threaded per process, the machine has more cores. Smaller ones go
    /// to one worker, which asks for the others once it has counted enough pages.
    pub(super) fn new(
        opts: &PdfOptions,
        req: &PdfRequest,
        file: &Arc<std::fs::File>,
        size: u64,
        doc_id: Option<&str>,
        render_dir: Option<&tempfile::TempDir>,
    ) -> Plan {
        let max = opts.worker_processes.max(1) as u32;
        let shards = if size >= opts.shard_min_bytes || req.ocr == OcrMode::Always {
            max
        } else {
            1
        };
        let request = ChildRequest {
            pdf_path: child_path(file),
            password: req.password.clone(),
            pages: req.pages.clone(),
            extract_images: req.extract_images,
            // Without image extraction the worker saves nothing, so the folder is never made.
            image_dir: match doc_id {
                Some(id) => cache::doc_dir(&opts.cache_dir, id).join("images"),
                None => cache::tmp_dir(&opts.cache_dir),
            },
            min_image_side: opts.min_image_side,
            ocr: req.ocr,
            render_dir: render_dir
                .map(|d| d.path().to_path_buf())
                .unwrap_or_else(|| cache::tmp_dir(&opts.cache_dir)),
            ocr_dpi: opts.ocr_dpi,
            max_render_pixels: opts.max_render_pixels,
            max_render_side: opts.max_render_side,
            shard: (0, shards),
            split_min_pages: if shards == 1 { opts.split_min_pages } else { 0 },
            split_into: max,
            max_pages: opts.max_pages,
        };
        Plan {
            request,
            shards,
            max,
            fresh: false,
        }
    }

    /// The plan for reading a document again after a worker crashed on it `crashes` times: new
    /// processes, first without image extraction (where PDFium's decoders fail most), then
    /// without page renders for OCR either (the text layer only). With a description of what
    /// was left out; `None` once there is nothing left to leave out.
    pub(super) fn after_crash(&self, crashes: u32) -> Option<(Plan, String)> {
        let mut request = self.request.clone();
        let mut left_out = Vec::new();
        match crashes {
            1 => {}
            2 if request.ocr != OcrMode::Never => {
                request.ocr = OcrMode::Never;
                left_out.push("page renders for OCR");
            }
            _ => return None,
        }
        if request.extract_images {
            request.extract_images = false;
            left_out.insert(0, "images");
        }
        let what = if left_out.is_empty() {
            "in a new worker".to_string()
        } else {
            format!("in a new worker without {}", left_out.join(" and without "))
        };
        let plan = Plan {
            request,
            shards: self.shards,
            max: self.max,
            fresh: true,
        };
        Some((plan, what))
    }
}

/// Everything the workers reported.
#[derive(Default)]
pub(super) struct Collected {
    pub page_count: u32,
    pub selected: u32,
    pub metadata: Metadata,
    pub open_ms: u64,
    pub warnings: Vec<String>,
    pub pages: Vec<ChildPage>,
    pub workers: Vec<WorkerUse>,
    opened: usize,
    done: usize,
    error: Option<(String, String)>,
}

/// What the workers produced; `complete` is false when one died after some pages. `crashed`
/// is the exit status of a worker killed by a signal (PDFium crashed, or the memory cap), then
/// `collected` may hold no page at all.
pub(super) struct Ran {
    pub collected: Collected,
    pub complete: bool,
    pub crashed: Option<String>,
}

struct Starter<'a> {
    opts: &'a PdfOptions,
    plan: &'a Plan,
    path: &'a Path,
    deadline: Instant,
    cancel: &'a CancellationToken,
}

impl Starter<'_> {
    /// Start shard `k` of `n` on a worker from the pool.
    fn start(&self, workers: &mut Workers, k: u32, n: u32, tx: &Lines) -> Result<()> {
        let mut r = self.plan.request.clone();
        r.shard = (k, n);
        if k > 0 {
            r.split_min_pages = 0;
        }
        let mut line = serde_json::to_vec(&r)?;
        line.push(b'\n');
        let timeout = self.deadline.saturating_duration_since(Instant::now());
        let what = format!("PDF worker on {}", self.path.display());
        let worker = if self.plan.fresh {
            pool::start(self.opts)?
        } else {
            pool::take(self.opts)?
        };
        let (tx, cancel, opts) = (tx.clone(), self.cancel.clone(), self.opts.clone());
        // Finished at its `done` line: the worker then waits in the pool for the next document.
        workers.spawn(
            async move { pool::serve(&opts, worker, line, timeout, &cancel, tx, what).await },
        );
        Ok(())
    }
}

/// Run the plan's workers to the end, feeding rendered pages to `ocr`.
pub(super) async fn run(
    opts: &PdfOptions,
    plan: &Plan,
    req_path: &Path,
    deadline: Instant,
    cancel: &CancellationToken,
    ocr: &mut OcrPages,
    progress: &(impl Fn(Progress) + Send + Sync),
) -> Result<Ran> {
    let starter = Starter {
        opts,
        plan,
        path: req_path,
        deadline,
        cancel,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut workers: Workers = JoinSet::new();
    for k in 0..plan.shards {
        starter.start(&mut workers, k, plan.shards, &tx)?;
    }
    let mut started = plan.shards;
    // Kept while a worker runs: the first may ask for more (see `ChildRequest::split_min_pages`).
    let mut tx = Some(tx);
    let mut c = Collected::default();
    let mut results = Vec::new();
    let mut lines_open = true;
    // Workers read the file through `/proc/<pid>/fd/<n>`; their messages name the user's path.
    let fd_path = plan.request.pdf_path.display().to_string();
    let user_path = serde_json::to_string(&req_path.display().to_string())?;
    let user_path = &user_path[1..user_path.len() - 1];
    while lines_open || !workers.is_empty() {
        // Lines first: a worker's lines are all queued before its task ends, so a request for
        // more workers is seen before the last running worker is reaped.
        let line = tokio::select! {
            biased;
            line = rx.recv(), if lines_open => line,
            r = workers.join_next(), if !workers.is_empty() => {
                results.extend(r);
                if workers.is_empty() {
                    tx = None;
                }
                continue;
            }
        };
        let Some(mut line) = line else {
            lines_open = false;
            continue;
        };
        if line.contains(&fd_path) {
            line = line.replace(&fd_path, user_path);
        }
        let Ok(ev) = serde_json::from_str::<ChildEvent>(&line) else {
            tracing::debug!(line = %line, "non-protocol output from PDF worker");
            continue;
        };
        match ev {
            ChildEvent::Opened(o) => {
                // Every worker reports the same document; the first one sets the totals.
                let first = c.opened == 0;
                c.opened += 1;
                c.page_count = o.page_count;
                c.selected = c.selected.max(o.selected);
                c.metadata = o.metadata;
                c.open_ms = c.open_ms.max(o.open_ms);
                c.warnings.extend(o.warnings);
                // A worker never asks for more than `split_into`; one that does is not trusted
                // (each shard is a process).
                if o.shards > plan.max {
                    return Err(PdfError::Child {
                        detail: format!(
                            "worker asked for {} shards (at most {})",
                            o.shards, plan.max
                        ),
                        stderr: String::new(),
                    });
                }
                if o.shards > started
                    && let Some(tx) = &tx
                {
                    for k in started..o.shards {
                        starter.start(&mut workers, k, o.shards, tx)?;
                    }
                    started = o.shards;
                }
                if first {
                    step(progress, Stage::Pages, 0, c.selected);
                }
            }
            ChildEvent::Page(p) => {
                if let Some(r) = &p.render {
                    ocr.spawn(r.path.clone(), p.number);
                }
                c.pages.push(*p);
                let n = c.pages.len() as u32;
                step(progress, Stage::Pages, n, c.selected.max(n));
            }
            ChildEvent::Ready => {}
            ChildEvent::Done { pid, documents } => {
                c.done += 1;
                c.workers.push(WorkerUse { pid, documents });
            }
            ChildEvent::Error { kind, message, .. } => c.error = Some((kind, message)),
        }
    }
    drop(tx);
    // Workers that ended or were recycled are replaced off this task's path (fork+exec and
    // loading PDFium cost ~2 ms each); clean ones are already back in the pool.
    if pool::missing(opts) > 0 {
        let refill_opts = opts.clone();
        std::thread::spawn(move || pool::refill(&refill_opts));
    }
    settle(opts, req_path, c, results, started)
}

/// Turn the processes' exits into the result: a reported error, a worker that exited before any
/// page (error), one that died after some (partial result, with a warning), or one killed by a
/// signal (`crashed`, with whatever pages came before).
fn settle(
    opts: &PdfOptions,
    path: &Path,
    mut c: Collected,
    results: Vec<std::result::Result<Result<subprocess::Finished>, tokio::task::JoinError>>,
    started: u32,
) -> Result<Ran> {
    let mut finished = Vec::new();
    for r in results {
        match r {
            Ok(Ok(f)) => finished.push(f),
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(PdfError::Child {
                    detail: format!("worker task failed: {e}"),
                    stderr: String::new(),
                });
            }
        }
    }
    let stderr = finished
        .iter()
        .map(|f| f.stderr.as_str())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if let Some((kind, message)) = c.error.take() {
        return Err(child_error(&kind, message, path, opts, stderr));
    }
    let mut complete = true;
    let mut crashed = None;
    if c.done < started as usize {
        let failed = finished.iter().find(|f| !f.status.success());
        let status = failed
            .map(|f| f.status.to_string())
            .unwrap_or_else(|| "no result".into());
        let detail = format!("PDF worker exited with {status}");
        if failed
            .is_some_and(|f| std::os::unix::process::ExitStatusExt::signal(&f.status).is_some())
        {
            crashed = Some(status);
        }
        if c.pages.is_empty() && crashed.is_none() {
            return Err(PdfError::Child { detail, stderr });
        }
        complete = false;
        c.warnings.push(format!(
            "{detail} after {} of {} pages; result is partial",
            c.pages.len(),
            c.selected
        ));
    }
    Ok(Ran {
        collected: c,
        complete,
        crashed,
    })
}
