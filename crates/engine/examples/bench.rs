//! Engine benchmark driver (not a test, never run in CI): enqueue rate, drain rate of a worker
//! command, enqueue→start latency, idle memory and Redis commands per task. `scripts/bench.sh`
//! runs it against hlbot and Python Celery; each run prints one JSON object on stdout.
//!
//! ```text
//! bench enqueue --broker URL --prefix P -n N [--batch B | --loop]
//! bench drain   --broker URL [--amqp URL] --prefix P -n N [--timeout S] [--workers K] -- WORKER COMMAND...
//! bench latency --broker URL --prefix P -n N [--idle-ms MS] -- WORKER COMMAND (with -E)...
//! ```
//!
//! Every task is `hlbot.debug.echo(i)` on queue `bench`. The worker command must consume `bench`
//! on the same prefix and store results; it is started in its own process group and stopped
//! with SIGTERM (SIGKILL after 20 s). `--workers K` starts K copies of it (a fleet on one
//! Redis); the drain result then also reports Redis's own CPU time per task (`INFO cpu`).
//! `--amqp URL`: the tasks are published to that RabbitMQ (each confirmed) instead of the Redis
//! broker, which then only holds the results (the Redis counts are the result backend's).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hlbot_engine::amqp::{Amqp, AmqpUrl, Layout};
use hlbot_engine::{
    Backend, Broker, BrokerOptions, Client, RedisSettings, Router, SendOptions, TaskCall,
};
use hlbot_proto::{ResultMeta, State, time};
use redis::AsyncCommands;
use serde_json::{Map, Value, json};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const QUEUE: &str = "bench";
const TASK: &str = "hlbot.debug.echo";

#[derive(Debug, Default)]
struct Opts {
    broker: String,
    amqp: Option<String>,
    prefix: String,
    n: usize,
    batch: usize,
    one_by_one: bool,
    timeout: f64,
    idle_ms: u64,
    workers: usize,
    cmd: Vec<String>,
}

