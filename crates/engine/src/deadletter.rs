//! Dead letters: messages that cannot run (undecodable, unknown task, over the size cap) are kept
//! in a Redis list with the reason, listable and replayable (`hlbot dead list`, `hlbot dead
//! replay`). The list is capped at [`DEAD_LETTER_CAP`] (oldest trimmed and counted in
//! `hlbot.dead.trimmed`); a replay moves a record back to its queue in one atomic step.

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::error::Result;

/// Dead-letter list cap: older records are trimmed (and counted in `hlbot.dead.trimmed`).
pub const DEAD_LETTER_CAP: usize = 10_000;

/// One dead-lettered message: the raw entry exactly as it was read, plus why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: String,
    pub queue: String,
    pub task_id: Option<String>,
    pub task: Option<String>,
    /// Unix time it was dead-lettered.
    pub at: f64,
    /// The raw queue entry (UTF-8 text; kombu entries always are) — its first 4 KiB when
    /// `truncated`.
    pub raw: String,
    /// Size in bytes of an entry over the size cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `raw` is only the start of the entry (it was over the size cap): it cannot be replayed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl DeadLetter {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// List dead letters, newest first.
pub async fn list(broker: &Broker, limit: usize) -> Result<Vec<DeadLetter>> {
    let mut c = broker.conn();
    let raws: Vec<Vec<u8>> = c
        .lrange(
            broker.keys().dead_letter(),
            0,
            limit.saturating_sub(1) as isize,
        )
        .await
        .map_err(|e| broker.settings().err(e))?;
    Ok(raws
        .iter()
        .filter_map(|r| serde_json::from_slice(r).ok())
        .collect())
}

/// The records [`replay`] and [`replay_amqp`] take: each raw list entry with its record, for the
/// one with `task_id` (or all), skipping undecodable records and truncated copies.
async fn replayable(broker: &Broker, task_id: Option<&str>) -> Result<Vec<(Vec<u8>, DeadLetter)>> {
    let mut c = broker.conn();
    let raws: Vec<Vec<u8>> = c
        .lrange(broker.keys().dead_letter(), 0, -1)
        .await
        .map_err(|e| broker.settings().err(e))?;
    Ok(raws
        .into_iter()
        .filter_map(|raw| {
            let d = serde_json::from_slice::<DeadLetter>(&raw).ok()?;
            let wanted = !d.truncated && task_id.is_none_or(|id| d.task_id.as_deref() == Some(id));
            wanted.then_some((raw, d))
        })
        .collect())
}

/// Put dead letters back on their queues: the one with `task_id`, or all when `None`.
/// Returns how many were replayed (truncated copies of over-size messages are skipped).
pub async fn replay(broker: &Broker, task_id: Option<&str>) -> Result<usize> {
    let mut c = broker.conn();
    let key = broker.keys().dead_letter();
    let mut n = 0;
    for (raw, d) in replayable(broker, task_id).await? {
        // Remove and push in one step: two replays racing push it once, a crash loses nothing.
        let moved: i64 = redis::cmd("EVAL")
            .arg(REPLAY_LUA)
            .arg(2)
            .arg(&key)
            .arg(broker.keys().queue_for(&d.queue, 0))
            .arg(&raw)
            .arg(d.raw.as_bytes())
            .query_async(&mut c)
            .await
            .map_err(|e| broker.settings().err(e))?;
        n += moved as usize;
    }
    Ok(n)
}

/// [`replay`] for a fleet on RabbitMQ: each record's message is published to RabbitMQ (its
/// exchange and routing key, with the broker's confirm), then the record is removed. At least
/// once: a crash between the two replays it again next time. A message the broker refuses again
/// stays dead-lettered and the error is returned.
pub async fn replay_amqp(
    broker: &Broker,
    amqp: &crate::amqp::Amqp,
    task_id: Option<&str>,
) -> Result<usize> {
    let mut c = broker.conn();
    let key = broker.keys().dead_letter();
    let mut n = 0;
    for (raw, d) in replayable(broker, task_id).await? {
        let Ok(env) = hlbot_proto::Envelope::from_slice(d.raw.as_bytes()) else {
            continue;
        };
        amqp.publisher.publish(&env).await?;
        let removed: usize = c
            .lrem(&key, 1, &raw)
            .await
            .map_err(|e| broker.settings().err(e))?;
        n += removed.min(1);
    }
    Ok(n)
}

/// Delete dead letters for good: the one(s) with `task_id`, or all when `None`. Returns how many.
pub async fn delete(broker: &Broker, task_id: Option<&str>) -> Result<usize> {
    let mut c = broker.conn();
    let key = broker.keys().dead_letter();
    let err = |e| broker.settings().err(e);
    let Some(id) = task_id else {
        let n: usize = c.llen(&key).await.map_err(err)?;
        c.del::<_, ()>(&key).await.map_err(err)?;
        return Ok(n);
    };
    let raws: Vec<Vec<u8>> = c.lrange(&key, 0, -1).await.map_err(err)?;
    let mut n = 0;
    for raw in raws {
        let Ok(d) = serde_json::from_slice::<DeadLetter>(&raw) else {
            continue;
        };
        if d.task_id.as_deref() == Some(id) {
            let removed: usize = c.lrem(&key, 1, &raw).await.map_err(err)?;
            n += removed;
        }
    }
    Ok(n)
}

/// KEYS[1] dead-letter list KEYS[2] queue; ARGV[1] record ARGV[2] message: LREM + LPUSH at once.
const REPLAY_LUA: &str = "if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then \
    redis.call('LPUSH', KEYS[2], ARGV[2]) return 1 end return 0";
