//! Typed LLM clients (Anthropic, OpenAI-compatible, offline rules) and the trading-strategy and
//! chart schemas. Knows nothing about queues: the `tasks` crate wraps these functions as tasks,
//! checks input roots and decides what a failure means for the task (see [`Error::retryable`]).
//!
//! ```
//! # async fn demo() -> hlbot_llm::Result<()> {
//! use hlbot_llm::{ContentType, LlmOptions, extract_strategy};
//! let opts = LlmOptions::default(); // the CLI fills keys, URLs, prices, cache
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let text = "[00:01:05] Buy EUR/USD when RSI 14 drops below 30 on the 1 hour chart.";
//! let r = extract_strategy(&opts, text, ContentType::Transcript, "rules", &cancel).await?;
//! println!("{}", serde_json::to_string_pretty(&r).unwrap());
//! # Ok(()) }
//! ```
//!
//! The model string picks the provider: `claude-*` (Anthropic Messages API, aliases from
//! [`AnthropicOptions::aliases`]), `openai:MODEL` / `ollama:MODEL` / any prefix configured in
//! [`LlmOptions::openai`] (chat completions), or `rules` (offline, deterministic, labelled).
//! Schemas: `schema/strategy.v1.json`, `schema/chart.v1.json`; guide: `docs/llm.md`.
mod analysis;
mod anthropic;
mod budget;
mod cache;
mod chart;
mod chunk;
mod client;
mod content;
mod credentials;
mod detector;
mod error;
mod extraction;
mod http;
mod image;
mod lexicon;
mod name;
mod openai;
mod options;
mod pattern;
mod process;
mod prompt;
mod provider;
mod reader;
mod request;
mod rule_kind;
mod rules;
mod secret;
mod sentence;
mod strategy;
mod usage;

pub use analysis::{analyze_chart, analyze_chart_bytes};
pub use budget::SpendLedger;
pub use cache::{DiskCache, NoCache, ResponseCache, cache_key};
pub use chart::{
    CHART_SCHEMA_JSON, CHART_SCHEMA_VERSION, ChartAnalysis, ChartIndicator, ChartResult, ImageInfo,
    TradeIdea, validate_chart,
};
pub use chunk::{chunk_text, estimate_tokens};
pub use content::{ContentType, looks_like_captions, prepare};
pub use credentials::check_credentials;
pub use detector::{ChartFeatures, ChartLook, chart_look, chart_look_bytes};
pub use error::{Error, Result};
pub use extraction::extract_strategy;
pub use image::{EncodedImage, load_for_provider};
pub use options::{AnthropicOptions, LlmOptions, OpenAiOptions, Price, default_prices};
pub use provider::{OpenAiEndpoint, Provider};
pub use reader::CHART_RULES_LABEL;
pub use rules::RULES_LABEL;
pub use secret::Secret;
pub use strategy::{
    Evidence, Indicator, KeyLevel, STRATEGY_SCHEMA_JSON, STRATEGY_SCHEMA_VERSION, Strategy,
    StrategyList, StrategyResult, merge_strategies, validate_strategies,
};
pub use usage::Usage;
