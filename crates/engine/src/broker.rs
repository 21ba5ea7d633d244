//! kombu-compatible Redis broker: publish, ack, reject/requeue, restore past the visibility
//! timeout, refresh of held messages, purge. Taking messages is `fetch.rs`.

use std::time::Duration;

use hlbot_proto::{Envelope, TaskMessage};

pub use crate::fetch::{Consumer, Delivery};
use crate::redis::Conn;
use redis::AsyncCommands;
use serde_json::Value;

use crate::error::Result;
use crate::redis::{Keys, RedisSettings, scripts};

/// Broker options (kombu transport options).
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Messages unacked for longer than this are restored by any consumer (kombu default 3600 s).
    pub visibility_timeout: Duration,
    /// Messages larger than this are dead-lettered (with a truncated copy and their size)
    /// instead of being decoded; 0 = no limit.
    pub max_message_bytes: usize,
}

/// Default message size cap: far above any task hlbot runs (paths, URLs, text of a few MB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 << 20;

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(3600),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// Handle to the broker. Clones share one self-healing connection.
#[derive(Clone)]
pub struct Broker {
    settings: RedisSettings,
    keys: Keys,
    conn: Conn,
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
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Declare queues the way kombu does: binding member in `_kombu.binding.<q>` and the 5.7
    /// permanent marker (so restores of named-exchange messages find the queue).
    pub async fn declare(&self, queues: &[String]) -> Result<()> {
        let mut p = redis::pipe();
        for q in queues {
            let m = self.keys.binding_member(q, q);
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

    /// kombu `_lookup`: the queue bound to `exchange` with `routing_key` — an exact (direct) or
    /// empty (fanout) binding key first, else a topic binding whose pattern matches (kombu keeps
    /// a topic binding's regex, `^media\..*?$` for `media.#`, as the member's middle part). A
    /// topic-routed message restored after its worker died goes back to the bound queue, not to
    /// a list named after its routing key that nobody reads.
    pub async fn lookup(&self, exchange: &str, routing_key: &str) -> Result<Option<String>> {
        let mut c = self.conn.clone();
        let members: Vec<Vec<u8>> = c
            .smembers(self.keys.binding(exchange))
            .await
            .map_err(|e| self.settings.err(e))?;
        let members: Vec<String> = members
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        let parsed = || {
            members
                .iter()
                .filter_map(|m| self.keys.parse_binding_member(m))
        };
        if let Some((_, _, q)) = parsed().find(|(rk, _, _)| *rk == routing_key || rk.is_empty()) {
            return Ok(Some(q.to_string()));
        }
        Ok(parsed()
            .find(|(_, pattern, _)| topic_match(pattern, routing_key))
            .map(|(_, _, q)| q.to_string()))
    }

    /// A consumer over `queues`; its idle wait moves messages into in-flight lists named after
    /// `worker` (a unique id per process; see `fetch.rs`).
    pub async fn consumer(&self, queues: &[String], worker: &str) -> Result<Consumer> {
        Ok(Consumer::new(self.clone(), queues, worker))
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
            .ignore()
            .hdel(self.keys.held(), tags)
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
            .key(self.keys.held())
            .arg(&d.tag)
            .arg(&d.raw)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.settings.err(e))?;
        Ok(n == 1)
    }

    /// Keep held/running messages from being restored: their `unacked_index` score becomes now.
    /// Returns the tags whose `unacked` entry is gone (Redis lost its data).
    pub async fn refresh(&self, tags: &[String]) -> Result<Vec<String>> {
        if tags.is_empty() {
            return Ok(vec![]);
        }
        let mut missing = Vec::new();
        let mut c = self.conn.clone();
        for chunk in tags.chunks(1000) {
            let mut inv = scripts::REFRESH.key(self.keys.unacked());
            inv.key(self.keys.unacked_index()).arg(now_secs());
            for t in chunk {
                inv.arg(t);
            }
            let gone: Vec<String> = inv
                .invoke_async(&mut c)
                .await
                .map_err(|e| self.settings.err(e))?;
            missing.extend(gone);
        }
        Ok(missing)
    }

    /// Restore every message unacked for longer than the visibility timeout to the head of its
    /// queue, flagged redelivered. Returns how many this call restored (racers never double).
    /// Entries that are not `[envelope, exchange, routing_key]` are moved to the dead-letter list,
    /// so they can never hide real ones from this scan.
    pub async fn restore_visible(&self) -> Result<usize> {
        let cutoff = now_secs() - self.options.visibility_timeout.as_secs_f64();
        let mut c = self.conn.clone();
        let mut restored = 0;
        for _ in 0..100 {
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
            let n = tags.len();
            restored += self.restore_tags(&tags, Some(cutoff)).await?;
            if n < 1000 {
                break;
            }
        }
        Ok(restored)
    }

    /// Restore this worker's own unacked messages now (warm shutdown), to the head of their queues.
    pub async fn restore(&self, tags: &[String]) -> Result<usize> {
        self.restore_tags(tags, None).await
    }

    async fn restore_tags(&self, tags: &[String], cutoff: Option<f64>) -> Result<usize> {
        let cutoff = cutoff.map_or(Cutoff::Own, Cutoff::Before);
        let mut restored = 0;
        for tag in tags {
            restored += usize::from(self.restore_one(tag, &cutoff).await? == Restored::Yes);
        }
        Ok(restored)
    }

    /// Give back the unacked messages `hlbot.held` says `holder` has. Scans the whole hash
    /// (rare: a worker that died, a fetch whose reply was lost). Returns how many went back, or
    /// `None` when the worker turned out to be alive (nothing more is touched then).
    pub async fn restore_held(&self, holder: Holder<'_>) -> Result<Option<usize>> {
        let mut c = self.conn.clone();
        let alive = match holder {
            Holder::Fetches(_) => None,
            Holder::Dead(worker) => Some(self.keys.alive(worker)),
        };
        let named = |v: &str| match holder {
            Holder::Fetches(exact) => exact.iter().any(|e| e == v),
            Holder::Dead(worker) => v.strip_prefix(worker).is_some_and(|n| n.starts_with(' ')),
        };
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(self.keys.held())
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .map_err(|e| self.settings.err(e))?;
            found.extend(page.into_iter().filter(|(_, v)| named(v)));
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let mut restored = 0;
        for (tag, value) in found {
            let cutoff = Cutoff::Held {
                holder: value,
                alive: alive.clone(),
            };
            match self.restore_one(&tag, &cutoff).await? {
                Restored::Yes => restored += 1,
                Restored::No => {}
                Restored::HolderAlive => return Ok(None),
            }
        }
        Ok(Some(restored))
    }

    async fn restore_one(&self, tag: &str, cutoff: &Cutoff) -> Result<Restored> {
        let mut c = self.conn.clone();
        let stored: Option<Vec<u8>> = c
            .hget(self.keys.unacked(), tag)
            .await
            .map_err(|e| self.settings.err(e))?;
        let Some(stored) = stored else {
            // An index entry without its message: drop it (nothing to restore).
            let mut p = redis::pipe();
            p.zrem(self.keys.unacked_index(), tag).ignore();
            if let Cutoff::Held { holder, .. } = cutoff {
                p.cmd("EVAL")
                    .arg(FORGET_HELD_LUA)
                    .arg(1)
                    .arg(self.keys.held())
                    .arg(tag)
                    .arg(holder)
                    .ignore();
            }
            let _: () = p
                .query_async(&mut c)
                .await
                .map_err(|e| self.settings.err(e))?;
            return Ok(Restored::No);
        };
        let Some((mut env, exchange, rk)) = parse_unacked(&stored) else {
            tracing::error!(
                tag,
                "unacked entry is not [envelope, exchange, routing_key]: moved to the dead-letter list"
            );
            let rec = crate::deadletter::DeadLetter {
                reason: "unacked entry is not [envelope, exchange, routing_key]".into(),
                queue: String::new(),
                task_id: None,
                task: None,
                at: now_secs(),
                raw: String::from_utf8_lossy(&stored).into_owned(),
                size: None,
                truncated: false,
            };
            let _: i64 = redis::cmd("EVAL")
                .arg(DEAD_UNACKED_LUA)
                .arg(4)
                .arg(self.keys.unacked())
                .arg(self.keys.unacked_index())
                .arg(self.keys.dead_letter())
                .arg(self.keys.held())
                .arg(tag)
                .arg(rec.to_bytes())
                .query_async(&mut c)
                .await
                .map_err(|e| self.settings.err(e))?;
            return Ok(Restored::No);
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
        let mut inv = scripts::RESTORE.key(self.keys.unacked());
        inv.key(self.keys.unacked_index())
            .key(key)
            .key(self.keys.held())
            .arg(tag);
        match cutoff {
            Cutoff::Own => inv.arg("+inf").arg(env.to_vec()),
            Cutoff::Before(t) => inv.arg(t.to_string()).arg(env.to_vec()),
            Cutoff::Held { holder, alive } => {
                if let Some(a) = alive {
                    inv.key(a);
                }
                inv.arg("held").arg(env.to_vec()).arg(holder)
            }
        };
        let n: i64 = inv
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.settings.err(e))?;
        Ok(match n {
            1 => Restored::Yes,
            -1 => Restored::HolderAlive,
            _ => Restored::No,
        })
    }

    /// Empty queues (all priority buckets); returns how many messages were removed.
    pub async fn purge(&self, queues: &[String]) -> Result<u64> {
        let mut p = redis::pipe();
        p.atomic();
        for q in queues {
            for &s in self.keys.priority_steps() {
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
        for &s in self.keys.priority_steps() {
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
        for &s in self.keys.priority_steps() {
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

/// KEYS unacked, unacked_index, dead letters; ARGV tag, record: entry → dead letter, one step.
const DEAD_UNACKED_LUA: &str = "redis.call('HDEL', KEYS[4], ARGV[1]) \
    if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then \
    redis.call('ZREM', KEYS[2], ARGV[1]) redis.call('LPUSH', KEYS[3], ARGV[2]) return 1 end return 0";

/// KEYS[1] hlbot.held: forget a tag's holder record if it still names ARGV[2] (its unacked entry
/// is gone).
const FORGET_HELD_LUA: &str = "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end";

/// Whose held messages [`Broker::restore_held`] gives back.
#[derive(Clone, Copy)]
pub enum Holder<'a> {
    /// Fetches of this worker whose reply was lost: `hlbot.held`'s exact values.
    Fetches(&'a [String]),
    /// Every message of this worker (its id), only while its liveness key is gone.
    Dead(&'a str),
}

/// What decides whether an unacked entry goes back to its queue (`restore.lua`).
enum Cutoff {
    /// This worker's own message (warm shutdown): always.
    Own,
    /// Unacked since before this time (unix s): the visibility timeout passed.
    Before(f64),
    /// `hlbot.held` still names this holder; with `alive`, only while that key is gone.
    Held {
        holder: String,
        alive: Option<String>,
    },
}

#[derive(PartialEq)]
enum Restored {
    Yes,
    No,
    HolderAlive,
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

/// Python's `re.match(pattern, key)` for a kombu topic binding's pattern (an unreadable pattern
/// matches nothing).
fn topic_match(pattern: &str, key: &str) -> bool {
    !pattern.is_empty()
        && regex::Regex::new(pattern).is_ok_and(|re| re.find(key).is_some_and(|m| m.start() == 0))
}
