//! kombu-compatible Redis broker: publish, fetch (atomically recorded as unacked), ack,
//! reject/requeue, restore past the visibility timeout, refresh of held messages, purge.

use std::time::Duration;

use hlbot_proto::{Envelope, SEP, TaskMessage};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use serde_json::Value;

use crate::error::Result;
use crate::redis::keys::PRIORITY_STEPS;
use crate::redis::{Keys, RedisSettings, scripts};

/// Broker options (kombu transport options).
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Messages unacked for longer than this are restored by any consumer (kombu default 3600 s).
    pub visibility_timeout: Duration,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(3600),
        }
    }
}

/// A message taken from a queue. `raw` is the entry exactly as it was stored.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub queue: String,
    pub raw: Vec<u8>,
    /// Empty when the entry was too malformed to carry one (then it is not in `unacked`).
    pub tag: String,
    pub priority: u8,
    /// The parsed envelope, or why it could not be parsed.
    pub envelope: std::result::Result<Envelope, hlbot_proto::DecodeError>,
    /// Set when the consumer defers unacked bookkeeping ([`Consumer::defer_unacked`]) and this
    /// message came from a plain BRPOP: the `unacked` hash value the caller must record (before
    /// the message's ack, on the same ordered connection).
    pub unacked: Option<Vec<u8>>,
}

/// Handle to the broker. Clones share one self-healing connection.
#[derive(Clone)]
pub struct Broker {
    settings: RedisSettings,
    keys: Keys,
    conn: ConnectionManager,
    pub options: BrokerOptions,
}

impl Broker {
    pub async fn connect(settings: &RedisSettings, options: BrokerOptions) -> Result<Self> {
        let conn = settings.manager().await?;
        Ok(Self {
            settings: settings.clone(),
            keys: settings.keys(),
            conn,
            options,
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }
    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }
    /// A clone of the shared connection, for other engine parts.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Declare queues the way kombu does: binding member in `_kombu.binding.<q>` and the 5.7
    /// permanent marker (so restores of named-exchange messages find the queue).
    pub async fn declare(&self, queues: &[String]) -> Result<()> {
        let mut p = redis::pipe();
        for q in queues {
            let m = Keys::binding_member(q, q);
            p.sadd(self.keys.binding(q), &m).ignore();
            p.sadd(self.keys.binding_permanent(q), &m).ignore();
        }
        let mut c = self.conn.clone();
        p.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.settings.err(e))
    }

    /// Publish one message to its queue (`LPUSH` to the priority bucket).
    pub async fn publish(&self, msg: &TaskMessage) -> Result<()> {
        self.publish_many(std::slice::from_ref(msg)).await
    }

