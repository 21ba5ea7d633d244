//! `hlbot worker`: consumes Celery messages from Redis and runs them with Celery's semantics —
//! prefetch, early/late acks, ETA holds that are never duplicated, retries, time limits that really
//! stop work, dead letters, graceful shutdown and reconnect.
//!
//! Points of the run, each its own module: `consumer` (fetch + dispatch), `executor` (run + outcome),
//! `limits`/`child` (time limits, process isolation), `retry`/`links` (republishing), `writer`
//! (batched Redis writes), `state` (what inspect shows).

pub mod child;
pub mod consumer;
pub mod executor;
pub mod limits;
pub mod links;
pub mod rate;
pub mod retry;
pub mod state;
pub mod writer;

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use serde_json::{Map, Value};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::broker::Broker;
use crate::client::Client;
use crate::error::Result;
use crate::events::{Clock, Events};
use crate::registry::Registry;
use crate::task::Services;
use child::{ChildOptions, ChildPool};
use state::{Phase, WorkerState};
use writer::Writer;

/// Worker settings (Celery's worker options).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Node name, `name@host`.
    pub node_name: String,
    pub queues: Vec<String>,
    pub concurrency: usize,
    pub prefetch_multiplier: usize,
    /// Ack after the task instead of when it starts (per-task setting wins).
    pub acks_late: bool,
    /// With acks_late: requeue instead of failing when the process running a task dies.
    pub reject_on_worker_lost: bool,
    pub soft_time_limit: Option<Duration>,
    pub time_limit: Option<Duration>,
    /// Store STARTED when a task starts.
    pub track_started: bool,
    /// Send task events from the start (`-E`).
    pub task_events: bool,
    /// How to start child processes for `Isolation::Process` tasks (None: run them in-process).
    pub child: Option<ChildOptions>,
    /// Warm shutdown waits this long for running tasks before stopping them.
    pub shutdown_timeout: Duration,
    /// Count committed runs per task id in `hlbot.runs.<id>` (tests, crash drills).
    pub count_runs: bool,
    /// Worker heartbeat interval (Celery: 2 s).
    pub heartbeat: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            node_name: format!("celery@{}", crate::client::hostname()),
            queues: vec!["celery".into()],
            concurrency: 2,
            prefetch_multiplier: 1,
            acks_late: false,
            reject_on_worker_lost: true,
            soft_time_limit: Some(Duration::from_secs(30 * 60)),
            time_limit: Some(Duration::from_secs(40 * 60)),
            track_started: true,
            task_events: false,
            child: None,
            shutdown_timeout: Duration::from_secs(60),
            count_runs: false,
            heartbeat: Duration::from_secs(2),
        }
    }
}

/// Warm and cold shutdown, passed in by the caller (only `main` handles signals).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop fetching, drain running tasks within the deadline, restore the rest.
    pub warm: CancellationToken,
    /// Stop running tasks now; their messages go back to the queue.
    pub cold: CancellationToken,
}

/// Everything the worker's parts share.
pub struct Shared {
    pub opts: WorkerOptions,
    pub hostname: String,
    pub broker: Broker,
    pub backend: Backend,
    pub client: Client,
    pub registry: Registry,
    pub state: Arc<WorkerState>,
    pub writer: Writer,
    pub events: Events,
    pub children: Option<Arc<ChildPool>>,
    pub services: Arc<dyn Services>,
    /// Concurrency slots (grown/shrunk by control commands).
    pub slots: Arc<Semaphore>,
    pub concurrency: std::sync::atomic::AtomicUsize,
    queues: RwLock<Vec<String>>,
    pub cold: CancellationToken,
    pub reconnected: Notify,
    pub started_at: std::time::Instant,
    /// Revoked ids kept in Redis (`hlbot.revoked`), so restarted workers honour them.
    pub revocations: crate::revoke::Revocations,
    /// Cancelled by the `shutdown` control command: a warm shutdown.
    pub remote_stop: CancellationToken,
    /// Spacing of task starts for `control rate_limit`.
    pub rate_gate: rate::RateGate,
}

impl Shared {
    pub fn queues(&self) -> Vec<String> {
        self.queues.read().map(|q| q.clone()).unwrap_or_default()
    }

    pub fn set_queues(&self, q: Vec<String>) {
        if let Ok(mut w) = self.queues.write() {
            *w = q;
        }
    }

