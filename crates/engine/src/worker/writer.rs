//! The worker's single Redis writer: acks, result stores, republishes, dead letters and counters
//! are queued here and applied by one `batch.lua` call per batch — all of a batch or none of it,
//! exactly once. Whatever Redis answers (connection lost, timeout, `OOM`, `READONLY`, `LOADING`,
//! `MISCONF`, `NOSCRIPT`) the batch is kept and retried with capped backoff: nothing is dropped.
//! What is still queued when the worker must exit can be taken out ([`Writer::take_pending`]) and
//! spilled to a file (`spill.rs`).
//!
//! With RabbitMQ as the broker (`amqp/`), the ops that belong to it — acks and requeues of AMQP
//! deliveries, publishes — are left out of the script and handed, in order, to the AMQP sink once
//! the batch is written; flush waiters are answered by the sink after them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::redis::Conn;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::amqp::sink::{Sink, SinkOp};
use crate::redis::{Keys, RedisSettings};
use crate::route::Router;
use crate::worker::batch::{Applied, apply, token};
use crate::worker::chord;
pub use crate::worker::op::Op;

/// What the writer is doing, for prefetch accounting and `inspect stats`.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Ops queued and not yet written.
    pub backlog: AtomicUsize,
    /// Acks (and requeues) queued and not yet written (`inspect stats`).
    pub unwritten_acks: AtomicUsize,
    /// Prefetch slots freed by releases (acks, requeues, restores) that are not yet sent to
    /// Redis. They still count against the prefetch: the consumer's next fetch goes out on the
    /// same connection after the batch that carries them, so Redis applies the acks first and
    /// `unacked` never holds more than the prefetch limit — without waiting for the batch's reply.
    pub unsent_slots: AtomicUsize,
    /// Signalled when a batch carrying slots has been sent.
    pub sent: Notify,
    /// Redis is refusing or not answering; the batch is being retried.
    pub failing: AtomicBool,
    /// Batches that had to be retried.
    pub retries: AtomicU64,
    /// Signalled after each written batch.
    pub written: Notify,
}

/// Handle to queue writes.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Vec<Op>>,
    /// Where messages published without a queue go ([`route`]).
    router: Arc<Router>,
    stats: Arc<WriterStats>,
    /// Ops taken back by [`Writer::take_pending`] (the loop hands them over when asked).
    take: mpsc::UnboundedSender<oneshot::Sender<Vec<Op>>>,
}

impl Writer {
    /// Start the writer loop. It ends when every `Writer` clone is dropped and the queue is empty.
    /// `owner` is the worker id whose liveness key (`hlbot.alive.<owner>`) vouches for the chord
    /// bodies this writer has yet to send (`orphans.lua` takes them over once it is gone).
    pub fn spawn(
        settings: RedisSettings,
        conn: Conn,
        result_ttl: Option<Duration>,
        sink: Option<Sink>,
        owner: &str,
        router: Arc<Router>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (take, take_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WriterStats::default());
        let keys = settings.keys();
        let me = uuid::Uuid::new_v4().simple().to_string();
        let marker = keys.writer_marker(&me);
        let chords = keys.writer_chords(&me);
        let ctx = Ctx {
            settings,
            keys,
            marker,
            chords,
            ttl: result_ttl.map_or(0, |d| d.as_secs().max(1)),
            stats: stats.clone(),
            sink,
            me,
            owner: owner.to_string(),
            again: tx.downgrade(),
            router: router.clone(),
        };
        let h = tokio::spawn(run(ctx, conn, rx, take_rx));
        (
            Self {
                tx,
                router,
                stats,
                take,
            },
            h,
        )
    }

    pub fn send(&self, op: Op) {
        self.send_all(vec![op]);
    }

    /// Queue ops that must land in the same batch (a result, its run counter, its ack).
    pub fn send_all(&self, mut ops: Vec<Op>) {
        route(&mut ops, &self.router);
        let acks = ops.iter().filter(|o| o.releases()).count();
        self.stats.backlog.fetch_add(ops.len(), Ordering::SeqCst);
        self.stats.unwritten_acks.fetch_add(acks, Ordering::SeqCst);
        // The loop outlives every sender; a send can only fail after shutdown, when nothing is
        // left to write for.
        let _ = self.tx.send(ops);
    }