fn parse(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        broker: "redis://127.0.0.1:6379/0".into(),
        prefix: format!("bench:{}:", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        n: 10_000,
        batch: 1000,
        timeout: 900.0,
        idle_ms: 20,
        workers: 1,
        ..Default::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--broker" => o.broker = val()?,
            "--amqp" => o.amqp = Some(val()?),
            "--prefix" => o.prefix = val()?,
            "-n" => o.n = val()?.parse()?,
            "--batch" => o.batch = val()?.parse()?,
            "--loop" => o.one_by_one = true,
            "--timeout" => o.timeout = val()?.parse()?,
            "--idle-ms" => o.idle_ms = val()?.parse()?,
            "--workers" => o.workers = val()?.parse()?,
            "--" => {
                o.cmd = it.cloned().collect();
                break;
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    o.batch = o.batch.max(1);
    Ok(o)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(what) = args.first() else {
        eprintln!("usage: bench enqueue|drain|latency [options] [-- worker command]");
        std::process::exit(2);
    };
    let run = async {
        let o = parse(&args[1..])?;
        match what.as_str() {
            "enqueue" => enqueue(&o).await,
            "drain" => drain(&o).await,
            "latency" => latency(&o).await,
            other => Err(format!("unknown benchmark {other:?}").into()),
        }
    };
    match run.await {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("bench {what}: {e}");
            std::process::exit(1);
        }
    }
}

async fn client(o: &Opts) -> Res<Client> {
    let s = RedisSettings::new(&o.broker)?
        .with_prefix(&o.prefix)
        .with_result_prefix(&o.prefix);
    let broker = Broker::connect(&s, BrokerOptions::default()).await?;
    let backend = Backend::connect(&s, Some(Duration::from_secs(3600))).await?;
    let c = Client::new(broker, backend, Router::default());
    Ok(match &o.amqp {
        Some(url) => c.with_amqp(Amqp::new(
            AmqpUrl::parse(url)?,
            Layout::default(),
            "hlbot-bench",
        )),
        None => c,
    })
}

fn call(i: usize) -> TaskCall {
    TaskCall {
        name: TASK.into(),
        args: vec![json!(i)],
        kwargs: Map::new(),
        options: SendOptions {
            queue: Some(QUEUE.into()),
            ..Default::default()
        },
    }
}

/// Publish `n` echo tasks; returns their ids.
async fn publish(c: &Client, o: &Opts, one_by_one: bool) -> Res<Vec<String>> {
    let mut ids = Vec::with_capacity(o.n);
    if one_by_one {
        for i in 0..o.n {
            let t = call(i);
            ids.push(c.send_task(&t.name, t.args, t.kwargs, t.options).await?.id);
        }
    } else {
        let mut i = 0;
        while i < o.n {
            let end = (i + o.batch).min(o.n);
            let calls: Vec<TaskCall> = (i..end).map(call).collect();
            ids.extend(c.send_many(calls).await?.into_iter().map(|h| h.id));
            i = end;
        }
    }
    Ok(ids)
}

/// Enqueue rate of the Rust client: `send_many` in pipelined batches, or `send_task` one by one.
async fn enqueue(o: &Opts) -> Res<Value> {
    let c = client(o).await?;
    let q = vec![QUEUE.to_string()];
    // Warm up (connection, queue declare), then start from an empty queue.
    c.send_task(TASK, vec![], Map::new(), call(0).options)
        .await?;
    c.broker().purge(&q).await?;
    let t0 = Instant::now();
    publish(&c, o, o.one_by_one).await?;
    let secs = t0.elapsed().as_secs_f64();
    let queued = c.broker().len(QUEUE).await?;
    c.broker().purge(&q).await?;
    if queued != o.n as u64 {
        return Err(format!("{queued} messages queued, expected {}", o.n).into());
    }
    Ok(json!({
        "bench": "enqueue",
        "mode": if o.one_by_one { "send_task loop".to_string() } else { format!("send_many batch {}", o.batch) },
        "n": o.n, "secs": secs, "rate": o.n as f64 / secs,
    }))
}

/// Preload `n` tasks, start the worker, wait until every result is SUCCESS. The drain rate is
/// measured between the first and the last `date_done` the worker stored (startup excluded);
/// the wall rate from the worker's spawn to the last `date_done`.
async fn drain(o: &Opts) -> Res<Value> {
    let c = client(o).await?;
    c.broker().purge(&[QUEUE.to_string()]).await?;
    let ids = publish(&c, o, false).await?;
    let mut conn = c.broker().conn();
    let before = commandstats(&mut conn).await?;
    let cpu_before = redis_cpu(&mut conn).await?;
    let spawned = time::unix(chrono::Utc::now());
    let mut workers = Vec::with_capacity(o.workers.max(1));
    for _ in 0..o.workers.max(1) {
        workers.push(Worker::spawn(&o.cmd)?);
    }
    let deadline = Instant::now() + Duration::from_secs_f64(o.timeout);
    let keys = c.broker().keys().clone();
    let (qkey, unacked) = (keys.queue_for(QUEUE, 0), keys.unacked());
    let mut pending: Vec<&String> = ids.iter().collect();
    let mut done: Vec<f64> = Vec::with_capacity(ids.len());
    loop {
        if Instant::now() > deadline {
            for w in &mut workers {
                w.stop().await;
            }
            return Err(format!("timed out: {} of {} not done", pending.len(), o.n).into());
        }
        if let Some(status) = workers.iter_mut().find_map(|w| w.exited()) {
            return Err(format!("worker exited early ({status})").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (ql, ul): (u64, u64) = redis::pipe()
            .llen(&qkey)
            .hlen(&unacked)
            .query_async(&mut conn)
            .await?;
        if ql > 0 || ul > 0 {
            continue;
        }
        let mut still = Vec::new();
        for chunk in pending.chunks(1000) {
            let rkeys: Vec<String> = chunk.iter().map(|id| keys.result(id)).collect();
            let raws: Vec<Option<Vec<u8>>> = conn.mget(&rkeys).await?;
            for (id, raw) in chunk.iter().zip(raws) {
                match raw.and_then(|r| ResultMeta::from_slice(&r).ok()) {
                    Some(m) if m.status == State::Success => {
                        let at = m.date_done.as_deref().and_then(time::parse_iso);
                        done.push(at.map(time::unix).ok_or("SUCCESS without date_done")?);
                    }
                    _ => still.push(*id),
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
    }
    let after = commandstats(&mut conn).await?;
    let cpu_after = redis_cpu(&mut conn).await?;
    for w in &mut workers {
        w.stop().await;
    }
    let first = done.iter().copied().fold(f64::INFINITY, f64::min);
    let last = done.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let per_task = delta_per_task(&before, &after, o.n);
    let total: f64 = per_task.iter().filter_map(|(_, v)| v.as_f64()).sum();
    Ok(json!({
        "bench": "drain", "n": o.n, "worker": o.cmd.join(" "), "workers": workers.len(),
        "broker": if o.amqp.is_some() { "amqp" } else { "redis" },
        "redis_cpu_us_per_task": ((cpu_after - cpu_before) * 1e6 / o.n.max(1) as f64 * 100.0).round() / 100.0,
        "drain_secs": last - first,
        "rate": (o.n.saturating_sub(1)) as f64 / (last - first).max(1e-9),
        "wall_secs": last - spawned,
        "wall_rate": o.n as f64 / (last - spawned).max(1e-9),
        "redis_cmds_per_task": (total * 100.0).round() / 100.0,
        "redis_cmds_by_name": per_task.into_iter().collect::<Map<String, Value>>(),
    }))
}

/// Start the worker on an idle queue, measure its memory once warm, then send `n` tasks one at a
/// time (the next only after the previous result, plus `idle_ms`) and time send → STARTED and
/// send → SUCCESS as seen on the result channel (both workers PUBLISH each stored state).
async fn latency(o: &Opts) -> Res<Value> {
    let c = client(o).await?;
    c.broker().purge(&[QUEUE.to_string()]).await?;
    let s = c.broker().settings().clone();
    let mut ps = s.pubsub().await?;
    let pattern = format!("{}*", c.backend().keys().result(""));
    ps.psubscribe(hlbot_engine::redis::keys::glob_escape(&pattern))
        .await?;
    // Task events (the worker runs with -E): `task-started` carries the worker's clock at the
    // moment the task began, on the same machine as ours.
    ps.psubscribe(c.broker().keys().event_pattern()).await?;
    let mut stream = ps.on_message();
    let mut worker = Worker::spawn(&o.cmd)?;
    // Warm up: the first task also waits for the worker to be ready.
    for i in 0..3 {
        let h = c
            .send_task(TASK, vec![json!(i)], Map::new(), call(i).options)
            .await?;
        h.get(Duration::from_secs(120)).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mem = worker.memory();
    let (mut to_start, mut to_done) = (Vec::with_capacity(o.n), Vec::with_capacity(o.n));
    let mut to_sent = Vec::with_capacity(o.n);
    for i in 0..o.n {
        let id = uuid::Uuid::new_v4().to_string();
        let mut opts = call(i).options;
        opts.task_id = Some(id.clone());
        let sent_at = time::unix(chrono::Utc::now());
        let t0 = Instant::now();
        c.send_task(TASK, vec![json!(i)], Map::new(), opts).await?;
        to_sent.push(t0.elapsed().as_secs_f64() * 1e3);
        let (mut started, mut done) = (None, None);
        while started.is_none() || done.is_none() {
            let msg = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .map_err(|_| format!("no result/task-started event for task {i} within 30 s"))?
                .ok_or("pubsub closed")?;
            let payload = msg.get_payload_bytes();
            if let Ok(m) = ResultMeta::from_slice(payload) {
                if m.task_id == id && m.status.is_ready() {
                    done = Some(t0.elapsed().as_secs_f64() * 1e3);
                }
            } else if let Some(ts) = started_event(payload, &id) {
                started = Some((ts - sent_at) * 1e3);
            }
        }
        to_start.extend(started);
        to_done.extend(done);
        tokio::time::sleep(Duration::from_millis(o.idle_ms)).await;
    }
    drop(stream);
    worker.stop().await;
    Ok(json!({
        "bench": "latency", "n": o.n, "worker": o.cmd.join(" "), "idle_ms": o.idle_ms,
        "send_ms": percentiles(&mut to_sent),
        "start_ms": percentiles(&mut to_start),
        "done_ms": percentiles(&mut to_done),
        "idle_memory": mem,
    }))
}

/// The `timestamp` of the `task-started` event for `id` in a published event envelope (one
/// event, or a `task.multi` batch).
fn started_event(payload: &[u8], id: &str) -> Option<f64> {
    let env = hlbot_proto::Envelope::from_slice(payload).ok()?;
    let body: Value = serde_json::from_slice(&env.body_bytes().ok()?).ok()?;
    let events = match body {
        Value::Array(v) => v,
        one => vec![one],
    };
    events
        .iter()
        .find(|e| e["type"] == "task-started" && e["uuid"] == id)
        .and_then(|e| e["timestamp"].as_f64())
}

fn percentiles(v: &mut [f64]) -> Value {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)]
    };
    json!({"p50": at(50.0), "p90": at(90.0), "p99": at(99.0), "max": at(100.0)})
}

/// Redis's own CPU seconds so far (`INFO cpu`: used_cpu_sys + used_cpu_user, main thread and
/// the rest; the polling of this tool is included, a few hundred calls per run).
async fn redis_cpu(conn: &mut hlbot_engine::redis::Conn) -> Res<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k, "used_cpu_sys" | "used_cpu_user").then(|| v.trim().parse::<f64>().ok())?
        })
        .sum())
}

