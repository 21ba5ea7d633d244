//! `hlbot worker`: consumes Celery messages from Redis and runs them with Celery's semantics —
//! prefetch, early/late acks, ETA holds that are never duplicated, retries, time limits that really
//! stop work, dead letters, graceful shutdown and reconnect.
//!
//! Points of the run, each its own module: `consumer` (fetch + dispatch), `executor` (run + outcome),
//! `limits`/`child` (time limits, process isolation), `retry`/`links` (republishing), `writer`
//! (batched Redis writes), `state` (what inspect shows); `options` (the settings), `services`
//! (what a running task may ask of the broker).

mod batch;
pub mod child;
pub mod chord;
pub mod consumer;
pub mod executor;
pub mod followups;
pub mod handle;
pub mod limits;
pub mod links;
pub mod op;
pub mod options;
mod orphans;
pub mod outcome;
pub mod rate;
pub mod retry;
mod services;
pub mod signature;
pub mod spill;
pub mod state;
mod upkeep;
pub mod vitals;
pub mod writer;

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::broker::Broker;
use crate::client::Client;
use crate::error::Result;
use crate::events::{Clock, EventTransport, Events};
use crate::liveness;
use crate::registry::Registry;
use crate::task::Services;
use child::ChildPool;
use state::{Phase, WorkerState};
use writer::Writer;

pub use options::{MAX_CONCURRENCY, WorkerOptions};
use services::WorkerServices;

/// Warm and cold shutdown, passed in by the caller (only `main` handles signals).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop fetching, drain running tasks within the deadline, restore the rest.
    pub warm: CancellationToken,
    /// Stop running tasks now; their messages go back to the queue.
    pub cold: CancellationToken,
}

/// Everything the worker's parts share — inside the engine only; control reaches it through the
/// operations in `handle.rs`.
pub struct Shared {
    pub(crate) opts: WorkerOptions,
    /// Unique per worker process: names its in-flight lists and liveness key.
    pub(crate) worker_id: String,
    pub(crate) hostname: String,
    pub(crate) broker: Broker,
    pub(crate) backend: Backend,
    pub(crate) registry: Registry,
    pub(crate) state: Arc<WorkerState>,
    pub(crate) writer: Writer,
    pub(crate) events: Events,
    pub(crate) children: Option<Arc<ChildPool>>,
    pub(crate) services: Arc<dyn Services>,
    /// Concurrency slots (grown/shrunk by control commands).
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) concurrency: std::sync::atomic::AtomicUsize,
    queues: RwLock<Vec<String>>,
    pub(crate) cold: CancellationToken,
    pub(crate) reconnected: Notify,
    pub(crate) started_at: std::time::Instant,
    /// Revoked ids kept in Redis (`hlbot.revoked`), so restarted workers honour them.
    pub(crate) revocations: crate::revoke::Revocations,
    /// Cancelled by the `shutdown` control command: a warm shutdown.
    pub(crate) remote_stop: CancellationToken,
    /// Spacing of task starts for `control rate_limit`.
    pub(crate) rate_gate: rate::RateGate,
    /// Stage and heartbeat count, for a supervisor (`Worker::vitals`).
    pub(crate) pulse: vitals::Pulse,
    /// RabbitMQ is the broker: tasks are consumed from it (Redis keeps results and control).
    pub(crate) amqp: Option<crate::amqp::Amqp>,
    /// The AMQP side of the writer (acks, rejects, confirmed publishes), when `amqp` is set.
    pub(crate) sink: Option<crate::amqp::sink::Sink>,
    /// Task ids whose follow-ups (callbacks, chain steps) this process queued, on RabbitMQ.
    pub(crate) followups: followups::Followups,
}

impl Shared {
    /// Report a task-run fact to the run log, if there is one (never blocks).
    pub(crate) fn run_fact(
        &self,
        msg: &hlbot_proto::message::TaskMessage,
        state: crate::runlog::RunState,
        fill: impl FnOnce(&mut crate::runlog::RunFact),
    ) {
        if let Some(log) = &self.opts.runlog {
            let mut f = crate::runlog::RunFact::new(msg, state, &self.hostname);
            fill(&mut f);
            log.record(f);
        }
    }

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
        self.concurrency
            .load(Ordering::SeqCst)
            .saturating_mul(self.opts.prefetch_multiplier.max(1))
            .max(1)
    }

    /// Celery's QoS value: the prefetch count plus one per message held for its ETA (Celery's
    /// `qos.increment_eventually`), at most 65 535 (AMQP's field, Celery's `PREFETCH_COUNT_MAX`).
    /// RabbitMQ counts ETA holds against `basic.qos` (they stay unacked), so the consumer sets
    /// this, not [`Shared::prefetch_limit`]: a worker whose prefetch is all held ETAs still takes
    /// new work. (On Redis the worker's own accounting leaves ETA holds out instead.)
    pub fn qos(&self) -> u16 {
        let held = self.state.scheduled_count.load(Ordering::SeqCst);
        u16::try_from(self.prefetch_limit().saturating_add(held)).unwrap_or(u16::MAX)
    }
}

