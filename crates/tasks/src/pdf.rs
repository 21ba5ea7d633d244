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

struct ProcessPdf(Arc<TaskSettings>);

#[async_trait]
impl TypedTask for ProcessPdf {
    type Input = PdfRequest;

    async fn run(&self, ctx: TaskContext, req: PdfRequest) -> Result<Value, TaskError> {
        Ok(process(&self.0, req, &ctx).await?)
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
