//! The Anthropic Messages client against the local server: request shape, tool use, 429 with
//! retry-after, 529, invalid JSON with one repair, max_tokens truncation, 401, 400, cache.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hlbot_llm::{ContentType, DiskCache, Error, analyze_chart, extract_strategy};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::mock::*;
use crate::sample_transcript;

fn cancel() -> CancellationToken {
    CancellationToken::new()
}

#[tokio::test]
async fn tool_use_request_and_result() {
    let m = Mock::start().await;
    m.push(anthropic_tool(
        "record_strategies",
        strategies_json(),
        "tool_use",
        1200,
        300,
    ));
    let opts = m.options();
    let r = extract_strategy(
        &opts,
        &sample_transcript(),
        ContentType::Transcript,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap();

    let seen = m.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.headers["x-api-key"], ANTHROPIC_KEY);
    assert_eq!(req.headers["anthropic-version"], "2023-06-01");
    assert!(req.headers["content-type"].starts_with("application/json"));
    assert!(!req.headers.contains_key("authorization"));
    let b = &req.body;
    assert_eq!(b["model"], "claude-sonnet-4-20250514", "alias resolved");
    assert_eq!(b["max_tokens"], opts.max_tokens);
    assert_eq!(b["tools"][0]["name"], "record_strategies");
    assert_eq!(b["tools"][0]["input_schema"]["type"], "object");
    assert!(b["tools"][0]["input_schema"]["properties"]["strategies"].is_object());
    assert!(b["tools"][0]["input_schema"].get("$schema").is_none());
    assert_eq!(
        b["tool_choice"],
        json!({"type": "tool", "name": "record_strategies"})
    );
    assert!(b["system"].as_str().unwrap().contains("timestamp"));
    let text = user_text(b);
    assert!(
        text.contains("[00:00:58] Put your stop loss"),
        "timestamps reach the model"
    );
    assert!(text.contains("Content type: transcript"));

    assert_eq!(r.provider, "anthropic");
    assert_eq!(r.model, "claude-sonnet-4-20250514");
    assert_eq!(r.label, None);
    assert_eq!(
        (r.usage.input_tokens, r.usage.output_tokens, r.usage.calls),
        (1200, 300, 1)
    );
    let cost = r.cost_usd.unwrap();
    assert!(
        (cost - (1200.0 * 3.0 + 300.0 * 15.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(r.strategies.len(), 1);
    assert_eq!(
        r.strategies[0].evidence[0].timestamp.as_deref(),
        Some("00:00:58")
    );
    assert_eq!(r.schema_version, "strategy.v1");
}

#[tokio::test]
async fn rate_limit_429_honours_retry_after() {
    let m = Mock::start().await;
    m.push(
        api_error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your rate limit",
        )
        .header("retry-after", "1"),
    );
    m.push(anthropic_tool(
        "record_strategies",
        strategies_json(),
        "tool_use",
        10,
        10,
    ));
    let r = extract_strategy(
        &m.options(),
        "RSI 14 strategy",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap();
    let seen = m.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before retry-after"
    );
    assert_eq!(r.usage.calls, 1, "only the answered call is counted");
}

#[tokio::test]
async fn rate_limit_headers_and_budget() {
    // anthropic-ratelimit-*-reset far in the future, beyond the retry budget: the error comes
    // back at once with retry_after so the task queue can schedule the retry.
    let m = Mock::start().await;
    let reset = "2099-01-01T00:00:00Z";
    m.push(
        api_error(429, "rate_limit_error", "rate limited")
            .header("anthropic-ratelimit-requests-remaining", "0")
            .header("anthropic-ratelimit-requests-reset", reset),
    );
    let err = extract_strategy(
        &m.options(),
        "text",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err}");
    assert!(err.retryable());
    assert!(err.retry_after().unwrap() > Duration::from_secs(3600));
    assert_eq!(m.seen().len(), 1);
}

#[tokio::test]
async fn overloaded_529_backs_off_then_succeeds() {
    let m = Mock::start().await;
    m.push(api_error(529, "overloaded_error", "Overloaded"));
    m.push(api_error(500, "api_error", "Internal server error"));
    m.push(anthropic_tool(
        "record_strategies",
        strategies_json(),
        "tool_use",
        10,
        10,
    ));
    let r = extract_strategy(
        &m.options(),
        "text",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap();
    assert_eq!(m.seen().len(), 3);
    assert_eq!(r.strategies.len(), 1);
}

#[tokio::test]
async fn overloaded_until_attempts_run_out() {
    let m = Mock::start().await;
    m.respond_with(|_| api_error(529, "overloaded_error", "Overloaded"));
    let mut opts = m.options();
    opts.max_attempts = 3;
    let err = extract_strategy(
        &opts,
        "text",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Overloaded { status: 529, .. }),
        "{err}"
    );
    assert!(err.retryable());
    assert_eq!(m.seen().len(), 3);
}

#[tokio::test]
async fn invalid_json_gets_one_repair() {
    let m = Mock::start().await;
    m.push(anthropic_text(
        "Sure! {\"strategies\": [{\"name\": \"EMA\", ",
        "end_turn",
    ));
    m.push(anthropic_tool(
        "record_strategies",
        strategies_json(),
        "tool_use",
        50,
        40,
    ));
    let r = extract_strategy(
        &m.options(),
        "text",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap();
    let seen = m.seen();
    assert_eq!(seen.len(), 2);
    let msgs = seen[1].body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[1]["role"], "assistant");
    assert!(
        msgs[1]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Sure!")
    );
    assert!(
        msgs[2]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("invalid")
    );
    assert_eq!(r.usage.calls, 2);
    assert_eq!(r.usage.input_tokens, 150);
    assert_eq!(r.strategies[0].name, "EMA pullback");
}

#[tokio::test]
async fn schema_violation_twice_fails_after_one_repair() {
    let m = Mock::start().await;
    m.respond_with(|_| {
        anthropic_tool(
            "record_strategies",
            json!({"strategies": [{"name": "x", "confidence": 7}]}),
            "tool_use",
            5,
            5,
        )
    });
    let err = extract_strategy(
        &m.options(),
        "text",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::InvalidOutput { .. }), "{err}");
    assert!(err.to_string().contains("confidence"), "{err}");
    assert!(!err.retryable());
    assert_eq!(m.seen().len(), 2, "exactly one repair attempt");
}

#[tokio::test]
async fn max_tokens_truncation_splits_instead_of_blind_retry() {
    let m = Mock::start().await;
    // The whole text makes the answer too long; each half fits.
    m.respond_with(|body| {
        let t = user_text(body);
        if t.contains("ALPHA") && t.contains("OMEGA") {
            anthropic_tool(
                "record_strategies",
                json!({"strategies": [{"name": "cut"}]}),
                "max_tokens",
                500,
                4096,
            )
        } else {
            let name = if t.contains("ALPHA") {
                "First half"
            } else {
                "Second half"
            };
            anthropic_tool(
                "record_strategies",
                json!({"strategies": [{"name": name, "confidence": 0.5}]}),
                "tool_use",
                250,
                100,
            )
        }
    });
    let text =
        "ALPHA RSI strategy line one\nline two\nline three\nOMEGA breakout strategy line four";
    let r = extract_strategy(
        &m.options(),
        text,
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap();
    let seen = m.seen();
    assert_eq!(seen.len(), 3);
    let bodies: Vec<String> = seen.iter().map(|s| user_text(&s.body)).collect();
    assert!(
        bodies[1] != bodies[0] && bodies[2] != bodies[0],
        "the truncated request is not re-sent as is"
    );
    let names: Vec<&str> = r.strategies.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["First half", "Second half"]);
    assert!(
        r.warnings.iter().any(|w| w.contains("max_tokens")),
        "{:?}",
        r.warnings
    );
    assert_eq!(
        r.usage.output_tokens,
        4096 + 200,
        "the truncated call is billed too"
    );

    // A single line cannot be split: a clear, final truncation error after one call.
    let m = Mock::start().await;
    m.respond_with(|_| {
        anthropic_tool(
            "record_strategies",
            json!({"strategies": []}),
            "max_tokens",
            5,
            4096,
        )
    });
    let err = extract_strategy(
        &m.options(),
        "ALPHA OMEGA",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                max_tokens: 4096,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.retryable());
    assert_eq!(m.seen().len(), 1);
}

#[tokio::test]
async fn unauthorized_401_fails_at_once() {
    let m = Mock::start().await;
    m.respond_with(|_| api_error(401, "authentication_error", "invalid x-api-key"));
    let err = extract_strategy(
        &m.options(),
        "text",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Auth { status: 401, .. }), "{err}");
    assert!(!err.retryable());
    let msg = err.to_string();
    assert!(
        msg.contains("refused the credentials") && msg.contains("invalid x-api-key"),
        "{msg}"
    );
    assert_eq!(m.seen().len(), 1);
}

