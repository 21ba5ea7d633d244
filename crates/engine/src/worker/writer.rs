//! The worker's single Redis writer: acks, result stores, republishes, dead letters and counters
//! are queued here and flushed as one atomic MULTI per batch. One round trip serves many tasks,
//! and a task's result, run counter and ack commit together or not at all. If Redis is away the
//! batch is kept and retried: nothing is dropped.

use std::time::Duration;

use hlbot_proto::{ResultMeta, TaskMessage};
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::redis::{Keys, RedisSettings, scripts};

/// One write. Ops are moved once into the queue; boxing the meta would only add an allocation.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Op {
    /// Drop the unacked entry.
    Ack(String),
    /// Record an unacked entry (`tag` → `[envelope, exchange, routing_key]`) for a message the
    /// consumer popped with a plain BRPOP; queued before the message's ack, so it lands first.
    Unacked { tag: String, stored: Vec<u8> },
    /// Store a result meta (never over a SUCCESS) and PUBLISH it.
    Store(ResultMeta),
    /// `reject(requeue=True)` of a held message: drop its unacked entry and LPUSH it to `key`,
    /// only if the entry still exists (`requeue.lua`).
    Requeue {
        tag: String,
        key: String,
        raw: Vec<u8>,
    },
    /// LPUSH a message to its queue (retries, callbacks).
    Publish(Box<TaskMessage>),
    /// RPUSH raw bytes to the head of a list key (shutdown restore of early-acked work).
    PushHead { key: String, raw: Vec<u8> },
    /// LPUSH a dead-letter record.
    DeadLetter(Vec<u8>),
    /// INCR a key (debug run counters).
    Incr(String),
    /// Resolve once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// Handle to queue writes.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Vec<Op>>,
}

impl Writer {
    /// Start the writer loop. It ends when every `Writer` clone is dropped and the queue is empty.
    pub fn spawn(
        settings: RedisSettings,
        conn: ConnectionManager,
        result_ttl: Option<Duration>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let keys = settings.keys();
        let h = tokio::spawn(run(settings, keys, conn, result_ttl, rx));
        (Self { tx }, h)
    }

    pub fn send(&self, op: Op) {
        self.send_all(vec![op]);
    }

