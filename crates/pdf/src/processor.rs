//! `process_document`, the parent side of one document: checks and hashes the file (while the
//! worker runs when neither the cache nor images need the hash first), serves a cached result,
//! otherwise runs the PDFium worker under the time limit, OCRs the pages it
//! rendered (in parallel, while it keeps working), merges everything into a `PdfDocument`
//! and caches it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache;
use crate::child::{ChildEvent, ChildPage, ChildRequest, is_done_line};
use crate::document::{Metadata, PdfDocument, PdfPage, Progress, Stage, Stats, TextSource};
use crate::error::{PdfError, Result};
use crate::ocr::{self, OcrJob, OcrText};
use crate::options::{OcrMode, PdfOptions, PdfRequest, validate_languages};
use crate::pool;
use crate::process::{self, Spec};
use crate::source::{check_file, child_path, join_hash, spawn_hash};

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Everything the worker reported.
#[derive(Default)]
struct Collected {
    page_count: u32,
    selected: u32,
    metadata: Metadata,
    open_ms: u64,
    warnings: Vec<String>,
    pages: Vec<ChildPage>,
    opened: usize,
    done: usize,
    error: Option<(String, String)>,
}

type OcrOutcome = (u32, Result<OcrText>);
type Workers = JoinSet<Result<process::Finished>>;
type Lines = tokio::sync::mpsc::UnboundedSender<String>;

