//! Workers' liveness keys (`hlbot.alive.<id>`, a lease renewed every few seconds) and what
//! survivors do for a worker whose key stays gone: give every message of its in-flight lists back
//! to the head of the queue it came from (`recover.lua`), and every unacked message it held
//! (`hlbot.held`, `restore.lua`) — without waiting for the visibility timeout.

use std::time::Duration;

use redis::AsyncCommands;

use crate::broker::{Broker, Holder};
use crate::error::Result;
use crate::redis::scripts;

/// Things (in-flight lists, holders) whose worker's liveness key was found missing, with when
/// that was first seen.
#[derive(Default)]
pub struct Suspects(std::collections::HashMap<String, std::time::Instant>);

impl Suspects {
    /// Look at the liveness keys of `looked` (suspect name, its worker) in one pipeline; for each,
    /// whether its worker is now taken for dead: its key missing at this look and at one at least
    /// `grace` earlier. A key found again clears the suspicion; names no longer looked at are
    /// forgotten, and so are those confirmed (the caller acts on them now).
    async fn look(
        &mut self,
        broker: &Broker,
        looked: &[(&str, &str)],
        grace: Duration,
    ) -> Result<Vec<bool>> {
        self.0.retain(|k, _| looked.iter().any(|(l, _)| l == k));
        if looked.is_empty() {
            return Ok(vec![]);
        }
        let mut look = redis::pipe();
        for (_, w) in looked {
            look.exists(broker.keys().alive(w));
        }
        let alive: Vec<bool> = look
            .query_async(&mut broker.conn())
            .await
            .map_err(|e| broker.settings().err(e))?;
        let now = std::time::Instant::now();
        Ok(looked
            .iter()
            .zip(alive)
            .map(|((name, _), alive)| {
                if alive {
                    self.0.remove(*name);
                    return false;
                }
                let first = *self.0.entry(name.to_string()).or_insert(now);
                let gone = now.duration_since(first) >= grace;
                if gone {
                    self.0.remove(*name);
                }
                gone
            })
            .collect())
    }
}

/// Give back the in-flight lists of workers that died — every message to the head of the queue
/// it came from, in order, in one atomic step per list; returns how many: a list whose owner's
/// liveness key is missing at two looks at least `grace` apart (the owner's lease). One look is
/// not enough: a Redis paused past the lease (`SIGSTOP`, a frozen VM) lets every worker's key
/// lapse at once, and the owners only renew theirs once it runs again — a survivor that moved a live worker's
/// list would have it run the message while a second copy goes back to the queue.
pub async fn recover_inflight(
    broker: &Broker,
    suspects: &mut Suspects,
    grace: Duration,
) -> Result<usize> {
    let mut c = broker.conn();
    let keys = broker.keys();
    let lists: Vec<(String, String)> = c
        .hgetall(keys.inflights())
        .await
        .map_err(|e| broker.settings().err(e))?;
    let owned: Vec<(String, String, &str)> = lists
        .iter()
        .filter_map(|(l, s)| worker_of(keys, l).map(|w| (l.clone(), s.clone(), w)))
        .collect();
    let looked: Vec<(&str, &str)> = owned.iter().map(|(l, _, w)| (l.as_str(), *w)).collect();
    let gone = suspects.look(broker, &looked, grace).await?;
    let mut n = 0usize;
    for ((list, source, worker), gone) in owned.iter().zip(gone) {
        if !gone {
            continue;
        }
        let moved: i64 = scripts::RECOVER
            .key(keys.inflights())
            .key(keys.alive(worker))
            .key(list)
            .key(source)
            .invoke_async(&mut c)
            .await
            .map_err(|e| broker.settings().err(e))?;
        n += moved.max(0) as usize;
    }
    Ok(n)
}

