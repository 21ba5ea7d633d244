//! Remote control ("pidbox", reference §4): the worker side (`server` subscribes to the
//! broadcast channel, `inspect` and `command` answer) and the caller side (`client`, what
//! `hlbot inspect`/`control` use, speaking to Python and hlbot workers alike).

pub mod client;
pub mod command;
pub mod inspect;
pub mod server;

pub use client::{ControlClient, Replies};
pub use server::serve;

use serde_json::{Map, Value, json};

/// What a handler answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Sent back when the caller asked for a reply (`ticket` + `reply_to`).
    Reply(Value),
    /// Never answered (Celery's `shutdown`).
    Silent,
}

/// `{"ok": msg}`.
pub fn ok(msg: impl Into<String>) -> Answer {
    Answer::Reply(json!({"ok": msg.into()}))
}

/// `{"error": msg}`.
pub fn error(msg: impl Into<String>) -> Answer {
    Answer::Reply(json!({"error": msg.into()}))
}

/// An argument as a list of strings: Celery sends `task_id` as a string or a list.
pub fn str_list(args: &Map<String, Value>, key: &str) -> Vec<String> {
    match args.get(key) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// An integer argument (accepting numbers and numeric strings, as the CLI sends either).
pub fn int_arg(args: &Map<String, Value>, key: &str) -> Option<i64> {
    match args.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A float argument (numbers or numeric strings).
pub fn float_arg(args: &Map<String, Value>, key: &str) -> Option<f64> {
    match args.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Python's repr of a set of strings: `{'a', 'b'}`.
pub fn py_set(ids: &[String]) -> String {
    if ids.is_empty() {
        return "set()".into();
    }
    let inner: Vec<String> = ids.iter().map(|i| format!("'{i}'")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let a: Map<String, Value> =
            serde_json::from_str(r#"{"task_id":"x","n":"3","ids":["a","b"],"soft":1.5}"#)
                .unwrap_or_default();
        assert_eq!(str_list(&a, "task_id"), ["x"]);
        assert_eq!(str_list(&a, "ids"), ["a", "b"]);
        assert_eq!(int_arg(&a, "n"), Some(3));
        assert_eq!(float_arg(&a, "soft"), Some(1.5));
        assert_eq!(py_set(&["a".into()]), "{'a'}");
        assert_eq!(py_set(&[]), "set()");
    }
}
