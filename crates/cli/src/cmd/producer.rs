//! `send`, `result`, `purge`, `peek`: the producer side of the CLI. Exit codes (documented in
//! docs/reference.md): 0 done, 1 the task failed or was revoked, 3 not done yet (or an id with
//! no stored result), 130 the wait was interrupted.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use hlbot_engine::{Client, SendOptions, TaskCall};
use hlbot_proto::{ResultMeta, State};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::wait::{self, Waited};

use crate::args::{PurgeArgs, ResultArgs, SendArgs};
use crate::settings::Settings;

pub async fn send(
    client: &Client,
    s: &Settings,
    a: SendArgs,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
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
        let timeout = Duration::from_secs_f64(a.timeout);
        return finish(wait::wait(client, &handle.id, &[], timeout, stop).await?);
    }
    let queue = opts
        .queue
        .clone()
        .unwrap_or_else(|| client.router().queue_for(&a.task).to_string());
    let known_here = super::worker::registry(s, None).get(&a.task).is_some();
    let handle = client.send_task(&a.task, args, kwargs, opts).await?;
    println!("{}", handle.id);
    // The workers are asked over the Redis pidbox: not (yet) over an AMQP broker's.
    if client.amqp().is_none() {
        warn_if_nobody_runs(client, &a.task, &queue, known_here).await;
    }
    if !a.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let timeout = Duration::from_secs_f64(a.timeout);
    finish(wait::wait(client, &handle.id, &[], timeout, stop).await?)
}

/// Warnings on stderr when the task will sit or fail: nobody consumes its queue, or no consumer
/// of that queue (or, with no consumer, this binary) registers the task. Asked of the workers
/// themselves, so a Python worker's own tasks are known.
async fn warn_if_nobody_runs(client: &Client, task: &str, queue: &str, known_here: bool) {
    let within = Duration::from_millis(300);
    let (consumers, registered) = tokio::join!(
        super::operator::consumers(client, within),
        super::operator::registered(client, within)
    );
    let short = task.strip_prefix(hlbot_tasks::MODULE).unwrap_or(task);
    let knows = |node: &String| {
        registered
            .get(node)
            .is_some_and(|names| names.iter().any(|n| n == task || n == short))
    };
    match consumers.get(queue) {
        None => {
            eprintln!(
                "warning: no worker replied that it consumes queue {queue:?}; the task waits \
                 there until one does (`hlbot worker -Q {queue}`)"
            );
            if !known_here {
                eprintln!(
                    "warning: no task named {task:?} is registered in hlbot (see `hlbot \
                     tasks`); only a Python worker that knows it will run it"
                );
            }
        }
        Some(nodes) if !nodes.iter().any(knows) => eprintln!(
            "warning: no task named {task:?} is registered on the workers consuming queue \
             {queue:?} ({}); they will reject it as unregistered",
            nodes.join(", ")
        ),
        Some(_) => {}
    }
}

pub async fn result(
    client: &Client,
    a: ResultArgs,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    if a.wait {
        let timeout = Duration::from_secs_f64(a.timeout);
        let waited = wait::wait(client, &a.id, &[], timeout, stop).await?;
        if let (true, Waited::Done(m)) = (a.meta, &waited) {
            println!("{}", m.to_json());
            return Ok(ExitCode::SUCCESS);
        }
        return finish(waited);
    }
    let meta = client.backend().get(&a.id).await?;
    let Some(meta) = meta else {
        eprintln!(
            "no result stored for {}: the id is unknown, the task has not started yet, or its \
             result expired (kept for result_expires, 1 hour by default)",
            a.id
        );
        println!("PENDING");
        return Ok(ExitCode::from(NOT_READY));
    };
    if a.meta {
        println!("{}", meta.to_json());
        return Ok(ExitCode::SUCCESS);
    }
    report(meta)
}

/// Exit code when the task is not done (PENDING, STARTED, RETRY, PROGRESS, or timed out).
pub const NOT_READY: u8 = 3;

/// The end of a wait as an exit code (see [`report`]).
pub fn finish(w: Waited) -> anyhow::Result<ExitCode> {
    match w {
        Waited::Done(m) => report(*m),
        Waited::TimedOut(state) => {
            eprintln!("timed out: the task has not finished (state {state})");
            Ok(ExitCode::from(NOT_READY))
        }
        Waited::Interrupted => Ok(ExitCode::from(wait::INTERRUPTED)),
    }
}

/// Print a result the way scripts want it: the value as JSON on the last stdout line and exit 0
/// on SUCCESS; the exception on stderr and exit 1 on FAILURE/REVOKED; the state and exit 3 when
/// the task is not done yet.
fn report(meta: ResultMeta) -> anyhow::Result<ExitCode> {
    match meta.status {
        State::Success => {
            println!("{}", serde_json::to_string(&meta.result)?);
            Ok(ExitCode::SUCCESS)
        }
        ref s if s.is_ready() => {
            let exc = meta
                .exception()
                .map_or_else(|| "no exception recorded".to_string(), |e| e.display());
            eprintln!("{s}: {exc}");
            if let Some(tb) = meta.traceback.as_deref().filter(|t| !t.is_empty()) {
                eprintln!("{tb}");
            }
            Ok(ExitCode::FAILURE)
        }
        s => {
            println!("{s}");
            Ok(ExitCode::from(NOT_READY))
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
    let cc = hlbot_engine::control::ControlClient::for_client(client);
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
    let queue = a
        .queue
        .unwrap_or_else(|| client.router().default_queue.clone());
    for m in client.broker().peek(&queue, a.limit).await? {
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