/// A worker, ready to run.
pub struct Worker {
    shared: Arc<Shared>,
}

impl Worker {
    pub async fn new(client: Client, registry: Registry, opts: WorkerOptions) -> Result<Self> {
        let broker = client.broker().clone();
        let backend = client.backend().clone();
        let amqp = client.amqp().cloned();
        let sink = amqp.clone().map(|a| {
            let dead = crate::amqp::sink::DeadLetters {
                conn: broker.conn(),
                key: broker.keys().dead_letter(),
            };
            crate::amqp::sink::Sink::spawn(a, Some(dead))
        });
        let worker_id = uuid::Uuid::new_v4().simple().to_string();
        let (writer, _h) = Writer::spawn(
            broker.settings().clone(),
            broker.conn(),
            backend.expires,
            sink.clone(),
            &worker_id,
            Arc::new(client.router().clone()),
        );
        let clock = Arc::new(Clock::default());
        // Events go where Celery's would: the broker (RabbitMQ's `celeryev` or Redis channels).
        let transport = match &amqp {
            Some(a) => EventTransport::Amqp(a.url.clone()),
            None => EventTransport::Redis(broker.conn(), broker.keys().clone()),
        };
        let events = Events::spawn(transport, &opts.node_name, opts.task_events, clock);
        let children = opts.child.clone().map(|c| Arc::new(ChildPool::new(c)));
        let revocations = crate::revoke::Revocations::new(
            broker.settings(),
            broker.conn(),
            crate::revoke::DEFAULT_TTL,
        );
        let concurrency = opts.concurrency.clamp(1, MAX_CONCURRENCY);
        let shared = Shared {
            worker_id,
            hostname: opts.node_name.clone(),
            broker,
            backend,
            services: Arc::new(WorkerServices { client }),
            registry,
            state: Arc::new(WorkerState::default()),
            writer,
            events,
            children,
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency: std::sync::atomic::AtomicUsize::new(concurrency),
            queues: RwLock::new(opts.queues.clone()),
            cold: CancellationToken::new(),
            reconnected: Notify::new(),
            started_at: std::time::Instant::now(),
            revocations,
            remote_stop: CancellationToken::new(),
            rate_gate: rate::RateGate::default(),
            pulse: vitals::Pulse::default(),
            amqp,
            sink,
            followups: followups::Followups::default(),
            opts,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Watch the worker's stage and heartbeats (READY / WATCHDOG / STOPPING for systemd, a
    /// health check). Take it before `run`, which consumes the worker.
    pub fn vitals(&self) -> tokio::sync::watch::Receiver<vitals::Vitals> {
        self.shared.pulse.watch()
    }

    /// Run until `shutdown.warm` (then drain) or `shutdown.cold` (then stop and requeue).
    /// Always ends: a warm shutdown within `shutdown_timeout` (plus a second for the last
    /// writes), a cold one within about a second, whatever Redis or a task does; writes that
    /// cannot reach Redis by then go to the spill file.
    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let sh = self.shared;
        // A Redis that refuses writes (OOM, READONLY) does not stop the start: both are redone
        // by the refresh loop, and fetching waits until Redis takes writes again.
        if sh.amqp.is_none() {
            if let Err(e) = sh.broker.declare(&sh.queues()).await {
                tracing::warn!("declaring queues failed (retried): {e}");
            }
        }
        let lease = sh.opts.inflight_lease;
        if let Err(e) = liveness::keep_alive(&sh.broker, &sh.worker_id, &sh.hostname, lease).await {
            tracing::warn!("liveness key not written yet (retried): {e}");
        }
        spill::replay(&sh).await;
        upkeep::recover_chord_bodies(&sh).await;
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
            sh.concurrency.load(Ordering::SeqCst)
        );
        sh.sync_revoked().await;
        sh.events.worker("worker-online", heartbeat_fields(&sh));
        sh.pulse.stage(vitals::Stage::Ready);
        // Warm shutdown comes from the caller or from the `shutdown` control command.
        let stop = shutdown.warm.child_token();
        let remote = (stop.clone(), sh.remote_stop.clone());
        tokio::spawn(async move {
            tokio::select! { _ = remote.1.cancelled() => remote.0.cancel(), _ = remote.0.cancelled() => {} }
        });
        let background = CancellationToken::new();
        tokio::spawn(crate::control::serve(sh.clone(), background.clone()));
        tokio::spawn(handle::revoked_sync_loop(sh.clone(), background.clone()));
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let mut consumer = tokio::spawn(consumer::run(sh.clone(), ready_tx, stop.clone()));
        // Whether the consumer ended with every fetch accounted for (no reply lost unsettled).
        let mut settled = false;
        let pool = tokio::spawn(pool_loop(sh.clone(), ready_rx, stop.clone()));
        tokio::spawn(heartbeat_loop(sh.clone(), background.clone()));
        tokio::spawn(upkeep::refresh_loop(sh.clone(), background.clone()));
        tokio::spawn(upkeep::restore_loop(sh.clone(), background.clone()));
        tokio::spawn(cold_watch(sh.clone(), shutdown.cold.clone()));

        stop.cancelled().await;
        sh.pulse.stage(vitals::Stage::Stopping);
        tracing::warn!(
            "worker: Warm shutdown ({}): no more fetching; draining running tasks",
            sh.hostname
        );
        let deadline = tokio::time::Instant::now() + sh.opts.shutdown_timeout;
        // The consumer ends at its next wake-up (≤ 1 s); a hung Redis call cannot hold us.
        tokio::select! {
            r = &mut consumer => settled = r.unwrap_or(false),
            _ = tokio::time::sleep_until(deadline) => consumer.abort(),
            _ = shutdown.cold.cancelled() => consumer.abort(),
        }
        pool.abort();
        // Held and reserved messages go back to the head of their queues (through the writer:
        // after their own claims, and spilled if Redis is away).
        let waiting: Vec<_> = sh
            .state
            .requests(Phase::Scheduled)
            .into_iter()
            .chain(sh.state.requests(Phase::Reserved))
            .collect();
        if !waiting.is_empty() {
            tracing::info!("Restoring {} unacknowledged message(s)", waiting.len());
        }
        // Entries that vanished (Redis lost its data since the last refresh) are pushed back
        // unconditionally: the worker holds the only copy. Asked only once the claims are in.
        let mut gone: Vec<String> = Vec::new();
        if !waiting.is_empty() && sh.writer.flush_within(Duration::from_secs(1)).await {
            let tags: Vec<String> = waiting
                .iter()
                .map(|r| r.delivery.tag.clone())
                .filter(|t| !crate::amqp::is_amqp_tag(t))
                .collect();
            if let Ok(Ok(missing)) =
                tokio::time::timeout(Duration::from_secs(1), sh.broker.refresh(&tags)).await
            {
                gone = missing;
            }
        }
        for r in &waiting {
            let lost = gone.contains(&r.delivery.tag);
            outcome::restore_request(&sh, r, lost);
            sh.state.remove(r);
        }
        loop {
            if sh.state.active_count() == 0 {
                break;
            }
            tokio::select! {
                _ = sh.state.freed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tokio::time::sleep_until(deadline), if !sh.cold.is_cancelled() => {
                    tracing::warn!("shutdown timeout: stopping running tasks");
                    sh.cold.cancel();
                }
                _ = shutdown.cold.cancelled(), if !sh.cold.is_cancelled() => { sh.cold.cancel(); }
            }
            if sh.cold.is_cancelled() {
                for r in sh.state.requests(Phase::Active) {
                    r.stop();
                }
                // Killed tasks record their outcome at once; anything still "running" a
                // moment later is given up (its message stays in unacked or is spilled).
                let grace = tokio::time::Instant::now() + Duration::from_millis(300);
                while sh.state.active_count() > 0 && tokio::time::Instant::now() < grace {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                break;
            }
        }
        let flush_for = if sh.cold.is_cancelled() {
            Duration::from_millis(500)
        } else {
            deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_secs(1))
        };
        let flushed = tokio::select! {
            ok = sh.writer.flush_within(flush_for) => ok,
            _ = shutdown.cold.cancelled() => false,
        };
        if !flushed {
            spill::save_pending(&sh).await;
        }
        background.cancel();
        if let Some(c) = &sh.children {
            c.shutdown();
        }
        sh.events.worker("worker-offline", heartbeat_fields(&sh));
        // Nothing of ours left in `unacked` (all acked or given back, no task given up, no lost
        // fetch unsettled): leave the holders. Otherwise survivors give back what is left once
        // the liveness key is gone.
        let clean = settled && flushed && sh.state.active_count() == 0;
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            if clean {
                let _ = liveness::unregister_holder(&sh.broker, &sh.worker_id).await;
            }
            liveness::not_alive(&sh.broker, &sh.worker_id).await
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        tracing::warn!("{} stopped", sh.hostname);
        Ok(())
    }
}

async fn cold_watch(sh: Arc<Shared>, cold: CancellationToken) {
    cold.cancelled().await;
    tracing::warn!(
        "worker: Cold shutdown ({}): stopping running tasks; their messages go back to the queue",
        sh.hostname
    );
    sh.cold.cancel();
    for r in sh.state.requests(Phase::Active) {
        r.stop();
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
            _ = tick.tick() => {
                sh.events.worker("worker-heartbeat", heartbeat_fields(&sh));
                sh.pulse.beat();
            }
            _ = stop.cancelled() => return,
        }
    }
}
