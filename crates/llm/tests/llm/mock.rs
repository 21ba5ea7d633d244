//! A local HTTP server (127.0.0.1, random port) speaking the Anthropic Messages and OpenAI
//! chat-completions wire formats. Tests script its replies and read back every request.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hlbot_llm::{LlmOptions, OpenAiOptions, Secret};
use serde_json::{Value, json};

pub const ANTHROPIC_KEY: &str = "sk-ant-api03-TESTKEY-do-not-leak-7f3a9c";
pub const OPENAI_KEY: &str = "sk-proj-TESTKEY-openai-do-not-leak-55e1";

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![],
            body,
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub at: Instant,
}

type Responder = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    default: Option<Responder>,
    seen: Vec<Seen>,
    in_flight: usize,
    max_in_flight: usize,
}

/// The running server; dropped with the test's runtime.
#[derive(Clone)]
pub struct Mock {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Mock {
    pub async fn start() -> Mock {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Mock { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues replies, answered in order before the default responder.
    pub fn push(&self, r: Reply) -> &Self {
        self.inner.lock().unwrap().script.push_back(r);
        self
    }

    pub fn respond_with(&self, f: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        self.inner.lock().unwrap().default = Some(Arc::new(f));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.inner.lock().unwrap().max_in_flight
    }

    /// Options pointing every provider at this server, with test keys and short timeouts.
    pub fn options(&self) -> LlmOptions {
        let mut o = LlmOptions::default();
        o.anthropic.api_key = Some(Secret::new(ANTHROPIC_KEY));
        o.anthropic.base_url = self.url();
        o.openai.insert(
            "openai".into(),
            OpenAiOptions {
                base_url: format!("{}/v1", self.url()),
                api_key: Some(Secret::new(OPENAI_KEY)),
            },
        );
        o.openai.insert(
            "ollama".into(),
            OpenAiOptions {
                base_url: format!("{}/v1", self.url()),
                api_key: None,
            },
        );
        o.system_proxy = false;
        o.request_timeout = Duration::from_secs(10);
        o.retry_budget = Duration::from_secs(20);
        o
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = {
        let mut g = inner.lock().unwrap();
        g.seen.push(Seen {
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.clone(),
            at: Instant::now(),
        });
        g.in_flight += 1;
        g.max_in_flight = g.max_in_flight.max(g.in_flight);
        match g.script.pop_front() {
            Some(r) => r,
            None => match &g.default {
                Some(f) => f(&body),
                None => Reply::json(
                    500,
                    json!({"error": {"type": "api_error", "message": "no scripted reply"}}),
                ),
            },
        }
    };
    tokio::time::sleep(reply.delay).await;
    inner.lock().unwrap().in_flight -= 1;
    let mut resp = (
        StatusCode::from_u16(reply.status).unwrap(),
        axum::Json(reply.body),
    )
        .into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    resp
}

/// An Anthropic Messages answer calling `tool` with `input`.
pub fn anthropic_tool(
    tool: &str,
    input: Value,
    stop_reason: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "msg_test", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": tool, "input": input}],
            "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }),
    )
}

/// An Anthropic Messages answer with only text.
pub fn anthropic_text(text: &str, stop_reason: &str) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "msg_test", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "usage": {"input_tokens": 100, "output_tokens": 20},
        }),
    )
}

/// An error body in Anthropic's shape (OpenAI's has the same `error.message`).
pub fn api_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

/// An OpenAI chat completion whose message content is `content`.
pub fn openai_content(
    content: &str,
    finish: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "chatcmpl-test", "object": "chat.completion", "model": "gpt-test",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }),
    )
}

/// A valid strategy list.
pub fn strategies_json() -> Value {
    json!({"strategies": [{
        "name": "EMA pullback",
        "instruments": ["EUR/USD"],
        "market": "forex",
        "timeframes": ["1H", "4H"],
        "style": "day",
        "indicators": [{"name": "EMA", "parameters": {"period": 50}}, {"name": "RSI", "parameters": {"period": 14}}],
        "key_levels": [{"price": 1.085, "kind": "support"}],
        "entry_rules": ["Enter long when price pulls back to the 50 EMA and RSI is below 40"],
        "exit_rules": ["exit early if price closes below the 50 EMA"],
        "stop_loss": "15 pips below the swing low",
        "take_profit": "2:1 risk to reward",
        "position_sizing": "risk 1% per trade",
        "risk_management": ["never more than 30 pips stop"],
        "filters": ["only longs above the 200 EMA on 4H"],
        "confidence": 0.9,
        "evidence": [{"quote": "Put your stop loss 15 pips below the swing low", "timestamp": "00:00:58", "page": null}]
    }]})
}

/// The text of the first user message, in either wire format.
pub fn user_text(body: &Value) -> String {
    let c = &body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap()["content"];
    match c {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