    /// Publish many messages in one pipelined round trip.
    pub async fn publish_many(&self, msgs: &[TaskMessage]) -> Result<()> {
        let mut p = redis::pipe();
        for m in msgs {
            let key = self.route_key(&m.envelope).await?;
            p.lpush(key, m.envelope.to_vec()).ignore();
        }
        let mut c = self.conn.clone();
        p.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.settings.err(e))
    }

    /// Push raw bytes to the tail of `queue` (dead-letter replay).
    pub async fn publish_raw(&self, queue: &str, priority: u8, raw: &[u8]) -> Result<()> {
        let mut c = self.conn.clone();
        c.lpush::<_, _, ()>(self.keys.queue_for(queue, priority), raw)
            .await
            .map_err(|e| self.settings.err(e))
    }

    /// The list an envelope goes to: anonymous exchange → routing key; else the binding table.
    async fn route_key(&self, env: &Envelope) -> Result<String> {
        let di = &env.properties.delivery_info;
        let queue = if di.exchange.is_empty() {
            di.routing_key.clone()
        } else {
            self.lookup(&di.exchange, &di.routing_key)
                .await?
                .unwrap_or_else(|| di.routing_key.clone())
        };
        Ok(self.keys.queue_for(&queue, env.properties.priority))
    }

    /// kombu `_lookup`: the queue bound to `exchange` with `routing_key`.
    pub async fn lookup(&self, exchange: &str, routing_key: &str) -> Result<Option<String>> {
        let mut c = self.conn.clone();
        let members: Vec<Vec<u8>> = c
            .smembers(self.keys.binding(exchange))
            .await
            .map_err(|e| self.settings.err(e))?;
        for m in members {
            let m = String::from_utf8_lossy(&m);
            let parts: Vec<&str> = m.split(SEP).collect();
            if parts.len() == 3 && (parts[0] == routing_key || parts[0].is_empty()) {
                return Ok(Some(parts[2].to_string()));
            }
        }
        Ok(None)
    }

    /// A consumer over `queues` with its own blocking connection.
    pub async fn consumer(&self, queues: &[String]) -> Result<Consumer> {
        let conn = self.settings.blocking().await?;
        Ok(Consumer {
            broker: self.clone(),
            conn: Some(conn),
            queues: queues.to_vec(),
            defer_unacked: false,
        })
    }

    /// Ack: drop the unacked entry (also `reject(requeue=False)`).
    pub async fn ack(&self, tags: &[&str]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        p.atomic()
            .zrem(self.keys.unacked_index(), tags)
            .ignore()
            .hdel(self.keys.unacked(), tags)
            .ignore();
        let mut c = self.conn.clone();
        p.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.settings.err(e))
    }

    /// `reject(requeue=True)`: back to the tail of its queue, once.
    pub async fn requeue(&self, d: &Delivery) -> Result<bool> {
        let key = self.keys.queue_for(&d.queue, d.priority);
        let mut c = self.conn.clone();
        let n: i64 = scripts::REQUEUE
            .key(self.keys.unacked())
            .key(self.keys.unacked_index())
            .key(key)
            .arg(&d.tag)
            .arg(&d.raw)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.settings.err(e))?;
        Ok(n == 1)
    }

    /// Keep held/running messages from being restored: `ZADD unacked_index XX <now> tags`.
    pub async fn refresh(&self, tags: &[String]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let now = now_secs();
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.keys.unacked_index()).arg("XX");
        for t in tags {
            cmd.arg(now).arg(t);
        }
        let mut c = self.conn.clone();
        cmd.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.settings.err(e))
    }

    /// Restore every message unacked for longer than the visibility timeout to the head of its
    /// queue, flagged redelivered. Returns how many this call restored (racers never double).
    pub async fn restore_visible(&self) -> Result<usize> {
        let cutoff = now_secs() - self.options.visibility_timeout.as_secs_f64();
        let mut c = self.conn.clone();
        let tags: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.unacked_index())
            .arg("-inf")
            .arg(cutoff)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(1000)
            .query_async(&mut c)
            .await
            .map_err(|e| self.settings.err(e))?;
        self.restore_tags(&tags, Some(cutoff)).await
    }

    /// Restore this worker's own unacked messages now (warm shutdown), to the head of their queues.
    pub async fn restore(&self, tags: &[String]) -> Result<usize> {
        self.restore_tags(tags, None).await
    }

    async fn restore_tags(&self, tags: &[String], cutoff: Option<f64>) -> Result<usize> {
        let mut restored = 0;
        let mut c = self.conn.clone();
        for tag in tags {
            let stored: Option<Vec<u8>> = c
                .hget(self.keys.unacked(), tag)
                .await
                .map_err(|e| self.settings.err(e))?;
            let Some(stored) = stored else { continue };
            let Some((mut env, exchange, rk)) = parse_unacked(&stored) else {
                tracing::warn!(
                    tag,
                    "unacked entry is not [envelope, exchange, routing_key]; left alone"
                );
                continue;
            };
            env.mark_redelivered();
            let queue = if exchange.is_empty() {
                rk
            } else {
                match self.lookup(&exchange, &rk).await? {
                    Some(q) => q,
                    None => rk,
                }
            };
            let key = self.keys.queue_for(&queue, env.properties.priority);
            let cutoff_arg = cutoff.map_or_else(|| "+inf".to_string(), |c| c.to_string());
            let n: i64 = scripts::RESTORE
                .key(self.keys.unacked())
                .key(self.keys.unacked_index())
                .key(key)
                .arg(tag)
                .arg(cutoff_arg)
                .arg(env.to_vec())
                .invoke_async(&mut c)
                .await
                .map_err(|e| self.settings.err(e))?;
            restored += n as usize;
        }
        Ok(restored)
    }

    /// Empty queues (all priority buckets); returns how many messages were removed.
    pub async fn purge(&self, queues: &[String]) -> Result<u64> {
        let mut p = redis::pipe();
        p.atomic();
        for q in queues {
            for s in PRIORITY_STEPS {
                let k = self.keys.queue_step(q, s);
                p.llen(&k).del(&k).ignore();
            }
        }
        let mut c = self.conn.clone();
        let lens: Vec<u64> = p
            .query_async(&mut c)
            .await
            .map_err(|e| self.settings.err(e))?;
        Ok(lens.iter().sum())
    }

    /// Decode up to `limit` waiting messages of `queue` without consuming them, next-to-run first.
    pub async fn peek(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<std::result::Result<TaskMessage, hlbot_proto::DecodeError>>> {
        let mut out = Vec::new();
        let mut c = self.conn.clone();
        for s in PRIORITY_STEPS {
            if out.len() >= limit {
                break;
            }
            let key = self.keys.queue_step(queue, s);
            let n = (limit - out.len()) as isize;
            let raws: Vec<Vec<u8>> = c
                .lrange(&key, -n, -1)
                .await
                .map_err(|e| self.settings.err(e))?;
            out.extend(raws.iter().rev().map(|r| TaskMessage::decode(r)));
        }
        Ok(out)
    }

    /// Messages waiting in `queue` (all buckets).
    pub async fn len(&self, queue: &str) -> Result<u64> {
        let mut p = redis::pipe();
        for s in PRIORITY_STEPS {
            p.llen(self.keys.queue_step(queue, s));
        }
        let mut c = self.conn.clone();
        let lens: Vec<u64> = p
            .query_async(&mut c)
            .await
            .map_err(|e| self.settings.err(e))?;
        Ok(lens.iter().sum())
    }
}

