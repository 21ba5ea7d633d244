//! `worker`, `call`, `dead`, and the hidden `worker-child`: the consumer side of the CLI.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hlbot_engine::worker::child::{self, ChildOptions};
use hlbot_engine::{Registry, Shutdown, TaskError, Worker, WorkerOptions, deadletter};
use serde_json::{Map, Value};

use crate::args::{CallArgs, DeadCommand, WorkerArgs};
use crate::settings::Settings;

/// Every task this binary knows: the diagnostic tasks plus the domain tasks. With a broker
/// connection the LLM response cache and the daily spend live in Redis (shared by every worker).
pub fn registry(s: &Settings, broker: Option<&hlbot_engine::Broker>) -> Registry {
    registry_with_roots(s, broker, &[])
}

/// [`registry`] with extra input roots (`hlbot call`: the folders of the files it names).
fn registry_with_roots(
    s: &Settings,
    broker: Option<&hlbot_engine::Broker>,
    extra_roots: &[&std::path::Path],
) -> Registry {
    registry_from(
        crate::domain::task_settings(&s.domain, extra_roots),
        broker,
        None,
    )
}

/// The registry for domain settings `ts` whose tasks use the research library (dedup, storing
/// results) when one is given.
fn registry_from(
    mut ts: hlbot_tasks::TaskSettings,
    broker: Option<&hlbot_engine::Broker>,
    library: Option<hlbot_store::Store>,
) -> Registry {
    ts.library = library;
    if let Some(b) = broker {
        let ttl = Duration::from_secs(7 * 24 * 3600);
        ts.llm.spend = Some(std::sync::Arc::new(
            hlbot_tasks::llm_spend::RedisSpend::new(b.conn(), b.keys().app("llm.spend.")),
        ));
        ts.llm.cache = std::sync::Arc::new(hlbot_tasks::llm_cache::RedisCache::new(
            b.conn(),
            b.keys().app("llm.cache."),
            ttl,
        ));
    }
    let mut r = Registry::with_debug_tasks();
    hlbot_tasks::register(&mut r, std::sync::Arc::new(ts));
    hlbot_engine::builtin::register(&mut r);
    r
}

fn limit(secs: f64) -> Option<Duration> {
    hlbot_engine::worker::limits::secs(secs)
}

