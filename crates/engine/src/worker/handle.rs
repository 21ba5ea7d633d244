//! The worker as remote control and revocation see it: a few named operations on a running
//! worker — revoke (and terminate), purge what it holds, resize its pool, apply revocations
//! persisted in Redis — so `control` needs neither the writer's ops nor the state's phases.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hlbot_proto::{ResultMeta, State};
use tokio_util::sync::CancellationToken;

use crate::worker::Shared;
use crate::worker::state::Phase;
use crate::worker::writer::Op;

impl Shared {
    /// Flag ids revoked here and in Redis (so workers that are down honour them later); stop the
    /// running ones when `terminate`; store REVOKED for ids not held here (Celery does the same).
    /// Returns the ids stopped.
    pub async fn revoke(&self, ids: &[String], terminate: bool) -> Vec<String> {
        self.state.revoke(ids, terminate);
        if let Err(e) = self.revocations.add(ids, terminate).await {
            tracing::warn!("revoke: could not persist revoked ids: {e}");
        }
        let mut stopped = Vec::new();
        for id in ids {
            let held = self.state.by_id(id);
            if held.is_empty() {
                self.mark_revoked(id).await;
            }
            if terminate {
                for (r, phase) in held {
                    if phase == Phase::Active {
                        r.stop();
                        if !stopped.contains(id) {
                            stopped.push(id.clone());
                        }
                    }
                }
            }
        }
        stopped
    }

    /// REVOKED for an id with no final state yet (PENDING/RECEIVED/RETRY/REJECTED or no key).
    async fn mark_revoked(&self, id: &str) {
        let cur = self.backend.get(id).await.ok().flatten();
        let open = cur.as_ref().is_none_or(|m| {
            matches!(
                m.status,
                State::Pending | State::Received | State::Retry | State::Rejected
            )
        });
        if open {
            self.writer.send(Op::Store(ResultMeta::revoked(
                id,
                "revoked",
                chrono::Utc::now(),
            )));
        }
    }

    /// hlbot's `purge` reaches messages workers hold (ETA waits, prefetched): they are acked now
    /// and discarded when their turn comes, so `hlbot purge` empties what `celery purge` leaves
    /// behind. Returns how many.
    pub fn purge_held(&self, queues: &[String]) -> u64 {
        let mut n = 0u64;
        for phase in [Phase::Scheduled, Phase::Reserved] {
            for r in self.state.requests(phase) {
                if !queues.is_empty() && !queues.iter().any(|q| *q == r.delivery.queue) {
                    continue;
                }
                self.state.revoke(&[r.id().to_string()], false);
                if !r.delivery.tag.is_empty() {
                    if let Some(slot) = self.state.set_acked(&r, &self.writer.stats().unsent_slots)
                    {
                        let op = Op::Ack(r.delivery.tag.clone());
                        self.writer
                            .send_all(crate::worker::outcome::release(op, slot));
                    }
                }
                n += 1;
            }
        }
        n
    }

    /// Set the number of concurrency slots (1 ..= `MAX_CONCURRENCY`): new permits for growth,
    /// permits taken away (as they free up) for shrinking.
    pub fn resize(&self, target: usize) {
        let target = target.clamp(1, crate::worker::MAX_CONCURRENCY);
        let cur = self.concurrency.swap(target, Ordering::SeqCst);
        if target > cur {
            self.slots.add_permits(target - cur);
        } else if target < cur {
            let slots = self.slots.clone();
            let n = (cur - target) as u32;
            tokio::spawn(async move {
                if let Ok(p) = slots.acquire_many_owned(n).await {
                    p.forget();
                }
            });
        }
        self.state.freed.notify_waiters();
    }

    /// Merge the persisted revoked ids into the worker's set and stop running tasks whose revoke
    /// asked for it (a worker that missed the broadcast still honours it).
    pub(crate) async fn sync_revoked(&self) {
        let r = match self.revocations.load().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("revoked-id sync failed: {e}");
                return;
            }
        };
        self.state.revoke(&r.ids, false);
        self.state.revoke(&r.terminate, true);
        for id in &r.terminate {
            for req in self.state.active_with_id(id) {
                if !req.kill.is_cancelled() {
                    tracing::info!("terminating revoked task {id}");
                    req.stop();
                }
            }
        }
    }
}

/// Sync revocations every second until `stop`.
pub(crate) async fn revoked_sync_loop(sh: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => sh.sync_revoked().await,
            _ = stop.cancelled() => return,
        }
    }
}