/// Give back the unacked messages of workers that died — reserved, ETA-held, running under
/// `acks_late` — to the head of their queues, flagged redelivered: a holder registered in
/// `hlbot.holders` whose liveness key is missing at two looks at least `grace` apart (see
/// [`recover_inflight`] for why one look is not enough). Each message goes back only while
/// `hlbot.held` still names the dead worker and its key is still gone (`restore.lua`, atomic), so
/// racing survivors give it back once. Returns how many.
pub async fn recover_held(
    broker: &Broker,
    suspects: &mut Suspects,
    grace: Duration,
) -> Result<usize> {
    let mut c = broker.conn();
    let keys = broker.keys();
    let holders: Vec<String> = c
        .hkeys(keys.holders())
        .await
        .map_err(|e| broker.settings().err(e))?;
    let looked: Vec<(&str, &str)> = holders.iter().map(|w| (w.as_str(), w.as_str())).collect();
    let gone = suspects.look(broker, &looked, grace).await?;
    let mut n = 0usize;
    for (worker, gone) in holders.iter().zip(gone) {
        if !gone {
            continue;
        }
        // Told first: a worker that was only frozen learns on waking why its entries vanished.
        c.set_ex::<_, _, ()>(keys.reclaimed(worker), 1, 3600)
            .await
            .map_err(|e| broker.settings().err(e))?;
        // `None`: it came back meanwhile (nothing more was touched).
        if let Some(k) = broker.restore_held(Holder::Dead(worker)).await? {
            n += k;
            let _: i64 = redis::cmd("EVAL")
                .arg(FORGET_HOLDER_LUA)
                .arg(2)
                .arg(keys.holders())
                .arg(keys.alive(worker))
                .arg(worker)
                .query_async(&mut c)
                .await
                .map_err(|e| broker.settings().err(e))?;
        }
    }
    Ok(n)
}

/// KEYS[1] hlbot.holders KEYS[2] the worker's liveness key: forget the holder while it is gone.
const FORGET_HOLDER_LUA: &str = "if redis.call('EXISTS', KEYS[2]) == 0 then \
    return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

/// Leave `hlbot.holders` (clean exit, nothing of this worker's left in `unacked`).
pub async fn unregister_holder(broker: &Broker, worker: &str) -> Result<()> {
    let mut c = broker.conn();
    c.hdel::<_, _, ()>(broker.keys().holders(), worker)
        .await
        .map_err(|e| broker.settings().err(e))
}

/// `P hlbot.inflight.<worker>.<n>` → `<worker>`.
fn worker_of<'a>(keys: &crate::redis::Keys, list: &'a str) -> Option<&'a str> {
    let base = keys.inflight("");
    let rest = list.strip_prefix(base.as_str())?;
    rest.rsplit_once('.').map(|(w, _)| w)
}

/// Keep this worker's liveness key and its record in `hlbot.holders` (survivors give back its
/// in-flight lists and held messages once the key stays gone), in one step with reading — and
/// deleting — the `hlbot.reclaimed` mark: `true` when survivors took this worker for dead
/// meanwhile (frozen or cut off) and gave back what it held. Written again every time, so a Redis
/// that lost its data, or a survivor that forgot this worker, has the record back.
pub async fn keep_alive(
    broker: &Broker,
    worker: &str,
    node: &str,
    lease: Duration,
) -> Result<bool> {
    let keys = broker.keys();
    let (reclaimed,): (i64,) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(keys.alive(worker))
        .arg(node)
        .arg("PX")
        .arg(lease.as_millis().max(1) as u64)
        .ignore()
        .hset(keys.holders(), worker, node)
        .ignore()
        .del(keys.reclaimed(worker))
        .query_async(&mut broker.conn())
        .await
        .map_err(|e| broker.settings().err(e))?;
    Ok(reclaimed > 0)
}

/// Drop the liveness key (clean exit).
pub async fn not_alive(broker: &Broker, worker: &str) -> Result<()> {
    let mut c = broker.conn();
    c.del::<_, ()>(broker.keys().alive(worker))
        .await
        .map_err(|e| broker.settings().err(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_of_list() {
        let k = crate::redis::Keys::new("p:", "", 0);
        assert_eq!(worker_of(&k, "p:hlbot.inflight.abc.3"), Some("abc"));
        assert_eq!(worker_of(&k, "p:other.abc.3"), None);
    }
}
