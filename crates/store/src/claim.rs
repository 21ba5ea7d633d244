//! Dedup across workers: before processing a source a worker claims its row (unique on kind,
//! content key and options key). The first claim wins and holds a lease; a second worker sees
//! the row `processing` under a live lease and waits, then reuses the stored result. A result
//! already `done` is reused at once unless forced. An expired lease (its worker died) or a
//! `failed` row can be taken over. The row's unique key is the lock: one INSERT or one guarded
//! UPDATE decides who owns it, on either backend.

use std::time::Duration;

use serde_json::Value;

use crate::library::SourceKey;
use crate::{Error, Result, Store, now};

/// What a claim decided.
#[derive(Debug, Clone)]
pub enum Claim {
    /// Process it: this worker owns source `id` until `complete` or `release`.
    Mine { id: i64 },
    /// Already processed (by this or another worker): its stored result.
    Done { id: i64, result: Value },
}

impl Store {
    /// Claim `key` for `owner`. Without `force` a stored result is returned as `Done`; with it
    /// the source is re-processed (still never by two workers at once). Waits up to `wait` for
    /// another worker's live claim to end.
    pub async fn claim(
        &self,
        key: &SourceKey,
        owner: &str,
        lease: Duration,
        wait: Duration,
        force: bool,
    ) -> Result<Claim> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut logged = false;
        loop {
            let t = now();
            let until = t + lease.as_secs_f64();
            let row: Option<(i64, String, Option<String>, Option<f64>)> = sqlx::query_as(
                "SELECT id, status, result, lease_until FROM sources \
                 WHERE kind = $1 AND content_key = $2 AND options_key = $3",
            )
            .bind(key.kind.clone())
            .bind(key.content_key.clone())
            .bind(key.options_key.clone())
            .fetch_optional(self.pool())
            .await?;
            match row {
                None => {
                    let won: Option<(i64,)> = sqlx::query_as(
                        "INSERT INTO sources (kind, content_key, options_key, status, claimed_by, \
                         lease_until, created_at, updated_at) \
                         VALUES ($1, $2, $3, 'processing', $4, $5, $6, $6) \
                         ON CONFLICT (kind, content_key, options_key) DO NOTHING RETURNING id",
                    )
                    .bind(key.kind.clone())
                    .bind(key.content_key.clone())
                    .bind(key.options_key.clone())
                    .bind(owner)
                    .bind(until)
                    .bind(t)
                    .fetch_optional(self.pool())
                    .await?;
                    if let Some((id,)) = won {
                        return Ok(Claim::Mine { id });
                    }
                    continue;
                }
                Some((id, status, result, _)) if status == "done" && !force => {
                    if let Some(r) = result.and_then(|r| serde_json::from_str(&r).ok()) {
                        return Ok(Claim::Done { id, result: r });
                    }
                    if let Some(c) = self.take_over(id, owner, until, t).await? {
                        return Ok(c);
                    }
                }
                Some((id, status, _, lease_until)) => {
                    let live = status == "processing" && lease_until.is_some_and(|l| l > t);
                    if !live {
                        if let Some(c) = self.take_over(id, owner, until, t).await? {
                            return Ok(c);
                        }
                        continue;
                    }
                    if !logged {
                        logged = true;
                        tracing::info!(
                            "{} {} is being processed by another worker; waiting for its result",
                            key.kind,
                            key.content_key
                        );
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::ClaimTimeout(format!(
                    "{} {}",
                    key.kind, key.content_key
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Take a row no live worker holds; None if another worker got it first.
    async fn take_over(&self, id: i64, owner: &str, until: f64, t: f64) -> Result<Option<Claim>> {
        let n = sqlx::query(
            "UPDATE sources SET status = 'processing', claimed_by = $1, lease_until = $2, \
             updated_at = $3 WHERE id = $4 \
             AND (status <> 'processing' OR lease_until IS NULL OR lease_until <= $3)",
        )
        .bind(owner)
        .bind(until)
        .bind(t)
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok((n == 1).then_some(Claim::Mine { id }))
    }

    /// Mark source `id` done with `result` (what later claims reuse).
    pub async fn complete(&self, id: i64, result: &Value) -> Result<()> {
        sqlx::query(
            "UPDATE sources SET status = 'done', result = $1, error = NULL, claimed_by = NULL, \
             lease_until = NULL, updated_at = $2 WHERE id = $3",
        )
        .bind(result.to_string())
        .bind(now())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Give up a claim after a failure: the next claim processes it again.
    pub async fn release(&self, id: i64, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE sources SET status = 'failed', error = $1, claimed_by = NULL, \
             lease_until = NULL, updated_at = $2 WHERE id = $3 AND status = 'processing'",
        )
        .bind(crate::redact_text(error))
        .bind(now())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
