//! The OpenAI-compatible client against the local server: `openai:` with a key and
//! `max_completion_tokens`, `ollama:` without a key, json_schema response format, image data
//! URLs, repair, truncation and rate-limit headers.

use std::time::Duration;

use hlbot_llm::{ContentType, Error, Price, analyze_chart, extract_strategy};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::mock::*;
use crate::sample_transcript;

fn cancel() -> CancellationToken {
    CancellationToken::new()
}

#[tokio::test]
async fn json_schema_request_and_result() {
    let m = Mock::start().await;
    m.push(openai_content(
        &strategies_json().to_string(),
        "stop",
        900,
        120,
    ));
    let r = extract_strategy(
        &m.options(),
        &sample_transcript(),
        ContentType::Transcript,
        "openai:gpt-4o",
        &cancel(),
    )
    .await
    .unwrap();
    let req = &m.seen()[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.headers["authorization"], format!("Bearer {OPENAI_KEY}"));
    assert!(!req.headers.contains_key("x-api-key"));
    let b = &req.body;
    assert_eq!(b["model"], "gpt-4o");
    assert_eq!(b["max_completion_tokens"], 4096);
    assert_eq!(b["response_format"]["type"], "json_schema");
    assert_eq!(
        b["response_format"]["json_schema"]["name"],
        "record_strategies"
    );
    assert!(b["response_format"]["json_schema"]["schema"]["properties"]["strategies"].is_object());
    assert_eq!(b["messages"][0]["role"], "system");
    assert!(user_text(b).contains("[00:00:04] Welcome back"));
    assert_eq!(r.provider, "openai");
    assert_eq!(r.model, "gpt-4o");
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (900, 120));
    let expected = (900.0 * 2.5 + 120.0 * 10.0) / 1e6;
    assert!((r.cost_usd.unwrap() - expected).abs() < 1e-12);
    assert_eq!(r.strategies[0].indicators[0].parameters["period"], 50);
}

#[tokio::test]
async fn ollama_without_key_and_price() {
    let m = Mock::start().await;
    m.push(openai_content(
        &format!("```json\n{}\n```", strategies_json()),
        "stop",
        10,
        10,
    ));
    let r = extract_strategy(
        &m.options(),
        "text",
        ContentType::Text,
        "ollama:llama3.1:8b",
        &cancel(),
    )
    .await
    .unwrap();
    let req = &m.seen()[0];
    assert!(!req.headers.contains_key("authorization"));
    assert_eq!(req.body["model"], "llama3.1:8b");
    assert_eq!(req.body["max_tokens"], 4096);
    assert!(req.body.get("max_completion_tokens").is_none());
    assert_eq!(r.provider, "ollama");
    assert_eq!(r.cost_usd, None);
    assert!(r.warnings.iter().any(|w| w.contains("no price")));

    // With a configured zero price a local model costs 0.
    let m = Mock::start().await;
    m.push(openai_content(
        &strategies_json().to_string(),
        "stop",
        10,
        10,
    ));
    let mut opts = m.options();
    opts.prices.insert(
        "llama3.1:8b".into(),
        Price {
            input_per_mtok: 0.0,
            output_per_mtok: 0.0,
        },
    );
    let r = extract_strategy(
        &opts,
        "text",
        ContentType::Text,
        "ollama:llama3.1:8b",
        &cancel(),
    )
    .await
    .unwrap();
    assert_eq!(r.cost_usd, Some(0.0));
}

#[tokio::test]
async fn invalid_json_repair_in_chat_format() {
    let m = Mock::start().await;
    m.push(openai_content("{\"strategies\": [", "stop", 10, 10));
    m.push(openai_content(
        &strategies_json().to_string(),
        "stop",
        10,
        10,
    ));
    let r = extract_strategy(
        &m.options(),
        "text",
        ContentType::Text,
        "openai:gpt-4o",
        &cancel(),
    )
    .await
    .unwrap();
    let seen = m.seen();
    assert_eq!(seen.len(), 2);
    let msgs = seen[1].body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4);
    assert_eq!(
        msgs[2],
        json!({"role": "assistant", "content": "{\"strategies\": ["})
    );
    assert!(
        msgs[3]["content"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(r.strategies.len(), 1);
}

#[tokio::test]
async fn finish_reason_length_is_truncation() {
    let m = Mock::start().await;
    m.respond_with(|_| openai_content("{\"strategies\": [{\"name\": \"cut", "length", 10, 4096));
    let err = extract_strategy(
        &m.options(),
        "one line only",
        ContentType::Text,
        "openai:gpt-4o",
        &cancel(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    assert_eq!(m.seen().len(), 1, "not retried blindly");
}

#[tokio::test]
async fn openai_rate_limit_headers() {
    let m = Mock::start().await;
    m.push(api_error(429, "requests", "Rate limit reached").header("retry-after-ms", "400"));
    m.push(
        api_error(429, "tokens", "Rate limit reached")
            .header("x-ratelimit-remaining-tokens", "0")
            .header("x-ratelimit-reset-tokens", "300ms"),
    );
    m.push(openai_content(
        &strategies_json().to_string(),
        "stop",
        10,
        10,
    ));
    extract_strategy(
        &m.options(),
        "text",
        ContentType::Text,
        "openai:gpt-4o",
        &cancel(),
    )
    .await
    .unwrap();
    let seen = m.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(380));
    assert!(seen[2].at - seen[1].at >= Duration::from_millis(280));
}

#[tokio::test]
async fn forbidden_403_fails_at_once() {
    let m = Mock::start().await;
    m.respond_with(|_| api_error(403, "permission_error", "project has no access to model"));
    let err = extract_strategy(
        &m.options(),
        "text",
        ContentType::Text,
        "openai:gpt-4o",
        &cancel(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Auth { status: 403, .. }));
    assert_eq!(m.seen().len(), 1);
}

#[tokio::test]
async fn chart_as_data_url() {
    let m = Mock::start().await;
    m.push(openai_content(
        &json!({"trend": "sideways", "confidence": 0.4, "support_levels": [100.0]}).to_string(),
        "stop",
        800,
        60,
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chart.jpg");
    image::RgbImage::from_fn(640, 360, |x, _| image::Rgb([(x % 255) as u8, 40, 40]))
        .save(&path)
        .unwrap();
    let r = analyze_chart(&m.options(), &path, "openai:gpt-4o", &cancel())
        .await
        .unwrap();
    let content = &m.seen()[0].body["messages"][1]["content"];
    assert_eq!(content[0]["type"], "image_url");
    assert!(
        content[0]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/jpeg;base64,/9j/")
    );
    assert_eq!(
        m.seen()[0].body["response_format"]["json_schema"]["name"],
        "record_chart_reading"
    );
    assert_eq!(r.analysis.trend, "sideways");
    assert_eq!(r.image.format, "jpeg");
    assert_eq!(
        (r.image.sent_width, r.image.sent_height),
        (640, 360),
        "small images are sent as they are"
    );
}

#[tokio::test]
async fn network_error_is_retryable() {
    // A port nobody listens on: connection refused on every attempt.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let m = Mock::start().await;
    let mut opts = m.options();
    opts.openai.get_mut("openai").unwrap().base_url = format!("http://{addr}/v1");
    opts.max_attempts = 2;
    let err = extract_strategy(&opts, "text", ContentType::Text, "openai:gpt-4o", &cancel())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err}");
    assert!(err.retryable());
}
