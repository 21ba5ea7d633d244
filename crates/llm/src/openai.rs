//! The OpenAI chat-completions wire format (OpenAI, Ollama, vLLM, llama.cpp, OpenRouter):
//! `response_format: json_schema`, images as data URLs, parsing of `choices`/`usage`.

use serde_json::{Value, json};

use crate::client::{Answer, Call, Stop, json_in_text};
use crate::usage::Usage;

pub(crate) fn body(model: &str, call: &Call<'_>, completion_field: &str) -> Value {
    let user = match call.image {
        Some(img) => json!([
            {"type": "image_url", "image_url": {"url": format!("data:{};base64,{}", img.media_type, img.base64)}},
            {"type": "text", "text": call.text},
        ]),
        None => json!(call.text),
    };
    let mut messages = vec![
        json!({"role": "system", "content": call.system}),
        json!({"role": "user", "content": user}),
    ];
    if let Some((raw, problem)) = call.repair {
        messages.push(json!({"role": "assistant", "content": raw}));
        messages.push(json!({"role": "user", "content": format!(
            "That answer was invalid: {problem}. Answer again with only JSON that matches the schema exactly."
        )}));
    }
    let mut body = json!({
        "model": model,
        "temperature": 0,
        "messages": messages,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": call.tool_name,
                "description": call.tool_description,
                "schema": call.schema,
                "strict": false,
            },
        },
    });
    body[completion_field] = json!(call.max_tokens);
    body
}

pub(crate) fn parse(v: &Value) -> Result<Answer, String> {
    let choice = &v["choices"][0];
    if choice.is_null() {
        return Err("chat completion has no choices".into());
    }
    let usage = Usage {
        input_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        calls: 1,
        cache_hits: 0,
    };
    let stop = match choice["finish_reason"].as_str().unwrap_or("") {
        "length" => Stop::MaxTokens,
        "stop" | "tool_calls" | "" => Stop::Done,
        other => Stop::Other(other.to_string()),
    };
    let msg = &choice["message"];
    let raw = msg["content"]
        .as_str()
        .or_else(|| msg["tool_calls"][0]["function"]["arguments"].as_str())
        .unwrap_or("")
        .to_string();
    let output = match msg["refusal"].as_str() {
        Some(r) if !r.is_empty() => Err(format!("the model refused: {r}")),
        _ => json_in_text(&raw),
    };
    Ok(Answer {
        output,
        raw,
        stop,
        usage,
    })
}
