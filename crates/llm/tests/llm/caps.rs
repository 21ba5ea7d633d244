//! Cost and size caps against the local mock server: a strategy extraction stopped by its
//! per-task budget returns what it has (marked partial), the fleet's daily budget refuses the
//! first call, a model off the allow-list fails before any request, and content / chunk caps
//! fail before any request.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hlbot_llm::{ContentType, Error, SpendLedger, extract_strategy};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::mock::*;

/// `n` transcript lines of ~16 tokens: with `chunk_tokens = 1000`, ~`n / 55` chunks.
fn transcript(n: u32) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[00:{:02}:{:02}] buy the pullback to the 50 EMA, point {i}\n",
                i / 60 % 60,
                i % 60
            )
        })
        .collect()
}

/// Every call answers one strategy and reports 10 000 input / 1 000 output tokens: $0.045 at
/// claude-sonnet-4's price.
fn answering(m: &Mock) {
    m.respond_with(|body| {
        let t = user_text(body);
        let part = t
            .split("part ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap_or("?")
            .to_string();
        anthropic_tool(
            "record_strategies",
            json!({"strategies": [{"name": format!("part {part}"), "confidence": 0.5}]}),
            "tool_use",
            10_000,
            1_000,
        )
    });
}

#[tokio::test]
async fn a_strategy_task_stops_at_its_cost_budget_with_a_partial_result() {
    let m = Mock::start().await;
    answering(&m);
    let mut opts = m.options();
    opts.chunk_tokens = 1000;
    opts.chunk_overlap_tokens = 0;
    opts.max_tokens = 1000;
    opts.max_concurrency = 1;
    // Each call is estimated at ≈ $0.02–0.05 before it is sent and books $0.045 after:
    // two fit under $0.10, the third would not.
    opts.max_cost_usd = Some(0.10);
    let text = transcript(400);
    let r = extract_strategy(
        &opts,
        &text,
        ContentType::Transcript,
        "claude-sonnet-4",
        &CancellationToken::new(),
    )
    .await
    .expect("partial result, not an error");
    assert!(r.chunks >= 4, "{} chunks", r.chunks);
    assert!(r.partial);
    assert_eq!(m.seen().len(), 2, "the third call was never sent");
    assert_eq!(r.strategies.len(), 2, "{:?}", r.strategies);
    let cost = r.cost_usd.expect("priced");
    assert!(cost <= 0.10 + 1e-9, "spent {cost}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("cost budget") && w.contains("llm.max_cost_usd")),
        "{:?}",
        r.warnings
    );
    // Serialised for the task result.
    assert_eq!(serde_json::to_value(&r).unwrap()["partial"], true);
}

#[tokio::test]
async fn a_budget_too_small_for_one_call_is_an_error() {
    let m = Mock::start().await;
    answering(&m);
    let mut opts = m.options();
    opts.max_cost_usd = Some(0.001);
    let err = extract_strategy(
        &opts,
        &transcript(10),
        ContentType::Transcript,
        "claude-sonnet-4",
        &CancellationToken::new(),
    )
    .await
    .expect_err("nothing fits");
    assert!(matches!(err, Error::BudgetExceeded(_)), "{err}");
    assert!(!err.retryable());
    assert!(m.seen().is_empty());
}

#[derive(Default)]
struct Ledger(Mutex<f64>);

#[async_trait]
impl SpendLedger for Ledger {
    async fn spent_today(&self) -> hlbot_llm::Result<f64> {
        Ok(*self.0.lock().unwrap())
    }
    async fn add(&self, usd: f64) -> hlbot_llm::Result<()> {
        *self.0.lock().unwrap() += usd;
        Ok(())
    }
}

#[tokio::test]
async fn the_daily_budget_is_shared_and_enforced() {
    let m = Mock::start().await;
    answering(&m);
    let ledger = Arc::new(Ledger::default());
    let mut opts = m.options();
    opts.spend = Some(ledger.clone());
    opts.max_daily_cost_usd = Some(1.0);
    let cancel = CancellationToken::new();
    let r = extract_strategy(
        &opts,
        &transcript(10),
        ContentType::Transcript,
        "claude-sonnet-4",
        &cancel,
    )
    .await
    .expect("under the daily cap");
    assert!(!r.partial);
    assert!(
        (*ledger.0.lock().unwrap() - 0.045).abs() < 1e-9,
        "booked the actual cost"
    );
    *ledger.0.lock().unwrap() = 0.999;
    let err = extract_strategy(
        &opts,
        &transcript(10),
        ContentType::Transcript,
        "claude-sonnet-4",
        &cancel,
    )
    .await
    .expect_err("the day is spent");
    assert!(err.to_string().contains("llm.max_daily_cost_usd"), "{err}");
    assert_eq!(m.seen().len(), 1);
}

#[tokio::test]
async fn a_model_not_on_the_allow_list_fails_before_any_request() {
    let m = Mock::start().await;
    answering(&m);
    let mut opts = m.options();
    opts.allowed_models = vec!["claude-sonnet-4".into()];
    let cancel = CancellationToken::new();
    for model in ["claude-opus-4", "openai:gpt-4o", "ollama:claude-sonnet-4"] {
        let err = extract_strategy(&opts, "buy the dip", ContentType::Text, model, &cancel)
            .await
            .expect_err("not allowed");
        assert!(
            matches!(err, Error::ModelNotAllowed { .. }),
            "{model}: {err}"
        );
        assert!(
            err.to_string().contains(model) && err.to_string().contains("llm.allowed_models"),
            "{err}"
        );
        assert!(!err.retryable());
    }
    assert!(m.seen().is_empty());
    // The alias's full id is the same model; `rules` is always allowed.
    extract_strategy(
        &opts,
        "buy the dip",
        ContentType::Text,
        "claude-sonnet-4-20250514",
        &cancel,
    )
    .await
    .expect("same model");
    extract_strategy(&opts, "buy the dip", ContentType::Text, "rules", &cancel)
        .await
        .expect("rules");
}

#[tokio::test]
async fn content_and_chunk_caps_fail_before_any_request() {
    let m = Mock::start().await;
    answering(&m);
    let mut opts = m.options();
    opts.max_content_chars = 1000;
    let cancel = CancellationToken::new();
    let err = extract_strategy(
        &opts,
        &transcript(100),
        ContentType::Transcript,
        "claude-sonnet-4",
        &cancel,
    )
    .await
    .expect_err("too long");
    assert!(err.to_string().contains("llm.max_content_chars"), "{err}");
    let mut opts = m.options();
    opts.chunk_tokens = 1000;
    opts.max_chunks = 2;
    let err = extract_strategy(
        &opts,
        &transcript(400),
        ContentType::Transcript,
        "claude-sonnet-4",
        &cancel,
    )
    .await
    .expect_err("too many chunks");
    assert!(matches!(err, Error::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("llm.max_chunks"), "{err}");
    assert!(m.seen().is_empty());
}
