//! Taking messages from queues with no loss window. Busy queues: `fetch.lua` pops a batch and
//! records it in `unacked` in one atomic step. Idle queues: one blocking `BLMOVE` per queue key
//! moves the first message that arrives into a per-worker in-flight list in the same atomic step
//! it leaves the queue; the worker then claims it into `unacked` (`batch.lua`, ahead of its ack),
//! and survivors give back the in-flight lists of workers whose liveness key expired
//! ([`recover_inflight`]). A SIGKILL at any point leaves every message in a queue, an in-flight
//! list or `unacked`; every `unacked` entry taken here names its holder (`hlbot.held`), so a dead
//! worker's messages, and those of a fetch whose reply was lost, are given back without waiting
//! for the visibility timeout. Python consumers on the same queues are unaffected (they BRPOP as
//! before).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use hlbot_proto::Envelope;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use crate::broker::{Broker, Holder, now_secs};
use crate::deadletter::DEAD_LETTER_CAP;
use crate::error::Result;
use crate::redis::clock::DEADLINE;
use crate::redis::pubsub::blocking_reply;
use crate::redis::scripts;

pub use crate::delivery::Delivery;

/// Why `fetch.lua` dead-lettered an entry it popped (logged by the worker; already stored).
#[derive(Debug, Clone)]
pub struct DeadLettered(pub String);

type Block = Pin<Box<dyn Future<Output = (usize, redis::RedisResult<Option<Vec<u8>>>)> + Send>>;

/// One blocking connection waiting on one queue key.
struct Blocker {
    key: String,
    list: String,
    conn: MultiplexedConnection,
    client_id: i64,
}

/// Takes messages from a set of queues, in priority order, round-robin between queues.
pub struct Consumer {
    broker: Broker,
    queues: Vec<String>,
    worker: String,
    blockers: Vec<Blocker>,
    /// Blocking waits still out after the first one answered (collected on the next fetch).
    pending: Vec<Block>,
    lists: u64,
    /// In-flight list of each queue key (kept when connections are rebuilt).
    names: std::collections::HashMap<String, String>,
    /// A large message came through a blocking connection: rebuild them (their read buffers
    /// keep the capacity they grew to).
    shrink: bool,
    blmove: bool,
    /// Entries `fetch.lua` dead-lettered during the last fetch.
    pub dead: Vec<DeadLettered>,
    /// `fetch.lua` calls made so far (each names its entries' holder `<worker> <n>`).
    fetches: u64,
    /// Calls whose reply was lost (the connection failed): what they took, if they ran, is found
    /// by their holder value once they can no longer run (past their deadline) and given back.
    lost: Vec<(String, std::time::Instant)>,
}

impl Consumer {
    pub(crate) fn new(broker: Broker, queues: &[String], worker: &str) -> Self {
        Self {
            broker,
            queues: queues.to_vec(),
            worker: worker.to_string(),
            blockers: Vec::new(),
            pending: Vec::new(),
            lists: 0,
            names: Default::default(),
            shrink: false,
            blmove: true,
            dead: Vec::new(),
            fetches: 0,
            lost: Vec::new(),
        }
    }

    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    pub fn set_queues(&mut self, queues: Vec<String>) {
        self.queues = queues;
    }

