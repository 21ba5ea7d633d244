//! A 2-hour transcript through the real client: chunked, extracted concurrently within the
//! limit, merged with evidence from every part.

use std::time::Duration;

use hlbot_llm::{ContentType, chunk_text, estimate_tokens, extract_strategy, prepare};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::mock::*;

/// 2 hours of speech, a line every 4 seconds (≈ 150 words a minute).
fn two_hour_transcript() -> String {
    let mut out = String::new();
    for i in 0..1800u32 {
        let t = i * 4;
        let line = match i {
            900 => "STRATEGY-B: the opening range breakout on the 5 minute chart".to_string(),
            _ => format!(
                "we watch the 50 EMA on the 1 hour chart and wait for a pullback, point {i} of the session"
            ),
        };
        out.push_str(&format!(
            "[{:02}:{:02}:{:02}] {line}\n",
            t / 3600,
            t / 60 % 60,
            t % 60
        ));
    }
    out
}

#[tokio::test]
async fn two_hour_transcript_is_chunked_and_merged() {
    let text = two_hour_transcript();
    assert!(
        estimate_tokens(&text) > 30_000,
        "{} tokens",
        estimate_tokens(&text)
    );
    let m = Mock::start().await;
    m.respond_with(|body| {
        let t = user_text(body);
        let content = t.split("<content>\n").nth(1).unwrap_or("");
        let first = content.lines().next().unwrap_or("").to_string();
        let ts = first.get(1..9).unwrap_or("").to_string();
        let mut strategies = vec![json!({
            "name": "EMA pullback", "timeframes": ["1H"], "confidence": 0.7,
            "indicators": [{"name": "EMA", "parameters": {"period": 50}}],
            "evidence": [{"quote": first.get(11..).unwrap_or(""), "timestamp": ts}],
        })];
        if t.contains("STRATEGY-B") {
            strategies.push(
                json!({"name": "Opening range breakout", "timeframes": ["5m"], "confidence": 0.6}),
            );
        }
        anthropic_tool(
            "record_strategies",
            json!({"strategies": strategies}),
            "tool_use",
            5000,
            300,
        )
        .delay(Duration::from_millis(60))
    });
    let mut opts = m.options();
    opts.chunk_tokens = 4000;
    opts.chunk_overlap_tokens = 200;
    opts.max_concurrency = 3;
    let r = extract_strategy(
        &opts,
        &text,
        ContentType::Transcript,
        "claude-sonnet-4",
        &CancellationToken::new(),
    )
    .await
    .unwrap();

    let expected_chunks = chunk_text(&prepare(&text, ContentType::Transcript), 4000, 200);
    let seen = m.seen();
    assert_eq!(r.chunks, expected_chunks.len());
    assert_eq!(seen.len(), expected_chunks.len(), "one call per chunk");
    assert!(seen.len() >= 8, "{} chunks", seen.len());
    println!(
        "{} tokens -> {} chunks, max {} in flight",
        estimate_tokens(&text),
        seen.len(),
        m.max_in_flight()
    );
    assert!(
        m.max_in_flight() <= 3,
        "concurrency limit: {}",
        m.max_in_flight()
    );
    assert!(m.max_in_flight() >= 2, "chunks run concurrently");
    // Every transcript line reached the model.
    let sent: String = seen.iter().map(|s| user_text(&s.body)).collect();
    for line in text.lines() {
        assert!(sent.contains(line), "lost: {line}");
    }
    // Merged: two strategies, the first with evidence from every chunk, timestamps kept.
    let names: Vec<&str> = r.strategies.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["EMA pullback", "Opening range breakout"]);
    let ev = &r.strategies[0].evidence;
    assert_eq!(ev.len(), seen.len());
    assert_eq!(ev[0].timestamp.as_deref(), Some("00:00:00"));
    assert!(
        ev.iter()
            .any(|e| e.timestamp.as_deref().is_some_and(|t| t.starts_with("01:")))
    );
    assert_eq!(r.usage.calls as usize, seen.len());
    assert_eq!(r.usage.input_tokens, 5000 * seen.len() as u64);
}

#[tokio::test]
async fn rules_on_two_hour_transcript() {
    let text = two_hour_transcript();
    let started = std::time::Instant::now();
    let r = hlbot_llm::extract_strategy(
        &hlbot_llm::LlmOptions::default(),
        &text,
        ContentType::Transcript,
        "rules",
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    println!(
        "rules on {} tokens: {:?}, default chunking would make {} chunks",
        estimate_tokens(&text),
        started.elapsed(),
        chunk_text(&text, 12_000, 300).len()
    );
    let s = &r.strategies[0];
    assert_eq!(s.timeframes, vec!["1H", "5m"]);
    assert!(
        s.indicators
            .iter()
            .any(|i| i.name == "EMA" && i.parameters["period"] == 50)
    );
    assert!(s.evidence.len() <= 16, "evidence stays bounded");
}
