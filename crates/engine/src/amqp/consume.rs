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
use lapin::{Acker, Channel, Connection};

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
}

impl Ackers {
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
        let keep = format!("{TAG_PREFIX}{session}.");
        if let Ok(mut m) = self.map.lock() {
            m.retain(|k, _| k.starts_with(&keep));
        }
    }
}

type Stream = BoxStream<'static, (String, lapin::Result<lapin::message::Delivery>)>;

/// One consuming connection.
pub struct Session {
    conn: Connection,
    chan: Channel,
    id: u64,
    tags: Vec<String>,
    streams: SelectAll<Stream>,
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
        let mut streams = SelectAll::new();
        let mut tags = Vec::new();
        for q in queues {
            let tag = format!("{name}.{id}.{q}");
            let c = chan
                .basic_consume(
                    q.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| url.err(format!("consuming from {q}: {e}")))?;
            let queue = q.clone();
            let s: Stream = c.map(move |d| (queue.clone(), d)).boxed();
            streams.push(s);
            tags.push(tag);
        }
        Ok(Self {
            conn,
            chan,
            id,
            tags,
            streams,
        })
    }

    /// The next delivery as the worker's [`Delivery`]; None or an error: the session is over.
    pub async fn next(&mut self, ackers: &Ackers) -> Option<lapin::Result<Delivery>> {
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
        }))
    }

    /// Stop deliveries (`basic.cancel` per queue); the channel stays open for the acks to come.
    pub async fn cancel(&mut self) {
        for t in &self.tags {
            let _ = self
                .chan
                .basic_cancel(t.as_str().into(), BasicCancelOptions::default())
                .await;
        }
    }

    pub fn connected(&self) -> bool {
        self.conn.status().connected()
    }
}
