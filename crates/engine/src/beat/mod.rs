//! `hlbot beat`: sends periodic tasks. Highly available: any number of beat processes run, one
//! holds a Redis lease (fencing token, `lease.lua`) and sends; every send is one Lua step
//! (`send.lua`) that checks the lease and token, refuses a tick not newer than the entry's
//! last-run time, and takes an idempotency key per entry and due time (`SET NX`) — so even two
//! processes that both believe they lead cannot send a tick twice. The last-run time lives in
//! Redis, so a restart or a new leader neither skips nor repeats a tick.
//!
//! Invariant: at most one message per (entry, due time), ever.

pub mod schedule;

use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::Result;
pub use schedule::{Entry, EntryConfig, Schedule, now_ms};

static LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lease.lua")));
/// How long a tick's publish to RabbitMQ is retried before the tick is given up.
const PUBLISH_BOUND: Duration = Duration::from_secs(30);

static SEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("send.lua")));

/// More missed ticks than this (beat was down for long) are not all sent: only the latest one.
pub const MAX_CATCH_UP: usize = 100;

/// Beat settings.
#[derive(Debug, Clone)]
pub struct BeatOptions {
    /// This process's identity in the lease (unique per process).
    pub owner: String,
    /// How long a lease lasts without renewal; a dead leader is replaced within this time.
    pub lease: Duration,
    pub entries: Vec<Entry>,
}

impl BeatOptions {
    pub fn new(entries: Vec<Entry>) -> Self {
        Self {
            owner: format!(
                "beat-{}@{}-{}",
                std::process::id(),
                crate::client::hostname(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            lease: Duration::from_secs(10),
            entries,
        }
    }
}

/// What one tick did (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Sent,
    AlreadySent,
    NotLeader,
}

/// A beat process: campaigns for the lease and, while leading, sends due ticks.
pub struct Beat {
    client: Client,
    opts: BeatOptions,
}

impl Beat {
    pub fn new(client: Client, opts: BeatOptions) -> Self {
        Self { client, opts }
    }

