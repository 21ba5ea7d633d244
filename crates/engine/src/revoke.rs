//! Revocations that survive restarts: revoked task ids are kept in the Redis zsets
//! `hlbot.revoked` (id → expiry, unix s) and `hlbot.revoked.terminate` (ids whose running task
//! must be stopped), written by `revoke` (the control client and every worker that hears a
//! broadcast) and loaded by workers at startup and on every sync tick. Celery keeps them only in
//! worker memory (celery#4300); the in-memory set in `WorkerState` stays the fast path.

use std::time::Duration;

use crate::redis::Conn;

use crate::error::Result;
use crate::redis::{Keys, RedisSettings};

/// Celery's `CELERY_WORKER_REVOKE_EXPIRES`: ids are remembered this long.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10_800);

/// Handle to the persisted revoked set. Cheap to clone.
#[derive(Clone)]
pub struct Revocations {
    conn: Conn,
    keys: Keys,
    settings: RedisSettings,
    ttl: Duration,
}

/// What is revoked right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    pub ids: Vec<String>,
    /// Subset of `ids` whose running task is to be terminated.
    pub terminate: Vec<String>,
}

impl Revocations {
    pub fn new(settings: &RedisSettings, conn: Conn, ttl: Duration) -> Self {
        Self {
            conn,
            keys: settings.keys(),
            settings: settings.clone(),
            ttl,
        }
    }

    /// Persist revoked ids (and their terminate flag) until now + TTL; expired ones are pruned.
    pub async fn add(&self, ids: &[String], terminate: bool) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now();
        let until = now + self.ttl.as_secs_f64();
        let mut p = redis::pipe();
        let mut keys = vec![self.keys.revoked()];
        if terminate {
            keys.push(self.keys.revoked_terminate());
        }
        for k in &keys {
            let members: Vec<(f64, &str)> = ids.iter().map(|i| (until, i.as_str())).collect();
            p.zadd_multiple(k, &members).ignore();
            p.zrembyscore(k, "-inf", now).ignore();
        }
        let mut c = self.conn.clone();
        p.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.settings.err(e))
    }

    /// Every id still revoked (expiry in the future).
    pub async fn load(&self) -> Result<Revoked> {
        let now = now();
        let mut p = redis::pipe();
        p.zrangebyscore(self.keys.revoked(), now, "+inf");
        p.zrangebyscore(self.keys.revoked_terminate(), now, "+inf");
        let mut c = self.conn.clone();
        let (ids, terminate): (Vec<String>, Vec<String>) = p
            .query_async(&mut c)
            .await
            .map_err(|e| self.settings.err(e))?;
        Ok(Revoked { ids, terminate })
    }

    /// Is `id` revoked (persisted and not expired)?
    pub async fn contains(&self, id: &str) -> Result<bool> {
        let mut c = self.conn.clone();
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(self.keys.revoked())
            .arg(id)
            .query_async(&mut c)
            .await
            .map_err(|e| self.settings.err(e))?;
        Ok(score.is_some_and(|s| s > now()))
    }
}

fn now() -> f64 {
    hlbot_proto::time::unix(chrono::Utc::now())
}
