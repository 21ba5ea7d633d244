//! `extract_strategy`: content → prepared text → chunks → concurrent validated calls (bounded)
//! → merged `StrategyResult`. A chunk whose answer hits max_tokens is split in two and retried
//! as two smaller requests (at most twice deep) instead of being re-sent unchanged.

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::budget::Budget;
use crate::chunk::chunk_text;
use crate::client::{Call, Client, wire_schema};
use crate::content::{ContentType, prepare};
use crate::error::{Error, Result};
use crate::options::LlmOptions;
use crate::prompt;
use crate::provider::Provider;
use crate::request::{CacheParts, structured};
use crate::rules;
use crate::strategy::{
    STRATEGY_SCHEMA_JSON, STRATEGY_SCHEMA_VERSION, Strategy, StrategyList, StrategyResult,
    merge_strategies, validate_strategies,
};
use crate::usage::Usage;

/// Extracts every trading strategy in `content` with `model` (`claude-*`, `openai:M`,
/// `ollama:M`, `rules`). Long content is chunked; results are merged with evidence kept.
pub async fn extract_strategy(
    opts: &LlmOptions,
    content: &str,
    content_type: ContentType,
    model: &str,
    cancel: &CancellationToken,
) -> Result<StrategyResult> {
    let provider = Provider::resolve(opts, model)?;
    let chars = content.chars().count();
    if opts.max_content_chars > 0 && chars > opts.max_content_chars {
        return Err(Error::TooLarge(format!(
            "the content has {chars} characters; the limit is {} (llm.max_content_chars)",
            opts.max_content_chars
        )));
    }
    let text = prepare(content, content_type);
    if provider == Provider::Rules {
        // CPU work (a long transcript takes a while): off the async threads, so a worker's
        // single event-loop thread keeps serving while it runs.
        let strategies = match tokio::task::spawn_blocking(move || rules::extract(&text)).await {
            Ok(s) => s,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                return Err(Error::Config(format!(
                    "rules extraction did not finish: {e}"
                )));
            }
        };
        return Ok(StrategyResult {
            schema_version: STRATEGY_SCHEMA_VERSION.into(),
            provider: "rules".into(),
            model: "rules".into(),
            label: Some(rules::RULES_LABEL.into()),
            strategies,
            usage: Usage::default(),
            cost_usd: Some(0.0),
            chunks: 1,
            warnings: vec![],
            partial: false,
        });
    }
    let client = Client::new(opts, &provider)?;
    if text.trim().is_empty() {
        // Nothing to bill for: answer locally.
        return Ok(StrategyResult {
            schema_version: STRATEGY_SCHEMA_VERSION.into(),
            provider: provider.name().to_string(),
            model: provider.model_id().to_string(),
            label: None,
            strategies: vec![],
            usage: Usage::default(),
            cost_usd: Some(0.0),
            chunks: 0,
            warnings: vec!["empty content: no model call made".into()],
            partial: false,
        });
    }
    let schema = wire_schema(STRATEGY_SCHEMA_JSON);
    let chunks = chunk_text(&text, opts.chunk_tokens, opts.chunk_overlap_tokens);
    let n = chunks.len();
    if opts.max_chunks > 0 && n > opts.max_chunks {
        return Err(Error::TooLarge(format!(
            "the content needs {n} chunks; the limit is {} (llm.max_chunks)",
            opts.max_chunks
        )));
    }
    tracing::info!(
        provider = provider.name(),
        model = provider.model_id(),
        chunks = n,
        "extracting strategies"
    );
    let job = Job {
        opts,
        client: &client,
        schema: &schema,
        content_type,
        parts: n,
        budget: Budget::new(opts),
        cancel,
    };
    // Owned chunks: a closure over borrowed items makes the future's Send-ness depend on a
    // higher-ranked lifetime the compiler can't prove inside `async_trait` callers.
    let results: Vec<ChunkOutcome> = futures::stream::iter(chunks.into_iter().enumerate())
        .map(|(i, c)| job.chunk(i + 1, c, 0))
        .buffered(opts.max_concurrency.max(1))
        .collect()
        .await;
    let mut usage = Usage::default();
    let mut warnings = Vec::new();
    let mut lists = Vec::with_capacity(n);
    let mut first_err = None;
    let mut over_budget = None;
    for r in results {
        usage.add(r.usage);
        warnings.extend(r.warnings);
        match r.strategies {
            Ok(s) => lists.push(s),
            Err(Error::BudgetExceeded(why)) => {
                over_budget.get_or_insert(why);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    // Partial results are not returned for failures: a missing chunk would silently drop
    // strategies. The answers that did succeed are cached, so a retry of the task pays only for
    // the rest. The cost budget is different: the run stops by design, with what it has, and
    // says so (`partial`).
    if let Some(e) = first_err {
        return Err(e);
    }
    let partial = over_budget.is_some();
    if let Some(why) = over_budget {
        if lists.is_empty() {
            return Err(Error::BudgetExceeded(why));
        }
        warnings.push(format!(
            "stopped by the cost budget after {} of {n} chunks: {why}",
            lists.len()
        ));
    }
    let model_id = provider.model_id().to_string();
    let cost_usd = opts.cost_usd(
        &[model_id.as_str(), model],
        usage.input_tokens,
        usage.output_tokens,
    );
    if cost_usd.is_none() {
        warnings.push(format!(
            "no price configured for {model_id}; cost_usd unknown"
        ));
    }
    Ok(StrategyResult {
        schema_version: STRATEGY_SCHEMA_VERSION.into(),
        provider: provider.name().to_string(),
        model: model_id,
        label: None,
        strategies: merge_strategies(lists),
        usage,
        cost_usd,
        chunks: n,
        warnings,
        partial,
    })
}

struct Job<'a> {
    opts: &'a LlmOptions,
    client: &'a Client,
    schema: &'a serde_json::Value,
    content_type: ContentType,
    parts: usize,
    budget: Budget<'a>,
    cancel: &'a CancellationToken,
}

struct ChunkOutcome {
    strategies: Result<Vec<Strategy>>,
    usage: Usage,
    warnings: Vec<String>,
}

impl Job<'_> {
    fn chunk(
        &self,
        part: usize,
        text: String,
        depth: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ChunkOutcome> + Send + '_>> {
        Box::pin(async move {
            let user =
                prompt::strategy_user(&self.content_type.to_string(), part, self.parts, &text);
            let call = Call {
                system: prompt::STRATEGY_SYSTEM,
                text: &user,
                image: None,
                tool_name: prompt::STRATEGY_TOOL,
                tool_description: prompt::STRATEGY_TOOL_DESCRIPTION,
                schema: self.schema,
                max_tokens: self.opts.max_tokens,
                repair: None,
            };
            let parts = CacheParts {
                schema_version: STRATEGY_SCHEMA_VERSION,
                content: user.as_bytes(),
            };
            let (res, usage): (Result<StrategyList>, Usage) = structured(
                self.opts,
                self.client,
                call,
                parts,
                validate_strategies,
                &self.budget,
                self.cancel,
            )
            .await;
            match res {
                Ok(list) => {
                    tracing::info!(
                        part,
                        parts = self.parts,
                        found = list.strategies.len(),
                        "chunk done"
                    );
                    ChunkOutcome {
                        strategies: Ok(list.strategies),
                        usage,
                        warnings: vec![],
                    }
                }
                Err(Error::Truncated {
                    provider,
                    max_tokens,
                }) => {
                    let Some((a, b)) = split_half(&text).filter(|_| depth < 2) else {
                        return ChunkOutcome {
                            strategies: Err(Error::Truncated {
                                provider,
                                max_tokens,
                            }),
                            usage,
                            warnings: vec![],
                        };
                    };
                    tracing::info!(
                        part,
                        depth,
                        "answer truncated at max_tokens; splitting the chunk"
                    );
                    let mut warnings = vec![format!(
                        "part {part}: answer hit max_tokens ({max_tokens}); re-extracted as two halves"
                    )];
                    let ra = self.chunk(part, a, depth + 1).await;
                    let rb = self.chunk(part, b, depth + 1).await;
                    let mut total = usage;
                    total.add(ra.usage);
                    total.add(rb.usage);
                    warnings.extend(ra.warnings);
                    warnings.extend(rb.warnings);
                    let strategies = match (ra.strategies, rb.strategies) {
                        (Ok(x), Ok(y)) => Ok(merge_strategies(vec![x, y])),
                        (Err(e), _) | (_, Err(e)) => Err(e),
                    };
                    ChunkOutcome {
                        strategies,
                        usage: total,
                        warnings,
                    }
                }
                Err(e) => ChunkOutcome {
                    strategies: Err(e),
                    usage,
                    warnings: vec![],
                },
            }
        })
    }
}

/// Splits at the line boundary nearest the middle; `None` for a single line.
fn split_half(text: &str) -> Option<(String, String)> {
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid += 1;
    }
    let cut = text[..mid]
        .rfind('\n')
        .or_else(|| text[mid..].find('\n').map(|i| mid + i))?;
    let (a, b) = (text[..cut].trim_end(), text[cut + 1..].trim_start());
    if a.is_empty() || b.is_empty() {
        return None;
    }
    // Keep the page context for the second half.
    let page = a.lines().rev().find_map(crate::content::page_marker);
    let b = match page {
        Some(p) if crate::content::page_marker(b.lines().next().unwrap_or("")).is_none() => {
            format!("[page {p}]\n{b}")
        }
        _ => b.to_string(),
    };
    Some((a.to_string(), b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves() {
        assert_eq!(split_half("one line"), None);
        let (a, b) = split_half("[page 2]\nl1\nl2\nl3\nl4").unwrap();
        assert!(a.starts_with("[page 2]"));
        assert!(b.starts_with("[page 2]\n"));
        for t in [
            "ééé\nééé",
            "€\n€\n€",
            "a\n\u{1F600}\u{1F600}\u{1F600}\u{1F600}",
        ] {
            let _ = split_half(t);
        }
    }
}