    /// Celery's prefetch count: concurrency × multiplier (ETA holds are extra).
    pub fn prefetch_limit(&self) -> usize {
        (self.concurrency.load(Ordering::SeqCst) * self.opts.prefetch_multiplier.max(1)).max(1)
    }
}

/// Broker-backed services for tasks.
struct WorkerServices {
    client: Client,
}

#[async_trait]
impl Services for WorkerServices {
    async fn send(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<String, String> {
        self.client
            .send_task(name, args, kwargs, Default::default())
            .await
            .map(|h| h.id)
            .map_err(|e| e.to_string())
    }
    async fn wait(&self, id: &str, timeout: Duration) -> Result<Value, String> {
        self.client
            .handle(id)
            .get(timeout)
            .await
            .map_err(|e| e.to_string())
    }
    async fn incr(&self, key: &str) -> Result<u64, String> {
        let mut c = self.client.broker().conn();
        c.incr(self.client.broker().keys().flaky(key), 1)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A worker, ready to run.
pub struct Worker {
    pub shared: Arc<Shared>,
}

impl Worker {
    pub async fn new(client: Client, registry: Registry, opts: WorkerOptions) -> Result<Self> {
        let broker = client.broker().clone();
        let backend = client.backend().clone();
        let (writer, _h) = Writer::spawn(broker.settings().clone(), broker.conn(), backend.expires);
        let clock = Arc::new(Clock::default());
        let events = Events::spawn(
            broker.conn(),
            broker.keys().clone(),
            &opts.node_name,
            opts.task_events,
            clock,
        );
        let children = opts.child.clone().map(|c| Arc::new(ChildPool::new(c)));
        let revocations = crate::revoke::Revocations::new(
            broker.settings(),
            broker.conn(),
            crate::revoke::DEFAULT_TTL,
        );
        let shared = Shared {
            hostname: opts.node_name.clone(),
            broker,
            backend,
            services: Arc::new(WorkerServices {
                client: client.clone(),
            }),
            client,
            registry,
            state: Arc::new(WorkerState::default()),
            writer,
            events,
            children,
            slots: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            concurrency: std::sync::atomic::AtomicUsize::new(opts.concurrency.max(1)),
            queues: RwLock::new(opts.queues.clone()),
            cold: CancellationToken::new(),
            reconnected: Notify::new(),
            started_at: std::time::Instant::now(),
            revocations,
            remote_stop: CancellationToken::new(),
            rate_gate: rate::RateGate::default(),
            opts,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Run until `shutdown.warm` (then drain) or `shutdown.cold` (then stop and requeue).
    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let sh = self.shared;
        sh.broker.declare(&sh.queues()).await?;
        match sh.broker.restore_visible().await {
            Ok(n) if n > 0 => {
                tracing::warn!("restored {n} message(s) left unacked past the visibility timeout")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("restore at startup failed: {e}"),
        }
        tracing::info!(
            "{} ready: queues [{}], concurrency {}",
            sh.hostname,
            sh.queues().join(", "),
            sh.opts.concurrency
        );
        crate::revoke::sync_once(&sh).await;
        sh.events.worker("worker-online", heartbeat_fields(&sh));
        // Warm shutdown comes from the caller or from the `shutdown` control command.
        let stop = shutdown.warm.child_token();
        let remote = (stop.clone(), sh.remote_stop.clone());
        tokio::spawn(async move {
            tokio::select! { _ = remote.1.cancelled() => remote.0.cancel(), _ = remote.0.cancelled() => {} }
        });
        let background = CancellationToken::new();
        tokio::spawn(crate::control::serve(sh.clone(), background.clone()));
        tokio::spawn(crate::revoke::sync_loop(sh.clone(), background.clone()));
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let consumer = tokio::spawn(consumer::run(sh.clone(), ready_tx, stop.clone()));
        let pool = tokio::spawn(pool_loop(sh.clone(), ready_rx, stop.clone()));
        tokio::spawn(heartbeat_loop(sh.clone(), background.clone()));
        tokio::spawn(refresh_loop(sh.clone(), background.clone()));
        tokio::spawn(restore_loop(sh.clone(), background.clone()));
        tokio::spawn(cold_watch(sh.clone(), shutdown.cold.clone()));

        stop.cancelled().await;
        tracing::info!("warm shutdown: no more fetching; draining running tasks");
        let _ = consumer.await;
        pool.abort();
        // Held and reserved messages go back to the head of their queues.
        let waiting: Vec<_> = sh
            .state
            .requests(Phase::Scheduled)
            .into_iter()
            .chain(sh.state.requests(Phase::Reserved))
            .collect();
        let tags: Vec<String> = waiting
            .iter()
            .map(|r| r.delivery.tag.clone())
            .filter(|t| !t.is_empty())
            .collect();
        if !tags.is_empty() {
            // Unacked entries of idle wake-ups may still be queued on the writer.
            sh.writer.flush().await;
            match sh.broker.restore(&tags).await {
                Ok(n) => tracing::info!("Restoring {n} unacknowledged message(s)"),
                Err(e) => tracing::error!(
                    "restore at shutdown failed (they will come back after the visibility timeout): {e}"
                ),
            }
        }
        for r in &waiting {
            sh.state.remove(r.id());
        }
        let deadline = tokio::time::sleep(sh.opts.shutdown_timeout);
        tokio::pin!(deadline);
        loop {
            if sh.state.active_count() == 0 {
                break;
            }
            tokio::select! {
                _ = sh.state.freed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = &mut deadline => { sh.cold.cancel(); }
                _ = shutdown.cold.cancelled() => { sh.cold.cancel(); }
            }
            if sh.cold.is_cancelled() {
                for r in sh.state.requests(Phase::Active) {
                    // kill first: a task that sees its token and returns must read as killed.
                    r.kill.cancel();
                    r.cancel.cancel();
                }
            }
        }
        sh.writer.flush().await;
        background.cancel();
        if let Some(c) = &sh.children {
            c.shutdown();
        }
        sh.events.worker("worker-offline", heartbeat_fields(&sh));
        tokio::time::sleep(Duration::from_millis(50)).await;
        tracing::info!("{} stopped", sh.hostname);
        Ok(())
    }
}

async fn cold_watch(sh: Arc<Shared>, cold: CancellationToken) {
    cold.cancelled().await;
    tracing::warn!("cold shutdown: stopping running tasks; their messages go back to the queue");
    sh.cold.cancel();
    for r in sh.state.requests(Phase::Active) {
        // kill first: a task that sees its token and returns must read as killed (requeued),
        // not as failed.
        r.kill.cancel();
        r.cancel.cancel();
    }
}

/// Start reserved requests in order as slots free up.
async fn pool_loop(
    sh: Arc<Shared>,
    mut ready: mpsc::UnboundedReceiver<state::Request>,
    stop: CancellationToken,
) {
    while let Some(req) = ready.recv().await {
        let permit = tokio::select! {
            p = sh.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.cancelled() => return,
        };
        if stop.is_cancelled() {
            return;
        }
        tokio::spawn(executor::execute(sh.clone(), req, permit));
    }
}

pub(crate) fn heartbeat_fields(sh: &Shared) -> Map<String, Value> {
    hlbot_proto::event::worker_fields(
        sh.opts.heartbeat.as_secs_f64(),
        sh.state.active_count(),
        sh.state.processed.load(Ordering::SeqCst),
        loadavg(),
    )
}

fn loadavg() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<f64> = s
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    [
        v.first().copied().unwrap_or(0.0),
        v.get(1).copied().unwrap_or(0.0),
        v.get(2).copied().unwrap_or(0.0),
    ]
}

async fn heartbeat_loop(sh: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(sh.opts.heartbeat);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => sh.events.worker("worker-heartbeat", heartbeat_fields(&sh)),
            _ = stop.cancelled() => return,
        }
    }
}

/// Keep every held message's `unacked_index` score fresh, so no restorer — ours or a Python
/// worker's — re-queues an ETA task or a long acks_late task while this worker has it.
async fn refresh_loop(sh: Arc<Shared>, stop: CancellationToken) {
    let every = (sh.broker.options.visibility_timeout / 4)
        .clamp(Duration::from_millis(200), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let tags = sh.state.held_tags();
                if let Err(e) = sh.broker.refresh(&tags).await {
                    tracing::debug!("refresh of held messages failed: {e}");
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// Restore messages other consumers left unacked past the visibility timeout (crashed workers).
async fn restore_loop(sh: Arc<Shared>, stop: CancellationToken) {
    let every = (sh.broker.options.visibility_timeout / 2)
        .clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match sh.broker.restore_visible().await {
                    Ok(n) if n > 0 => tracing::warn!("restored {n} message(s) unacked past the visibility timeout"),
                    Ok(_) => {}
                    Err(e) => tracing::debug!("restore scan failed: {e}"),
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}
