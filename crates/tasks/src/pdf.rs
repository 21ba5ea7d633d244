//! `process_pdf_document` and `cleanup_pdf_cache` as tasks.

use std::sync::Arc;

use async_trait::async_trait;
use hlbot_engine::{Registry, TaskContext, TaskError, TaskOptions, Typed, TypedTask};
use hlbot_pdf::PdfRequest;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::settings::TaskSettings;

pub fn register(r: &mut Registry, s: &Arc<TaskSettings>) {
    r.register("process_pdf_document", Typed(ProcessPdf(s.clone())));
    r.register("cleanup_pdf_cache", Typed(CleanupPdf(s.clone())));
}

/// Run the PDF pipeline for one request. The file is opened once beneath an input root and the
/// PDF pipeline (its PDFium workers included) reads only that descriptor.
pub async fn process(
    s: &TaskSettings,
    mut req: PdfRequest,
    ctx: &TaskContext,
) -> crate::Result<Value> {
    let input = s.input_roots.open(&req.pdf_path)?;
    req.file = Some(Arc::new(input.file));
    let progress = |p: hlbot_pdf::Progress| {
        ctx.progress(json!({"stage": format!("{:?}", p.stage).to_lowercase(), "done": p.done, "total": p.total}))
    };
    let doc = hlbot_pdf::process_document(&s.pdf, &req, progress, ctx.cancel.clone()).await?;
    Ok(serde_json::to_value(doc).unwrap_or(Value::Null))
}

/// One document once across workers when a library is set: keyed by the file's SHA-256 and
/// the options that change the result (see [`crate::library::once`]).
pub async fn process_once(
    s: &TaskSettings,
    req: PdfRequest,
    force: bool,
    ctx: &TaskContext,
) -> crate::Result<Value> {
    let Some(store) = s.library.as_ref() else {
        return process(s, req, ctx).await;
    };
    let input = s.input_roots.open(&req.pdf_path)?;
    let key = crate::library::file_sha256(&input.file).ok().map(|sha| {
        let opts = format!(
            "images={};ocr={:?};languages={};pages={}",
            req.extract_images,
            req.ocr,
            req.languages.as_deref().unwrap_or(""),
            serde_json::to_string(&req.pages).unwrap_or_default()
        );
        hlbot_store::library::SourceKey::new("pdf", &sha, &opts)
    });
    crate::library::once(
        Some(store),
        key,
        force,
        || process(s, req, ctx),
        crate::library::pdf_content,
    )
    .await
}

/// `process_pdf_document(pdf_path, extract_images=True, password=None, ocr="auto",
/// languages=None, pages=None, force=False)`: the PDF request plus hlbot's `force`.
#[derive(Debug, Deserialize)]
pub struct PdfArgs {
    pub pdf_path: std::path::PathBuf,
    #[serde(default = "crate::pdf::yes")]
    pub extract_images: bool,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub ocr: hlbot_pdf::OcrMode,
    #[serde(default)]
    pub languages: Option<String>,
    #[serde(default)]
    pub pages: Option<hlbot_pdf::PageSelection>,
    /// Process again even if the library holds this document.
    #[serde(default)]
    pub force: bool,
}

fn yes() -> bool {
    true
}

struct ProcessPdf(Arc<TaskSettings>);

#[async_trait]
impl TypedTask for ProcessPdf {
    type Input = PdfArgs;

    async fn run(&self, ctx: TaskContext, a: PdfArgs) -> Result<Value, TaskError> {
        let mut req = PdfRequest::new(a.pdf_path);
        req.extract_images = a.extract_images;
        req.password = a.password;
        req.ocr = a.ocr;
        req.languages = a.languages;
        req.pages = a.pages;
        Ok(process_once(&self.0, req, a.force, &ctx).await?)
    }

    fn options(&self) -> TaskOptions {
        TaskOptions {
            queue: Some("pdf".into()),
            // PDFium already runs in killable child processes; acked after the run so a
            // worker death re-runs the document instead of losing it.
            acks_late: Some(true),
            ..Default::default()
        }
    }
}

/// `cleanup_pdf_cache(max_age_days=7, max_total_bytes=None)` (and `cleanup_youtube_cache`'s).
#[derive(Debug, Deserialize)]
pub struct CleanupArgs {
    #[serde(default = "seven")]
    pub max_age_days: f64,
    #[serde(default)]
    pub max_total_bytes: Option<u64>,
}

pub(crate) fn seven() -> f64 {
    7.0
}

struct CleanupPdf(Arc<TaskSettings>);

#[async_trait]
impl TypedTask for CleanupPdf {
    type Input = CleanupArgs;

    async fn run(&self, _: TaskContext, a: CleanupArgs) -> Result<Value, TaskError> {
        let report =
            hlbot_pdf::cleanup_cache(&self.0.pdf.cache_dir, a.max_age_days, a.max_total_bytes)
                .map_err(crate::Error::from)?;
        Ok(serde_json::to_value(report).unwrap_or(Value::Null))
    }
}