/// Processes one PDF: text in reading order, images, OCR where needed. See `PdfDocument`.
///
/// `progress` is called from this future (never from another thread) as stages advance;
/// `cancel` stops the worker and tesseract processes and returns `PdfError::Cancelled`.
pub async fn process_document<F>(
    opts: &PdfOptions,
    req: &PdfRequest,
    progress: F,
    cancel: CancellationToken,
) -> Result<PdfDocument>
where
    F: Fn(Progress) + Send + Sync,
{
    let t0 = Instant::now();
    let deadline = t0 + opts.timeout;
    let languages = req
        .languages
        .clone()
        .unwrap_or_else(|| opts.default_languages.clone());
    validate_languages(&languages)?;
    progress(Progress {
        stage: Stage::Hashing,
        done: 0,
        total: 1,
    });
    let path = req.pdf_path.clone();
    let (file, size) = check_file(req, opts.max_bytes)?;
    // The id (sha256 of the bytes) names the cache entry and the image folder; when neither is
    // needed before the worker runs, the file is hashed while the worker works
    // (`known` is then the hashing still under way).
    let hashing = spawn_hash(&path, &file);
    let known = if opts.use_cache || req.extract_images {
        Ok(join_hash(hashing).await?)
    } else {
        Err(hashing)
    };
    if let (true, Ok((doc_id, hash_ms))) = (opts.use_cache, &known) {
        let doc_dir = cache::doc_dir(&opts.cache_dir, doc_id);
        let key = cache::request_key(opts, req, &languages, doc_id);
        if let Some(mut doc) = cache::load(&doc_dir.join(format!("result-{key}.json"))) {
            doc.path = path;
            doc.stats.cached = true;
            doc.stats.hash_ms = *hash_ms;
            doc.stats.total_ms = ms(t0.elapsed());
            cache::touch(&doc_dir);
            progress(Progress {
                stage: Stage::Done,
                done: doc.pages.len() as u32,
                total: doc.pages.len() as u32,
            });
            return Ok(doc);
        }
    }

    // Page renders for OCR live in a private folder removed when this function returns.
    let render_dir = if req.ocr == OcrMode::Never {
        None
    } else {
        let tmp_root = cache::tmp_dir(&opts.cache_dir);
        std::fs::create_dir_all(&tmp_root).map_err(|e| PdfError::io(&tmp_root, e))?;
        let dir = tempfile::Builder::new()
            .prefix("render-")
            .tempdir_in(&tmp_root)
            .map_err(|e| PdfError::io(&tmp_root, e))?;
        Some(dir)
    };
    // Big documents (and OCR of every page) are split across worker processes, every n-th
    // page each: PDFium is single-threaded per process, the machine has more cores. Smaller
    // ones go to one worker, which asks for the others once it has counted enough pages.
    let workers_max = opts.worker_processes.max(1) as u32;
    let shards = if size >= opts.shard_min_bytes || req.ocr == OcrMode::Always {
        workers_max
    } else {
        1
    };
    let child_req = ChildRequest {
        pdf_path: child_path(&file),
        password: req.password.clone(),
        pages: req.pages.clone(),
        extract_images: req.extract_images,
        // Without image extraction the worker saves nothing, so the folder is never made.
        image_dir: match &known {
            Ok((doc_id, _)) => cache::doc_dir(&opts.cache_dir, doc_id).join("images"),
            Err(_) => cache::tmp_dir(&opts.cache_dir),
        },
        min_image_side: opts.min_image_side,
        ocr: req.ocr,
        render_dir: render_dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_else(|| cache::tmp_dir(&opts.cache_dir)),
        ocr_dpi: opts.ocr_dpi,
        max_render_pixels: opts.max_render_pixels,
        max_render_side: opts.max_render_side,
        shard: (0, shards),
        split_min_pages: if shards == 1 { opts.split_min_pages } else { 0 },
        split_into: workers_max,
        max_pages: opts.max_pages,
    };
    progress(Progress {
        stage: Stage::Opening,
        done: 0,
        total: 1,
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut workers: Workers = JoinSet::new();
    let start = |workers: &mut Workers, k: u32, n: u32, tx: &Lines| -> Result<()> {
        let mut r = child_req.clone();
        r.shard = (k, n);
        if k > 0 {
            r.split_min_pages = 0;
        }
        let spec = Spec {
            program: opts.child_program.clone(),
            args: opts.child_args.iter().map(Into::into).collect(),
            env: vec![],
            stdin: Some(serde_json::to_vec(&r)?),
            timeout: deadline.saturating_duration_since(Instant::now()),
            what: format!("PDF worker on {}", path.display()),
        };
        let child = pool::take(opts)?;
        let (tx, cancel) = (tx.clone(), cancel.clone());
        // Finished at its `done` line: the worker exits by itself right after, and waiting for
        // that (pipes closing, exit status) only delays the document.
        workers.spawn(async move {
            process::drive_until(child, spec, &cancel, Some(tx), is_done_line).await
        });
        Ok(())
    };
    for k in 0..shards {
        start(&mut workers, k, shards, &tx)?;
    }
    let mut started = shards;
    // Kept while a worker runs: the first may ask for more (see `ChildRequest::split_min_pages`).
    let mut tx = Some(tx);
    // Start the next document's workers off this task's path (fork+exec costs ~1 ms each).
    let refill_opts = opts.clone();
    std::thread::spawn(move || pool::refill(&refill_opts));
    let sem = Arc::new(Semaphore::new(opts.ocr_workers.max(1)));
    let mut ocr_tasks: JoinSet<OcrOutcome> = JoinSet::new();
    let mut ocr_started: Option<Instant> = None;
    let mut c = Collected::default();
    let mut results = Vec::new();
    let mut lines_open = true;
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
        let Some(line) = line else {
            lines_open = false;
            continue;
        };
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
                if o.shards > workers_max {
                    return Err(PdfError::Child {
                        detail: format!(
                            "worker asked for {} shards (at most {workers_max})",
                            o.shards
                        ),
                        stderr: String::new(),
                    });
                }
                if o.shards > started
                    && let Some(tx) = &tx
                {
                    for k in started..o.shards {
                        start(&mut workers, k, o.shards, tx)?;
                    }
                    started = o.shards;
                }
                if first {
                    progress(Progress {
                        stage: Stage::Pages,
                        done: 0,
                        total: c.selected,
                    });
                }
            }
            ChildEvent::Page(p) => {
                if let Some(r) = &p.render {
                    ocr_started.get_or_insert_with(Instant::now);
                    let job = OwnedJob {
                        tesseract: opts.tesseract.clone(),
                        image: r.path.clone(),
                        languages: languages.clone(),
                        dpi: r.dpi,
                        page: p.number,
                        timeout: opts
                            .ocr_page_timeout
                            .min(deadline.saturating_duration_since(Instant::now())),
                    };
                    let (sem, cancel) = (sem.clone(), cancel.clone());
                    ocr_tasks.spawn(async move {
                        let Ok(_permit) = sem.acquire_owned().await else {
                            return (job.page, Err(PdfError::Cancelled));
                        };
                        let res = ocr::recognise(job.borrow(), &cancel).await;
                        let _ = std::fs::remove_file(&job.image);
                        (job.page, res)
                    });
                }
                c.pages.push(*p);
                progress(Progress {
                    stage: Stage::Pages,
                    done: c.pages.len() as u32,
                    total: c.selected.max(c.pages.len() as u32),
                });
            }
            ChildEvent::Ready => {}
            ChildEvent::Done => c.done += 1,
            ChildEvent::Error { kind, message } => c.error = Some((kind, message)),
        }
    }
    drop(tx);
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
        return Err(child_error(&kind, message, &path, opts, stderr));
    }
    let mut complete = true;
    if c.done < started as usize {
        let status = finished
            .iter()
            .find(|f| !f.status.success())
            .map(|f| f.status.to_string())
            .unwrap_or_else(|| "no result".into());
        let detail = format!("PDF worker exited with {status}");
        if c.pages.is_empty() {
            return Err(PdfError::Child { detail, stderr });
        }
        complete = false;
        c.warnings.push(format!(
            "{detail} after {} of {} pages; result is partial",
            c.pages.len(),
            c.selected
        ));
    }

    // OCR results, as they finish.
    let ocr_total = ocr_tasks.len() as u32;
    let mut ocr_results: HashMap<u32, OcrText> = HashMap::new();
    let mut ocr_errors: Vec<PdfError> = Vec::new();
    while !ocr_tasks.is_empty() {
        progress(Progress {
            stage: Stage::Ocr,
            done: ocr_total - ocr_tasks.len() as u32,
            total: ocr_total,
        });
        let next = tokio::select! {
            r = ocr_tasks.join_next() => r,
            _ = cancel.cancelled() => return Err(PdfError::Cancelled),
            _ = tokio::time::sleep_until(deadline.into()) => return Err(PdfError::Timeout {
                what: format!("processing {}", path.display()),
                seconds: opts.timeout.as_secs_f64(),
            }),
        };
        match next {
            Some(Ok((page, Ok(text)))) => {
                ocr_results.insert(page, text);
            }
            Some(Ok((_, Err(e @ PdfError::ToolMissing { .. })))) => return Err(e),
            Some(Ok((_, Err(PdfError::Cancelled)))) => return Err(PdfError::Cancelled),
            Some(Ok((_, Err(e)))) => ocr_errors.push(e),
            Some(Err(e)) => ocr_errors.push(PdfError::Child {
                detail: format!("OCR task failed: {e}"),
                stderr: String::new(),
            }),
            None => break,
        }
    }
    let ocr_ms = ocr_started.map(|t| ms(t.elapsed())).unwrap_or(0);
    if !ocr_errors.is_empty() {
        complete = false;
    }
    c.warnings.extend(
        ocr_errors
            .iter()
            .map(|e| format!("{e}; page keeps its text layer")),
    );

    let (doc_id, hash_ms) = match known {
        Ok(k) => k,
        Err(hashing) => join_hash(hashing).await?,
    };
    let doc = assemble(&doc_id, &path, req.ocr, c, ocr_results, hash_ms, ocr_ms, t0);
    let doc_dir = cache::doc_dir(&opts.cache_dir, &doc_id);
    if complete && opts.use_cache {
        std::fs::create_dir_all(&doc_dir).map_err(|e| PdfError::io(&doc_dir, e))?;
        let key = cache::request_key(opts, req, &languages, &doc_id);
        cache::store(&doc_dir.join(format!("result-{key}.json")), &doc)?;
    }
    cache::touch(&doc_dir);
    progress(Progress {
        stage: Stage::Done,
        done: doc.pages.len() as u32,
        total: doc.pages.len() as u32,
    });
    Ok(doc)
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

