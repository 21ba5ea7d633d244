//! Dead letters: messages that cannot run (undecodable, unknown task) are kept in a Redis list
//! with the reason, listable and replayable (`hlbot dead list`, `hlbot dead replay`).

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::error::Result;

/// One dead-lettered message: the raw entry exactly as it was read, plus why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: String,
    pub queue: String,
    pub task_id: Option<String>,
    pub task: Option<String>,
    /// Unix time it was dead-lettered.
    pub at: f64,
    /// The raw queue entry (UTF-8 text; kombu entries always are).
    pub raw: String,
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

/// Put dead letters back on their queues: the one with `task_id`, or all when `None`.
/// Returns how many were replayed.
pub async fn replay(broker: &Broker, task_id: Option<&str>) -> Result<usize> {
    let mut c = broker.conn();
    let key = broker.keys().dead_letter();
    let raws: Vec<Vec<u8>> = c
        .lrange(&key, 0, -1)
        .await
        .map_err(|e| broker.settings().err(e))?;
    let mut n = 0;
    for raw in raws {
        let Ok(d) = serde_json::from_slice::<DeadLetter>(&raw) else {
            continue;
        };
        if task_id.is_some_and(|id| d.task_id.as_deref() != Some(id)) {
            continue;
        }
        // Remove first: if two replays race, only the one that removed it pushes it.
        let removed: i64 = c
            .lrem(&key, 1, &raw)
            .await
            .map_err(|e| broker.settings().err(e))?;
        if removed == 1 {
            broker.publish_raw(&d.queue, 0, d.raw.as_bytes()).await?;
            n += 1;
        }
    }
    Ok(n)
}