    /// Queue ops that must land in the same transaction (a result, its run counter, its ack).
    pub fn send_all(&self, ops: Vec<Op>) {
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
}

async fn run(
    settings: RedisSettings,
    keys: Keys,
    mut conn: ConnectionManager,
    ttl: Option<Duration>,
    mut rx: mpsc::UnboundedReceiver<Vec<Op>>,
) {
    let ttl = ttl.map_or(0, |d| d.as_secs().max(1));
    let mut batch: Vec<Op> = Vec::new();
    let mut failing = false;
    let mut loaded = load_script(&mut conn).await;
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(ops) => batch.extend(ops),
                None => return,
            }
        }
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(ops) => batch.extend(ops),
                Err(_) => break,
            }
        }
        let mut p = redis::pipe();
        p.atomic();
        // Stores call the script by its SHA. It is loaded when the writer starts; after a Redis
        // restart the first batch fails on NOSCRIPT, then the script is loaded again and only
        // that batch's stores are re-run (see below) — every other op already ran.
        if !loaded {
            loaded = load_script(&mut conn).await;
        }
        let mut waiters = Vec::new();
        let plan = Plan::of(&batch);
        for op in &batch {
            match op {
                Op::Ack(_) | Op::Store(_) | Op::Flush(_) => {}
                Op::Unacked { tag, stored } => {
                    if !plan.acks.contains(&tag.as_str()) {
                        p.hset(keys.unacked(), tag, stored)
                            .ignore()
                            .zadd(keys.unacked_index(), tag, crate::broker::now_secs())
                            .ignore();
                    }
                }
                Op::Publish(msg) => {
                    p.lpush(
                        keys.queue_for(msg.queue(), msg.priority()),
                        msg.envelope.to_vec(),
                    )
                    .ignore();
                }
                Op::PushHead { key, raw } => {
                    p.rpush(key, raw).ignore();
                }
                Op::Requeue { tag, key, raw } => {
                    p.cmd("EVAL")
                        .arg(scripts::REQUEUE_LUA)
                        .arg(3)
                        .arg(keys.unacked())
                        .arg(keys.unacked_index())
                        .arg(key)
                        .arg(tag)
                        .arg(raw)
                        .ignore();
                }
                Op::DeadLetter(rec) => {
                    p.lpush(keys.dead_letter(), rec).ignore();
                }
                Op::Incr(key) => {
                    p.incr(key, 1).ignore();
                }
            }
        }
        push_stores(&mut p, &keys, &plan.stores, ttl);
        // Every ack of the batch in one ZREM and one HDEL, after everything else (an unacked
        // entry written by this batch is dropped with it, so it was never written at all).
        let acks: Vec<&str> = plan
            .acks
            .iter()
            .copied()
            .filter(|t| !plan.recorded.contains(t))
            .collect();
        if !acks.is_empty() {
            p.zrem(keys.unacked_index(), &acks)
                .ignore()
                .hdel(keys.unacked(), &acks)
                .ignore();
        }
        match p.query_async::<()>(&mut conn).await {
            Ok(()) => {
                if failing {
                    tracing::info!(
                        "result writer: Redis is back, {} pending writes flushed",
                        batch.len()
                    );
                    failing = false;
                }
                for op in batch.drain(..) {
                    if let Op::Flush(tx) = op {
                        waiters.push(tx);
                    }
                }
                for w in waiters {
                    let _ = w.send(());
                }
            }
            Err(e) if is_noscript(&e) => {
                // The transaction ran without the stores: load the script, re-run only them.
                loaded = load_script(&mut conn).await;
                let mut again = redis::pipe();
                again.atomic();
                push_stores(&mut again, &keys, &Plan::of(&batch).stores, ttl);
                if let Err(e) = again.query_async::<()>(&mut conn).await {
                    tracing::error!(
                        "result writer: storing results after a script reload: {}",
                        settings.err(e)
                    );
                }
                for op in batch.drain(..) {
                    if let Op::Flush(tx) = op {
                        let _ = tx.send(());
                    }
                }
            }
            Err(e)
                if !(e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_connection_refusal()) =>
            {
                // Redis answered: the transaction ran, one command in it failed (e.g. a key of the
                // wrong type). Retrying would repeat the others, so report and move on.
                tracing::error!("result writer: {}", settings.err(e));
                for op in batch.drain(..) {
                    if let Op::Flush(tx) = op {
                        let _ = tx.send(());
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        "result writer: {}; keeping {} writes and retrying",
                        settings.err(e),
                        batch.len()
                    );
                    failing = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// What a batch writes besides its ordered ops: the result stores (a STARTED followed by a later
/// state of the same task in the batch is skipped: it would be overwritten in the same
/// transaction) and the acks, gathered into one command each.
struct Plan<'a> {
    stores: Vec<&'a ResultMeta>,
    acks: Vec<&'a str>,
    /// Tags whose unacked entry this batch writes.
    recorded: Vec<&'a str>,
}

impl<'a> Plan<'a> {
    fn of(batch: &'a [Op]) -> Self {
        let mut stores: Vec<&ResultMeta> = Vec::new();
        let mut acks = Vec::new();
        let mut recorded = Vec::new();
        for op in batch {
            match op {
                Op::Store(meta) => stores.push(meta),
                Op::Ack(tag) => acks.push(tag.as_str()),
                Op::Unacked { tag, .. } => recorded.push(tag.as_str()),
                _ => {}
            }
        }
        // Superseded STARTED stores: walk backwards, remembering ids that have a later store.
        let mut later: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut keep = vec![true; stores.len()];
        for (i, m) in stores.iter().enumerate().rev() {
            if m.status == hlbot_proto::State::Started && later.contains(m.task_id.as_str()) {
                keep[i] = false;
            }
            later.insert(m.task_id.as_str());
        }
        let mut k = keep.iter();
        stores.retain(|_| *k.next().unwrap_or(&true));
        Self {
            stores,
            acks,
            recorded,
        }
    }
}

/// Result stores by the script's SHA, many per call: never over a SUCCESS, TTL, PUBLISH on the
/// key's channel.
fn push_stores(p: &mut redis::Pipeline, keys: &Keys, metas: &[&ResultMeta], ttl: u64) {
    for chunk in metas.chunks(1000) {
        let cmd = p.cmd("EVALSHA");
        cmd.arg(scripts::STORE_RESULT.get_hash()).arg(chunk.len());
        for m in chunk {
            cmd.arg(keys.result(&m.task_id));
        }
        cmd.arg(ttl);
        for m in chunk {
            cmd.arg(m.to_json());
        }
        cmd.ignore();
    }
}

async fn load_script(conn: &mut ConnectionManager) -> bool {
    scripts::STORE_RESULT
        .prepare_invoke()
        .load_async(conn)
        .await
        .is_ok()
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        || e.to_string().contains("NOSCRIPT")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use hlbot_proto::State;
    use serde_json::json;

    fn store(id: &str, s: State) -> Op {
        Op::Store(ResultMeta::new(id, s, json!(null), Utc::now()))
    }

    #[test]
    fn plan_drops_only_superseded_started_and_gathers_acks() {
        let batch = vec![
            store("a", State::Started),
            Op::Unacked {
                tag: "t-a".into(),
                stored: b"[]".to_vec(),
            },
            Op::Ack("t-a".into()),
            store("b", State::Started),
            store("a", State::Success),
            Op::Ack("t-b".into()),
            store("c", State::Custom("PROGRESS".into())),
            store("c", State::Started),
        ];
        let plan = Plan::of(&batch);
        let stores: Vec<(&str, State)> = plan
            .stores
            .iter()
            .map(|m| (m.task_id.as_str(), m.status.clone()))
            .collect();
        // a's STARTED is overwritten in the same batch; b is still running; c's last is STARTED.
        assert_eq!(
            stores,
            vec![
                ("b", State::Started),
                ("a", State::Success),
                ("c", State::Custom("PROGRESS".into())),
                ("c", State::Started),
            ]
        );
        assert_eq!(plan.acks, vec!["t-a", "t-b"]);
        assert_eq!(plan.recorded, vec!["t-a"]);
    }
}
