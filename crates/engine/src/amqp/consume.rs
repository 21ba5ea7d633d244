//! Consuming from RabbitMQ: one connection and channel per session, Celery's queues declared,
//! `basic.qos(prefetch_count)` set (Celery's concurrency × multiplier, for the channel as Celery
//! does on RabbitMQ; per consumer on quorum queues), one `basic.consume` per queue. Each delivery becomes a
//! [`fetch::Delivery`](crate::fetch::Delivery) whose tag names its acker in [`Ackers`]; acks and
//! rejects are sent later by the sink, after the result is in Redis. A lost connection ends the
//! session; RabbitMQ requeues everything it had not seen acked, so nothing is lost (acks for
//! deliveries of a dead session are dropped: those messages come again).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, ChannelStatus, Connection, ConnectionStatus};

use crate::amqp::conn::AmqpUrl;
use crate::amqp::layout::{self, Layout, QueueType};
use crate::error::Result;
use crate::fetch::Delivery;

/// Prefix of the delivery tags hlbot gives AMQP deliveries (`amqp.<session>.<delivery tag>`);
/// the writer sends ops carrying such a tag to the AMQP sink instead of Redis.
pub const TAG_PREFIX: &str = "amqp.";

pub fn is_amqp_tag(tag: &str) -> bool {
    tag.starts_with(TAG_PREFIX)
}

/// The ackers of deliveries not yet acked or rejected, by hlbot tag.
#[derive(Default)]
pub struct Ackers {
    map: Mutex<HashMap<String, Acker>>,
    sessions: AtomicU64,
    /// The open session: its id and the state of its connection and channel.
    current: Mutex<Option<(u64, ConnectionStatus, ChannelStatus)>>,
    /// A session whose ack stalled (see [`Ackers::give_up_on`]): the consumer closes it.
    broken: AtomicU64,
}

/// The session id in an hlbot AMQP tag (`amqp.<session>.<delivery tag>`).
fn session_of(tag: &str) -> Option<u64> {
    tag.strip_prefix(TAG_PREFIX)?
        .split('.')
        .next()?
        .parse()
        .ok()
}

impl Ackers {
    /// Whether the session that delivered `tag` is the open one and its channel still works:
    /// an ack on any other channel can never arrive.
    pub fn alive(&self, tag: &str) -> bool {
        let Some(id) = session_of(tag) else {
            return false;
        };
        if self.broken.load(Ordering::SeqCst) == id {
            return false;
        }
        self.current.lock().is_ok_and(|c| {
            c.as_ref()
                .is_some_and(|(cur, conn, chan)| *cur == id && conn.connected() && chan.connected())
        })
    }

    /// An ack or reject of `tag` stalled or failed: give its session up. Its other ackers are
    /// dropped (RabbitMQ redelivers those messages once the connection closes), and the
    /// consumer, seeing [`Ackers::broken`], closes the connection and opens a new one — a channel
    /// that cannot take acks would otherwise hold c × m unacked messages forever.
    pub fn give_up_on(&self, tag: &str) {
        let Some(id) = session_of(tag) else {
            return;
        };
        // Session ids only grow: a late failure on an older session never hides a newer one.
        self.broken.fetch_max(id, Ordering::SeqCst);
        self.retain(|s| s != id);
    }

    /// Keep only the ackers whose session passes `keep`.
    fn retain(&self, keep: impl Fn(u64) -> bool) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|k, _| session_of(k).is_some_and(&keep));
        }
    }

    /// Whether session `id` was given up (an ack on it stalled).
    pub fn broken(&self, id: u64) -> bool {
        self.broken.load(Ordering::SeqCst) == id
    }

    fn insert(&self, tag: String, a: Acker) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(tag, a);
        }
    }

    /// Take the acker of `tag` (None: already used, or its session is gone).
    pub fn take(&self, tag: &str) -> Option<Acker> {
        self.map.lock().ok().and_then(|mut m| m.remove(tag))
    }

    /// Deliveries not yet acked or rejected (of live and dead sessions).
    pub fn pending(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Forget every acker of sessions before `session` (their channel is closed).
    fn forget_before(&self, session: u64) {
        self.retain(|s| s == session);
    }
}

type Stream = BoxStream<'static, (String, lapin::Result<lapin::message::Delivery>)>;

/// One consuming connection.
pub struct Session {
    conn: Connection,
    chan: Channel,
    id: u64,
    /// (queue, consumer tag) of every `basic.consume` still wanted.
    consumers: Vec<(String, String)>,
    streams: SelectAll<Stream>,
    layout: Layout,
    prefetch: u16,
    name: String,
}