fn child_error(
    kind: &str,
    message: String,
    path: &Path,
    opts: &PdfOptions,
    stderr: String,
) -> PdfError {
    let path = path.to_path_buf();
    match kind {
        "password_required" => PdfError::PasswordRequired(path),
        "wrong_password" => PdfError::WrongPassword(path),
        "damaged" => PdfError::Damaged {
            path,
            detail: message,
        },
        "engine_missing" => PdfError::EngineMissing {
            path: opts.pdfium_lib.clone(),
            detail: message,
        },
        "invalid_request" => PdfError::InvalidRequest(message),
        "not_found" => PdfError::NotFound(path),
        "too_large" => PdfError::TooLarge(message),
        _ => PdfError::Child {
            detail: message,
            stderr,
        },
    }
}

fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    doc_id: &str,
    path: &Path,
    mode: OcrMode,
    c: Collected,
    mut ocr: HashMap<u32, OcrText>,
    hash_ms: u64,
    ocr_ms: u64,
    t0: Instant,
) -> PdfDocument {
    let mut warnings = c.warnings;
    let mut stats = Stats {
        hash_ms,
        open_ms: c.open_ms,
        ocr_ms,
        ..Stats::default()
    };
    let mut images_seen = std::collections::HashSet::new();
    let mut pages = Vec::with_capacity(c.pages.len());
    let mut ordered = c.pages;
    ordered.sort_by_key(|p| p.number);
    for p in ordered {
        stats.text_ms += p.text_ms;
        stats.images_ms += p.images_ms;
        stats.render_ms += p.render_ms;
        stats.pages_processed += 1;
        warnings.extend(p.warnings);
        for img in &p.images {
            images_seen.insert(img.path.clone());
        }
        let mut text = p.text;
        let mut source = TextSource::Text;
        let mut confidence = None;
        if let Some(o) = ocr.remove(&p.number) {
            stats.pages_ocr += 1;
            confidence = o.confidence;
            let layer_unusable = word_count(&text) == 0
                || p.ocr_reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("garbage"));
            if layer_unusable {
                text = o.text;
                source = TextSource::Ocr;
            } else {
                source = TextSource::Mixed;
                if word_count(&o.text) > word_count(&text) {
                    text = o.text;
                }
            }
        } else if let Some(reason) = &p.ocr_reason
            && mode == OcrMode::Never
        {
            warnings.push(format!(
                "page {}: {reason}; OCR is off (ocr=\"never\")",
                p.number
            ));
        }
        pages.push(PdfPage {
            number: p.number,
            text,
            source,
            ocr_confidence: confidence,
            ocr_reason: p.ocr_reason,
            width: p.width,
            height: p.height,
            rotation: p.rotation,
            images: p.images,
        });
    }
    stats.images_saved = images_seen.len() as u32;
    let text = pages
        .iter()
        .map(|p| p.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    stats.total_ms = ms(t0.elapsed());
    PdfDocument {
        document_id: doc_id.to_string(),
        path: path.to_path_buf(),
        page_count: c.page_count,
        metadata: c.metadata,
        text,
        pages,
        warnings,
        stats,
    }
}
