//! `analyze_chart`: image → downscaled base64 block → validated chart reading, or the offline
//! `rules` reader (dimensions + OCR). Input-root checks on `image_path` belong to the caller.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::budget::Budget;
use crate::chart::{
    CHART_SCHEMA_JSON, CHART_SCHEMA_VERSION, ChartAnalysis, ChartResult, validate_chart,
};
use crate::client::{Call, Client, wire_schema};
use crate::error::Result;
use crate::image::{load_for_provider, read_capped, too_big};
use crate::options::LlmOptions;
use crate::prompt;
use crate::provider::Provider;
use crate::reader;
use crate::request::{CacheParts, structured};

/// Reads a chart screenshot (PNG, JPEG, WebP, GIF) with `model`.
pub async fn analyze_chart(
    opts: &LlmOptions,
    image_path: &Path,
    model: &str,
    cancel: &CancellationToken,
) -> Result<ChartResult> {
    Provider::resolve(opts, model)?;
    let bytes = read_capped(image_path, opts.max_image_bytes).await?;
    analyze_chart_bytes(opts, image_path, bytes, model, cancel).await
}

/// [`analyze_chart`] on bytes the caller already read (`name` is for messages only), e.g. from
/// a file it opened beneath an input root.
pub async fn analyze_chart_bytes(
    opts: &LlmOptions,
    name: &Path,
    bytes: Vec<u8>,
    model: &str,
    cancel: &CancellationToken,
) -> Result<ChartResult> {
    let provider = Provider::resolve(opts, model)?;
    if opts.max_image_bytes > 0 && bytes.len() as u64 > opts.max_image_bytes {
        return Err(too_big(name, bytes.len() as u64, opts.max_image_bytes));
    }
    if provider == Provider::Rules {
        return reader::read_chart(opts, name, bytes, cancel).await;
    }
    let client = Client::new(opts, &provider)?;
    let image = load_for_provider(name, bytes, opts).await?;
    let schema = wire_schema(CHART_SCHEMA_JSON);
    let call = Call {
        system: prompt::CHART_SYSTEM,
        text: prompt::CHART_USER,
        image: Some(&image),
        tool_name: prompt::CHART_TOOL,
        tool_description: prompt::CHART_TOOL_DESCRIPTION,
        schema: &schema,
        max_tokens: opts.max_tokens,
        repair: None,
    };
    let mut content = image.sent.clone();
    content.extend_from_slice(prompt::CHART_USER.as_bytes());
    let parts = CacheParts {
        schema_version: CHART_SCHEMA_VERSION,
        content: &content,
    };
    tracing::info!(
        provider = provider.name(),
        model = provider.model_id(),
        "analyzing chart"
    );
    let (res, usage) = structured::<ChartAnalysis>(
        opts,
        &client,
        call,
        parts,
        validate_chart,
        &Budget::new(opts),
        cancel,
    )
    .await;
    let analysis = res?;
    let model_id = provider.model_id().to_string();
    let cost_usd = opts.cost_usd(
        &[model_id.as_str(), model],
        usage.input_tokens,
        usage.output_tokens,
    );
    let mut warnings = Vec::new();
    if cost_usd.is_none() {
        warnings.push(format!(
            "no price configured for {model_id}; cost_usd unknown"
        ));
    }
    if (image.info.sent_width, image.info.sent_height) != (image.info.width, image.info.height) {
        warnings.push(format!(
            "image downscaled from {}x{} to {}x{}",
            image.info.width, image.info.height, image.info.sent_width, image.info.sent_height
        ));
    }
    Ok(ChartResult {
        schema_version: CHART_SCHEMA_VERSION.into(),
        provider: provider.name().to_string(),
        model: model_id,
        label: None,
        analysis,
        image: image.info,
        ocr_text: None,
        usage,
        cost_usd,
        warnings,
    })
}
