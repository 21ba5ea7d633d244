//! Turning what the `process_*` tasks return into text for the LLM, keeping transcript
//! timestamps (`[hh:mm:ss]` lines) and PDF page markers (`--- page N ---`) for evidence quotes.

use hlbot_llm::ContentType;
use serde_json::Value;

/// Text and its kind from a task argument: a string as is, or a video/PDF result object.
pub fn from_value(v: &Value, declared: ContentType) -> (String, ContentType) {
    match v {
        Value::String(s) => (s.clone(), declared),
        Value::Object(o) => {
            if let Some(Value::Array(segs)) = o
                .get("transcript_segments")
                .filter(|s| s.as_array().is_some_and(|a| !a.is_empty()))
            {
                let mut out = String::new();
                for s in segs {
                    let start = s.get("start").and_then(Value::as_f64).unwrap_or(0.0);
                    let text = s.get("text").and_then(Value::as_str).unwrap_or_default();
                    out.push_str(&format!("[{}] {}\n", hms(start), text.trim()));
                }
                return (out, ContentType::Transcript);
            }
            if let Some(Value::Array(pages)) = o.get("pages") {
                let mut out = String::new();
                for p in pages {
                    let n = p.get("number").and_then(Value::as_u64).unwrap_or(0);
                    let text = p.get("text").and_then(Value::as_str).unwrap_or_default();
                    out.push_str(&format!("--- page {n} ---\n{}\n", text.trim()));
                }
                return (out, ContentType::Document);
            }
            for key in ["transcript", "text", "content"] {
                if let Some(s) = o.get(key).and_then(Value::as_str) {
                    return (s.to_string(), declared);
                }
            }
            (String::new(), declared)
        }
        Value::Null => (String::new(), declared),
        other => (other.to_string(), declared),
    }
}

/// Seconds as `hh:mm:ss`.
pub fn hms(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_timestamps_and_pages() {
        let video = json!({"transcript": "x", "transcript_segments": [{"start": 83.2, "end": 85.0, "text": " buy the dip "}]});
        assert_eq!(
            from_value(&video, ContentType::Text),
            (
                "[00:01:23] buy the dip\n".to_string(),
                ContentType::Transcript
            )
        );
        let pdf = json!({"text": "all", "pages": [{"number": 4, "text": "RSI 14"}]});
        assert_eq!(
            from_value(&pdf, ContentType::Text).0,
            "--- page 4 ---\nRSI 14\n"
        );
        assert_eq!(from_value(&json!("plain"), ContentType::Text).0, "plain");
    }
}
