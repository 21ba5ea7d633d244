//! Redis result backend in Celery's format: store (never over a SUCCESS; TTL; PUBLISH), get,
//! wait (subscribe first, then GET, with a poll fallback), forget.

use std::time::{Duration, Instant};

use crate::redis::Conn;
use crate::redis::pubsub::Subscription;
use hlbot_proto::ResultMeta;
use redis::AsyncCommands;

use crate::error::{Error, Result};
use crate::redis::{Keys, RedisSettings, scripts};

/// The seed app's `result_expires`.
pub const DEFAULT_RESULT_EXPIRES: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct Backend {
    settings: RedisSettings,
    keys: Keys,
    conn: Conn,
    /// TTL of stored results; `None` keeps them forever.
    pub expires: Option<Duration>,
}

impl Backend {
    pub async fn connect(settings: &RedisSettings, expires: Option<Duration>) -> Result<Self> {
        let conn = settings.manager().await?;
        Ok(Self {
            settings: settings.clone(),
            keys: settings.keys(),
            conn,
            expires,
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Store a meta. Returns false when a SUCCESS was already there (nothing written).
    pub async fn store(&self, meta: &ResultMeta) -> Result<bool> {
        let key = self.keys.result(&meta.task_id);
        let ttl = self.expires.map_or(0, |d| d.as_secs().max(1));
        let mut c = self.conn.clone();
        let n: i64 = scripts::STORE_RESULT
            .key(&key)
            .arg(ttl)
            .arg(meta.encode(self.settings.result_serializer))
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.settings.err(e))?;
        Ok(n == 1)
    }

    pub async fn get(&self, task_id: &str) -> Result<Option<ResultMeta>> {
        let mut c = self.conn.clone();
        let raw: Option<Vec<u8>> = c
            .get(self.keys.result(task_id))
            .await
            .map_err(|e| self.settings.err(e))?;
        let Some(raw) = raw else { return Ok(None) };
        ResultMeta::read(task_id, &raw).map(Some).map_err(|e| {
            Error::Other(format!(
                "the result stored for {task_id} ({} bytes) is not a Celery result meta \
                 (status, result, …): {e}",
                raw.len()
            ))
        })
    }

    /// Delete the stored result.
    /// `GroupResult.save()`: `{"result": [[gid, null], [[[id, null], null], …]]}` at
    /// `celery-taskset-meta-<gid>`, with the result TTL (Python's `GroupResult.restore` reads it).
    pub async fn save_group(&self, group_id: &str, ids: &[String]) -> Result<()> {
        let results: Vec<serde_json::Value> = ids
            .iter()
            .map(|id| serde_json::json!([[id, null], null]))
            .collect();
        let v = serde_json::json!({"result": [[group_id, null], results]});
        let mut c = self.conn.clone();
        let key = self.keys.taskset(group_id);
        let raw = self.settings.result_serializer.encode(&v);
        match self.expires {
            Some(t) => c.set_ex::<_, _, ()>(key, raw, t.as_secs().max(1)).await,
            None => c.set::<_, _, ()>(key, raw).await,
        }
        .map_err(|e| self.settings.err(e))
    }

    /// `GroupResult.restore()`: the member task ids of a saved group (`None` if not saved).
    /// Nested groups are flattened to their leaf ids.
    pub async fn restore_group(&self, group_id: &str) -> Result<Option<Vec<String>>> {
        let mut c = self.conn.clone();
        let raw: Option<Vec<u8>> = c
            .get(self.keys.taskset(group_id))
            .await
            .map_err(|e| self.settings.err(e))?;
        let read = hlbot_proto::compression::read_stored::<serde_json::Value>;
        let Some(v) = raw.and_then(|r| read(&r).ok()) else {
            return Ok(None);
        };
        let mut ids = Vec::new();
        if let Some(members) = v.pointer("/result/1").and_then(|m| m.as_array()) {
            for m in members {
                leaf_ids(m, &mut ids);
            }
        }
        Ok(Some(ids))
    }

    /// Celery's `set_chord_size`: drop a finished run's `.c` marker, then `.s` = `size`.
    pub async fn set_chord_size(&self, group_id: &str, size: usize) -> Result<()> {
        let mut c = self.conn.clone();
        let mut p = redis::pipe();
        p.del(self.keys.chord_part(group_id, ".c")).ignore();
        let skey = self.keys.chord_part(group_id, ".s");
        match self.expires {
            Some(t) => p.set_ex(skey, size, t.as_secs().max(1)).ignore(),
            None => p.set(skey, size).ignore(),
        };
        p.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.settings.err(e))
    }

    pub async fn forget(&self, task_id: &str) -> Result<()> {
        let mut c = self.conn.clone();
        c.del::<_, ()>(self.keys.result(task_id))
            .await
            .map_err(|e| self.settings.err(e))
    }

    /// Subscribe to the task's result channel (the key's name, like Celery's backend), for a
    /// caller that runs its own wait loop ([`Watch::changed`]).
    pub async fn watch(&self, task_id: &str) -> Result<Watch> {
        let key = self.keys.result(task_id);
        Ok(Watch(Subscription::channel(&self.settings, &key).await?))
    }

    /// Wait until the task is in a ready state (SUCCESS/FAILURE/REVOKED) or `timeout` passes.
    /// Subscribes first, then GETs, so a result stored in between is not missed; polls every
    /// second as a fallback (e.g. across a reconnect).
    pub async fn wait(&self, task_id: &str, timeout: Duration) -> Result<ResultMeta> {
        let start = Instant::now();
        let key = self.keys.result(task_id);
        let mut pubsub = Subscription::channel(&self.settings, &key).await.ok();
        loop {
            if let Some(m) = self.get(task_id).await?.filter(|m| m.status.is_ready()) {
                return Ok(m);
            }
            let left = timeout
                .checked_sub(start.elapsed())
                .ok_or(Error::Timeout(timeout.as_secs_f64()))?;
            let slice = left.min(Duration::from_secs(1));
            match pubsub.as_mut() {
                Some(ps) => {
                    let deadline = tokio::time::sleep(slice);
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            _ = &mut deadline => break,
                            msg = ps.next() => match msg {
                                Some(msg) => {
                                    if let Some(m) = ResultMeta::read(task_id, msg.get_payload_bytes()).ok().filter(|m| m.status.is_ready()) {
                                        return Ok(m);
                                    }
                                }
                                None => break,
                            }
                        }
                    }
                }
                None => tokio::time::sleep(slice).await,
            }
        }
    }
}

/// A result tuple `[[id, parent], null]` or a nested group `[[gid, parent], [members]]` → ids.
fn leaf_ids(v: &serde_json::Value, out: &mut Vec<String>) {
    match (v.pointer("/0/0").and_then(|i| i.as_str()), v.get(1)) {
        (_, Some(serde_json::Value::Array(members))) => {
            for m in members {
                leaf_ids(m, out);
            }
        }
        (Some(id), _) => out.push(id.to_string()),
        _ => {}
    }
}

/// A subscription to one task's result channel.
pub struct Watch(Subscription);

impl Watch {
    /// Wait up to `within` for the task's meta to be published (any state); true if it was.
    /// A lost subscription just waits out `within` (the caller reads the key anyway).
    pub async fn changed(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        match tokio::time::timeout_at(deadline, self.0.next()).await {
            Ok(Some(_)) => true,
            Ok(None) => {
                tokio::time::sleep_until(deadline).await;
                false
            }
            Err(_) => false,
        }
    }
}