#[tokio::test]
async fn bad_request_400_fails_at_once() {
    let m = Mock::start().await;
    m.respond_with(|_| {
        api_error(
            400,
            "invalid_request_error",
            "prompt is too long: 250000 tokens > 200000 maximum",
        )
    });
    let err = extract_strategy(
        &m.options(),
        "text",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::BadRequest { status: 400, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("prompt is too long"));
    assert_eq!(m.seen().len(), 1);
}

#[tokio::test]
async fn missing_key_makes_no_call() {
    let m = Mock::start().await;
    let mut opts = m.options();
    opts.anthropic.api_key = None;
    let err = extract_strategy(
        &opts,
        "text",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::MissingApiKey { .. }));
    assert!(err.to_string().contains("--model rules"));
    assert!(m.seen().is_empty());
}

#[tokio::test]
async fn empty_content_makes_no_call() {
    let m = Mock::start().await;
    let r = extract_strategy(
        &m.options(),
        " \n\n ",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap();
    assert!(r.strategies.is_empty());
    assert_eq!(r.chunks, 0);
    assert!(m.seen().is_empty());
}

#[tokio::test]
async fn cancel_interrupts_a_retry_wait() {
    let m = Mock::start().await;
    m.respond_with(|_| api_error(429, "rate_limit_error", "slow down").header("retry-after", "10"));
    let token = CancellationToken::new();
    let t2 = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        t2.cancel();
    });
    let err = extract_strategy(
        &m.options(),
        "text",
        ContentType::Text,
        "claude-sonnet-4",
        &token,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(m.seen().len(), 1);
}

