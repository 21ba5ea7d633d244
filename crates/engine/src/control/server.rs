//! The worker's pidbox, like kombu's Mailbox: keeps the requests that select this node
//! (destination / pattern), runs the handler and replies with the ticket and clock headers.
//! Two transports around the same [`answer`]: on Redis it binds `<node>.celery.pidbox`,
//! `PSUBSCRIBE`s the broadcast channel and replies through the reply exchange's binding table
//! (`LPUSH`); on RabbitMQ it consumes its queue on the `celery.pidbox` fanout exchange and
//! publishes replies to `reply.celery.pidbox` (`amqp/pidbox.rs`). Does not decide what a
//! command does (`inspect`, `command`).

use std::sync::Arc;
use std::time::Duration;

use hlbot_proto::control::{CONTROL_EXCHANGE, ControlRequest, REPLY_EXCHANGE, ReplyTo};
use hlbot_proto::{Envelope, Serializer};
use redis::AsyncCommands;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::{Answer, command, inspect};
use crate::redis::pubsub::Subscription;
use crate::worker::Shared;

/// Answer control broadcasts until `stop`; reconnects with backoff when the broker goes away.
pub async fn serve(sh: Arc<Shared>, stop: CancellationToken) {
    if let Some(a) = sh.amqp.clone() {
        return serve_amqp(sh, a.url, stop).await;
    }
    let keys = sh.broker.keys().clone();
    let member = keys.binding_member("", &format!("{}.{CONTROL_EXCHANGE}", sh.hostname));
    let binding = keys.binding(CONTROL_EXCHANGE);
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let mut c = sh.broker.conn();
        let _: redis::RedisResult<()> = c.sadd(&binding, &member).await;
        let mut sub =
            match Subscription::pattern(sh.broker.settings(), &keys.pidbox_channel()).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!("pidbox: {e}");
                    crate::backoff::pause(&stop, &mut backoff).await;
                    continue;
                }
            };
        backoff = Duration::from_millis(100);
        loop {
            let msg = tokio::select! {
                m = sub.next() => m,
                _ = stop.cancelled() => break,
            };
            let Some(msg) = msg else {
                tracing::debug!("pidbox: subscription lost; resubscribing");
                break;
            };
            let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
            // Each request is handled on its own task so a slow one never delays a ping.
            let sh = sh.clone();
            tokio::spawn(async move { handle_raw(&sh, &payload).await });
        }
    }
    let mut c = sh.broker.conn();
    let _: redis::RedisResult<()> = c.srem(&binding, &member).await;
}

/// The mailbox on RabbitMQ: one connection, its exclusive queue, replies on the same channel.
/// A lost connection is reopened with backoff (100 ms doubling to 5 s); the worker goes on.
async fn serve_amqp(sh: Arc<Shared>, url: crate::amqp::AmqpUrl, stop: CancellationToken) {
    use crate::amqp::pidbox::{self, Mailbox};
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let opened = tokio::select! {
            m = Mailbox::worker(&url, &sh.hostname) => m,
            _ = stop.cancelled() => break,
        };
        let mut mailbox = match opened {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("pidbox: {e}; retrying");
                crate::backoff::pause(&stop, &mut backoff).await;
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let chan = mailbox.replier();
        loop {
            let msg = tokio::select! {
                m = mailbox.next() => m,
                _ = stop.cancelled() => break,
            };
            let env = match msg {
                Some(Ok(env)) => env,
                Some(Err(e)) => {
                    tracing::warn!("pidbox: {}; reconnecting", url.err(e));
                    break;
                }
                None => {
                    tracing::warn!("pidbox: consumer ended; reconnecting");
                    break;
                }
            };
            let (sh, chan) = (sh.clone(), chan.clone());
            tokio::spawn(async move {
                let Some(p) = answer(&sh, &env).await else {
                    return;
                };
                let exchange = p.exchange().to_string();
                let reply = reply_envelope(&sh, &p, &exchange, &p.to.routing_key);
                if let Err(e) = pidbox::publish(&chan, &reply).await {
                    tracing::debug!("pidbox reply failed: {e}");
                }
            });
        }
        mailbox.close().await;
        if !stop.is_cancelled() {
            crate::backoff::pause(&stop, &mut backoff).await;
        }
    }
}

