//! `process_document`, the parent side of one document, phase by phase: check the file and
//! hash it (`hash_first`, or later while the workers run), serve a cached result (`cached`),
//! plan and run the PDFium workers under the time limit (`workers`) while OCR of the pages they
//! render runs beside them (`ocr_pages`), then merge everything into a `PdfDocument`
//! (`assemble`) and cache it (`store`).

mod assemble;
mod ocr_pages;
mod recovery;
mod workers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cache;
use crate::document::{PdfDocument, Progress, Stage};
use crate::error::{PdfError, Result};
use crate::options::{OcrMode, PdfOptions, PdfRequest, validate_languages};
use crate::source::{check_file, join_hash, spawn_hash};

use ocr_pages::OcrPages;
use workers::Plan;

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The document id (sha256 of the bytes) and how long hashing took: known up front, or still
/// being computed while the workers run.
enum Hash {
    Known(String, u64),
    Pending(JoinHandle<Result<(String, u64)>>),
}

impl Hash {
    fn id(&self) -> Option<&str> {
        match self {
            Hash::Known(id, _) => Some(id),
            Hash::Pending(_) => None,
        }
    }

    async fn join(self) -> Result<(String, u64)> {
        match self {
            Hash::Known(id, ms) => Ok((id, ms)),
            Hash::Pending(h) => join_hash(h).await,
        }
    }
}

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
    step(&progress, Stage::Hashing, 0, 1);
    let (file, size) = check_file(req, opts.max_bytes)?;
    let hash = hash_first(opts, req, &file).await?;
    if let Some(doc) = cached(opts, req, &languages, &hash, t0) {
        let n = doc.pages.len() as u32;
        step(&progress, Stage::Done, n, n);
        return Ok(doc);
    }

    // Page renders for OCR live in a private folder removed when this function returns.
    let render_dir = render_dir(opts, req)?;
    let plan = Plan::new(opts, req, &file, size, hash.id(), render_dir.as_ref());
    step(&progress, Stage::Opening, 0, 1);
    let mut ocr = OcrPages::new(opts, &languages, deadline, &cancel);
    let mut ran = workers::run(
        opts,
        &plan,
        &req.pdf_path,
        deadline,
        &cancel,
        &mut ocr,
        &progress,
    )
    .await?;
    if let Some(status) = ran.crashed.take() {
        let attempt = recovery::Attempt {
            opts,
            plan: &plan,
            path: &req.pdf_path,
            languages: &languages,
            deadline,
            cancel: &cancel,
        };
        (ran, ocr) = attempt.reread(ran, ocr, status, &progress).await?;
    }
    let read = ocr.collect(&req.pdf_path, opts, &progress).await?;

    let (doc_id, hash_ms) = hash.join().await?;
    let complete = ran.complete && read.errors_none;
    let doc = assemble::assemble(
        &doc_id,
        &req.pdf_path,
        req.ocr,
        ran.collected,
        read,
        hash_ms,
        t0,
    );
    store(opts, req, &languages, &doc, complete)?;
    let n = doc.pages.len() as u32;
    step(&progress, Stage::Done, n, n);
    Ok(doc)
}

fn step(progress: &impl Fn(Progress), stage: Stage, done: u32, total: u32) {
    progress(Progress { stage, done, total });
}

/// Hash now when the cache or the image folder needs the id before the workers start;
/// otherwise hash while they work.
async fn hash_first(
    opts: &PdfOptions,
    req: &PdfRequest,
    file: &Arc<std::fs::File>,
) -> Result<Hash> {
    let hashing = spawn_hash(&req.pdf_path, file);
    if opts.use_cache || req.extract_images {
        let (id, ms) = join_hash(hashing).await?;
        Ok(Hash::Known(id, ms))
    } else {
        Ok(Hash::Pending(hashing))
    }
}

/// A stored result for the same bytes and request, if any.
fn cached(
    opts: &PdfOptions,
    req: &PdfRequest,
    languages: &str,
    hash: &Hash,
    t0: Instant,
) -> Option<PdfDocument> {
    let (true, Hash::Known(doc_id, hash_ms)) = (opts.use_cache, hash) else {
        return None;
    };
    let doc_dir = cache::doc_dir(&opts.cache_dir, doc_id);
    let key = cache::request_key(opts, req, languages, doc_id);
    let mut doc = cache::load(&doc_dir.join(format!("result-{key}.json")))?;
    doc.path = req.pdf_path.clone();
    doc.stats.cached = true;
    doc.stats.hash_ms = *hash_ms;
    doc.stats.total_ms = ms(t0.elapsed());
    cache::touch(&doc_dir);
    Some(doc)
}

fn render_dir(opts: &PdfOptions, req: &PdfRequest) -> Result<Option<tempfile::TempDir>> {
    if req.ocr == OcrMode::Never {
        return Ok(None);
    }
    let tmp_root = cache::tmp_dir(&opts.cache_dir);
    std::fs::create_dir_all(&tmp_root).map_err(|e| PdfError::io(&tmp_root, e))?;
    let dir = tempfile::Builder::new()
        .prefix("render-")
        .tempdir_in(&tmp_root)
        .map_err(|e| PdfError::io(&tmp_root, e))?;
    Ok(Some(dir))
}

/// Cache a complete result (a partial one is returned but never reused).
fn store(
    opts: &PdfOptions,
    req: &PdfRequest,
    languages: &str,
    doc: &PdfDocument,
    complete: bool,
) -> Result<()> {
    let doc_dir = cache::doc_dir(&opts.cache_dir, &doc.document_id);
    if complete && opts.use_cache {
        std::fs::create_dir_all(&doc_dir).map_err(|e| PdfError::io(&doc_dir, e))?;
        let key = cache::request_key(opts, req, languages, &doc.document_id);
        cache::store(&doc_dir.join(format!("result-{key}.json")), doc)?;
    }
    cache::touch(&doc_dir);
    Ok(())
}
