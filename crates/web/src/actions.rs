//! What the buttons do (POST only; the auth guard has checked the login and the CSRF token):
//! worker control through the engine's control client (pool grow/shrink, add/cancel consumer,
//! shutdown), queue purge and dead-letter replay through the same engine functions as
//! `hlbot purge` / `hlbot dead replay`, and revoke / terminate / retry of a task. Each answers
//! with a redirect back carrying a one-line `?msg=`.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Redirect;
use hlbot_engine::SendOptions;
use hlbot_engine::control::client::{Broadcast, ControlClient};
use serde_json::{Map, Value, json};

use crate::App;
use crate::auth::urlencode;

fn back(to: &str, msg: &str) -> Redirect {
    Redirect::to(&format!("{to}?msg={}", urlencode(msg)))
}

fn summary(replies: &[(String, Value)]) -> String {
    if replies.is_empty() {
        return "no reply (is the worker online?)".into();
    }
    replies
        .iter()
        .map(|(n, v)| {
            let r = v
                .get("ok")
                .or(v.get("error"))
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .unwrap_or_else(|| v.to_string());
            format!("{n}: {r}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub async fn worker(
    State(app): State<App>,
    Path((name, act)): Path<(String, String)>,
    Form(f): Form<HashMap<String, String>>,
) -> Redirect {
    let control = ControlClient::for_client(&app.opts.client);
    let queue = f
        .get("queue")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let (method, args) = match (act.as_str(), f.get("op").map(String::as_str)) {
        ("pool_grow", _) => ("pool_grow", json!({"n": 1})),
        ("pool_shrink", _) => ("pool_shrink", json!({"n": 1})),
        ("shutdown", _) => ("shutdown", json!({})),
        ("consumer", Some("add")) if !queue.is_empty() => ("add_consumer", json!({"queue": queue})),
        ("consumer", Some("cancel")) if !queue.is_empty() => {
            ("cancel_consumer", json!({"queue": queue}))
        }
        ("consumer", _) => return back("/workers", "name a queue first"),
        _ => return back("/workers", "unknown action"),
    };
    let mut b = Broadcast::new(method, args.as_object().cloned().unwrap_or_default());
    b.destination = Some(vec![name.clone()]);
    tracing::info!("dashboard: {method} → {name}");
    let msg = match control.broadcast(&b).await {
        Ok(r) => format!("{method}: {}", summary(&r)),
        Err(e) => format!("{method} failed: {e}"),
    };
    back("/workers", &msg)
}

pub async fn purge(State(app): State<App>, Path(queue): Path<String>) -> Redirect {
    tracing::info!("dashboard: purge {queue}");
    let msg = match app
        .opts
        .client
        .broker()
        .purge(std::slice::from_ref(&queue))
        .await
    {
        Ok(n) => format!("purged {n} message(s) from {queue}"),
        Err(e) => format!("purge failed: {e}"),
    };
    back("/queues", &msg)
}

pub async fn replay(State(app): State<App>) -> Redirect {
    tracing::info!("dashboard: dead-letter replay");
    let msg = match hlbot_engine::deadletter::replay(app.opts.client.broker(), None).await {
        Ok(n) => format!("replayed {n} dead letter(s)"),
        Err(e) => format!("replay failed: {e}"),
    };
    back("/queues", &msg)
}

pub async fn task(State(app): State<App>, Path((id, act)): Path<(String, String)>) -> Redirect {
    let to = format!("/task/{}", urlencode(&id));
    let control = ControlClient::for_client(&app.opts.client);
    tracing::info!("dashboard: {act} {id}");
    let msg = match act.as_str() {
        "revoke" | "terminate" => {
            let terminate = act == "terminate";
            let b = Broadcast::new("revoke", Map::new());
            match control
                .revoke(std::slice::from_ref(&id), terminate, None, b)
                .await
            {
                Ok(r) => format!("{act}: {}", summary(&r)),
                Err(e) => format!("{act} failed: {e}"),
            }
        }
        "retry" => retry(&app, &id).await,
        _ => "unknown action".into(),
    };
    back(&to, &msg)
}

/// Send the task again under a new id with the same name and arguments.
async fn retry(app: &App, id: &str) -> String {
    let view = match app.monitor.task(id) {
        Some(v) => Some(v),
        None => match &app.opts.store {
            Some(s) => s
                .run(id)
                .await
                .ok()
                .flatten()
                .map(|r| crate::pages::tasks::from_run(&r)),
            None => None,
        },
    };
    let Some(v) = view else {
        return "retry: task not found".into();
    };
    let (Some(args), Some(kwargs)) = (py_literal(&v.args), py_literal(&v.kwargs)) else {
        return "retry: the arguments are not plain literals; send it again by hand".into();
    };
    let args = match args {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        one => vec![one],
    };
    let kwargs = kwargs.as_object().cloned().unwrap_or_default();
    let opts = SendOptions::default();
    match app.opts.client.send_task(&v.name, args, kwargs, opts).await {
        Ok(h) => format!("sent again as {}", h.id),
        Err(e) => format!("retry failed: {e}"),
    }
}

/// A Python `repr` of plain literals (what events carry) as JSON: tuples become lists,
/// `'…'` strings, `True`/`False`/`None`. Anything else (objects, bytes) → `None`.
fn py_literal(s: &str) -> Option<Value> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Value::Null);
    }
    if let Ok(v) = serde_json::from_str(s) {
        return Some(v);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            let n = chars.next()?;
                            if n == '\'' {
                                out.push('\'');
                            } else {
                                out.push('\\');
                                out.push(n);
                            }
                        }
                        '"' => out.push_str("\\\""),
                        '\'' => break,
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            '"' => {
                out.push('"');
                for c in chars.by_ref() {
                    out.push(c);
                    if c == '"' {
                        break;
                    }
                }
            }
            '(' => out.push('['),
            ')' => out.push(']'),
            c if c.is_alphabetic() => {
                let mut word = c.to_string();
                while let Some(n) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_') {
                    word.push(*n);
                    chars.next();
                }
                out.push_str(match word.as_str() {
                    "True" => "true",
                    "False" => "false",
                    "None" => "null",
                    _ => return None,
                });
            }
            c => out.push(c),
        }
    }
    // `(1,)` → `[1,]`: drop trailing commas.
    let out = out.replace(",]", "]").replace(", ]", "]");
    serde_json::from_str(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::py_literal;
    use serde_json::json;

    #[test]
    fn python_reprs() {
        assert_eq!(py_literal("(1, 2)"), Some(json!([1, 2])));
        assert_eq!(py_literal("(5,)"), Some(json!([5])));
        assert_eq!(
            py_literal("{'a': True, 'b': None, 'c': 'it\\'s'}"),
            Some(json!({"a": true, "b": null, "c": "it's"}))
        );
        assert_eq!(py_literal("[<object at 0x1>]"), None);
        assert_eq!(py_literal("(foo(),)"), None);
    }
}