    /// Take up to `max` messages. Non-blocking first (atomic pop + unacked entry); when all queues
    /// are empty, block up to `wait` for the first message to arrive (moved into an in-flight
    /// list). Deliveries from a wait that was still out since the last call come first (they
    /// may exceed `max` by the few that raced).
    pub async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.dead.clear();
        self.settle_lost().await?;
        let mut got = self.collect_pending().await;
        if max == 0 || self.queues.is_empty() {
            if got.is_empty() {
                tokio::time::sleep(wait.min(Duration::from_millis(100))).await;
            }
            return Ok(got);
        }
        if got.len() < max {
            got.extend(self.fetch_now(max - got.len()).await?);
        }
        if !got.is_empty() || wait.is_zero() || !self.dead.is_empty() {
            return Ok(got);
        }
        self.fetch_blocking(wait).await
    }

    /// One `fetch.lua` call; a call that reached Redis past its deadline took nothing and is
    /// made again once on the clock Redis reported.
    async fn fetch_now(&mut self, max: usize) -> Result<Vec<Delivery>> {
        for _ in 0..2 {
            if let Some(d) = self.fetch_once(max).await? {
                return Ok(d);
            }
        }
        Ok(vec![])
    }

    /// `None`: the call arrived past its deadline and took nothing (the clock follows Redis's).
    async fn fetch_once(&mut self, max: usize) -> Result<Option<Vec<Delivery>>> {
        let b = &self.broker;
        let mut c = b.conn();
        let deadline = c.deadline().await.map_err(|e| b.settings().err(e))?;
        self.fetches += 1;
        let holder = format!("{} {}", self.worker, self.fetches);
        let keys = b.keys();
        let mut inv = scripts::FETCH.key(keys.unacked());
        inv.key(keys.unacked_index()).key(keys.held());
        let order = keys.consume_order(&self.queues);
        for k in &order {
            inv.key(k);
        }
        inv.arg(max)
            .arg(now_secs())
            .arg(b.options.max_message_bytes)
            .arg(keys.dead_letter())
            .arg(DEAD_LETTER_CAP)
            .arg(keys.dead_trimmed())
            .arg(deadline)
            .arg(&holder);
        for k in &order {
            inv.arg(keys.queue_of_key(k));
        }
        let flat: Vec<Vec<u8>> = match inv.invoke_async(&mut c).await {
            Ok(flat) => flat,
            Err(e) => {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    // The call may have run with its reply lost: once it cannot run any more,
                    // whatever it took is looked up by its holder value and given back.
                    let due = std::time::Instant::now() + DEADLINE + Duration::from_secs(1);
                    self.lost.push((holder, due));
                }
                return Err(b.settings().err(e));
            }
        };
        if c.clock().stale(&flat) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            if let [key, raw] = pair {
                if key.as_slice() == b"!dead" {
                    self.dead
                        .push(DeadLettered(String::from_utf8_lossy(raw).into_owned()));
                } else {
                    let mut d = self.delivery(&String::from_utf8_lossy(key), raw.clone(), None);
                    d.holder = Some(holder.clone());
                    out.push(d);
                }
            }
        }
        if let Some(last) = out.last() {
            self.rotate(&last.queue.clone());
        }
        Ok(Some(out))
    }

    /// Give back what lost `fetch.lua` calls took, once each is past its deadline (it can no
    /// longer run): those entries sit in `unacked` held by a fetch whose reply never came, and
    /// would otherwise wait out the visibility timeout.
    async fn settle_lost(&mut self) -> Result<()> {
        let now = std::time::Instant::now();
        let due: Vec<String> = self
            .lost
            .iter()
            .filter(|(_, at)| *at <= now)
            .map(|(h, _)| h.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        if let Some(n) = self.broker.restore_held(Holder::Fetches(&due)).await? {
            if n > 0 {
                tracing::warn!(
                    "gave back {n} message(s) taken by a fetch whose reply was lost (the connection failed after Redis ran it)"
                );
            }
        }
        self.lost.retain(|(h, _)| !due.contains(h));
        Ok(())
    }

    /// Lost fetches not yet settled (their messages wait in `unacked`, held by this worker).
    pub fn unsettled(&self) -> bool {
        !self.lost.is_empty()
    }

    /// Make sure there is one blocking connection per queue key, each with its in-flight list
    /// registered in `hlbot.inflights` (so survivors can give it back if this worker dies).
    async fn blockers(&mut self) -> Result<()> {
        let keys = self.broker.keys().consume_order(&self.queues);
        if std::mem::take(&mut self.shrink) {
            self.blockers.clear();
        }
        if self.blockers.len() == keys.len()
            && self.blockers.iter().zip(&keys).all(|(b, k)| b.key == *k)
        {
            return Ok(());
        }
        let mut old: Vec<Blocker> = std::mem::take(&mut self.blockers);
        let settings = self.broker.settings().clone();
        let mut reg = redis::pipe();
        for key in keys {
            if let Some(i) = old.iter().position(|b| b.key == key) {
                self.blockers.push(old.swap_remove(i));
                continue;
            }
            let mut conn = settings.blocking().await?;
            let mut id = redis::cmd("CLIENT");
            id.arg("ID");
            let client_id: i64 = blocking_reply(Duration::ZERO, id.query_async(&mut conn))
                .await
                .map_err(|e| settings.err(e))?;
            let list = match self.names.get(&key) {
                Some(l) => l.clone(),
                None => {
                    self.lists += 1;
                    let l = format!(
                        "{}.{}",
                        self.broker.keys().inflight(&self.worker),
                        self.lists
                    );
                    self.names.insert(key.clone(), l.clone());
                    l
                }
            };
            reg.hset(self.broker.keys().inflights(), &list, &key)
                .ignore();
            self.blockers.push(Blocker {
                key,
                list,
                conn,
                client_id,
            });
        }
        if reg.is_empty() {
            // Only the order changed (queues rotate after each fetch): nothing to register. An
            // empty pipeline is an error in redis-rs ("empty command"), which used to drop and
            // rebuild every blocking connection after each idle wait of a multi-queue worker.
            return Ok(());
        }
        let mut c = self.broker.conn();
        reg.query_async::<()>(&mut c)
            .await
            .map_err(|e| settings.err(e))
    }

    async fn fetch_blocking(&mut self, wait: Duration) -> Result<Vec<Delivery>> {
        if let Err(e) = self.blockers().await {
            self.blockers.clear();
            return Err(e);
        }
        let secs = wait.as_secs_f64().max(0.01);
        let mut waits: Vec<Block> = Vec::with_capacity(self.blockers.len());
        for (i, b) in self.blockers.iter().enumerate() {
            let cmd = if self.blmove {
                let mut c = redis::cmd("BLMOVE");
                c.arg(&b.key)
                    .arg(&b.list)
                    .arg("RIGHT")
                    .arg("LEFT")
                    .arg(secs);
                c
            } else {
                let mut c = redis::cmd("BRPOPLPUSH");
                c.arg(&b.key).arg(&b.list).arg(secs);
                c
            };
            let mut conn = b.conn.clone();
            waits.push(Box::pin(async move {
                let r = blocking_reply(wait, cmd.query_async::<Option<Vec<u8>>>(&mut conn)).await;
                (i, r)
            }));
        }
        let ((i, first), rest) = match waits.is_empty() {
            true => return Ok(vec![]),
            false => {
                let (r, _, rest) = futures::future::select_all(waits).await;
                (r, rest)
            }
        };
        match first {
            Ok(Some(raw)) => {
                // The others are still blocked: unblock them now (without waiting) and collect
                // whatever they moved on the next fetch.
                self.unblock_others(i);
                self.pending = rest;
                let b = &self.blockers[i];
                let (key, list) = (b.key.clone(), b.list.clone());
                let d = self.delivery(&key, raw, Some(list));
                self.rotate(&d.queue.clone());
                Ok(vec![d])
            }
            Ok(None) => {
                // Timed out: the others time out together; collect anything that raced.
                self.pending = rest;
                Ok(self.collect_pending().await)
            }
            Err(e) => {
                if self.blmove && is_unknown_command(&e) {
                    // Redis < 6.2: BRPOPLPUSH moves the same way.
                    self.blmove = false;
                    self.pending = rest;
                    return Ok(self.collect_pending().await);
                }
                self.unblock_others(i);
                self.pending = rest;
                let got = self.collect_pending().await;
                self.blockers.clear();
                if got.is_empty() {
                    Err(self.broker.settings().err(e))
                } else {
                    Ok(got)
                }
            }
        }
    }

    fn unblock_others(&self, except: usize) {
        let ids: Vec<i64> = self
            .blockers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != except)
            .map(|(_, b)| b.client_id)
            .collect();
        if ids.is_empty() {
            return;
        }
        let mut c = self.broker.conn();
        tokio::spawn(async move {
            let mut p = redis::pipe();
            for id in ids {
                p.cmd("CLIENT").arg("UNBLOCK").arg(id).ignore();
            }
            let _ = p.query_async::<()>(&mut c).await;
        });
    }

    /// Wait for blocking calls still out (they were unblocked) and turn what they moved into
    /// deliveries. A call that failed drops its connections (rebuilt on the next wait); a message
    /// it may have moved stays in its in-flight list until [`Consumer::orphans`] picks it up.
    async fn collect_pending(&mut self) -> Vec<Delivery> {
        if self.pending.is_empty() {
            return vec![];
        }
        let waits = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        let mut broken = false;
        for (i, r) in futures::future::join_all(waits).await {
            match r {
                Ok(Some(raw)) => {
                    if let Some(b) = self.blockers.get(i) {
                        let (key, list) = (b.key.clone(), b.list.clone());
                        out.push(self.delivery(&key, raw, Some(list)));
                    }
                }
                Ok(None) => {}
                Err(_) => broken = true,
            }
        }
        if broken {
            self.blockers.clear();
        }
        out
    }

    /// Messages sitting in this consumer's in-flight lists: only after a failed wait, and only
    /// once every claim the caller queued has been written (else they would be taken twice).
    pub async fn orphans(&mut self) -> Result<Vec<Delivery>> {
        let b = self.broker.clone();
        let mut c = b.conn();
        let lists: Vec<(String, String)> = c
            .hgetall(b.keys().inflights())
            .await
            .map_err(|e| b.settings().err(e))?;
        let mine = format!("{}.", b.keys().inflight(&self.worker));
        let mut out = Vec::new();
        for (list, key) in lists.into_iter().filter(|(l, _)| l.starts_with(&mine)) {
            let raws: Vec<Vec<u8>> = c
                .lrange(&list, 0, -1)
                .await
                .map_err(|e| b.settings().err(e))?;
            for raw in raws.into_iter().rev() {
                out.push(self.delivery(&key, raw, Some(list.clone())));
            }
        }
        Ok(out)
    }

    /// Claim idle-wait deliveries now (for callers without the worker's writer): out of their
    /// in-flight list and into `unacked`, one atomic step each.
    pub async fn claim(&self, deliveries: &mut [Delivery]) -> Result<()> {
        let b = &self.broker;
        let mut p = redis::pipe();
        let mut any = false;
        for d in deliveries.iter_mut() {
            let Some(list) = d.claim.take() else { continue };
            any = true;
            p.cmd("EVAL")
                .arg(CLAIM_LUA)
                .arg(4)
                .arg(&list)
                .arg(b.keys().unacked())
                .arg(b.keys().unacked_index())
                .arg(b.keys().held())
                .arg(&d.raw)
                .arg(&d.tag)
                .arg(d.unacked_value())
                .arg(now_secs())
                .arg(d.holder.as_deref().unwrap_or_default())
                .ignore();
        }
        if !any {
            return Ok(());
        }
        let mut c = b.conn();
        p.query_async::<()>(&mut c)
            .await
            .map_err(|e| b.settings().err(e))
    }

    /// Drop this consumer's in-flight registrations whose lists are empty (clean exit).
    pub async fn unregister(&mut self) -> Result<()> {
        let b = self.broker.clone();
        let mut c = b.conn();
        for blk in std::mem::take(&mut self.blockers) {
            let _: i64 = redis::cmd("EVAL")
                .arg(UNREGISTER_LUA)
                .arg(2)
                .arg(b.keys().inflights())
                .arg(&blk.list)
                .query_async(&mut c)
                .await
                .map_err(|e| b.settings().err(e))?;
        }
        Ok(())
    }

    fn delivery(&mut self, key: &str, raw: Vec<u8>, claim: Option<String>) -> Delivery {
        if claim.is_some() && raw.len() >= 1 << 20 {
            self.shrink = true;
        }
        let queue = self.broker.keys().queue_of_key(key).to_string();
        let max = self.broker.options.max_message_bytes;
        let envelope = if max > 0 && raw.len() > max {
            // Not decoded at all: the worker dead-letters a truncated copy.
            Err(hlbot_proto::DecodeError {
                kind: hlbot_proto::DecodeErrorKind::InvalidField {
                    field: "size",
                    reason: format!(
                        "message of {} bytes is over the {max}-byte limit",
                        raw.len()
                    ),
                },
                raw: Vec::new(),
                task_id: hlbot_proto::envelope::sniff(&raw, "id"),
                delivery_tag: None,
            })
        } else {
            Envelope::from_slice(&raw)
        };
        let (tag, priority) = match &envelope {
            Ok(env) => (env.properties.delivery_tag.clone(), env.properties.priority),
            Err(e) => (e.delivery_tag.clone().unwrap_or_default(), 0),
        };
        Delivery {
            queue,
            raw,
            tag,
            priority,
            envelope,
            // What batch.lua's `claim` op (and `Consumer::claim`) records; fetch.lua's is set
            // by the caller.
            holder: claim.as_ref().map(|_| format!("{} c", self.worker)),
            claim,
        }
    }

    fn rotate(&mut self, queue: &str) {
        if let Some(i) = self.queues.iter().position(|q| q == queue) {
            let q = self.queues.remove(i);
            self.queues.push(q);
        }
    }
}

