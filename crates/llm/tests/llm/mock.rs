//! The LLM providers' side of the local mock server (`hlbot_testkit::http::Mock`): test keys,
//! options pointing every provider at it, and replies in the Anthropic Messages and OpenAI
//! chat-completions wire formats.

use std::time::Duration;

use hlbot_llm::{LlmOptions, OpenAiOptions, Secret};
pub use hlbot_testkit::http::{Mock, Reply};
use serde_json::{Value, json};

pub const ANTHROPIC_KEY: &str = "sk-ant-api03-TESTKEY-do-not-leak-7f3a9c";
pub const OPENAI_KEY: &str = "sk-proj-TESTKEY-openai-do-not-leak-55e1";

/// `mock.options()`: the LLM settings for a mock server.
pub trait LlmMock {
    fn options(&self) -> LlmOptions;
}

impl LlmMock for Mock {
    /// Options pointing every provider at this server, with test keys and short timeouts.
    fn options(&self) -> LlmOptions {
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
