//! Celery's remote-control mailbox on RabbitMQ, declared exactly as kombu 5.7's `Mailbox` with
//! Celery's `control_*` defaults does (`kombu/pidbox.py`, `celery/app/control.py`):
//!
//! | entity                       | declaration                                                 |
//! |------------------------------|-------------------------------------------------------------|
//! | exchange `celery.pidbox`     | `fanout`, not durable, not auto-delete                      |
//! | exchange `reply.celery.pidbox` | `direct`, not durable, not auto-delete                    |
//! | queue `<node>.celery.pidbox` | not durable, exclusive, auto-delete; `x-expires` 10000,     |
//! |                              | `x-message-ttl` 300000 (ints, as py-amqp sends them)        |
//! | binding                      | `celery.pidbox` → `<node>.celery.pidbox`, routing key `""`  |
//! | consume                      | `no_ack` (a lost command is not redelivered, as in Celery)  |
//! | reply                        | to `reply.celery.pidbox`, routing key = the caller's oid,   |
//! |                              | `delivery_mode` 1, headers `ticket` + `clock`               |
//!
//! Owns the connection and channel of one mailbox session; what a command does is `control/`'s.

use futures::StreamExt;
use hlbot_proto::Envelope;
use hlbot_proto::control::{CONTROL_EXCHANGE, REPLY_EXCHANGE};
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, Consumer, ExchangeKind};

use crate::amqp::conn::AmqpUrl;
use crate::amqp::guard;
use crate::amqp::layout;
use crate::error::Result;

/// Celery's `control_queue_expires` (10 s) as `x-expires` milliseconds.
pub const QUEUE_EXPIRES_MS: i32 = 10_000;
/// Celery's `control_queue_ttl` (300 s) as `x-message-ttl` milliseconds.
pub const QUEUE_TTL_MS: i32 = 300_000;

/// The worker's mailbox queue name (`<node>.celery.pidbox`).
pub fn queue_name(node: &str) -> String {
    format!("{node}.{CONTROL_EXCHANGE}")
}

/// The mailbox queue's arguments, as kombu's `to_rabbitmq_queue_arguments` builds them.
pub fn queue_arguments() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-expires".into(), AMQPValue::LongInt(QUEUE_EXPIRES_MS));
    t.insert("x-message-ttl".into(), AMQPValue::LongInt(QUEUE_TTL_MS));
    t
}

/// Declare the control (fanout) and reply (direct) exchanges, both transient like kombu's.
pub async fn declare_exchanges(chan: &Channel) -> lapin::Result<()> {
    for (name, kind) in [
        (CONTROL_EXCHANGE, ExchangeKind::Fanout),
        (REPLY_EXCHANGE, ExchangeKind::Direct),
    ] {
        chan.exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

/// A mailbox session: an exclusive, auto-delete queue consumed without acks, gone with the
/// connection as a Python worker's (or caller's) is. A worker's is `<node>.celery.pidbox` bound
/// to `celery.pidbox`; a caller's is `<oid>.reply.celery.pidbox` bound to `reply.celery.pidbox`
/// by its oid (kombu's `get_reply_queue`, the same flags and arguments).
pub struct Mailbox {
    conn: Connection,
    chan: Channel,
    consumer: Consumer,
}

impl Mailbox {
    /// A worker's mailbox for node `node`.
    pub async fn worker(url: &AmqpUrl, node: &str) -> Result<Self> {
        let queue = queue_name(node);
        Self::open(
            url,
            &format!("{node} (pidbox)"),
            &queue,
            CONTROL_EXCHANGE,
            "",
        )
        .await
    }

    /// A caller's reply queue for oid `oid`.
    pub async fn caller(url: &AmqpUrl, oid: &str) -> Result<Self> {
        let queue = format!("{oid}.{REPLY_EXCHANGE}");
        Self::open(url, "hlbot control", &queue, REPLY_EXCHANGE, oid).await
    }

    /// Connect and declare the exchanges, the queue and its binding, then consume (bounded by
    /// [`guard::OPEN`]).
    async fn open(
        url: &AmqpUrl,
        name: &str,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<Self> {
        let opening = Self::open_unbounded(url, name, queue, exchange, routing_key);
        guard::opening(url, "opening", opening).await
    }

    async fn open_unbounded(
        url: &AmqpUrl,
        name: &str,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<Self> {
        let conn = url.connect(name).await?;
        let chan = conn.create_channel().await.map_err(|e| url.err(e))?;
        declare_exchanges(&chan).await.map_err(|e| url.err(e))?;
        chan.queue_declare(
            queue.into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            queue_arguments(),
        )
        .await
        .map_err(|e| url.err(format!("declaring {queue}: {e}")))?;
        let tag = format!("{queue}.consumer");
        let consumer = super::bind_and_consume_no_ack(&chan, queue, exchange, routing_key, &tag)
            .await
            .map_err(|e| url.err(e))?;
        Ok(Self {
            conn,
            chan,
            consumer,
        })
    }

    /// The next message (a command, or a reply) as a kombu envelope; None or an error: the session is over.
    pub async fn next(&mut self) -> Option<lapin::Result<Envelope>> {
        let (conn, chan) = (&self.conn, &self.chan);
        let next = guard::while_open(|| guard::open(conn, chan), self.consumer.next()).await;
        let d = match next? {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(layout::envelope(
            "",
            d.exchange.as_str(),
            d.routing_key.as_str(),
            d.redelivered,
            &d.properties,
            &d.data,
        )))
    }

    /// A handle for publishing replies on this session's channel.
    pub fn replier(&self) -> Channel {
        self.chan.clone()
    }

    /// Close the connection (RabbitMQ then deletes the exclusive queue at once).
    pub async fn close(self) {
        guard::close(self.conn).await;
    }
}

/// Publish `env` (its `delivery_info` names exchange and routing key) on `chan`, unconfirmed:
/// replies and events are best-effort in Celery too. A routing key nobody is bound to (a
/// caller that gave up) drops the message in the broker.
pub async fn publish(chan: &Channel, env: &Envelope) -> lapin::Result<()> {
    let Ok(out) = layout::outgoing(env) else {
        return Ok(());
    };
    let alive = || chan.status().connected();
    let publish = super::basic_publish(chan, out);
    let sent = guard::bounded("publish", guard::CONFIRM, alive, publish).await;
    sent.map(drop)
        .map_err(|e| lapin::Error::from(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kombu_mailbox_declarations() {
        assert_eq!(queue_name("w1@vm"), "w1@vm.celery.pidbox");
        let a = queue_arguments();
        assert_eq!(
            a.inner().get("x-expires"),
            Some(&AMQPValue::LongInt(10_000))
        );
        assert_eq!(
            a.inner().get("x-message-ttl"),
            Some(&AMQPValue::LongInt(300_000))
        );
        assert_eq!(a.inner().len(), 2);
    }
}
