//! One validated structured request: cache lookup, the call, validation, one repair attempt
//! for invalid output, truncation reported as such, cache store. Usage is returned even when
//! the request fails so cost stays honest.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::budget::Budget;
use crate::cache::cache_key;
use crate::client::{Call, Client, Stop};
use crate::error::{Error, Result};
use crate::options::LlmOptions;
use crate::usage::Usage;

/// What identifies an answer in the cache besides the provider and model.
pub(crate) struct CacheParts<'a> {
    pub schema_version: &'a str,
    /// Bytes hashed as "content" (user text, or image bytes + text).
    pub content: &'a [u8],
}

/// Runs `call` and validates its answer with `validate`.
pub(crate) async fn structured<T: Serialize + DeserializeOwned>(
    opts: &LlmOptions,
    client: &Client,
    call: Call<'_>,
    parts: CacheParts<'_>,
    validate: fn(&Value) -> Result<T, String>,
    budget: &Budget<'_>,
    cancel: &CancellationToken,
) -> (Result<T>, Usage) {
    let prompt = format!(
        "{}\n{}\n{}",
        call.system, call.tool_name, call.tool_description
    );
    let key = cache_key(
        client.provider(),
        client.model_id(),
        &prompt,
        parts.schema_version,
        parts.content,
    );
    match opts.cache.get(&key).await {
        Ok(Some(text)) => match serde_json::from_str::<T>(&text) {
            Ok(v) => {
                tracing::debug!(provider = client.provider(), "response cache hit");
                return (
                    Ok(v),
                    Usage {
                        cache_hits: 1,
                        ..Usage::default()
                    },
                );
            }
            Err(e) => tracing::warn!("ignoring unreadable cache entry: {e}"),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!("response cache unavailable: {e}"),
    }
    let mut usage = Usage::default();
    let provider = client.provider().to_string();
    let max_tokens = call.max_tokens;
    let first = match billed(opts, client, &call, budget, cancel).await {
        Ok(a) => a,
        Err(e) => return (Err(e), usage),
    };
    usage.add(first.usage);
    if let Err(e) = stop_error(&provider, &first.stop, max_tokens) {
        return (Err(e), usage);
    }
    let problem = match first.output.clone().and_then(|v| validate(&v)) {
        Ok(v) => {
            store(opts, &key, &v).await;
            return (Ok(v), usage);
        }
        Err(p) => p,
    };
    tracing::info!(provider = %provider, "invalid answer, one repair attempt: {problem}");
    let repair = Call {
        repair: Some((&first.raw, &problem)),
        ..call
    };
    let second = match billed(opts, client, &repair, budget, cancel).await {
        Ok(a) => a,
        Err(e) => return (Err(e), usage),
    };
    usage.add(second.usage);
    if let Err(e) = stop_error(&provider, &second.stop, max_tokens) {
        return (Err(e), usage);
    }
    match second.output.and_then(|v| validate(&v)) {
        Ok(v) => {
            store(opts, &key, &v).await;
            (Ok(v), usage)
        }
        Err(p) => (
            Err(Error::InvalidOutput {
                provider,
                message: format!("still invalid after one repair attempt: {p}"),
            }),
            usage,
        ),
    }
}

/// One call under the budget: estimated and reserved first, the actual cost booked after.
async fn billed(
    opts: &LlmOptions,
    client: &Client,
    call: &Call<'_>,
    budget: &Budget<'_>,
    cancel: &CancellationToken,
) -> Result<crate::client::Answer> {
    let reserved = budget.reserve(estimate_cost(opts, client, call)).await?;
    let answer = client.complete(call, cancel).await;
    let actual = answer.as_ref().ok().and_then(|a| {
        opts.cost_usd(
            &[client.model_id()],
            a.usage.input_tokens,
            a.usage.output_tokens,
        )
    });
    budget.settle(reserved, actual).await;
    answer
}

/// The most a call can cost: its prompt (≈ 4 characters a token, ~1 600 tokens for an image)
/// plus a full `max_tokens` answer. `None` for a model without a price.
pub(crate) fn estimate_cost(opts: &LlmOptions, client: &Client, call: &Call<'_>) -> Option<f64> {
    let tokens = |s: &str| crate::chunk::estimate_tokens(s) as u64;
    let mut input = tokens(call.system) + tokens(call.text) + tokens(call.tool_description);
    input += (call.schema.to_string().len() as u64).div_ceil(4);
    if call.image.is_some() {
        input += 1_600;
    }
    if let Some((raw, problem)) = call.repair {
        input += tokens(raw) + tokens(problem);
    }
    opts.cost_usd(&[client.model_id()], input, u64::from(call.max_tokens))
}

fn stop_error(provider: &str, stop: &Stop, max_tokens: u32) -> Result<()> {
    match stop {
        Stop::Done => Ok(()),
        Stop::MaxTokens => Err(Error::Truncated {
            provider: provider.to_string(),
            max_tokens,
        }),
        Stop::Other(reason) => Err(Error::InvalidOutput {
            provider: provider.to_string(),
            message: format!("the model stopped with {reason:?}"),
        }),
    }
}

async fn store<T: Serialize>(opts: &LlmOptions, key: &str, v: &T) {
    let Ok(text) = serde_json::to_string(v) else {
        return;
    };
    if let Err(e) = opts.cache.put(key, &text).await {
        tracing::warn!("response cache write failed: {e}");
    }
}
