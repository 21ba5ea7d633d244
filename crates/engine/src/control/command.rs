//! Pidbox commands that change the worker (reference §4.5): `revoke`/`terminate`, `shutdown`,
//! `pool_grow`/`pool_shrink`/`autoscale`, `rate_limit`, `time_limit`, `add_consumer`,
//! `cancel_consumer`, `enable_events`/`disable_events`, `heartbeat`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};

use super::{Answer, error, float_arg, int_arg, ok, py_set, str_list};
use crate::worker::Shared;

/// Answer `method` if it is a control command.
pub async fn handle(sh: &Arc<Shared>, method: &str, args: &Map<String, Value>) -> Option<Answer> {
    Some(match method {
        "revoke" => {
            let terminate = args
                .get("terminate")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            revoke(sh, &str_list(args, "task_id"), terminate, signal_arg(args)).await
        }
        "terminate" => revoke(sh, &str_list(args, "task_id"), true, signal_arg(args)).await,
        "shutdown" => {
            tracing::warn!("shutdown requested by remote control");
            sh.remote_stop.cancel();
            Answer::Silent
        }
        "pool_grow" => {
            let n = int_arg(args, "n").unwrap_or(1).max(0) as usize;
            sh.resize(sh.concurrency.load(Ordering::SeqCst).saturating_add(n));
            ok("pool will grow")
        }
        "pool_shrink" => {
            let n = int_arg(args, "n").unwrap_or(1).max(0) as usize;
            let cur = sh.concurrency.load(Ordering::SeqCst);
            sh.resize(cur.saturating_sub(n).max(1));
            ok("pool will shrink")
        }
        "autoscale" => {
            let max = int_arg(args, "max").unwrap_or(0).max(1) as usize;
            let min = int_arg(args, "min").unwrap_or(0).max(0) as usize;
            // hlbot's pool is a set of async slots: keep `max` of them; idle ones cost nothing.
            sh.resize(max);
            ok(format!("autoscale now max={max} min={min}"))
        }
        "purge_held" => Answer::Reply(json!({"ok": sh.purge_held(&str_list(args, "queues"))})),
        "rate_limit" => rate_limit(sh, args),
        "time_limit" => time_limit(sh, args),
        "add_consumer" => {
            let Some(q) = args.get("queue").and_then(Value::as_str) else {
                return Some(error("TypeError('add_consumer() missing argument: queue')"));
            };
            let mut qs = sh.queues();
            if !qs.iter().any(|x| x == q) {
                if let Err(e) = sh.broker.declare(&[q.to_string()]).await {
                    return Some(error(e.to_string()));
                }
                qs.push(q.to_string());
                sh.set_queues(qs);
                return Some(ok(format!("add consumer {q}")));
            }
            ok(format!("already consuming from {q}"))
        }
        "cancel_consumer" => {
            let Some(q) = args.get("queue").and_then(Value::as_str) else {
                return Some(error(
                    "TypeError('cancel_consumer() missing argument: queue')",
                ));
            };
            let qs: Vec<String> = sh.queues().into_iter().filter(|x| x != q).collect();
            sh.set_queues(qs);
            ok(format!("no longer consuming from {q}"))
        }
        "enable_events" => {
            if sh.events.set_task_events(true) {
                ok("task events already enabled")
            } else {
                ok("task events enabled")
            }
        }
        "disable_events" => {
            if sh.events.set_task_events(false) {
                ok("task events disabled")
            } else {
                ok("task events already disabled")
            }
        }
        "heartbeat" => {
            let mut f = crate::worker::heartbeat_fields(sh);
            f.insert("freq".into(), json!(5));
            sh.events.worker("worker-heartbeat", f);
            Answer::Reply(Value::Null)
        }
        _ => return None,
    })
}

/// `revoke` / `terminate`: flag, persist, stop running ones when asked.
async fn revoke(sh: &Arc<Shared>, ids: &[String], terminate: bool, signal: String) -> Answer {
    if signum(&signal).is_none() {
        return error(format!("ValueError('Unknown signal: {signal}')"));
    }
    let stopped = sh.revoke(ids, terminate).await;
    if terminate {
        if stopped.is_empty() {
            ok("terminate: tasks unknown")
        } else {
            ok(format!("terminate: {}", stopped.join(", ")))
        }
    } else {
        ok(format!("tasks {} flagged as revoked", py_set(ids)))
    }
}

fn signal_arg(args: &Map<String, Value>) -> String {
    match args.get("signal") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "SIGTERM".into(),
    }
}

/// Signal number of a name such as `SIGKILL`, `KILL` or `9` (Python's `signum`).
pub fn signum(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return Some(n);
    }
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

fn rate_limit(sh: &Shared, args: &Map<String, Value>) -> Answer {
    let name = args.get("task_name").and_then(Value::as_str).unwrap_or("");
    if sh.registry.get(name).is_none() {
        return error("unknown task");
    }
    let rate = match args.get("rate_limit") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    match parse_rate(&rate) {
        None => error(format!("Invalid rate limit string: {rate:?}")),
        Some(per_sec) => {
            sh.state.set_override(name, "rate_limit", json!(rate));
            if per_sec == 0.0 {
                ok("rate limit disabled successfully")
            } else {
                ok("new rate limit set successfully")
            }
        }
    }
}

/// Celery rate strings: `N`, `N/s`, `N/m`, `N/h` → tasks per second (0 = unlimited).
pub fn parse_rate(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return Some(0.0);
    }
    let (n, unit) = s.split_once('/').unwrap_or((s, "s"));
    let n: f64 = n
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let per = match unit.trim().chars().next() {
        Some('s') => 1.0,
        Some('m') => 60.0,
        Some('h') => 3600.0,
        _ => return None,
    };
    Some(n / per)
}

fn time_limit(sh: &Shared, args: &Map<String, Value>) -> Answer {
    let name = args.get("task_name").and_then(Value::as_str).unwrap_or("");
    if sh.registry.get(name).is_none() {
        return error("unknown task");
    }
    let soft = float_arg(args, "soft");
    let hard = float_arg(args, "hard");
    sh.state.set_override(name, "soft_time_limit", json!(soft));
    sh.state.set_override(name, "time_limit", json!(hard));
    ok("time limits set successfully")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_signals() {
        assert_eq!(parse_rate("10/m"), Some(10.0 / 60.0));
        assert_eq!(parse_rate("5"), Some(5.0));
        assert_eq!(parse_rate(""), Some(0.0));
        assert!(parse_rate("x/m").is_none());
        assert!(parse_rate("1/d").is_none());
        assert!(parse_rate("NaN/s").is_none());
        assert!(parse_rate("-1/s").is_none());
        assert!(parse_rate("inf").is_none());
        assert_eq!(parse_rate("1e-30/s"), Some(1e-30));
        assert_eq!(signum("SIGKILL"), Some(9));
        assert_eq!(signum("KILL"), Some(9));
        assert_eq!(signum("15"), Some(15));
        assert_eq!(signum("NOPE"), None);
    }
}