    /// Wait until everything queued so far is in Redis.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx));
        let _ = rx.await;
    }

    /// [`Writer::flush`] bounded by `limit`; false if it did not finish in time.
    pub async fn flush_within(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.flush()).await.is_ok()
    }

    /// Stop writing and hand back every op not yet written (the batch being retried first).
    pub async fn take_pending(&self) -> Vec<Op> {
        let (tx, rx) = oneshot::channel();
        if self.take.send(tx).is_err() {
            return vec![];
        }
        rx.await.unwrap_or_default()
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

pub(super) struct Ctx {
    pub(super) settings: RedisSettings,
    pub(super) keys: Keys,
    pub(super) marker: String,
    /// Where `batch.lua` keeps the chords the last completing batch finished.
    pub(super) chords: String,
    pub(super) ttl: u64,
    pub(super) stats: Arc<WriterStats>,
    /// The AMQP broker's ops go here after their batch is written.
    pub(super) sink: Option<Sink>,
    /// This writer's id (chord body tokens are `<me>:<batch>:<op>`).
    pub(super) me: String,
    /// The worker id vouching for this writer's pending chord bodies.
    pub(super) owner: String,
    /// The writer's own queue, for ops it adds later (a chord body's `forget` after RabbitMQ's
    /// confirm); weak, so the loop still ends when every `Writer` is dropped.
    pub(super) again: mpsc::WeakUnboundedSender<Vec<Op>>,
    /// Routes the chord bodies this loop sends ([`route`]).
    pub(super) router: Arc<Router>,
}

/// Messages built from signatures without a `queue` option (marked by
/// [`super::links::message`]) go where Celery's `sig.apply_async()` in a worker sends them when
/// a route names a queue for the task — the config's `[routes]` or the task's own queue — not to
/// the queue of the task that sent them (a chain `youtube → llm` sent from Python carries no
/// queues: its LLM step belongs on `llm`). Without a route they go to the app's
/// `task_default_queue` when configured, else stay on the sender's queue.
pub(super) fn route(ops: &mut [Op], router: &Router) {
    for op in ops {
        if let Op::Publish(m) = op {
            let di = &mut m.envelope.properties.delivery_info;
            if di.extra.remove(super::links::UNROUTED).is_some() {
                if let Some(q) = router.follow_up(&m.headers.task) {
                    di.routing_key = q.to_string();
                }
            }
        }
    }
}

async fn run(
    ctx: Ctx,
    mut conn: Conn,
    mut rx: mpsc::UnboundedReceiver<Vec<Op>>,
    mut take: mpsc::UnboundedReceiver<oneshot::Sender<Vec<Op>>>,
) {
    let mut batch: Vec<Op> = Vec::new();
    let mut seq: u64 = 0;
    let mut backoff = Duration::from_millis(50);
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        if batch.is_empty() {
            tokio::select! {
                ops = rx.recv() => match ops {
                    Some(ops) => batch.extend(ops),
                    None => return,
                },
                t = take.recv() => {
                    if let Some(t) = t {
                        hand_over(&ctx, &mut batch, &mut rx, t);
                    }
                    continue;
                }
            }
            while batch.len() < 2048 {
                match rx.try_recv() {
                    Ok(ops) => batch.extend(ops),
                    Err(_) => break,
                }
            }
            seq += 1;
        }
        // A retried batch keeps its number and its exact content: if an earlier try was applied
        // (its reply lost), the script sees the number and applies nothing twice.
        let slots = slots_in(&batch);
        let outcome = {
            let fut = apply(&ctx, &mut conn, &batch, seq);
            tokio::pin!(fut);
            // The first poll puts the call into the connection's ordered queue (redis-rs sends
            // it before awaiting the reply): the slots it frees can be fetched again now.
            let first = futures::poll!(fut.as_mut());
            free_slots(&ctx.stats, slots);
            match first {
                std::task::Poll::Ready(o) => o,
                std::task::Poll::Pending => fut.await,
            }
        };
        match outcome {
            Ok(Applied {
                errs,
                done,
                skipped,
            }) => {
                for e in errs {
                    tracing::error!("result writer: one write failed: {e}");
                }
                // Chords this batch completed: their callbacks (or ChordErrors) go next, guarded
                // by the pending record this batch wrote for each.
                let mut next: Vec<Op> = Vec::new();
                for (i, entries) in done {
                    if let Some(Op::ChordPart(part)) = batch.get(i) {
                        next.extend(chord::guarded(
                            ctx.keys.taskset(&part.group),
                            token(&ctx.me, seq, i),
                            part,
                            &entries,
                        ));
                    }
                }
                for i in &skipped {
                    if let Some(Op::ChordTake { field, .. }) = batch.get(*i) {
                        tracing::warn!(
                            "chord body of {field} was already sent by another worker; not sent again"
                        );
                    }
                }
                if let Some(t0) = failing_since.take() {
                    tracing::warn!(
                        "result writer: Redis accepts writes again after {:.1}s; pending writes flushed",
                        t0.elapsed().as_secs_f64()
                    );
                    ctx.stats.failing.store(false, Ordering::SeqCst);
                }
                backoff = Duration::from_millis(50);
                settle(&ctx, &mut batch, &skipped);
                if !next.is_empty() {
                    route(&mut next, &ctx.router);
                    ctx.stats.backlog.fetch_add(next.len(), Ordering::SeqCst);
                    batch = next;
                    seq += 1;
                }
            }
            Err(e) => {
                // Not known to be applied: the slots count again until the retry is sent.
                if slots > 0 {
                    ctx.stats.unsent_slots.fetch_add(slots, Ordering::SeqCst);
                }
                if failing_since.is_none() {
                    tracing::warn!(
                        "result writer: {e}; keeping {} writes and retrying (fetching pauses)",
                        batch.len()
                    );
                    failing_since = Some(std::time::Instant::now());
                    ctx.stats.failing.store(true, Ordering::SeqCst);
                }
                ctx.stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    t = take.recv() => {
                        if let Some(t) = t {
                            hand_over(&ctx, &mut batch, &mut rx, t);
                        }
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn slots_in(ops: &[Op]) -> usize {
    ops.iter().filter(|o| matches!(o, Op::Slot)).count()
}

/// The batch carrying `n` freed slots is on the wire: the consumer may fetch them again.
fn free_slots(stats: &WriterStats, n: usize) {
    if n == 0 {
        return;
    }
    let _ = stats
        .unsent_slots
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            Some(v.saturating_sub(n))
        });
    stats.sent.notify_waiters();
}

/// Account for a written batch and wake its flush waiters; with an AMQP sink, hand it the
/// batch's AMQP ops and flush waiters, in order — but not the ops of a chord body someone else
/// sent (`skipped`: the indices of their [`Op::ChordTake`]); a body that goes is followed by a
/// flush whose answer (RabbitMQ confirmed it) drops the body's pending record.
fn settle(ctx: &Ctx, batch: &mut Vec<Op>, skipped: &[usize]) {
    let stats = &ctx.stats;
    let n = batch.len();
    let acks = batch.iter().filter(|o| o.releases()).count();
    match ctx.sink.as_ref() {
        None => {
            for op in batch.drain(..) {
                if let Op::Flush(tx) = op {
                    let _ = tx.send(());
                }
            }
        }
        Some(sink) => {
            let mut ops = Vec::new();
            let mut body: Option<(String, String)> = None;
            let mut lost = false;
            for (i, op) in batch.drain(..).enumerate() {
                match op {
                    Op::ChordTake { field, token } => {
                        lost = skipped.contains(&i);
                        body = (!lost).then_some((field, token));
                    }
                    Op::ChordEnd => {
                        if let Some((field, token)) = body.take() {
                            ops.push(forget_after(ctx, field, token));
                        }
                        lost = false;
                    }
                    op if lost && op.for_amqp() => {}
                    op if op.for_amqp() || matches!(op, Op::Flush(_)) => {
                        ops.extend(op.into_sink());
                    }
                    _ => {}
                }
            }
            sink.send(ops);
        }
    }
    stats.backlog.fetch_sub(n, Ordering::SeqCst);
    stats.unwritten_acks.fetch_sub(acks, Ordering::SeqCst);
    stats.written.notify_waiters();
}

/// A flush for the sink; once answered (every op before it confirmed or dead-lettered), the
/// chord body's pending record goes (`forget`).
fn forget_after(ctx: &Ctx, field: String, token: String) -> SinkOp {
    let (tx, rx) = oneshot::channel();
    let again = ctx.again.clone();
    let stats = ctx.stats.clone();
    tokio::spawn(async move {
        if rx.await.is_err() {
            return;
        }
        if let Some(q) = again.upgrade() {
            stats.backlog.fetch_add(1, Ordering::SeqCst);
            if q.send(vec![Op::ChordForget { field, token }]).is_err() {
                stats.backlog.fetch_sub(1, Ordering::SeqCst);
            }
        }
    });
    SinkOp::Flush(tx)
}

/// Give the current batch and everything queued behind it to `to` (exit with Redis away).
fn hand_over(
    ctx: &Ctx,
    batch: &mut Vec<Op>,
    rx: &mut mpsc::UnboundedReceiver<Vec<Op>>,
    to: oneshot::Sender<Vec<Op>>,
) {
    let mut all: Vec<Op> = std::mem::take(batch);
    while let Ok(ops) = rx.try_recv() {
        all.extend(ops);
    }
    let n = all.len();
    let acks = all.iter().filter(|o| o.releases()).count();
    free_slots(&ctx.stats, slots_in(&all));
    let mut taken = Vec::with_capacity(n);
    for op in all {
        match op {
            // Flush waiters are answered: this writer will not write these.
            Op::Flush(tx) => {
                let _ = tx.send(());
            }
            Op::Slot => {}
            op => taken.push(op),
        }
    }
    ctx.stats.backlog.fetch_sub(n, Ordering::SeqCst);
    ctx.stats.unwritten_acks.fetch_sub(acks, Ordering::SeqCst);
    ctx.stats.written.notify_waiters();
    let _ = to.send(taken);
}
