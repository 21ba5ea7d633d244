//! `LlmOptions`: everything the library needs, built once by the CLI (the library reads no
//! environment variables). Defaults are safe offline values plus public endpoints and prices.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::SpendLedger;
use crate::cache::{NoCache, ResponseCache};
use crate::secret::Secret;

/// Anthropic Messages API settings.
#[derive(Clone, Debug)]
pub struct AnthropicOptions {
    /// `ANTHROPIC_API_KEY`; `None` makes `claude-*` models fail with `MissingApiKey`.
    pub api_key: Option<Secret>,
    /// Base URL without `/v1` (`ANTHROPIC_BASE_URL`), default `https://api.anthropic.com`.
    pub base_url: String,
    /// The `anthropic-version` header.
    pub version: String,
    /// Short names to full model ids (`claude-sonnet-4` → `claude-sonnet-4-20250514`).
    pub aliases: BTreeMap<String, String>,
}

impl Default for AnthropicOptions {
    fn default() -> Self {
        let aliases = [
            ("claude-sonnet-4", "claude-sonnet-4-20250514"),
            ("claude-opus-4", "claude-opus-4-20250514"),
            ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
            ("claude-haiku-4-5", "claude-haiku-4-5-20251001"),
            ("claude-3-5-haiku", "claude-3-5-haiku-20241022"),
        ];
        AnthropicOptions {
            api_key: None,
            base_url: "https://api.anthropic.com".into(),
            version: "2023-06-01".into(),
            aliases: aliases
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }
}

/// One OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, llama.cpp server, OpenRouter).
#[derive(Clone, Debug)]
pub struct OpenAiOptions {
    /// Base URL including `/v1`; `chat/completions` is appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; `None` for local servers that need none.
    pub api_key: Option<Secret>,
}

/// Price per million tokens, in USD.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// All knobs of the crate. `Default` gives public endpoints, no keys, no cache.
#[derive(Clone)]
pub struct LlmOptions {
    pub anthropic: AnthropicOptions,
    /// OpenAI-compatible endpoints by model prefix: `openai` for `openai:MODEL`, `ollama` for
    /// `ollama:MODEL`; any other prefix added here works the same way.
    pub openai: BTreeMap<String, OpenAiOptions>,
    /// Prices by model id (full id or alias; for `openai:gpt-4o` the key is `gpt-4o`).
    pub prices: BTreeMap<String, Price>,
    /// Chunk calls in flight at once for one long input.
    pub max_concurrency: usize,
    /// Target size of one chunk, in estimated tokens.
    pub chunk_tokens: usize,
    /// Tokens repeated from the end of one chunk at the start of the next.
    pub chunk_overlap_tokens: usize,
    /// `max_tokens` for one answer.
    pub max_tokens: u32,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Total time one call may spend waiting and retrying (429/529/5xx/network).
    pub retry_budget: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Longest image edge sent to a provider (Anthropic recommends ≤ 1568 px).
    pub max_image_edge: u32,
    /// Tesseract binary for the `rules` chart reader.
    pub tesseract: PathBuf,
    /// Timeout for one tesseract run.
    pub ocr_timeout: Duration,
    /// Use HTTP(S)_PROXY from the environment (reqwest's default behaviour).
    pub system_proxy: bool,
    /// Where validated answers are kept so a repeated call is not billed twice.
    pub cache: Arc<dyn ResponseCache>,
    /// Models a caller may name (aliases and full ids; `rules` is always allowed). Empty: any.
    pub allowed_models: Vec<String>,
    /// Cap on one task's estimated spend, USD (default 2.00); `None` = no cap.
    pub max_cost_usd: Option<f64>,
    /// Cap on the day's spend across every worker sharing `spend`, USD (default 50.00).
    pub max_daily_cost_usd: Option<f64>,
    /// The fleet's daily spend (Redis in a worker); `None` = the daily cap is not enforced.
    pub spend: Option<Arc<dyn SpendLedger>>,
    /// Most characters of content one extraction accepts (default 2 000 000).
    pub max_content_chars: usize,
    /// Most chunks (model calls before repairs and splits) one extraction may make (default 64).
    pub max_chunks: usize,
    /// Largest image file read, in bytes (default 32 MiB).
    pub max_image_bytes: u64,
    /// Most decoded pixels (width × height) of an image, checked from its header before it is
    /// decoded (default 100 000 000): a decompression bomb fails instead of allocating.
    pub max_image_pixels: u64,
}

impl std::fmt::Debug for LlmOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmOptions")
            .field("anthropic", &self.anthropic)
            .field("openai", &self.openai)
            .field("max_concurrency", &self.max_concurrency)
            .field("chunk_tokens", &self.chunk_tokens)
            .field("chunk_overlap_tokens", &self.chunk_overlap_tokens)
            .field("max_tokens", &self.max_tokens)
            .field("request_timeout", &self.request_timeout)
            .field("retry_budget", &self.retry_budget)
            .field("allowed_models", &self.allowed_models)
            .field("max_cost_usd", &self.max_cost_usd)
            .field("max_daily_cost_usd", &self.max_daily_cost_usd)
            .field("max_content_chars", &self.max_content_chars)
            .field("max_chunks", &self.max_chunks)
            .field("max_image_bytes", &self.max_image_bytes)
            .field("max_image_pixels", &self.max_image_pixels)
            .finish_non_exhaustive()
    }
}