pub async fn run(s: &Settings, a: WorkerArgs, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let client = super::client(s).await?;
    let exe =
        std::env::current_exe().context("locating the hlbot binary for task child processes")?;
    let mut command = vec![exe.display().to_string()];
    if let Some(p) = &s.config_path {
        command.extend(["--config".to_string(), p.display().to_string()]);
    }
    // The children's log lines go to the same stderr, so in the same format.
    command.extend(["--log-format".into(), s.log_format.as_str().into()]);
    command.push("worker-child".into());
    let node_name = a.hostname.replace("%h", &hlbot_engine::client::hostname());
    let a_limits = Limits {
        strict: a.strict,
        threads: a.threads,
        max_tasks_per_child: a.max_tasks_per_child,
        max_memory_per_child: a.max_memory_per_child,
    };
    let mut opts = WorkerOptions {
        spill_file: Some(spill_file(s, &node_name)),
        node_name,
        queues: if a.queues.is_empty() {
            s.queues.clone()
        } else {
            a.queues
        },
        concurrency: a.concurrency.max(1),
        prefetch_multiplier: a.prefetch_multiplier.max(1),
        acks_late: a.acks_late,
        result_extended: a.result_extended || s.result_extended,
        accept_content: s.accept_content.clone(),
        soft_time_limit: limit(a.soft_time_limit),
        time_limit: limit(a.time_limit),
        // The worker's /metrics counts its own task events: --http-port turns them on.
        task_events: a.task_events || a.http_port.is_some(),
        child: Some(ChildOptions {
            command,
            max_tasks_per_child: a.max_tasks_per_child,
            max_memory_kib: a.max_memory_per_child,
            env: child_env(s),
        }),
        shutdown_timeout: limit(a.shutdown_timeout).unwrap_or_default(),
        reclaim_after: limit(a.reclaim_after),
        count_runs: a.count_runs,
        ..Default::default()
    };
    let store = super::library::open_in_background(s).await;
    let history = match (&store, a.no_history) {
        (Some(st), false) => Some(start_history(st)),
        _ => None,
    };
    opts.runlog = history
        .clone()
        .map(|h| h as std::sync::Arc<dyn hlbot_engine::RunLog>);
    // The domain settings, built once: the registry, the tool check and the PDF spares.
    let ts = crate::domain::task_settings(&s.domain, &[]);
    let reg = registry_from(ts.clone(), Some(client.broker()), store);
    let report = crate::checks::check(
        &ts,
        &crate::checks::tools_for(&reg, &s.router, &opts.queues),
    );
    banner(s, &a_limits, &opts, &report);
    for p in &report.problems {
        tracing::warn!("{p}");
    }
    if client.amqp().is_none() {
        let b = client.broker();
        let stray =
            hlbot_engine::queues::stray_priority_lists(&mut b.conn(), b.keys(), &opts.queues).await;
        for (key, n) in stray.unwrap_or_default() {
            tracing::warn!("{}", hlbot_engine::queues::describe_stray(&key, n));
        }
    }
    if a_limits.strict && !report.problems.is_empty() {
        anyhow::bail!(
            "refusing to start (--strict): {} tool problem(s), see above",
            report.problems.len()
        );
    }
    if opts.queues.iter().any(|q| q == "pdf") {
        // Start the spare PDFium workers now, so the first document does not wait for one.
        let pdf = ts.pdf.clone();
        tokio::task::spawn_blocking(move || hlbot_pdf::prestart_workers(&pdf));
    }
    // -B: beat in the same process, stopped when the worker stops (also by remote shutdown).
    let beat_stop = tokio_util::sync::CancellationToken::new();
    let beat = match a.beat {
        true => Some(tokio::spawn(
            super::beat::build(s, None).await?.run(beat_stop.clone()),
        )),
        false => None,
    };
    let heartbeat = opts.heartbeat;
    let endpoint = Endpoint {
        health_address: a.health_address.clone(),
        http_port: a.http_port,
        node_name: opts.node_name.clone(),
        broker: client.broker().clone(),
        amqp: client.amqp().map(|a| a.url.clone()),
    };
    let worker = Worker::new(client, reg, opts).await?;
    supervise(&worker, endpoint, heartbeat, &beat_stop).await?;
    let ran = worker.run(shutdown).await;
    if let Some(h) = history {
        // Task runs still queued for the database: a bounded wait, never a hang at exit.
        let flushed = tokio::time::timeout(Duration::from_secs(20), h.flush()).await;
        if !matches!(flushed, Ok(true)) {
            tracing::warn!("task history: runs still queued at exit were not all written");
        }
    }
    beat_stop.cancel();
    if let Some(b) = beat {
        let _ = b.await;
    }
    ran?;
    Ok(ExitCode::SUCCESS)
}

/// The worker flags the banner shows besides the options.
struct Limits {
    strict: bool,
    threads: u16,
    max_tasks_per_child: Option<u32>,
    max_memory_per_child: Option<u64>,
}

/// Celery-like start-up banner on stderr: node, broker, queues, concurrency, limits, tools.
fn banner(s: &Settings, l: &Limits, o: &WorkerOptions, r: &crate::checks::Report) {
    let secs =
        |d: Option<Duration>| d.map_or("none".to_string(), |d| format!("{}s", d.as_secs_f64()));
    let opt = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    let tools = if r.found.is_empty() {
        "none needed".to_string()
    } else {
        r.found.join("; ")
    };
    if s.log_format == crate::args::LogFormat::Json {
        // Every stderr line is a JSON object: the banner is one event with its facts as fields.
        tracing::info!(
            node = %o.node_name,
            version = env!("CARGO_PKG_VERSION"),
            broker = %s.broker_display(),
            queues = %o.queues.join(","),
            concurrency = o.concurrency,
            prefetch_multiplier = o.prefetch_multiplier,
            threads = l.threads,
            soft_time_limit = %secs(o.soft_time_limit),
            time_limit = %secs(o.time_limit),
            tools = %tools,
            "hlbot worker {} starting",
            o.node_name
        );
        return;
    }
    eprintln!(
        "hlbot worker {} v{}\n  broker:      {}\n  queues:      {}\n  concurrency: {} (prefetch x{}, {} thread(s))\n  limits:      soft {}, hard {}, max tasks per child {}, max memory per child {}\n  tools:       {}",
        o.node_name,
        env!("CARGO_PKG_VERSION"),
        s.broker_display(),
        o.queues.join(", "),
        o.concurrency,
        o.prefetch_multiplier,
        l.threads,
        secs(o.soft_time_limit),
        secs(o.time_limit),
        opt(l.max_tasks_per_child.map(|n| n.to_string())),
        opt(l.max_memory_per_child.map(|n| format!("{n} KiB"))),
        tools
    );
}