    /// Run until `shutdown`; the lease is released on the way out so a standby takes over at once.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let queues: Vec<String> = self.opts.entries.iter().map(|e| self.queue_of(e)).collect();
        self.client.broker().declare(&queues).await?;
        tracing::info!(
            "beat {} starting: {} entries, lease {:.1}s",
            self.opts.owner,
            self.opts.entries.len(),
            self.opts.lease.as_secs_f64()
        );
        let renew = (self.opts.lease / 3).max(Duration::from_millis(50));
        let mut token = 0i64;
        while !shutdown.is_cancelled() {
            let mut wait = renew;
            match self.campaign().await {
                Ok(t) if t > 0 => {
                    if t != token {
                        tracing::info!("beat {}: leader (fencing token {t})", self.opts.owner);
                    }
                    token = t;
                    match self.tick(token).await {
                        Ok(next) => wait = wait.min(next),
                        Err(e) => tracing::warn!("beat: {e}"),
                    }
                }
                Ok(_) => {
                    // Standby: look often, so a dead leader is replaced soon after its lease ends.
                    wait = (self.opts.lease / 10).max(Duration::from_millis(20));
                    if token != 0 {
                        tracing::warn!("beat {}: lost the lease", self.opts.owner);
                    }
                    token = 0;
                }
                Err(e) => {
                    tracing::warn!("beat: lease: {e}");
                    token = 0;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        if token != 0 {
            self.release(token).await;
        }
        tracing::info!("beat {} stopped", self.opts.owner);
        Ok(())
    }

    fn queue_of(&self, e: &Entry) -> String {
        e.options
            .queue
            .clone()
            .unwrap_or_else(|| self.client.router().queue_for(&e.task).to_string())
    }

    /// Take or renew the lease; the fencing token, or 0 when another process leads.
    pub async fn campaign(&self) -> Result<i64> {
        let b = self.client.broker();
        let mut c = b.conn();
        LEASE
            .key(b.keys().beat_lease())
            .key(b.keys().beat_fence())
            .arg(&self.opts.owner)
            .arg(self.opts.lease.as_millis() as u64)
            .invoke_async(&mut c)
            .await
            .map_err(|e| b.settings().err(e))
    }

    async fn release(&self, token: i64) {
        let b = self.client.broker();
        let mut c = b.conn();
        let me = format!("{} {token}", self.opts.owner);
        let cur: Option<String> = c.get(b.keys().beat_lease()).await.unwrap_or(None);
        if cur.as_deref() == Some(me.as_str()) {
            let _: redis::RedisResult<()> = c.del(b.keys().beat_lease()).await;
        }
    }

    /// Send every due tick of every entry; returns how long until the next one is due.
    async fn tick(&self, token: i64) -> Result<Duration> {
        let b = self.client.broker();
        let mut c = b.conn();
        let mut next_wait = Duration::from_secs(3600);
        for e in &self.opts.entries {
            let key = b.keys().beat_last(&e.name);
            // First start ever: the schedule starts now (shared by every beat through NX).
            let _: redis::RedisResult<()> = redis::cmd("SET")
                .arg(&key)
                .arg(now_ms())
                .arg("NX")
                .query_async(&mut c)
                .await;
            let last: i64 = c.get(&key).await.map_err(|e| b.settings().err(e))?;
            let now = now_ms();
            let mut dues = Vec::new();
            let mut due = e.schedule.next_after(last);
            while let Some(d) = due.filter(|d| *d <= now) {
                dues.push(d);
                due = e.schedule.next_after(d);
                if dues.len() > 10 * MAX_CATCH_UP {
                    break;
                }
            }
            if dues.len() > MAX_CATCH_UP {
                tracing::warn!(
                    "beat: {} missed {} ticks of {:?}; sending only the latest",
                    self.opts.owner,
                    dues.len(),
                    e.name
                );
                dues.drain(..dues.len() - 1);
            }
            for d in dues {
                match self.send(e, d, token).await? {
                    Sent::Sent => {
                        tracing::info!(
                            "beat: Scheduler: Sending due task {} ({}) due {}",
                            e.name,
                            e.task,
                            schedule::at(d)
                        )
                    }
                    Sent::AlreadySent => {}
                    Sent::NotLeader => return Ok(Duration::from_millis(10)),
                }
            }
            if let Some(n) = due {
                let ms = (n - now_ms()).max(1) as u64;
                next_wait = next_wait.min(Duration::from_millis(ms));
            }
        }
        Ok(next_wait)
    }

    /// Send tick `due` of `e`, fenced by `token`.
    pub async fn send(&self, e: &Entry, due: i64, token: i64) -> Result<Sent> {
        let b = self.client.broker();
        let mut opts = e.options.clone();
        opts.queue = Some(self.queue_of(e));
        let msg = self
            .client
            .build(&e.task, e.args.clone(), e.kwargs.clone(), &opts);
        let list = b.keys().queue_for(msg.queue(), msg.priority());
        let amqp = self.client.amqp();
        let ttl = (e.schedule.period_hint(due).as_secs() * 10).clamp(60, 2 * 86_400);
        let mut c = b.conn();
        let n: i64 = SEND
            .key(b.keys().beat_lease())
            .key(b.keys().beat_last(&e.name))
            .key(b.keys().beat_sent(&e.name, due))
            .key(list)
            .arg(format!("{} {token}", self.opts.owner))
            .arg(due)
            .arg(ttl)
            .arg(msg.envelope.to_vec())
            .arg(if amqp.is_some() { "1" } else { "0" })
            .invoke_async(&mut c)
            .await
            .map_err(|e| b.settings().err(e))?;
        // On RabbitMQ the tick is recorded first (at most once, fenced as above), then published
        // with the broker's confirm, retried for up to PUBLISH_BOUND: a tick still unconfirmed
        // then is reported and lost, never sent twice.
        if let (1, Some(a)) = (n, amqp) {
            let never = tokio_util::sync::CancellationToken::new();
            let sent = tokio::time::timeout(
                PUBLISH_BOUND,
                a.publisher.publish_until_confirmed(&msg.envelope, &never),
            )
            .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(err),
                Err(_) => {
                    return Err(a.url.err(format!(
                        "beat tick of {} not confirmed within {PUBLISH_BOUND:?}: skipped",
                        e.name
                    )));
                }
            }
        }
        Ok(match n {
            1 => Sent::Sent,
            0 => Sent::AlreadySent,
            _ => Sent::NotLeader,
        })
    }
}
