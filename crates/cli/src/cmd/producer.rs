//! `send`, `result`, `purge`: the producer side of the CLI.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use hlbot_engine::{Client, Error, SendOptions, TaskCall};
use hlbot_proto::{ResultMeta, State};
use serde_json::{Map, Value};

use crate::args::{PurgeArgs, ResultArgs, SendArgs};
use crate::settings::Settings;

pub async fn send(client: &Client, a: SendArgs) -> anyhow::Result<ExitCode> {
    let args: Vec<Value> = serde_json::from_str(&a.args).context("--args must be a JSON list")?;
    let kwargs: Map<String, Value> =
        serde_json::from_str(&a.kwargs).context("--kwargs must be a JSON object")?;
    let eta = match &a.eta {
        Some(s) => Some(
            hlbot_proto::time::parse_iso(s)
                .with_context(|| format!("--eta {s:?} is not ISO 8601"))?,
        ),
        None => None,
    };
    if a.priority.is_some_and(|p| p > 9) {
        bail!("--priority must be 0-9");
    }
    let opts = SendOptions {
        queue: a.queue,
        countdown: a.countdown,
        eta,
        priority: a.priority,
        expires: a.expires,
        task_id: a.task_id,
        ..Default::default()
    };
    if let Some(each) = &a.each {
        let each: Vec<Vec<Value>> =
            serde_json::from_str(each).context("--each must be a JSON list of JSON lists")?;
        let calls: Vec<TaskCall> = each
            .into_iter()
            .map(|args| TaskCall {
                name: a.task.clone(),
                args,
                kwargs: kwargs.clone(),
                options: SendOptions {
                    task_id: None,
                    ..opts.clone()
                },
            })
            .collect();
        let Some(cb) = &a.chord_callback else {
            let g = client.send_group(calls).await?;
            println!("{}", g.id);
            for r in &g.results {
                println!("{}", r.id);
            }
            return Ok(ExitCode::SUCCESS);
        };
        let cb_args: Vec<Value> = serde_json::from_str(&a.callback_args)
            .context("--callback-args must be a JSON list")?;
        let body = TaskCall {
            name: cb.clone(),
            args: cb_args,
            kwargs: Map::new(),
            options: SendOptions::default(),
        };
        let handle = client.send_chord(calls, body).await?;
        println!("{}", handle.id);
        if !a.wait {
            return Ok(ExitCode::SUCCESS);
        }
        return report(handle.wait_meta(Duration::from_secs_f64(a.timeout)).await);
    }
    let handle = client.send_task(&a.task, args, kwargs, opts).await?;
    println!("{}", handle.id);
    if !a.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let meta = handle.wait_meta(Duration::from_secs_f64(a.timeout)).await;
    report(meta)
}

pub async fn result(client: &Client, a: ResultArgs) -> anyhow::Result<ExitCode> {
    let h = client.handle(&a.id);
    let meta = if a.wait {
        h.wait_meta(Duration::from_secs_f64(a.timeout)).await
    } else {
        h.meta().await
    };
    if a.meta {
        let m = meta?;
        println!("{}", m.to_json());
        return Ok(ExitCode::SUCCESS);
    }
    report(meta)
}

/// Print a result the way scripts want it: the value as JSON on the last stdout line and exit 0
/// on SUCCESS; the exception on stderr and exit 1 on FAILURE/REVOKED; the state and exit 3 when
/// the task is not done yet.
fn report(meta: Result<ResultMeta, Error>) -> anyhow::Result<ExitCode> {
    let meta = match meta {
        Ok(m) => m,
        Err(Error::Timeout(s)) => {
            eprintln!("timed out after {s:.1}s: the task has not finished");
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e.into()),
    };
    match meta.status {
        State::Success => {
            println!("{}", serde_json::to_string(&meta.result)?);
            Ok(ExitCode::SUCCESS)
        }
        ref s if s.is_ready() => {
            let exc = meta
                .exception()
                .map_or_else(|| s.to_string(), |e| e.display());
            eprintln!("{s}: {exc}");
            if let Some(tb) = meta.traceback.as_deref().filter(|t| !t.is_empty()) {
                eprintln!("{tb}");
            }
            Ok(ExitCode::FAILURE)
        }
        s => {
            println!("{s}");
            Ok(ExitCode::from(3))
        }
    }
}

pub async fn purge(client: &Client, s: &Settings, a: PurgeArgs) -> anyhow::Result<ExitCode> {
    let queues = if a.queues.is_empty() {
        s.queues.clone()
    } else {
        a.queues
    };
    if !a.force {
        eprint!(
            "WARNING: This will remove all tasks from queue(s): {}.\nThere is no undo.\nAre you sure? [y/N] ",
            queues.join(", ")
        );
        std::io::stderr().flush().ok();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).ok();
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            eprintln!("aborted");
            return Ok(ExitCode::FAILURE);
        }
    }
    let mut n = client.broker().purge(&queues).await?;
    // Messages hlbot workers already hold (ETA waits, prefetched) are purged too; Python workers
    // don't know this command and stay silent about it.
    let mut b = hlbot_engine::control::client::Broadcast::new(
        "purge_held",
        [("queues".to_string(), serde_json::json!(queues))]
            .into_iter()
            .collect(),
    );
    b.timeout = Duration::from_secs(1);
    let cc = hlbot_engine::control::ControlClient::new(client.broker().clone());
    if let Ok(replies) = cc.broadcast(&b).await {
        n += replies
            .iter()
            .filter_map(|(_, v)| v.get("ok").and_then(Value::as_u64))
            .sum::<u64>();
    }
    let noun = if n == 1 { "message" } else { "messages" };
    println!(
        "Purged {n} {noun} from {} known task queue(s).",
        queues.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn peek(client: &Client, a: crate::args::PeekArgs) -> anyhow::Result<ExitCode> {
    for m in client.broker().peek(&a.queue, a.limit).await? {
        let line = match m {
            Ok(msg) => serde_json::json!({
                "id": msg.headers.id,
                "task": msg.headers.task,
                "args": msg.args,
                "kwargs": msg.kwargs,
                "eta": msg.headers.eta,
                "expires": msg.headers.expires,
                "priority": msg.priority(),
                "retries": msg.headers.retries,
                "timelimit": msg.headers.timelimit,
                "parent_id": msg.headers.parent_id,
                "root_id": msg.headers.root_id,
                "ignore_result": msg.headers.ignore_result,
                "callbacks": msg.embed.callbacks,
                "errbacks": msg.embed.errbacks,
                "chain": msg.embed.chain,
                "redelivered": msg.headers.redelivered(),
            }),
            Err(e) => {
                serde_json::json!({"error": e.kind.to_string(), "raw": String::from_utf8_lossy(&e.raw)})
            }
        };
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
