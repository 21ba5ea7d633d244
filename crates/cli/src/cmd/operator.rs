//! Operator views: `hlbot queues` (numbers per queue, consumers from the workers' own
//! `active_queues` replies), `hlbot tasks` (what this binary registers, from the registry — no
//! worker needed), and the CLI's own documents: shell completions and the man page, generated
//! from the clap definition.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use hlbot_engine::control::ControlClient;
use hlbot_engine::control::client::Broadcast;
use hlbot_engine::{Client, Registry, Router};
use serde_json::{Value, json};

use crate::args::{QueuesArgs, TasksArgs};
use crate::settings::Settings;

/// Queue → the nodes consuming it, from every worker that answers `active_queues` in time
/// (hlbot and Python workers alike).
pub async fn consumers(client: &Client, timeout: Duration) -> BTreeMap<String, Vec<String>> {
    let mut b = Broadcast::new("active_queues", Default::default());
    b.timeout = timeout;
    let replies = ControlClient::for_client(client)
        .broadcast(&b)
        .await
        .unwrap_or_default();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (node, v) in replies {
        for q in v.as_array().into_iter().flatten() {
            if let Some(name) = q.get("name").and_then(Value::as_str) {
                out.entry(name.to_string()).or_default().push(node.clone());
            }
        }
    }
    out
}

/// Node → the task names it registers (`registered`; Celery's "name [info]" reduced to the name).
pub async fn registered(client: &Client, timeout: Duration) -> BTreeMap<String, Vec<String>> {
    let mut b = Broadcast::new("registered", Default::default());
    b.timeout = timeout;
    let replies = ControlClient::for_client(client)
        .broadcast(&b)
        .await
        .unwrap_or_default();
    replies
        .into_iter()
        .map(|(node, v)| {
            let names = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|s| s.split_whitespace().next())
                .map(str::to_string)
                .collect();
            (node, names)
        })
        .collect()
}

pub async fn queues(s: &Settings, a: QueuesArgs) -> anyhow::Result<ExitCode> {
    let client = super::client(s).await?;
    let broker = client.broker();
    let explicit = !a.queues.is_empty();
    let names: Vec<String> = if explicit {
        a.queues.clone()
    } else {
        let mut set: BTreeSet<String> = s.queues.iter().cloned().collect();
        set.extend(s.router.queues());
        set.into_iter().collect()
    };
    let (stats, consumers) = tokio::join!(
        hlbot_engine::queues::stats(broker, &names),
        consumers(&client, Duration::from_secs_f64(a.timeout.max(0.01)))
    );
    let mut stats = stats?;
    if explicit {
        stats.retain(|q| names.contains(&q.queue));
    }
    if a.json {
        for q in &stats {
            let mut v = serde_json::to_value(q)?;
            v["consumers"] = json!(consumers.get(&q.queue).cloned().unwrap_or_default());
            println!("{v}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:>8} {:>8} {:>9} {:>6}  {:<18} consumers",
        "queue", "waiting", "unacked", "scheduled", "dead", "by priority"
    );
    for q in &stats {
        let prio = q
            .by_priority
            .iter()
            .map(|(p, n)| format!("p{p}:{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let who = consumers.get(&q.queue).map_or(0, Vec::len);
        println!(
            "{:<20} {:>8} {:>8} {:>9} {:>6}  {:<18} {who}",
            q.queue,
            q.waiting,
            q.unacked,
            q.scheduled,
            q.dead,
            if prio.is_empty() { "-" } else { &prio }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One row of `hlbot tasks`.
pub fn task_rows(reg: &Registry, router: &Router) -> Vec<Value> {
    reg.names()
        .into_iter()
        .map(|name| {
            let args = reg.get(&name).and_then(|t| t.arguments());
            json!({
                "name": name,
                "arguments": args,
                "queue": router.queue_for(&name),
            })
        })
        .collect()
}

pub fn tasks(s: &Settings, a: TasksArgs) -> anyhow::Result<ExitCode> {
    let reg = super::worker::registry(s, None);
    for row in task_rows(&reg, &s.router) {
        if a.json {
            println!("{row}");
            continue;
        }
        let args = match row["arguments"].as_array() {
            Some(list) => list
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            None => "*args, **kwargs".into(),
        };
        println!(
            "{}({args})  queue={}",
            row["name"].as_str().unwrap_or_default(),
            row["queue"].as_str().unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `hlbot completions SHELL`: the script on stdout (a closed pipe is not an error).
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = <crate::args::Cli as clap::CommandFactory>::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "hlbot", &mut buf);
    emit(&buf)
}

/// `hlbot man`: the man page (roff) on stdout.
pub fn man() -> anyhow::Result<ExitCode> {
    let cmd = <crate::args::Cli as clap::CommandFactory>::command();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    emit(&buf)
}

fn emit(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
