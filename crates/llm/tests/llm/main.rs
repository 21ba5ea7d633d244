//! Integration tests of hlbot-llm: the real client code against a local HTTP server speaking
//! the Anthropic and OpenAI wire formats, the offline rules provider on the shared corpus and
//! on our own sample, and chunking of a long transcript.
//! Key secrecy is its own test binary (`tests/secrecy.rs`): it captures tracing output with a
//! thread-local subscriber, which misses events whose callsite another test thread registers at
//! the same moment (tracing-core's interest cache), so it must not share a process.

mod anthropic;
mod caps;
mod chart;
mod chunking;
mod mock;
mod openai;
mod rules;

use std::path::PathBuf;

/// `../shared/corpus` next to the workspace (or `$HLBOT_SHARED/corpus`), if present (its absence
/// fails the test under CI).
pub fn corpus() -> Option<PathBuf> {
    hlbot_testkit::corpus("")
}

/// The sample transcript committed with the tests.
pub fn sample_transcript() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sample_strategy_transcript.txt"),
    )
    .expect("sample transcript")
}
