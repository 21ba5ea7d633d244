//! Celery events: worker events (always on) and task events (with `-E` or after an
//! `enable_events` broadcast), task events batched on `task.multi` like Python workers; the
//! Lamport clock they carry (reference §5, §8.5). Published on the broker's transport: Redis
//! `PUBLISH` on `/{db}.celeryev/<routing key>`, or RabbitMQ's `celeryev` topic exchange
//! (`amqp/events.rs`) — the same envelopes either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::redis::Conn;
use hlbot_proto::event::{self, EventSource};
use hlbot_proto::{Envelope, pyjson};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::redis::Keys;

/// Lamport clock: +1 per event sent and per control message handled; `max(local, c) + 1` on
/// receipt of a remote clock.
#[derive(Debug, Default)]
pub struct Clock(AtomicU64);

impl Clock {
    pub fn forward(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn adjust(&self, other: u64) -> u64 {
        let mut cur = self.0.load(Ordering::SeqCst);
        loop {
            let next = cur.max(other) + 1;
            match self
                .0
                .compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(c) => cur = c,
            }
        }
    }
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Hours west of UTC, like Python's `time.timezone / 3600` (0.0 on a UTC host).
pub fn utcoffset() -> f64 {
    let secs = chrono::Local::now().offset().local_minus_utc();
    -f64::from(secs) / 3600.0
}

enum Out {
    /// Worker events go out at once on their own routing key.
    Now(String, Value),
    /// Task events are batched on `task.multi`.
    Batched(Value),
}

/// Where events go: the broker's transport.
pub enum EventTransport {
    /// `PUBLISH` on the Redis event channels.
    Redis(Conn, Keys),
    /// The `celeryev` topic exchange on RabbitMQ.
    Amqp(crate::amqp::AmqpUrl),
}

/// Sends events. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    src: Arc<EventSource>,
    pub clock: Arc<Clock>,
    task_events: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<Out>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("hostname", &self.src.hostname)
            .finish()
    }
}

impl Events {
    /// Start the publisher loop for node `hostname`.
    pub fn spawn(
        transport: EventTransport,
        hostname: &str,
        task_events: bool,
        clock: Arc<Clock>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let src = Arc::new(EventSource {
            hostname: hostname.into(),
            pid: std::process::id(),
            utcoffset: utcoffset(),
        });
        let host = src.hostname.clone();
        match transport {
            EventTransport::Redis(conn, keys) => {
                tokio::spawn(publish_loop(conn, keys, host, rx));
            }
            EventTransport::Amqp(url) => {
                tokio::spawn(publish_amqp(url, host, rx));
            }
        }
        Self {
            src,
            clock,
            task_events: Arc::new(AtomicBool::new(task_events)),
            tx,
        }
    }

    pub fn hostname(&self) -> &str {
        &self.src.hostname
    }

    /// Turn task events on/off; returns the previous setting.
    pub fn set_task_events(&self, on: bool) -> bool {
        self.task_events.swap(on, Ordering::SeqCst)
    }

    pub fn task_events_enabled(&self) -> bool {
        self.task_events.load(Ordering::SeqCst)
    }

    fn build(&self, kind: &str, fields: Map<String, Value>) -> Value {
        let ts = hlbot_proto::time::unix(chrono::Utc::now());
        event::event(&self.src, kind, self.clock.forward(), ts, fields)
    }

    /// A worker event (`worker-online`, `-heartbeat`, `-offline`), always sent.
    pub fn worker(&self, kind: &str, fields: Map<String, Value>) {
        let ev = self.build(kind, fields);
        let _ = self.tx.send(Out::Now(event::routing_key(kind), ev));
    }

    /// A task event, sent only while task events are enabled.
    pub fn task(&self, kind: &str, uuid: &str, mut fields: Map<String, Value>) {
        if !self.task_events_enabled() {
            return;
        }
        let mut m = Map::new();
        m.insert("uuid".into(), json!(uuid));
        m.append(&mut fields);
        let ev = self.build(kind, m);
        let _ = self.tx.send(Out::Batched(ev));
    }
}

async fn publish_loop(
    mut conn: Conn,
    keys: Keys,
    hostname: String,
    mut rx: mpsc::UnboundedReceiver<Out>,
) {
    while let Some(first) = rx.recv().await {
        let mut p = redis::pipe();
        for (rk, v) in drain(first, &mut rx) {
            p.publish(keys.event_channel(&rk), envelope(&hostname, &rk, &v))
                .ignore();
        }
        if let Err(e) = p.query_async::<()>(&mut conn).await {
            // Events are best-effort, as in Celery: a lost heartbeat is replaced 2 s later.
            tracing::debug!("event publish failed: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Gather everything waiting after `first`: worker events one by one, task events in
/// `task.multi` lists of at most 24 (Python flushes its buffer at 24; receivers take lists of
/// any length). Returns `(routing key, body)` pairs in sending order.
fn drain(first: Out, rx: &mut mpsc::UnboundedReceiver<Out>) -> Vec<(String, Value)> {
    let mut now: Vec<(String, Value)> = Vec::new();
    let mut batch: Vec<Value> = Vec::new();
    let mut take = |o: Out| match o {
        Out::Now(rk, v) => now.push((rk, v)),
        Out::Batched(v) => batch.push(v),
    };
    take(first);
    while let Ok(o) = rx.try_recv() {
        take(o);
    }
    for chunk in batch.chunks(24) {
        now.push(("task.multi".into(), Value::Array(chunk.to_vec())));
    }
    now
}

/// The AMQP publisher loop: same batching, same envelopes, on the `celeryev` exchange.
async fn publish_amqp(
    url: crate::amqp::AmqpUrl,
    hostname: String,
    mut rx: mpsc::UnboundedReceiver<Out>,
) {
    let mut out = crate::amqp::events::EventPublisher::new(url, &format!("{hostname} (events)"));
    while let Some(first) = rx.recv().await {
        let envs: Vec<Envelope> = drain(first, &mut rx)
            .iter()
            .map(|(rk, v)| event_envelope(&hostname, rk, v))
            .collect();
        if let Err(e) = out.publish(&envs).await {
            tracing::debug!("event publish failed: {e}");
        }
    }
}

fn envelope(hostname: &str, routing_key: &str, body: &Value) -> Vec<u8> {
    event_envelope(hostname, routing_key, body).to_vec()
}

/// An event message as `EventDispatcher` publishes it: header `hostname`, transient.
fn event_envelope(hostname: &str, routing_key: &str, body: &Value) -> Envelope {
    let mut headers = Map::new();
    headers.insert("hostname".into(), json!(hostname));
    let mut env = Envelope::new_json(&pyjson::to_vec(body), headers, routing_key, 0);
    env.properties.delivery_mode = 1;
    env.properties.delivery_info.exchange = "celeryev".into();
    env
}
