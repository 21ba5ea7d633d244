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

use redis::aio::ConnectionManager;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::amqp::sink::{Sink, SinkOp};
use crate::deadletter::DEAD_LETTER_CAP;
use crate::redis::{Keys, RedisSettings, scripts};
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
        conn: ConnectionManager,
        result_ttl: Option<Duration>,
        sink: Option<Sink>,
        owner: &str,
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
        };
        let h = tokio::spawn(run(ctx, conn, rx, take_rx));
        (Self { tx, stats, take }, h)
    }

    pub fn send(&self, op: Op) {
        self.send_all(vec![op]);
    }

    /// Queue ops that must land in the same batch (a result, its run counter, its ack).
    pub fn send_all(&self, ops: Vec<Op>) {
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

struct Ctx {
    settings: RedisSettings,
    keys: Keys,
    marker: String,
    /// Where `batch.lua` keeps the chords the last completing batch finished.
    chords: String,
    ttl: u64,
    stats: Arc<WriterStats>,
    /// The AMQP broker's ops go here after their batch is written.
    sink: Option<Sink>,
    /// This writer's id (chord body tokens are `<me>:<batch>:<op>`).
    me: String,
    /// The worker id vouching for this writer's pending chord bodies.
    owner: String,
    /// The writer's own queue, for ops it adds later (a chord body's `forget` after RabbitMQ's
    /// confirm); weak, so the loop still ends when every `Writer` is dropped.
    again: mpsc::WeakUnboundedSender<Vec<Op>>,
}

async fn run(
    ctx: Ctx,
    mut conn: ConnectionManager,
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
                        next.push(Op::ChordTake {
                            field: ctx.keys.taskset(&part.group),
                            token: token(&ctx.me, seq, i),
                        });
                        next.extend(chord::complete(part, &entries));
                        next.push(Op::ChordEnd);
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

/// A chord body's token: unique per writer, batch and op, the same when a batch is retried.
fn token(me: &str, seq: u64, op: usize) -> String {
    format!("{me}:{seq}:{op}")
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

/// What a written batch reported.
#[derive(Default)]
struct Applied {
    /// Per-op errors (a wrong-type key): reported, not retried.
    errs: Vec<String>,
    /// The chords the batch completed: (index of the chord op, ordered entries).
    done: Vec<(usize, Vec<Vec<u8>>)>,
    /// Indices of [`Op::ChordTake`]s whose body someone else sent: their ops were not applied.
    skipped: Vec<usize>,
}

/// Run one batch. Ok carries per-op errors (a wrong-type key): reported, not retried.
async fn apply(
    ctx: &Ctx,
    conn: &mut ConnectionManager,
    batch: &[Op],
    seq: u64,
) -> Result<Applied, String> {
    let plan = Plan::of(batch);
    let keys = &ctx.keys;
    let mut inv = scripts::BATCH.prepare_invoke();
    inv.arg(&ctx.marker)
        .arg(seq)
        .arg(ctx.ttl)
        .arg(keys.unacked())
        .arg(keys.unacked_index())
        .arg(crate::broker::now_secs())
        .arg(keys.dead_letter())
        .arg(DEAD_LETTER_CAP)
        .arg(keys.dead_trimmed())
        .arg(&ctx.chords)
        .arg(keys.chords_pending())
        .arg(keys.chords_sent())
        .arg(&ctx.owner);
    let mut n = 0usize;
    let amqp = ctx.sink.is_some();
    for (i, op) in batch.iter().enumerate() {
        if amqp && op.for_amqp() {
            continue;
        }
        match op {
            Op::Flush(_) | Op::Slot => continue,
            Op::Ack(tag) => {
                inv.arg("ack").arg(tag);
            }
            Op::Store(meta) => {
                if !plan.keep[i] {
                    continue;
                }
                inv.arg("store")
                    .arg(keys.result(&meta.task_id))
                    .arg(meta.to_json());
            }
            Op::Unacked { tag, stored, acked } => {
                if acked.load(Ordering::SeqCst) {
                    continue;
                }
                inv.arg("unacked").arg(tag).arg(stored);
            }
            Op::Claim {
                list,
                raw,
                tag,
                stored,
            } => {
                inv.arg("claim").arg(list).arg(raw).arg(tag).arg(stored);
            }
            Op::Drop { list, size } => {
                inv.arg("drop").arg(list).arg(*size);
            }
            Op::Requeue { tag, key, raw } => {
                inv.arg("requeue").arg(tag).arg(key).arg(raw);
            }
            Op::Restore { tag, key, raw } => {
                inv.arg("restore").arg(tag).arg(key).arg(raw);
            }
            Op::Publish(msg) => {
                inv.arg("lpush")
                    .arg(keys.queue_for(msg.queue(), msg.priority()))
                    .arg(msg.envelope.to_vec());
            }
            Op::PushHead { key, raw } => {
                inv.arg("rpush").arg(key).arg(raw);
            }
            Op::DeadLetter(rec) => {
                inv.arg("dead").arg(rec);
            }
            Op::Incr(key) => {
                inv.arg("incr").arg(key);
            }
            Op::ChordPart(p) => {
                let index = p
                    .index
                    .map_or_else(|| "+inf".to_string(), |i| i.to_string());
                inv.arg("chord")
                    .arg(i)
                    .arg(keys.taskset(&p.group))
                    .arg(&p.id)
                    .arg(&p.entry)
                    .arg(index)
                    .arg(if ctx.settings.chord_ordered { "1" } else { "0" })
                    .arg(
                        p.progress
                            .as_deref()
                            .map_or(String::new(), |b| keys.result(b)),
                    )
                    .arg(p.progress.as_deref().unwrap_or(""))
                    .arg(serde_json::to_string(&**p).unwrap_or_default())
                    .arg(token(&ctx.me, seq, i));
            }
            Op::ChordTake { field, token } => {
                inv.arg("take")
                    .arg(i)
                    .arg(field)
                    .arg(token)
                    .arg(if amqp { "1" } else { "0" });
            }
            Op::ChordEnd => {
                inv.arg("end");
            }
            Op::ChordForget { field, token } => {
                inv.arg("forget").arg(field).arg(token);
            }
        }
        n += 1;
    }
    if n == 0 {
        return Ok(Applied::default());
    }
    let reply: Vec<redis::Value> = inv
        .invoke_async(conn)
        .await
        .map_err(|e| ctx.settings.err(e).to_string())?;
    let mut out = Applied::default();
    for v in reply.into_iter().skip(1) {
        match v {
            redis::Value::BulkString(b) => out.errs.push(String::from_utf8_lossy(&b).into_owned()),
            redis::Value::SimpleString(s) => out.errs.push(s),
            redis::Value::ServerError(e) => out.errs.push(format!("{e:?}")),
            redis::Value::Array(items) => {
                let mut it = items.into_iter();
                match it.next() {
                    Some(redis::Value::Int(i)) => {
                        let entries = it
                            .filter_map(|e| match e {
                                redis::Value::BulkString(b) => Some(b),
                                _ => None,
                            })
                            .collect();
                        out.done.push((i as usize, entries));
                    }
                    Some(redis::Value::BulkString(tag)) if tag == b"skip" => {
                        if let Some(redis::Value::Int(i)) = it.next() {
                            out.skipped.push(i as usize);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Which stores of a batch are written: a store followed by a later store of the same task in the
/// batch is skipped (STARTED, PROGRESS, RETRY, FAILURE then another state: the later one is what
/// the atomic batch leaves anyway, and its SETEX and PUBLISH are saved). A SUCCESS is always kept:
/// `batch.lua` never writes over it, so a later store of the same task must still meet it.
struct Plan {
    keep: Vec<bool>,
}

impl Plan {
    fn of(batch: &[Op]) -> Self {
        let mut keep = vec![true; batch.len()];
        let mut later: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (i, op) in batch.iter().enumerate().rev() {
            if let Op::Store(m) = op {
                if m.status != hlbot_proto::State::Success && later.contains(m.task_id.as_str()) {
                    keep[i] = false;
                }
                later.insert(m.task_id.as_str());
            }
        }
        Self { keep }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use hlbot_proto::{ResultMeta, State};
    use serde_json::json;

    fn store(id: &str, s: State) -> Op {
        Op::Store(ResultMeta::new(id, s, json!(null), Utc::now()))
    }

    #[test]
    fn plan_drops_superseded_stores_but_never_a_success() {
        let batch = vec![
            store("a", State::Started),
            Op::Ack("t-a".into()),
            store("b", State::Started),
            store("a", State::Success),
            Op::Ack("t-b".into()),
            store("c", State::Custom("PROGRESS".into())),
            store("c", State::Started),
            store("d", State::Success),
            store("d", State::Failure),
            store("e", State::Retry),
            store("e", State::Started),
            store("e", State::Failure),
        ];
        let plan = Plan::of(&batch);
        // a's STARTED is overwritten in the same batch; b is still running; c's PROGRESS is
        // overwritten by its STARTED; d's SUCCESS stays (batch.lua then skips the FAILURE over
        // it); e's RETRY and STARTED are overwritten by its FAILURE.
        assert_eq!(
            plan.keep,
            vec![
                false, true, true, true, true, false, true, true, true, false, false, true
            ]
        );
    }
}
