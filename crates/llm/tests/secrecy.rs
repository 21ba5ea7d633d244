//! API keys never reach logs (all tracing output at TRACE captured, reqwest/hyper included),
//! results or errors — even when the server echoes the key back in an error body.
//! Alone in its binary: a thread-local subscriber can miss events whose callsite another test
//! thread registers concurrently, which made the "retry logged" check flaky in the shared binary.

use std::io::Write;
use std::sync::{Arc, Mutex};

use hlbot_llm::{ContentType, extract_strategy};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::fmt::MakeWriter;

#[allow(dead_code)]
#[path = "llm/mock.rs"]
mod mock;

use mock::*;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

#[tokio::test]
async fn keys_never_in_logs_results_or_errors() {
    let buf = Buf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(buf.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let m = Mock::start().await;
    let opts = m.options();
    let c = CancellationToken::new();
    let mut outputs: Vec<String> = vec![format!("{opts:?}")];

    // Success in both wire formats.
    m.push(anthropic_tool(
        "record_strategies",
        strategies_json(),
        "tool_use",
        10,
        10,
    ));
    let r = extract_strategy(&opts, "text", ContentType::Text, "claude-sonnet-4", &c)
        .await
        .unwrap();
    outputs.push(serde_json::to_string(&r).unwrap());
    outputs.push(format!("{r:?}"));
    m.push(openai_content(
        &strategies_json().to_string(),
        "stop",
        10,
        10,
    ));
    let r = extract_strategy(&opts, "text", ContentType::Text, "openai:gpt-4o", &c)
        .await
        .unwrap();
    outputs.push(serde_json::to_string(&r).unwrap());

    // Servers that echo the key in their error bodies.
    for (model, key) in [
        ("claude-sonnet-4", ANTHROPIC_KEY),
        ("openai:gpt-4o", OPENAI_KEY),
    ] {
        m.push(api_error(
            401,
            "authentication_error",
            &format!("invalid x-api-key: {key}"),
        ));
        let err = extract_strategy(&opts, "text", ContentType::Text, model, &c)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("invalid x-api-key: ***"), "{err}");
        outputs.push(err.to_string());
        outputs.push(format!("{err:?}"));
        m.push(
            api_error(
                429,
                "rate_limit_error",
                &format!("key {key} is rate limited"),
            )
            .header("retry-after", "0"),
        );
        m.push(api_error(
            400,
            "invalid_request_error",
            &format!("bad request for key {key}"),
        ));
        let err = extract_strategy(&opts, "text", ContentType::Text, model, &c)
            .await
            .unwrap_err();
        outputs.push(err.to_string());
        outputs.push(format!("{err:?}"));
    }

    // A network error (nothing listening).
    let mut dead = opts.clone();
    dead.anthropic.base_url = "http://127.0.0.1:9".into();
    dead.max_attempts = 1;
    let err = extract_strategy(&dead, "text", ContentType::Text, "claude-sonnet-4", &c)
        .await
        .unwrap_err();
    outputs.push(format!("{err} {err:?}"));

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("llm request"), "tracing output was captured");
    assert!(logs.contains("retrying after"), "retry logged");
    for key in [ANTHROPIC_KEY, OPENAI_KEY, "TESTKEY"] {
        assert!(!logs.contains(key), "key in logs");
        for o in &outputs {
            assert!(!o.contains(key), "key in output: {o}");
        }
    }
    // The keys did reach the server, in headers only.
    let seen = m.seen();
    assert!(
        seen.iter()
            .any(|s| s.headers.get("x-api-key").map(String::as_str) == Some(ANTHROPIC_KEY))
    );
    assert!(seen.iter().all(|s| !s.body.to_string().contains("TESTKEY")));
}
