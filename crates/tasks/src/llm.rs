//! `extract_trading_strategy` and `analyze_chart_image` as tasks. Without an API key for the
//! requested model they fall back to the offline `rules` provider and say so in `warnings`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use hlbot_engine::{Isolation, Registry, TaskContext, TaskError, TaskOptions, Typed, TypedTask};
use hlbot_llm::{ContentType, Provider};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::content;
use crate::settings::TaskSettings;

pub fn register(r: &mut Registry, s: &Arc<TaskSettings>) {
    r.register("extract_trading_strategy", Typed(Extract(s.clone())));
    r.register("analyze_chart_image", Typed(Chart(s.clone())));
}

/// The model to use and, when it had to change, why.
pub fn pick_model(s: &TaskSettings, requested: Option<&str>) -> (String, Option<String>) {
    let model = requested.unwrap_or(&s.default_model).to_string();
    match Provider::ready(&s.llm, &model) {
        Ok(_) => (model, None),
        Err(hlbot_llm::Error::MissingApiKey { provider }) => (
            "rules".into(),
            Some(format!(
                "no API key configured for {provider} (model {model}): used the offline rules extractor instead"
            )),
        ),
        Err(_) => (model, None),
    }
}

fn add_warning(v: &mut Value, w: Option<String>) {
    if let (Some(w), Some(obj)) = (w, v.as_object_mut()) {
        let list = obj.entry("warnings").or_insert_with(|| json!([]));
        if let Some(a) = list.as_array_mut() {
            a.insert(0, json!(w));
        }
    }
}

/// Extract strategies from `content` (text, or a `process_*` result object).
pub async fn extract(
    s: &TaskSettings,
    content: &Value,
    content_type: ContentType,
    model: Option<&str>,
    ctx: &TaskContext,
) -> crate::Result<Value> {
    let (text, kind) = content::from_value(content, content_type);
    let (model, warning) = pick_model(s, model);
    ctx.progress(json!({"stage": "extract", "model": model}));
    let r = hlbot_llm::extract_strategy(&s.llm, &text, kind, &model, &ctx.cancel).await?;
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    add_warning(&mut v, warning);
    Ok(v)
}

/// Read a chart image: opened once beneath an input root, at most `llm.max_image_bytes` read.
pub async fn chart(
    s: &TaskSettings,
    image_path: &std::path::Path,
    model: Option<&str>,
    ctx: &TaskContext,
) -> crate::Result<Value> {
    let input = s.input_roots.open(image_path)?;
    let bytes = input.read_capped(s.llm.max_image_bytes, "llm.max_image_bytes")?;
    let (model, warning) = pick_model(s, model);
    ctx.progress(json!({"stage": "analyze", "model": model}));
    let r = hlbot_llm::analyze_chart_bytes(&s.llm, &input.path, bytes, &model, &ctx.cancel).await?;
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    add_warning(&mut v, warning);
    Ok(v)
}

/// `extract_trading_strategy(content, content_type=None, model=None)`.
#[derive(Debug, Deserialize)]
pub struct ExtractArgs {
    pub content: Value,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

struct Extract(Arc<TaskSettings>);

#[async_trait]
impl TypedTask for Extract {
    type Input = ExtractArgs;

    async fn run(&self, ctx: TaskContext, a: ExtractArgs) -> Result<Value, TaskError> {
        let kind = match a.content_type.as_deref() {
            None => ContentType::Transcript,
            Some(t) => t
                .parse()
                .map_err(|_| crate::Error::BadArguments(format!("unknown content_type {t:?}")))?,
        };
        let r = extract(&self.0, &a.content, kind, a.model.as_deref(), &ctx).await?;
        if let Some(store) = &self.0.library {
            let source = crate::library::source_of(store, &a.content).await;
            crate::library::record_strategies(store, source, &ctx.id, &r).await;
        }
        Ok(r)
    }

    fn options(&self) -> TaskOptions {
        TaskOptions {
            queue: Some("llm".into()),
            // Rules extraction and image decoding are blocking work: in a child process a hard
            // limit or a terminate stops them for sure. Acked after the run (re-run on worker
            // death; the LLM answer cache keeps a re-run from paying twice).
            isolation: Isolation::Process,
            acks_late: Some(true),
            ..Default::default()
        }
    }
}

/// `analyze_chart_image(image_path, model=None)`.
#[derive(Debug, Deserialize)]
pub struct ChartArgs {
    pub image_path: PathBuf,
    #[serde(default)]
    pub model: Option<String>,
}

struct Chart(Arc<TaskSettings>);

#[async_trait]
impl TypedTask for Chart {
    type Input = ChartArgs;

    async fn run(&self, ctx: TaskContext, a: ChartArgs) -> Result<Value, TaskError> {
        let r = chart(&self.0, &a.image_path, a.model.as_deref(), &ctx).await?;
        if let Some(store) = &self.0.library {
            let path = a.image_path.display().to_string();
            crate::library::record_analysis(store, None, &path, &ctx.id, &r).await;
        }
        Ok(r)
    }

    fn options(&self) -> TaskOptions {
        TaskOptions {
            queue: Some("llm".into()),
            // Rules extraction and image decoding are blocking work: in a child process a hard
            // limit or a terminate stops them for sure. Acked after the run (re-run on worker
            // death; the LLM answer cache keeps a re-run from paying twice).
            isolation: Isolation::Process,
            acks_late: Some(true),
            ..Default::default()
        }
    }
}