/// The task-history writer on `store`, and an hourly prune of runs past
/// `task_history_days`.
fn start_history(store: &hlbot_store::Store) -> std::sync::Arc<hlbot_store::RunWriter> {
    let (log, _) = hlbot_store::RunWriter::start(store.clone(), Default::default());
    let (store, days) = (store.clone(), store.config().task_history_days);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match store.prune_history(days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("task history: pruned {n} runs older than {days} days"),
                Err(e) => tracing::debug!("task history prune: {e}"),
            }
        }
    });
    log
}

/// What task child processes need to reach the same library (a `--database-url` or
/// `--data-dir` flag is not in their environment otherwise).
fn child_env(s: &Settings) -> child::ChildEnv {
    let mut env = vec![(
        "HLBOT_DATA_DIR".to_string(),
        s.store.data_dir.display().to_string(),
    )];
    if let Some(u) = &s.store.url {
        env.push(("DATABASE_URL".into(), u.clone()));
    }
    child::ChildEnv(env)
}

/// Where the worker answers health checks and scrapes.
struct Endpoint {
    /// `--health-address`: `/healthz` (and `/readyz`) only.
    health_address: Option<String>,
    /// `--http-port`: `/healthz`, `/readyz` and `/metrics` on all interfaces.
    http_port: Option<u16>,
    node_name: String,
    broker: hlbot_engine::Broker,
    /// The AMQP broker, where this node's events go instead of Redis.
    amqp: Option<hlbot_engine::amqp::AmqpUrl>,
}

/// Tell a supervisor how the worker is: systemd's notify protocol when `NOTIFY_SOCKET` is set,
/// the health endpoint when an address is given, `/metrics` too with `--http-port` (stopped
/// with `stop`).
async fn supervise(
    worker: &Worker,
    e: Endpoint,
    heartbeat: Duration,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    if let Some(n) = crate::systemd::Notifier::from_env() {
        tokio::spawn(n.follow(worker.vitals(), heartbeat));
    }
    if let Some(addr) = &e.health_address {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the health endpoint --health-address {addr}"))?;
        tracing::info!("health endpoint on http://{addr}/healthz");
        tokio::spawn(crate::health::serve(
            listener,
            worker.vitals(),
            heartbeat,
            None,
            stop.clone(),
        ));
    }
    if let Some(port) = e.http_port {
        let addr = format!("0.0.0.0:{port}");
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding --http-port {port}"))?;
        // This node's own events: a bounded window (the counters are what is served).
        let mopts = hlbot_engine::monitor::MonitorOptions {
            max_tasks: 1000,
            only_host: Some(e.node_name),
            enable_events: false,
        };
        let monitor = match e.amqp {
            Some(url) => {
                hlbot_engine::monitor::Monitor::spawn_amqp(e.broker, url, mopts, stop.clone())
            }
            None => hlbot_engine::monitor::Monitor::spawn(e.broker, mopts, stop.clone()),
        };
        tracing::info!("metrics on http://{addr}/metrics (and /healthz, /readyz)");
        tokio::spawn(crate::health::serve(
            listener,
            worker.vitals(),
            heartbeat,
            Some(monitor),
            stop.clone(),
        ));
    }
    Ok(())
}

