//! `hlbot inspect CMD` / `hlbot control CMD`: Celery's argument forms turned into a pidbox
//! broadcast; replies printed as a readable list (or `-j` JSON), like `celery inspect`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use hlbot_engine::control::ControlClient;
use hlbot_engine::control::client::{Broadcast, Replies};
use serde_json::{Map, Value, json};

use crate::args::ControlArgs;
use crate::settings::Settings;

pub async fn run(s: &Settings, a: ControlArgs, inspect: bool) -> anyhow::Result<ExitCode> {
    // On RabbitMQ the broadcast uses Celery's pidbox exchanges, where the workers listen.
    let cc = ControlClient::for_client(&super::client(s).await?);
    let mut b = Broadcast::new(&a.method, Map::new());
    b.timeout = Duration::from_secs_f64(a.timeout.max(0.01));
    if !a.destination.is_empty() {
        b.destination = Some(a.destination.clone());
    }
    if !inspect && a.method == "shutdown" {
        return shutdown(&cc, b).await;
    }
    let replies = if !inspect && a.method == "revoke" {
        anyhow::ensure!(!a.args.is_empty(), "revoke needs at least one task id");
        cc.revoke(&a.args, a.terminate, a.signal.as_deref(), b)
            .await?
    } else if !inspect && a.method == "terminate" {
        anyhow::ensure!(a.args.len() >= 2, "usage: terminate SIGNAL ID...");
        cc.revoke(&a.args[1..], true, Some(&a.args[0]), b).await?
    } else {
        b.arguments = arguments(&a.method, &a.args, inspect)?;
        cc.broadcast(&b).await?
    };
    print(&a, &replies);
    if replies.is_empty() {
        // Same for inspect and control (shutdown included): nobody heard it.
        eprintln!("Error: No nodes replied within time constraint");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `control shutdown`: workers never answer it (as in Celery), so who is there is asked first with
/// a `ping`; nobody there is the same "No nodes replied" error as every other command.
async fn shutdown(cc: &ControlClient, b: Broadcast) -> anyhow::Result<ExitCode> {
    let mut ping = Broadcast::new("ping", Map::new());
    ping.timeout = b.timeout;
    ping.destination = b.destination.clone();
    let nodes = cc.broadcast(&ping).await?;
    if nodes.is_empty() {
        eprintln!("Error: No nodes replied within time constraint");
        return Ok(ExitCode::FAILURE);
    }
    cc.broadcast(&Broadcast { reply: false, ..b }).await?;
    for (node, _) in &nodes {
        println!("->  {node}: OK\n    shutdown requested");
    }
    Ok(ExitCode::SUCCESS)
}

/// Celery's positional forms → the request's `arguments`.
fn arguments(method: &str, args: &[String], inspect: bool) -> anyhow::Result<Map<String, Value>> {
    let num = |s: &String| -> anyhow::Result<Value> {
        let f: f64 = s
            .parse()
            .with_context(|| format!("{s:?} is not a number"))?;
        Ok(if f.fract() == 0.0 {
            json!(f as i64)
        } else {
            json!(f)
        })
    };
    let mut m = Map::new();
    match (inspect, method) {
        (true, "query_task") => {
            m.insert("ids".into(), json!(args));
        }
        (true, "registered") => {
            m.insert("taskinfoitems".into(), json!(args));
        }
        (true, "active") => {
            m.insert("safe".into(), json!(false));
        }
        (true, _) => {}
        (false, "rate_limit") => {
            let [task, rate] = args else {
                bail!("usage: rate_limit TASK RATE")
            };
            m.insert("task_name".into(), json!(task));
            m.insert("rate_limit".into(), json!(rate));
        }
        (false, "time_limit") => {
            let (task, soft, hard) = match args {
                [t, s] => (t, num(s)?, Value::Null),
                [t, s, h] => (t, num(s)?, num(h)?),
                _ => bail!("usage: time_limit TASK SOFT [HARD]"),
            };
            m.insert("task_name".into(), json!(task));
            m.insert("soft".into(), soft);
            m.insert("hard".into(), hard);
        }
        (false, "add_consumer") => {
            let Some(q) = args.first() else {
                bail!("usage: add_consumer QUEUE [EXCHANGE [TYPE [ROUTING_KEY]]]")
            };
            m.insert("queue".into(), json!(q));
            for (k, v) in ["exchange", "exchange_type", "routing_key"]
                .iter()
                .zip(&args[1..])
            {
                m.insert((*k).into(), json!(v));
            }
        }
        (false, "cancel_consumer") => {
            let Some(q) = args.first() else {
                bail!("usage: cancel_consumer QUEUE")
            };
            m.insert("queue".into(), json!(q));
        }
        (false, "pool_grow" | "pool_shrink") => {
            m.insert(
                "n".into(),
                args.first().map(num).transpose()?.unwrap_or(json!(1)),
            );
        }
        (false, "autoscale") => {
            let [max, min] = args else {
                bail!("usage: autoscale MAX MIN")
            };
            m.insert("max".into(), num(max)?);
            m.insert("min".into(), num(min)?);
        }
        (false, _) => {}
    }
    Ok(m)
}

fn print(a: &ControlArgs, replies: &Replies) {
    if a.json {
        let m: Map<String, Value> = replies.iter().cloned().collect();
        println!("{}", Value::Object(m));
        return;
    }
    for (node, v) in replies {
        let (status, body) = match v {
            Value::Object(o) if o.len() == 1 && o.contains_key("ok") => ("OK", text(&o["ok"])),
            Value::Object(o) if o.len() == 1 && o.contains_key("error") => {
                ("ERROR", text(&o["error"]))
            }
            Value::Array(list) if list.is_empty() => ("OK", "- empty -".to_string()),
            Value::Array(list) => ("OK", list.iter().map(row).collect::<Vec<_>>().join("\n")),
            other => (
                "OK",
                serde_json::to_string_pretty(other).unwrap_or_default(),
            ),
        };
        println!("->  {node}: {status}");
        for line in body.lines() {
            println!("    {line}");
        }
    }
    if !replies.is_empty() {
        let n = replies.len();
        println!("\n{n} node{} online.", if n == 1 { "" } else { "s" });
    }
}

fn text(v: &Value) -> String {
    v.as_str()
        .map_or_else(|| v.to_string(), str::to_string)
        .trim()
        .to_string()
}

/// One line per list item: request infos (`active`, `reserved`, `scheduled`) as a table row.
fn row(v: &Value) -> String {
    let (eta, r) = match v.get("request") {
        Some(r) => (v.get("eta").and_then(Value::as_str), r),
        None => (None, v),
    };
    match (
        r.get("id").and_then(Value::as_str),
        r.get("name").and_then(Value::as_str),
    ) {
        (Some(id), Some(name)) => {
            let mut s = format!("* {id}  {name}  args={}  kwargs={}", r["args"], r["kwargs"]);
            if let Some(e) = eta {
                s.push_str(&format!("  eta={e}"));
            }
            if let Some(p) = r.get("worker_pid").and_then(Value::as_u64) {
                s.push_str(&format!("  pid={p}"));
            }
            s
        }
        (None, Some(name)) => format!("* {name}"),
        _ => format!("* {}", text(v)),
    }
}