/// Parse an `unacked` hash value `[envelope, exchange, routing_key]`.
pub fn parse_unacked(stored: &[u8]) -> Option<(Envelope, String, String)> {
    let v: Value = serde_json::from_slice(stored).ok()?;
    let arr = v.as_array()?;
    let env: Envelope = serde_json::from_value(arr.first()?.clone()).ok()?;
    let ex = arr
        .get(1)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let rk = arr
        .get(2)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some((env, ex, rk))
}

pub(crate) fn now_secs() -> f64 {
    hlbot_proto::time::unix(chrono::Utc::now())
}

/// Takes messages from a set of queues, in priority order, round-robin between queues.
pub struct Consumer {
    broker: Broker,
    conn: Option<MultiplexedConnection>,
    queues: Vec<String>,
    defer_unacked: bool,
}

impl Consumer {
    /// On the idle wake-up path (BRPOP), hand the unacked entry to the caller in
    /// [`Delivery::unacked`] instead of writing it before returning: the message can start one
    /// round trip sooner. The worker queues it on its ordered writer ahead of the ack; the window
    /// in which a crash loses the popped message is then the writer's next flush instead of
    /// this round trip (kombu has the same window on every fetch).
    pub fn defer_unacked(&mut self, on: bool) {
        self.defer_unacked = on;
    }

    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    pub fn set_queues(&mut self, queues: Vec<String>) {
        self.queues = queues;
    }