/// `hlbot health`: exit 0 when the worker's endpoint says healthy.
pub async fn health(a: crate::args::HealthArgs) -> anyhow::Result<ExitCode> {
    let (ok, why) = crate::health::probe(&a.address).await?;
    println!("{why}");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Where the worker saves writes Redis did not take at exit: per node name, in the cache folder.
fn spill_file(s: &Settings, node: &str) -> std::path::PathBuf {
    let safe: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    crate::domain::cache_dir(&s.domain)
        .join("spill")
        .join(format!("{safe}.jsonl"))
}

pub async fn call(s: &Settings, a: CallArgs, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let args: Vec<Value> = serde_json::from_str(&a.args).context("--args must be a JSON list")?;
    let kwargs: Map<String, Value> =
        serde_json::from_str(&a.kwargs).context("--kwargs must be a JSON object")?;
    let folders = crate::domain::named_file_folders(&kwargs);
    let folders: Vec<&std::path::Path> = folders.iter().map(|p| p.as_path()).collect();
    let reg = registry_with_roots(s, None, &folders);
    let bar = super::progress::Bar::new();
    let sink: std::sync::Arc<dyn hlbot_engine::task::ProgressSink> = bar.clone();
    let outcome = hlbot_engine::apply::apply(
        &reg,
        &a.task,
        args,
        kwargs,
        Some(sink),
        shutdown.warm.clone(),
    )
    .await;
    bar.finish();
    match outcome {
        Ok(v) => {
            println!("{}", serde_json::to_string(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let kind = match &e {
                TaskError::Retry { .. } => "retryable error",
                TaskError::Reject { .. } => "rejected",
                TaskError::Fail { .. } => "failed",
            };
            eprintln!("{} {kind}: {}", a.task, e.exception().display());
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn dead(client: &hlbot_engine::Client, cmd: DeadCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DeadCommand::List { limit, json } => {
            let items = deadletter::list(client.broker(), limit).await?;
            if items.is_empty() && !json {
                println!("no dead letters");
            }
            for d in items {
                if json {
                    println!("{}", serde_json::to_string(&d)?);
                } else {
                    println!(
                        "{}  queue={}  task={}  id={}\n    {}",
                        hlbot_proto::time::isoformat(
                            chrono::DateTime::from_timestamp(d.at as i64, 0).unwrap_or_default()
                        ),
                        d.queue,
                        d.task.as_deref().unwrap_or("-"),
                        d.task_id.as_deref().unwrap_or("-"),
                        d.reason
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadCommand::Delete { id, all } => {
            if id.is_none() && !all {
                anyhow::bail!("name a task id or pass --all");
            }
            let n = deadletter::delete(client.broker(), id.as_deref()).await?;
            println!("deleted {n} dead letter(s)");
            Ok(if n == 0 && id.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        DeadCommand::Replay { id, all } => {
            if id.is_none() && !all {
                anyhow::bail!("name a task id or pass --all");
            }
            // On a RabbitMQ fleet the messages go back to RabbitMQ, not to a Redis list.
            let n = match client.amqp() {
                Some(a) => deadletter::replay_amqp(client.broker(), a, id.as_deref()).await?,
                None => deadletter::replay(client.broker(), id.as_deref()).await?,
            };
            println!("replayed {n} message(s)");
            Ok(if n == 0 && id.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

pub async fn child(s: &Settings) -> anyhow::Result<ExitCode> {
    // The LLM answer cache is shared through Redis, as in the worker (a re-run does not pay
    // twice); without Redis the child falls back to the disk cache.
    let client = tokio::time::timeout(Duration::from_secs(5), super::client(s))
        .await
        .ok()
        .and_then(Result::ok);
    // The parent migrated the library; connect lazily so a database that is away never delays
    // a task (its library calls then fail and the work runs without it).
    let store = hlbot_store::Store::connect_lazy(&s.store).await.ok();
    let broker = client.as_ref().map(|c| c.broker());
    child::serve(registry_from(
        crate::domain::task_settings(&s.domain, &[]),
        broker,
        store,
    ))
    .await;
    Ok(ExitCode::SUCCESS)
}