/// `INFO commandstats` as command → calls (commands run inside Lua scripts count too).
async fn commandstats(conn: &mut hlbot_engine::redis::Conn) -> Res<BTreeMap<String, u64>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let mut m = BTreeMap::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, fields)) = rest.split_once(':') else {
            continue;
        };
        let calls = fields
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        m.insert(name.to_string(), calls);
    }
    Ok(m)
}

/// Per-task command counts between two snapshots, biggest first (the two INFO calls and this
/// tool's polling are included; they are < 0.05 per task at n = 50 000).
fn delta_per_task(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    n: usize,
) -> Vec<(String, Value)> {
    let mut v: Vec<(String, f64)> = after
        .iter()
        .map(|(k, a)| {
            let d = a.saturating_sub(before.get(k).copied().unwrap_or(0));
            (k.clone(), d as f64 / n.max(1) as f64)
        })
        .filter(|(_, d)| *d >= 0.005)
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.into_iter()
        .map(|(k, d)| (k, json!((d * 1000.0).round() / 1000.0)))
        .collect()
}

/// The worker under test: its own process group, killed as a group.
struct Worker {
    child: tokio::process::Child,
    pid: i32,
}

impl Worker {
    fn spawn(cmd: &[String]) -> Res<Self> {
        let (prog, args) = cmd.split_first().ok_or("no worker command after --")?;
        let child = tokio::process::Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {prog}: {e}"))?;
        let pid = child.id().ok_or("worker has no pid")? as i32;
        Ok(Self { child, pid })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid), sig);
    }

    async fn stop(&mut self) {
        use nix::sys::signal::Signal;
        self.signal(Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
        // Prefork children may outlive the parent by a moment.
        self.signal(Signal::SIGKILL);
    }

    /// RSS and PSS (KiB) summed over every process in the worker's process group.
    fn memory(&self) -> Value {
        let (mut rss, mut pss, mut procs) = (0u64, 0u64, 0u64);
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return json!(null);
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after "(comm) ": state ppid pgrp ...
            let pgrp = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(2))
                .and_then(|s| s.parse::<i32>().ok());
            if pgrp != Some(self.pid) {
                continue;
            }
            procs += 1;
            rss += kib(&format!("/proc/{pid}/status"), "VmRSS:");
            pss += kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:");
        }
        json!({"processes": procs, "rss_kib": rss, "pss_kib": pss})
    }
}

fn kib(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