    /// Take up to `max` messages. Non-blocking first (atomic pop + unacked entry); when all queues
    /// are empty, block up to `wait` on `BRPOP` and record the popped message as unacked.
    pub async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 || self.queues.is_empty() {
            tokio::time::sleep(wait.min(Duration::from_millis(100))).await;
            return Ok(vec![]);
        }
        let got = self.fetch_now(max).await?;
        if !got.is_empty() || wait.is_zero() {
            return Ok(got);
        }
        self.fetch_blocking(wait).await
    }

    async fn fetch_now(&mut self, max: usize) -> Result<Vec<Delivery>> {
        let b = &self.broker;
        let mut inv = scripts::FETCH.key(b.keys.unacked());
        inv.key(b.keys.unacked_index());
        for k in b.keys.consume_order(&self.queues) {
            inv.key(k);
        }
        inv.arg(max).arg(now_secs());
        let mut c = b.conn.clone();
        let flat: Vec<Vec<u8>> = inv
            .invoke_async(&mut c)
            .await
            .map_err(|e| b.settings.err(e))?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            if let [key, raw] = pair {
                out.push(self.delivery(&String::from_utf8_lossy(key), raw.clone()));
            }
        }
        if let Some(last) = out.last() {
            self.rotate(&last.queue.clone());
        }
        Ok(out)
    }

    async fn fetch_blocking(&mut self, wait: Duration) -> Result<Vec<Delivery>> {
        let b = self.broker.clone();
        if self.conn.is_none() {
            self.conn = Some(b.settings.blocking().await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(vec![]);
        };
        let keys = b.keys.consume_order(&self.queues);
        let secs = wait.as_secs_f64().max(0.01);
        let popped: Option<(String, Vec<u8>)> = match redis::cmd("BRPOP")
            .arg(&keys)
            .arg(secs)
            .query_async(conn)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                self.conn = None; // reconnect next time
                return Err(b.settings.err(e));
            }
        };
        let Some((key, raw)) = popped else {
            return Ok(vec![]);
        };
        let mut d = self.delivery(&key, raw);
        self.rotate(&d.queue.clone());
        if !d.tag.is_empty() {
            // kombu's non-atomic step, only on the idle wake-up path.
            let stored = d.unacked_value();
            if self.defer_unacked {
                d.unacked = Some(stored);
            } else {
                let mut p = redis::pipe();
                p.atomic()
                    .zadd(b.keys.unacked_index(), &d.tag, now_secs())
                    .ignore()
                    .hset(b.keys.unacked(), &d.tag, stored)
                    .ignore();
                let mut c = b.conn.clone();
                p.query_async::<()>(&mut c)
                    .await
                    .map_err(|e| b.settings.err(e))?;
            }
        }
        Ok(vec![d])
    }

    fn delivery(&self, key: &str, raw: Vec<u8>) -> Delivery {
        let queue = self.broker.keys.queue_of_key(key).to_string();
        let envelope = Envelope::from_slice(&raw);
        let (tag, priority) = match &envelope {
            Ok(env) => (env.properties.delivery_tag.clone(), env.properties.priority),
            Err(_) => (String::new(), 0),
        };
        Delivery {
            queue,
            raw,
            tag,
            priority,
            envelope,
            unacked: None,
        }
    }

    fn rotate(&mut self, queue: &str) {
        if let Some(i) = self.queues.iter().position(|q| q == queue) {
            let q = self.queues.remove(i);
            self.queues.push(q);
        }
    }
}

impl Delivery {
    /// The `unacked` hash value kombu stores for this message: `[envelope, exchange, rk]`.
    pub fn unacked_value(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.raw.len() + 64);
        v.push(b'[');
        v.extend_from_slice(&self.raw);
        v.extend_from_slice(b", ");
        v.extend_from_slice(
            serde_json::to_string(&self.exchange())
                .unwrap_or_default()
                .as_bytes(),
        );
        v.extend_from_slice(b", ");
        v.extend_from_slice(
            serde_json::to_string(&self.routing_key())
                .unwrap_or_default()
                .as_bytes(),
        );
        v.push(b']');
        v
    }

    /// Exchange recorded with the unacked entry.
    pub fn exchange(&self) -> String {
        self.envelope
            .as_ref()
            .map(|e| e.properties.delivery_info.exchange.clone())
            .unwrap_or_default()
    }

    /// Routing key recorded with the unacked entry (falls back to the queue).
    pub fn routing_key(&self) -> String {
        self.envelope
            .as_ref()
            .map(|e| e.properties.delivery_info.routing_key.clone())
            .unwrap_or_else(|_| self.queue.clone())
    }
}
