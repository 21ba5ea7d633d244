//! Queue statistics for operators (`hlbot queues`): per queue, the waiting messages in each
//! priority list, the delivered-but-unacknowledged ones (and of those, the ETA/countdown tasks a
//! worker holds until they are due), and the dead letters. Read-only; consumers come from the
//! workers themselves (pidbox `active_queues`), not from here.

use std::collections::BTreeMap;

use chrono::Utc;
use redis::AsyncCommands;
use serde::Serialize;
use serde_json::Value;

use crate::broker::{Broker, parse_unacked};
use crate::deadletter::DeadLetter;
use crate::error::Result;

/// One queue's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    pub queue: String,
    /// Waiting messages, all priority lists together.
    pub waiting: u64,
    /// Waiting messages per priority step (`0`, `3`, `6`, `9`), only the non-empty ones.
    pub by_priority: BTreeMap<u8, u64>,
    /// Delivered to a worker and not yet acknowledged (running, prefetched or held for an ETA).
    pub unacked: u64,
    /// Of `unacked`: tasks with an ETA still in the future (held by a worker until due).
    pub scheduled: u64,
    /// Dead letters that came from this queue.
    pub dead: u64,
}

/// Numbers for `queues`, plus any queue that only appears in `unacked` or the dead letters.
pub async fn stats(broker: &Broker, queues: &[String]) -> Result<Vec<QueueStats>> {
    let keys = broker.keys();
    let mut c = broker.conn();
    let err = |e| broker.settings().err(e);
    let mut out: BTreeMap<String, QueueStats> = BTreeMap::new();
    for q in queues {
        let mut s = QueueStats {
            queue: q.clone(),
            ..Default::default()
        };
        for &step in keys.priority_steps() {
            let n: u64 = c.llen(keys.queue_step(q, step)).await.map_err(err)?;
            if n > 0 {
                s.by_priority.insert(step, n);
                s.waiting += n;
            }
        }
        out.insert(q.clone(), s);
    }
    let unacked: Vec<Vec<u8>> = c.hvals(keys.unacked()).await.map_err(err)?;
    let now = Utc::now();
    for raw in unacked {
        let Some((env, _exchange, rk)) = parse_unacked(&raw) else {
            continue;
        };
        let queue = Some(env.properties.delivery_info.routing_key.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or(rk);
        let s = entry(&mut out, &queue);
        s.unacked += 1;
        let eta = env
            .headers
            .get("eta")
            .and_then(Value::as_str)
            .and_then(hlbot_proto::time::parse_iso);
        if eta.is_some_and(|t| t > now) {
            s.scheduled += 1;
        }
    }
    let dead: Vec<Vec<u8>> = c.lrange(keys.dead_letter(), 0, -1).await.map_err(err)?;
    for raw in dead {
        if let Ok(d) = serde_json::from_slice::<DeadLetter>(&raw) {
            entry(&mut out, &d.queue).dead += 1;
        }
    }
    Ok(out.into_values().collect())
}

fn entry<'a>(out: &'a mut BTreeMap<String, QueueStats>, q: &str) -> &'a mut QueueStats {
    out.entry(q.to_string()).or_insert_with(|| QueueStats {
        queue: q.to_string(),
        ..Default::default()
    })
}

/// Waiting lists of `queues` named under another kombu layout than this broker's (`sep` `\x06\x16`
/// or `:`, steps 1–9): messages a client with other `priority_steps`/`sep` sent, which no worker
/// with this layout reads. `(list key, length)`, only the non-empty ones; one pipelined `LLEN`
/// per candidate, no scan.
pub async fn stray_priority_lists<C: redis::aio::ConnectionLike>(
    c: &mut C,
    keys: &crate::redis::Keys,
    queues: &[String],
) -> redis::RedisResult<Vec<(String, u64)>> {
    let mine: std::collections::HashSet<String> = queues
        .iter()
        .flat_map(|q| {
            keys.priority_steps()
                .iter()
                .map(move |s| keys.queue_step(q, *s))
        })
        .collect();
    let mut candidates = Vec::new();
    for q in queues {
        for sep in [hlbot_proto::SEP, ":"] {
            for step in 1..=9u8 {
                let k = format!("{}{q}{sep}{step}", keys.prefix());
                if !mine.contains(&k) {
                    candidates.push(k);
                }
            }
        }
    }
    let mut p = redis::pipe();
    for k in &candidates {
        p.llen(k);
    }
    let lens: Vec<u64> = p.query_async(c).await?;
    Ok(candidates
        .into_iter()
        .zip(lens)
        .filter(|(_, n)| *n > 0)
        .collect())
}

/// One line naming a stray list for operators (the separator made visible).
pub fn describe_stray(key: &str, n: u64) -> String {
    format!(
        "{n} message(s) wait in list {:?}, which this broker layout never reads: a client uses \
         other priority_steps/sep (kombu broker_transport_options); set the same in the \
         config's [broker_transport_options]",
        key.replace(hlbot_proto::SEP, "\\x06\\x16")
    )
}