#[tokio::test]
async fn cache_means_no_second_bill() {
    let m = Mock::start().await;
    m.respond_with(|_| {
        anthropic_tool(
            "record_strategies",
            strategies_json(),
            "tool_use",
            1000,
            200,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let mut opts = m.options();
    opts.cache = Arc::new(DiskCache::new(dir.path()));
    let first = extract_strategy(
        &opts,
        "EMA text",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap();
    let second = extract_strategy(
        &opts,
        "EMA text",
        ContentType::Text,
        "claude-sonnet-4",
        &cancel(),
    )
    .await
    .unwrap();
    assert_eq!(
        m.seen().len(),
        1,
        "the repeated call is served from the cache"
    );
    assert!(first.cost_usd.unwrap() > 0.0);
    assert_eq!(second.cost_usd, Some(0.0));
    assert_eq!((second.usage.cache_hits, second.usage.calls), (1, 0));
    assert_eq!(first.strategies, second.strategies);
    // A different model is a different key.
    extract_strategy(
        &opts,
        "EMA text",
        ContentType::Text,
        "claude-opus-4",
        &cancel(),
    )
    .await
    .unwrap();
    assert_eq!(m.seen().len(), 2);
}

#[tokio::test]
async fn chart_image_block() {
    let m = Mock::start().await;
    m.push(anthropic_tool(
        "record_chart_reading",
        json!({"instrument": "EUR/USD", "timeframe": "4H", "chart_type": "candlestick", "trend": "up",
               "support_levels": [1.085], "resistance_levels": [1.105], "patterns": ["double bottom"],
               "indicators": [{"name": "EMA 20", "value": 1.0912}],
               "trade_idea": {"bias": "long", "entry": 1.09, "stop": 1.082, "targets": [1.1, 1.105]},
               "confidence": 0.8}),
        "tool_use",
        1600,
        250,
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chart.png");
    image::RgbImage::from_fn(2400, 1200, |x, y| {
        image::Rgb([(x % 200) as u8, (y % 200) as u8, 30])
    })
    .save(&path)
    .unwrap();
    let r = analyze_chart(&m.options(), &path, "claude-sonnet-4", &cancel())
        .await
        .unwrap();

    let req = &m.seen()[0];
    let content = &req.body["messages"][0]["content"];
    assert_eq!(content[0]["type"], "image");
    assert_eq!(content[0]["source"]["type"], "base64");
    assert_eq!(content[0]["source"]["media_type"], "image/png");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content[0]["source"]["data"].as_str().unwrap())
        .unwrap();
    let sent = image::load_from_memory(&bytes).unwrap();
    assert!(
        sent.width() <= 1568 && sent.height() <= 1568,
        "downscaled: {}x{}",
        sent.width(),
        sent.height()
    );
    assert!((sent.width() * sent.height()) as f64 <= 1_150_000.0 * 1.01);
    assert_eq!(content[1]["type"], "text");
    assert_eq!(req.body["tool_choice"]["name"], "record_chart_reading");
    assert_eq!(
        req.body["tools"][0]["input_schema"]["properties"]["trend"]["type"],
        "string"
    );

    assert_eq!(r.analysis.trend, "up");
    assert_eq!(
        r.analysis.trade_idea.as_ref().unwrap().targets,
        vec![1.1, 1.105]
    );
    assert_eq!((r.image.width, r.image.height), (2400, 1200));
    assert_eq!(
        (r.image.sent_width, r.image.sent_height),
        (sent.width(), sent.height())
    );
    assert!(r.warnings.iter().any(|w| w.contains("downscaled")));
    assert_eq!(r.usage.input_tokens, 1600);
    assert!(r.cost_usd.unwrap() > 0.0);
}