/// Claim one message: out of its in-flight list, into `unacked` if it has a tag (what
/// `batch.lua`'s `claim` op does inside the writer's batch).
/// KEYS[1] in-flight list KEYS[2] unacked KEYS[3] unacked_index KEYS[4] hlbot.held; ARGV raw,
/// tag, stored, now, holder.
const CLAIM_LUA: &str = "if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 and ARGV[2] ~= '' then \
    redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2]) \
    redis.call('HSET', KEYS[4], ARGV[2], ARGV[5]) end return 1";

/// KEYS[1] hlbot.inflights KEYS[2] the list: unregister it if empty.
const UNREGISTER_LUA: &str = "if redis.call('LLEN', KEYS[2]) == 0 then \
    return redis.call('HDEL', KEYS[1], KEYS[2]) end return 0";

fn is_unknown_command(e: &redis::RedisError) -> bool {
    let s = e.to_string().to_ascii_lowercase();
    s.contains("unknown command") || s.contains("err unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fetch that reaches Redis past its deadline takes nothing; the consumer then follows
    /// the clock Redis reported and the next call takes the message. Against the suite's Redis
    /// (`HLBOT_TEST_REDIS`, a key prefix of its own); under `CI` a missing Redis fails.
    #[tokio::test]
    async fn a_fetch_past_its_deadline_takes_nothing_and_the_clock_follows_redis() {
        use crate::redis::RedisSettings;
        use crate::{Backend, Client, Router, SendOptions};
        let url = hlbot_testkit::redis_url();
        let prefix = format!("tfetch{}:", uuid::Uuid::new_v4().simple());
        let settings = RedisSettings::new(&url)
            .expect("url")
            .with_prefix(&prefix)
            .with_result_prefix(&prefix);
        let broker = match Broker::connect(&settings, Default::default()).await {
            Ok(b) => b,
            Err(e) => {
                hlbot_testkit::missing::<()>(&format!("Redis at {url} ({e})"));
                return;
            }
        };
        let backend = Backend::connect(&settings, None).await.expect("backend");
        let client = Client::new(broker.clone(), backend, Router::default());
        let send = SendOptions {
            queue: Some("q".into()),
            ..Default::default()
        };
        client
            .send_task("t", vec![], Default::default(), send)
            .await
            .expect("send");
        let mut c = Consumer::new(broker.clone(), &["q".to_string()], "w");
        // We believe Redis's clock is 1000 s behind ours: every deadline we send is long past.
        broker.conn().clock().set(-1000.0);
        assert!(c.fetch_once(10).await.expect("fetch").is_none());
        assert_eq!(
            broker.len("q").await.expect("len"),
            1,
            "a stale fetch took a message"
        );
        let mut r = broker.conn();
        let unacked: u64 = r.hlen(broker.keys().unacked()).await.expect("hlen");
        assert_eq!(unacked, 0);
        let got = c.fetch_now(10).await.expect("fetch");
        assert_eq!(got.len(), 1, "the clock was not corrected");
        let off = broker.conn().clock().offset();
        assert!(off.is_some_and(|o| o.abs() < 5.0), "offset {off:?}");
        let keys: Vec<String> = r.keys(format!("{prefix}*")).await.expect("keys");
        if !keys.is_empty() {
            let _: () = r.del(keys).await.expect("del");
        }
    }
}
