//! Celery events on RabbitMQ: published to the `celeryev` exchange, type `topic`, durable, not
//! auto-delete (`celery/events/event.py`'s `event_exchange`; `topic` on AMQP, `fanout` only on
//! Redis), routing key = the event type with `-` → `.`, `delivery_mode` 1, header `hostname`,
//! as `EventDispatcher` publishes them. Receivers (Flower, `celery events`) bind their own
//! queues. Best-effort like Celery: while RabbitMQ is away events are dropped, and the
//! connection is retried with backoff (100 ms doubling to 5 s) on the next event. The receiving
//! side ([`EventReceiver`]) binds a queue of its own as Celery's `EventReceiver` does. Does not
//! build or interpret events (`crate::events`, `crate::monitor`).

use std::time::{Duration, Instant};

use futures::StreamExt;
use hlbot_proto::Envelope;
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, Consumer, ExchangeKind};

use crate::amqp::conn::AmqpUrl;
use crate::error::Result;

/// Celery's `event_exchange`.
pub const EVENT_EXCHANGE: &str = "celeryev";

/// Declare `celeryev` as Celery does on AMQP (a mismatch would be `PRECONDITION_FAILED`).
pub async fn declare_exchange(chan: &Channel) -> lapin::Result<()> {
    chan.exchange_declare(
        EVENT_EXCHANGE.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}

/// A lazily (re)opened publishing channel for events.
pub struct EventPublisher {
    url: AmqpUrl,
    name: String,
    open: Option<(Connection, Channel)>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

impl EventPublisher {
    pub fn new(url: AmqpUrl, name: &str) -> Self {
        Self {
            url,
            name: name.to_string(),
            open: None,
            backoff: Duration::from_millis(100),
            retry_at: None,
        }
    }

    async fn channel(&mut self) -> Result<Channel> {
        if let Some((c, ch)) = &self.open {
            if c.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        self.open = None;
        let conn = self.url.connect(&self.name).await?;
        let alive = || conn.status().connected();
        let ready = super::guard::bounded(
            "opening the event channel",
            super::guard::OPEN,
            alive,
            async {
                let chan = conn.create_channel().await?;
                declare_exchange(&chan).await?;
                Ok::<_, lapin::Error>(chan)
            },
        )
        .await;
        let chan = match ready {
            Ok(c) => c,
            Err(e) => {
                super::guard::close(conn).await;
                return Err(self.url.err(e));
            }
        };
        self.open = Some((conn, chan.clone()));
        Ok(chan)
    }

    /// Publish the envelopes (each naming its routing key); on failure the rest are dropped and
    /// the connection is retried no sooner than the backoff allows.
    pub async fn publish(&mut self, envs: &[Envelope]) -> Result<()> {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        let res: Result<()> = async {
            let chan = self.channel().await?;
            for env in envs {
                super::pidbox::publish(&chan, env)
                    .await
                    .map_err(|e| self.url.err(e))?;
            }
            Ok(())
        }
        .await;
        match &res {
            Ok(()) => {
                self.backoff = Duration::from_millis(100);
                self.retry_at = None;
            }
            Err(_) => {
                self.open = None;
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
            }
        }
        res
    }
}

/// A receiver like Celery's `EventReceiver`: queue `celeryev.<uuid>` (not durable, auto-delete,
/// `x-message-ttl` 5000 and `x-expires` 60000 as Celery's `event_queue_ttl`/`_expires`), bound to
/// `celeryev` with routing key `#`, consumed without acks.
pub struct EventReceiver {
    /// Kept so the consumer lives as long as this receiver (and watched: a closed one ends it).
    conn: Connection,
    consumer: Consumer,
}

impl EventReceiver {
    pub async fn open(url: &AmqpUrl, name: &str) -> Result<Self> {
        super::guard::opening(url, "opening", Self::open_unbounded(url, name)).await
    }

    async fn open_unbounded(url: &AmqpUrl, name: &str) -> Result<Self> {
        let conn = url.connect(name).await?;
        let chan = conn.create_channel().await.map_err(|e| url.err(e))?;
        declare_exchange(&chan).await.map_err(|e| url.err(e))?;
        let queue = format!("celeryev.{}", uuid::Uuid::new_v4());
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongInt(5_000));
        args.insert("x-expires".into(), AMQPValue::LongInt(60_000));
        chan.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            args,
        )
        .await
        .map_err(|e| url.err(e))?;
        let consumer = super::bind_and_consume_no_ack(&chan, &queue, EVENT_EXCHANGE, "#", &queue)
            .await
            .map_err(|e| url.err(e))?;
        Ok(Self { conn, consumer })
    }

    /// The next event message's body (one event, or a `task.multi` list); None: the session is
    /// over.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        let conn = &self.conn;
        let next = super::guard::while_open(|| conn.status().connected(), self.consumer.next());
        match next.await? {
            Ok(d) => Some(d.data),
            Err(e) => {
                tracing::debug!("event receiver: {e}");
                None
            }
        }
    }
}
