//! RabbitMQ (AMQP 0-9-1) as the broker, Celery's layout exactly (`layout.rs`): the worker consumes
//! from it (`consume.rs`) and publishes to it with confirms (`publish.rs`); acks, rejects and
//! publishes that follow a task's run go through the [`sink`] once the run's Redis writes (the
//! result) are done. Remote control (`pidbox.rs`) and events (`events.rs`) use Celery's AMQP
//! exchanges; results and revocations stay on Redis. Every await on RabbitMQ is bounded
//! (`guard.rs`). See docs/amqp.md.

pub mod conn;
pub mod consume;
pub mod events;
pub mod guard;
pub mod layout;
pub mod pidbox;
pub mod publish;
pub mod sink;

use std::sync::Arc;

use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};

pub use conn::{AmqpUrl, is_amqp};
pub use consume::{Ackers, Session, is_amqp_tag};
pub use layout::{Layout, QueueType};
pub use publish::Publisher;

/// Everything a client or worker needs to use RabbitMQ: where, how queues are declared, the
/// confirming publisher, and the ackers of deliveries in hand.
#[derive(Clone)]
pub struct Amqp {
    pub url: AmqpUrl,
    pub layout: Layout,
    pub publisher: Arc<Publisher>,
    pub ackers: Arc<Ackers>,
    /// The last consuming session, kept open after consuming stopped (shutdown drain).
    kept: Arc<std::sync::Mutex<Option<Session>>>,
}

impl std::fmt::Debug for Amqp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Amqp")
            .field("url", &self.url)
            .field("layout", &self.layout)
            .finish()
    }
}

impl Amqp {
    pub fn new(url: AmqpUrl, layout: Layout, name: &str) -> Self {
        Self {
            publisher: Arc::new(Publisher::new(
                url.clone(),
                layout,
                &format!("{name} (publish)"),
            )),
            url,
            layout,
            ackers: Arc::new(Ackers::default()),
            kept: Arc::default(),
        }
    }

    /// Keep `s` open as long as this (acks of its deliveries still to come).
    pub fn keep(&self, s: Session) {
        if let Ok(mut k) = self.kept.lock() {
            *k = Some(s);
        }
    }
}

/// Declare a queue's exchange, the queue and the binding, as kombu's `Queue.declare` does.
pub async fn declare(chan: &Channel, d: &layout::QueueDecl) -> lapin::Result<()> {
    chan.exchange_declare(
        d.exchange.as_str().into(),
        lapin::ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    chan.queue_declare(
        d.queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        d.arguments.clone(),
    )
    .await?;
    chan.queue_bind(
        d.queue.as_str().into(),
        d.exchange.as_str().into(),
        d.routing_key.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

/// `basic.publish` of `out` on `chan` (its exchange, routing key, body and properties); the
/// confirm, on a confirming channel, is the returned future's.
pub(crate) async fn basic_publish(
    chan: &Channel,
    out: layout::Outgoing,
) -> lapin::Result<lapin::PublisherConfirm> {
    chan.basic_publish(
        out.exchange.as_str().into(),
        out.routing_key.as_str().into(),
        lapin::options::BasicPublishOptions::default(),
        &out.body,
        out.properties,
    )
    .await
}

/// Bind `queue` to `exchange` by `routing_key` and consume it without acks, as kombu's pidbox and
/// event consumers do (`no_ack=True`).
pub(crate) async fn bind_and_consume_no_ack(
    chan: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
    consumer_tag: &str,
) -> lapin::Result<Consumer> {
    chan.queue_bind(
        queue.into(),
        exchange.into(),
        routing_key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    chan.basic_consume(
        queue.into(),
        consumer_tag.into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}
