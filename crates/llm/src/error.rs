//! The crate's one error type: what failed, whether a retry can help, and how long to wait.
//! Messages never contain API keys: provider bodies are redacted before they get here.

use std::time::Duration;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model string names no known provider (`claude-*`, `openai:M`, `ollama:M`, `rules`).
    #[error("unknown model {0:?}: use claude-*, openai:MODEL, ollama:MODEL or rules")]
    UnknownModel(String),
    /// Configuration is incomplete or inconsistent (message says what to set).
    #[error("configuration: {0}")]
    Config(String),
    /// No API key was configured for a provider that needs one.
    #[error(
        "no API key for {provider}: set ANTHROPIC_API_KEY (or the provider's key) or use --model rules"
    )]
    MissingApiKey { provider: String },
    /// 401/403: the key is wrong, revoked or lacks permission. Never retried.
    #[error("{provider} refused the credentials (HTTP {status}): {message}")]
    Auth {
        provider: String,
        status: u16,
        message: String,
    },
    /// 400/404/413/422: the request itself is wrong. Never retried.
    #[error("{provider} rejected the request (HTTP {status}): {message}")]
    BadRequest {
        provider: String,
        status: u16,
        message: String,
    },
    /// 429: rate limited; `retry_after` comes from `retry-after` or the rate-limit headers.
    #[error("{provider} rate limit (HTTP 429){}", after_text(*.retry_after))]
    RateLimited {
        provider: String,
        retry_after: Option<Duration>,
        message: String,
    },
    /// 529 / 503 / `overloaded_error`: the provider is busy.
    #[error("{provider} is overloaded (HTTP {status}){}", after_text(*.retry_after))]
    Overloaded {
        provider: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Other 5xx answers.
    #[error("{provider} server error (HTTP {status}): {message}")]
    Server {
        provider: String,
        status: u16,
        message: String,
    },
    /// Connection refused/reset, DNS, TLS: the request may not have arrived.
    #[error("network error talking to {provider}: {message}")]
    Network { provider: String, message: String },
    /// One HTTP request took longer than the configured request timeout.
    #[error("{provider} request timed out after {after:?}")]
    Timeout { provider: String, after: Duration },
    /// The answer stopped at the output-token limit and could not be split further.
    #[error(
        "{provider} answer truncated at max_tokens ({max_tokens}); content too dense to split further"
    )]
    Truncated { provider: String, max_tokens: u32 },
    /// The answer was not valid JSON for the schema, even after the one repair attempt.
    #[error("{provider} returned invalid output: {message}")]
    InvalidOutput { provider: String, message: String },
    /// The cancel token fired.
    #[error("cancelled")]
    Cancelled,
    /// The image could not be read or decoded.
    #[error("image {path}: {message}")]
    Image { path: String, message: String },
    /// A subprocess (tesseract) failed; `stderr` is its captured error output.
    #[error("{program} failed: {message}; stderr: {stderr}")]
    Process {
        program: String,
        message: String,
        stderr: String,
    },
    /// Over a configured cap (content characters, chunks, image bytes or pixels). Never retried.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The model is not on `llm.allowed_models`. Never retried.
    #[error("model {model:?} is not allowed on this worker (llm.allowed_models: {allowed})")]
    ModelNotAllowed { model: String, allowed: String },
    /// The next call could cross `llm.max_cost_usd` or `llm.max_daily_cost_usd`. Never retried.
    #[error("cost budget: {0}")]
    BudgetExceeded(String),
    /// The response cache failed (callers log this and carry on uncached).
    #[error("response cache: {0}")]
    Cache(String),
}

fn after_text(after: Option<Duration>) -> String {
    match after {
        Some(d) => format!(", retry after {:.1}s", d.as_secs_f64()),
        None => String::new(),
    }
}

impl Error {
    /// True when the same call may succeed later (rate limits, overload, 5xx, network, timeouts).
    /// Auth, bad requests, invalid output, truncation and cancellation are final.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. }
                | Error::Overloaded { .. }
                | Error::Server { .. }
                | Error::Network { .. }
                | Error::Timeout { .. }
        )
    }

    /// The provider's requested wait for 429/529, when it told us one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } | Error::Overloaded { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// The crate's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classification() {
        let rl = Error::RateLimited {
            provider: "anthropic".into(),
            retry_after: Some(Duration::from_secs(3)),
            message: String::new(),
        };
        assert!(rl.retryable());
        assert_eq!(rl.retry_after(), Some(Duration::from_secs(3)));
        assert!(rl.to_string().contains("retry after 3.0s"));
        let auth = Error::Auth {
            provider: "anthropic".into(),
            status: 401,
            message: "bad".into(),
        };
        assert!(!auth.retryable());
        assert_eq!(auth.retry_after(), None);
        assert!(!Error::Cancelled.retryable());
    }
}
