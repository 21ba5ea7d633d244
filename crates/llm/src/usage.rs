//! Token usage of one or more provider calls.

use serde::{Deserialize, Serialize};

/// Tokens billed by the provider, summed over calls. Cache hits add to `cache_hits` only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// HTTP calls that returned an answer (retries of failed attempts are not counted).
    pub calls: u64,
    /// Answers served from the response cache (not billed).
    pub cache_hits: u64,
}

impl Usage {
    pub(crate) fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.calls += other.calls;
        self.cache_hits += other.cache_hits;
    }
}