impl Session {
    /// Connect, declare `queues`, set the prefetch and start consuming.
    pub async fn open(
        url: &AmqpUrl,
        layout: Layout,
        queues: &[String],
        prefetch: u16,
        name: &str,
        ackers: &Ackers,
    ) -> Result<Self> {
        let conn = url.connect(name).await?;
        let chan = conn.create_channel().await.map_err(|e| url.err(e))?;
        for q in queues {
            super::declare(&chan, &layout.declaration(q))
                .await
                .map_err(|e| url.err(format!("declaring queue {q}: {e}")))?;
        }
        // Celery on RabbitMQ: one prefetch for the whole channel (every queue together) —
        // RabbitMQ's `global` flag; quorum queues support only per-consumer prefetch, as Celery's
        // `worker_detect_quorum_queues` also falls back to.
        let global = layout.queue_type == QueueType::Classic;
        chan.basic_qos(prefetch, BasicQosOptions { global })
            .await
            .map_err(|e| url.err(e))?;
        let id = ackers.sessions.fetch_add(1, Ordering::SeqCst) + 1;
        ackers.forget_before(id);
        if let Ok(mut c) = ackers.current.lock() {
            *c = Some((id, conn.status().clone(), chan.status().clone()));
        }
        let mut s = Self {
            conn,
            chan,
            id,
            consumers: Vec::new(),
            streams: SelectAll::new(),
            layout,
            prefetch,
            name: name.to_string(),
        };
        for q in queues {
            s.consume(q)
                .await
                .map_err(|e| url.err(format!("consuming from {q}: {e}")))?;
        }
        Ok(s)
    }

    async fn consume(&mut self, q: &str) -> lapin::Result<()> {
        let tag = format!("{}.{}.{q}", self.name, self.id);
        let c = self
            .chan
            .basic_consume(
                q.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let queue = q.to_string();
        let s: Stream = c.map(move |d| (queue.clone(), d)).boxed();
        self.streams.push(s);
        self.consumers.push((q.to_string(), tag));
        Ok(())
    }

    /// Follow remote control on the open channel: consume queues newly in `queues` (declared
    /// first, `add_consumer`), `basic.cancel` those no longer in it (`cancel_consumer`), and
    /// set a changed prefetch (`pool_grow`/`pool_shrink`/`autoscale` change c × m).
    pub async fn update(&mut self, queues: &[String], prefetch: u16) -> lapin::Result<()> {
        for q in queues {
            if !self.consumers.iter().any(|(c, _)| c == q) {
                super::declare(&self.chan, &self.layout.declaration(q)).await?;
                self.consume(q).await?;
            }
        }
        let gone: Vec<(String, String)> = self
            .consumers
            .iter()
            .filter(|(q, _)| !queues.contains(q))
            .cloned()
            .collect();
        for (q, tag) in gone {
            self.consumers.retain(|(c, _)| c != &q);
            self.chan
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await?;
        }
        if prefetch != self.prefetch {
            let global = self.layout.queue_type == QueueType::Classic;
            self.chan
                .basic_qos(prefetch, BasicQosOptions { global })
                .await?;
            self.prefetch = prefetch;
        }
        Ok(())
    }

    /// Whether the session consumes `queues` with `prefetch` (else [`update`](Self::update)).
    pub fn follows(&self, queues: &[String], prefetch: u16) -> bool {
        prefetch == self.prefetch
            && queues.len() == self.consumers.len()
            && queues
                .iter()
                .all(|q| self.consumers.iter().any(|(c, _)| c == q))
    }

    /// The next delivery as the worker's [`Delivery`]; None or an error: the session is over.
    pub async fn next(&mut self, ackers: &Ackers) -> Option<lapin::Result<Delivery>> {
        // Consuming nothing (every queue cancelled by remote control) is not a lost session:
        // wait for an `add_consumer` (the caller selects on its own timer too).
        if self.consumers.is_empty() {
            return std::future::pending().await;
        }
        let (queue, d) = self.streams.next().await?;
        let d = match d {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        let tag = format!("{TAG_PREFIX}{}.{}", self.id, d.delivery_tag);
        let env = layout::envelope(
            &tag,
            d.exchange.as_str(),
            d.routing_key.as_str(),
            d.redelivered,
            &d.properties,
            &d.data,
        );
        let priority = env.properties.priority;
        ackers.insert(tag.clone(), d.acker);
        let raw = env.to_vec();
        Some(Ok(Delivery {
            queue,
            raw,
            tag,
            priority,
            envelope: Ok(env),
            claim: None,
            holder: None,
        }))
    }

    /// Stop deliveries (`basic.cancel` per queue); the channel stays open for the acks to come.
    pub async fn cancel(&mut self) {
        let (conn, chan) = (&self.conn, &self.chan);
        for (_, t) in std::mem::take(&mut self.consumers) {
            let cancel = chan.basic_cancel(t.as_str().into(), BasicCancelOptions::default());
            let alive = || super::guard::open(conn, chan);
            let _ = super::guard::bounded("basic.cancel", super::guard::ACK, alive, cancel).await;
        }
    }

    /// Whether the connection and channel are open and no ack on them stalled.
    pub fn usable(&self, ackers: &Ackers) -> bool {
        super::guard::open(&self.conn, &self.chan) && !ackers.broken(self.id)
    }

    /// Close the connection (bounded: it may be half dead) so RabbitMQ requeues what it holds.
    pub async fn abandon(self) {
        super::guard::close(self.conn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_session_stays_given_up_whatever_older_sessions_do() {
        let a = Ackers::default();
        assert_eq!(session_of("amqp.12.345"), Some(12));
        assert_eq!(session_of("redis-tag"), None);
        assert!(!a.broken(3));
        a.give_up_on("amqp.3.7");
        assert!(a.broken(3));
        // A late failure of an ack from session 2 does not hide session 3's.
        a.give_up_on("amqp.2.1");
        assert!(a.broken(3) && !a.broken(2));
        a.give_up_on("not-an-amqp-tag");
        assert!(a.broken(3));
        // No open session: no ack can arrive.
        assert!(!a.alive("amqp.3.9") && !a.alive("amqp.4.1"));
    }
}