/// A reply owed to a caller.
pub struct Pending {
    ticket: String,
    to: ReplyTo,
    value: Value,
    /// The request's body format, which the reply is written in.
    serializer: Serializer,
}

impl Pending {
    fn exchange(&self) -> &str {
        if self.to.exchange.is_empty() {
            REPLY_EXCHANGE
        } else {
            self.to.exchange.as_str()
        }
    }
}

/// Decode one broadcast and, if it selects this node, handle and answer it.
pub async fn handle_raw(sh: &Arc<Shared>, raw: &[u8]) {
    let Ok(env) = Envelope::from_slice(raw) else {
        tracing::debug!("pidbox: undecodable message ignored");
        return;
    };
    if let Some(p) = answer(sh, &env).await {
        if let Err(e) = reply(sh, p).await {
            tracing::debug!("pidbox reply failed: {e}");
        }
    }
}

/// Run a broadcast that selects this node; the reply owed, if the caller asked for one.
pub async fn answer(sh: &Arc<Shared>, env: &Envelope) -> Option<Pending> {
    if let Some(c) = env.headers.get("clock").and_then(clock_of) {
        sh.events.clock.adjust(c);
    }
    let body = env.body_bytes().ok()?;
    // Celery's mailbox writes the app's task_serializer; the reply goes back in the same.
    let serializer = env.serializer();
    if serializer != Serializer::Json && !sh.opts.accept_content.contains(&serializer) {
        tracing::warn!("pidbox: a {serializer} control message ignored (not in accept_content)");
        return None;
    }
    let Some(req) = serializer
        .decode(&body)
        .ok()
        .and_then(|v| serde_json::from_value::<ControlRequest>(v).ok())
    else {
        tracing::debug!("pidbox: not a control request");
        return None;
    };
    if !req.selects(&sh.hostname) {
        return None;
    }
    sh.events.clock.forward();
    tracing::debug!(method = %req.method, "pidbox request");
    let answer = dispatch(sh, &req.method, &req.arguments).await;
    match (answer, req.ticket, req.reply_to) {
        (Answer::Reply(value), Some(ticket), Some(to)) => Some(Pending {
            ticket,
            to,
            value,
            serializer,
        }),
        _ => None,
    }
}

fn clock_of(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Run the handler for `method`; unknown methods answer like Python (`KeyError('name')`).
pub async fn dispatch(sh: &Arc<Shared>, method: &str, args: &Map<String, Value>) -> Answer {
    if let Some(a) = inspect::handle(sh, method, args) {
        return a;
    }
    if let Some(a) = command::handle(sh, method, args).await {
        return a;
    }
    super::error(format!("KeyError('{method}')"))
}

/// Reply the way kombu does on Redis: look the caller's oid up in the reply exchange's binding
/// table and push to the queue found there; nothing is pushed when the caller has gone (no
/// orphan lists).
async fn reply(sh: &Shared, p: Pending) -> crate::Result<()> {
    let exchange = p.exchange();
    let Some(queue) = sh.broker.lookup(exchange, &p.to.routing_key).await? else {
        return Ok(());
    };
    let env = reply_envelope(sh, &p, exchange, &queue);
    let mut c = sh.broker.conn();
    c.lpush::<_, _, ()>(sh.broker.keys().queue_step(&queue, 0), env.to_vec())
        .await
        .map_err(|e| sh.broker.settings().err(e))
}

/// The reply message: body `{node: value}`, headers `ticket` + `clock`, transient, addressed to
/// the reply exchange with the caller's oid (`queue` is what kombu records as the Redis list).
fn reply_envelope(sh: &Shared, p: &Pending, exchange: &str, queue: &str) -> Envelope {
    let mut body = Map::new();
    body.insert(sh.hostname.clone(), p.value.clone());
    let mut headers = Map::new();
    headers.insert("ticket".into(), json!(p.ticket));
    headers.insert("clock".into(), json!(sh.events.clock.forward()));
    let body = p.serializer.encode(&Value::Object(body));
    let mut env = Envelope::new(p.serializer, &body, headers, queue, 0);
    env.properties.delivery_mode = 1;
    env.properties.delivery_info.exchange = exchange.into();
    env.properties.delivery_info.routing_key = p.to.routing_key.clone();
    env
}
