//! The Anthropic Messages wire format: request body with a forced tool call, image blocks as
//! base64, and parsing of `content`/`stop_reason`/`usage`.

use serde_json::{Value, json};

use crate::client::{Answer, Call, Stop, json_in_text};
use crate::usage::Usage;

pub(crate) fn body(model: &str, call: &Call<'_>) -> Value {
    let mut first = Vec::new();
    if let Some(img) = call.image {
        first.push(json!({
            "type": "image",
            "source": {"type": "base64", "media_type": img.media_type, "data": img.base64},
        }));
    }
    first.push(json!({"type": "text", "text": call.text}));
    let mut messages = vec![json!({"role": "user", "content": first})];
    if let Some((raw, problem)) = call.repair {
        messages.push(json!({"role": "assistant", "content": [{"type": "text", "text": raw}]}));
        messages.push(json!({"role": "user", "content": [{"type": "text", "text": format!(
            "That answer was invalid: {problem}. Call the {} tool again with input that matches its schema exactly.",
            call.tool_name
        )}]}));
    }
    json!({
        "model": model,
        "max_tokens": call.max_tokens,
        "temperature": 0,
        "system": call.system,
        "messages": messages,
        "tools": [{
            "name": call.tool_name,
            "description": call.tool_description,
            "input_schema": call.schema,
        }],
        "tool_choice": {"type": "tool", "name": call.tool_name},
    })
}

pub(crate) fn parse(v: &Value, tool_name: &str) -> Result<Answer, String> {
    let content = v["content"]
        .as_array()
        .ok_or("Anthropic response has no content array")?;
    let usage = Usage {
        input_tokens: v["usage"]["input_tokens"].as_u64().unwrap_or(0),
        output_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0),
        calls: 1,
        cache_hits: 0,
    };
    let stop = match v["stop_reason"].as_str().unwrap_or("") {
        "max_tokens" => Stop::MaxTokens,
        "tool_use" | "end_turn" | "stop_sequence" | "" => Stop::Done,
        other => Stop::Other(other.to_string()),
    };
    let tool = content
        .iter()
        .find(|b| b["type"] == "tool_use" && b["name"] == tool_name);
    let (output, raw) = match tool {
        Some(b) => {
            let input = b["input"].clone();
            let raw = input.to_string();
            if input.is_object() {
                (Ok(input), raw)
            } else {
                (Err("the tool input is not a JSON object".to_string()), raw)
            }
        }
        None => {
            let text: String = content
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n");
            (json_in_text(&text), text)
        }
    };
    Ok(Answer {
        output,
        raw,
        stop,
        usage,
    })
}
