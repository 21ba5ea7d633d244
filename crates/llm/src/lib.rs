//! Typed LLM clients (Anthropic, OpenAI-compatible, offline rules) and the trading-strategy and
//! chart schemas. Knows nothing about queues: the `tasks` crate wraps these functions as tasks.
//!
//! Entry points: [`extract_strategy`] and [`analyze_chart`], configured by [`LlmOptions`].

mod analysis;
mod anthropic;
mod cache;
mod chart;
mod chunk;
mod client;
mod content;
mod error;
mod extraction;
mod http;
mod image;
mod lexicon;
mod openai;
mod options;
mod process;
mod prompt;
mod provider;
mod reader;
mod request;
mod rules;
mod secret;
mod strategy;
mod usage;

pub use analysis::analyze_chart;
pub use cache::{DiskCache, NoCache, ResponseCache, cache_key};
pub use chart::{
    CHART_SCHEMA_JSON, CHART_SCHEMA_VERSION, ChartAnalysis, ChartIndicator, ChartResult, ImageInfo,
    TradeIdea, validate_chart,
};
pub use chunk::{chunk_text, estimate_tokens};
pub use content::{ContentType, looks_like_captions, prepare};
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