impl Default for LlmOptions {
    fn default() -> Self {
        let mut openai = BTreeMap::new();
        openai.insert(
            "openai".to_string(),
            OpenAiOptions {
                base_url: "https://api.openai.com/v1".into(),
                api_key: None,
            },
        );
        openai.insert(
            "ollama".to_string(),
            OpenAiOptions {
                base_url: "http://127.0.0.1:11434/v1".into(),
                api_key: None,
            },
        );
        LlmOptions {
            anthropic: AnthropicOptions::default(),
            openai,
            prices: default_prices(),
            max_concurrency: 4,
            chunk_tokens: 12_000,
            chunk_overlap_tokens: 300,
            max_tokens: 4096,
            request_timeout: Duration::from_secs(120),
            retry_budget: Duration::from_secs(300),
            max_attempts: 6,
            max_image_edge: 1568,
            tesseract: PathBuf::from("tesseract"),
            ocr_timeout: Duration::from_secs(60),
            system_proxy: true,
            cache: Arc::new(NoCache),
            allowed_models: Vec::new(),
            max_cost_usd: Some(2.0),
            max_daily_cost_usd: Some(50.0),
            spend: None,
            max_content_chars: 2_000_000,
            max_chunks: 64,
            max_image_bytes: 32 << 20,
            max_image_pixels: 100_000_000,
        }
    }
}

/// Public list prices (USD per million tokens) at the time of writing; override in config.
pub fn default_prices() -> BTreeMap<String, Price> {
    let p = |i, o| Price {
        input_per_mtok: i,
        output_per_mtok: o,
    };
    [
        ("claude-sonnet-4-20250514", p(3.0, 15.0)),
        ("claude-sonnet-4-5-20250929", p(3.0, 15.0)),
        ("claude-opus-4-20250514", p(15.0, 75.0)),
        ("claude-haiku-4-5-20251001", p(1.0, 5.0)),
        ("claude-3-5-haiku-20241022", p(0.8, 4.0)),
        ("gpt-4o", p(2.5, 10.0)),
        ("gpt-4o-mini", p(0.15, 0.6)),
        ("gpt-4.1", p(2.0, 8.0)),
        ("gpt-4.1-mini", p(0.4, 1.6)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl LlmOptions {
    /// Estimated cost of a call, `None` when the model has no price (local models: add a zero price).
    pub fn cost_usd(&self, model_keys: &[&str], input: u64, output: u64) -> Option<f64> {
        let price = model_keys.iter().find_map(|k| self.prices.get(*k))?;
        Some(
            input as f64 * price.input_per_mtok / 1e6 + output as f64 * price.output_per_mtok / 1e6,
        )
    }
}
