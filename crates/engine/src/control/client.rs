//! The caller's side of remote control, like Celery's `app.control.broadcast`: declare a reply
//! queue `<oid>.reply.celery.pidbox` in the reply exchange's binding table, `PUBLISH` the request
//! on the pidbox channel, `BRPOP` replies carrying our ticket until the timeout passes without one
//! (or every destination answered), then remove the binding and lists. With RabbitMQ as the
//! broker ([`ControlClient::via_amqp`]) the same request goes to the `celery.pidbox` fanout
//! exchange and replies come to an exclusive `<oid>.reply.celery.pidbox` queue, as kombu's.

use std::time::{Duration, Instant};

use hlbot_proto::control::{CONTROL_EXCHANGE, ControlRequest, REPLY_EXCHANGE, ReplyTo};
use hlbot_proto::{Envelope, Serializer};
use redis::AsyncCommands;
use serde_json::{Map, Value, json};

use crate::broker::Broker;
use crate::error::Result;
use crate::redis::Keys;
use crate::redis::pubsub::blocking_reply;
use crate::revoke::{DEFAULT_TTL, Revocations};

/// Replies in arrival order: `(node name, reply value)`.
pub type Replies = Vec<(String, Value)>;

/// One broadcast.
#[derive(Debug, Clone)]
pub struct Broadcast {
    pub method: String,
    pub arguments: Map<String, Value>,
    /// Only these nodes act (exact names); `None`: everybody.
    pub destination: Option<Vec<String>>,
    /// Glob pattern on node names (Celery's `pattern`/`matcher="glob"`).
    pub pattern: Option<String>,
    /// Wait this long for the next reply (Celery's CLI `--timeout`, default 1 s).
    pub timeout: Duration,
    /// Ask for replies (false: a cast, like Flower's `enable_events`).
    pub reply: bool,
}

impl Broadcast {
    pub fn new(method: &str, arguments: Map<String, Value>) -> Self {
        Self {
            method: method.into(),
            arguments,
            destination: None,
            pattern: None,
            timeout: Duration::from_secs(1),
            reply: true,
        }
    }
}

/// Sends control broadcasts. Cheap to clone.
#[derive(Clone)]
pub struct ControlClient {
    broker: Broker,
    amqp: Option<crate::amqp::AmqpUrl>,
}

impl ControlClient {
    /// Broadcast on Redis (`broker`, where revocations are also kept).
    pub fn new(broker: Broker) -> Self {
        Self { broker, amqp: None }
    }

    /// The control client of `client`'s broker: Celery's pidbox exchanges on RabbitMQ when the
    /// broker is AMQP, Redis otherwise.
    pub fn for_client(client: &crate::Client) -> Self {
        let cc = Self::new(client.broker().clone());
        match client.amqp() {
            Some(a) => cc.via_amqp(a.url.clone()),
            None => cc,
        }
    }

    /// Broadcast on RabbitMQ instead (revocations are still persisted in `broker`'s Redis).
    pub fn via_amqp(mut self, url: crate::amqp::AmqpUrl) -> Self {
        self.amqp = Some(url);
        self
    }

    /// Publish `b` and collect the replies.
    pub async fn broadcast(&self, b: &Broadcast) -> Result<Replies> {
        if let Some(url) = &self.amqp {
            return broadcast_amqp(url, b, self.broker.settings().task_serializer).await;
        }
        let keys = self.broker.keys().clone();
        let settings = self.broker.settings().clone();
        let oid = uuid::Uuid::new_v4().to_string();
        let ticket = uuid::Uuid::new_v4().to_string();
        let queue = Keys::reply_queue_name(&oid);
        let binding = keys.binding(REPLY_EXCHANGE);
        let member = keys.binding_member(&oid, &queue);
        let lists: Vec<String> = keys
            .priority_steps()
            .iter()
            .map(|s| keys.queue_step(&queue, *s))
            .collect();
        let mut conn = self.broker.conn();
        if b.reply {
            let mut p = redis::pipe();
            p.sadd(&binding, &member)
                .ignore()
                .sadd(keys.binding_permanent(REPLY_EXCHANGE), &member)
                .ignore();
            p.query_async::<()>(&mut conn)
                .await
                .map_err(|e| settings.err(e))?;
        }
        let env = request(b, &oid, &ticket, settings.task_serializer);
        let published: redis::RedisResult<i64> =
            conn.publish(keys.pidbox_channel(), env.to_vec()).await;
        let result = match published {
            Err(e) => Err(settings.err(e)),
            Ok(_) if !b.reply => Ok(Vec::new()),
            Ok(_) => self.collect(&lists, &ticket, b).await,
        };
        if b.reply {
            let mut p = redis::pipe();
            p.srem(&binding, &member)
                .ignore()
                .srem(keys.binding_permanent(REPLY_EXCHANGE), &member)
                .ignore()
                .del(&lists)
                .ignore();
            let _: redis::RedisResult<()> = p.query_async(&mut conn).await;
        }
        result
    }

    async fn collect(&self, lists: &[String], ticket: &str, b: &Broadcast) -> Result<Replies> {
        let settings = self.broker.settings();
        let mut c = settings.blocking().await?;
        let want = b.destination.as_ref().map(Vec::len).filter(|n| *n > 0);
        let mut out: Replies = Vec::new();
        let mut last = Instant::now();
        loop {
            let left = b.timeout.saturating_sub(last.elapsed());
            if left.is_zero() {
                break;
            }
            let mut brpop = redis::cmd("BRPOP");
            brpop.arg(lists).arg(left.as_secs_f64().max(0.01));
            let got: Option<(String, Vec<u8>)> = blocking_reply(left, brpop.query_async(&mut c))
                .await
                .map_err(|e| settings.err(e))?;
            let Some((_, raw)) = got else { break };
            let Ok(env) = Envelope::from_slice(&raw) else {
                continue;
            };
            let Some(m) = reply_of(&env, ticket) else {
                continue;
            };
            out.extend(m);
            last = Instant::now();
            if want.is_some_and(|n| out.len() >= n) {
                break;
            }
        }
        Ok(out)
    }

    /// `revoke`: persist the ids in Redis first (workers that are down honour them when they
    /// start), then broadcast.
    pub async fn revoke(
        &self,
        ids: &[String],
        terminate: bool,
        signal: Option<&str>,
        mut b: Broadcast,
    ) -> Result<Replies> {
        Revocations::new(self.broker.settings(), self.broker.conn(), DEFAULT_TTL)
            .add(ids, terminate)
            .await?;
        b.method = "revoke".into();
        b.arguments.insert("task_id".into(), json!(ids));
        if terminate {
            b.arguments.insert("terminate".into(), json!(true));
            b.arguments
                .insert("signal".into(), json!(signal.unwrap_or("SIGTERM")));
        }
        self.broadcast(&b).await
    }
}

/// The request message, as `Mailbox._publish` builds it, in the app's `task_serializer` (what
/// Celery's mailbox writes, and all that a worker accepting only that format reads).
fn request(b: &Broadcast, oid: &str, ticket: &str, serializer: Serializer) -> Envelope {
    let req = ControlRequest {
        method: b.method.clone(),
        arguments: b.arguments.clone(),
        destination: b.destination.clone(),
        pattern: b.pattern.clone(),
        matcher: b.pattern.as_ref().map(|_| "glob".to_string()),
        ticket: b.reply.then(|| ticket.to_string()),
        reply_to: b.reply.then(|| ReplyTo {
            exchange: REPLY_EXCHANGE.into(),
            routing_key: oid.to_string(),
        }),
    };
    let mut headers = Map::new();
    headers.insert("clock".into(), json!(1));
    let expires = hlbot_proto::time::unix(chrono::Utc::now()) + b.timeout.as_secs_f64();
    headers.insert("expires".into(), json!(expires));
    let body = serde_json::to_value(&req).unwrap_or(Value::Null);
    let mut env = Envelope::new(serializer, &serializer.encode(&body), headers, "", 0);
    env.properties.delivery_info.exchange = CONTROL_EXCHANGE.into();
    env
}

/// The `{node: reply}` map of a reply carrying our ticket (others belong to other calls).
fn reply_of(env: &Envelope, ticket: &str) -> Option<Map<String, Value>> {
    if env.headers.get("ticket").and_then(Value::as_str) != Some(ticket) {
        return None;
    }
    match env.serializer().decode(&env.body_bytes().ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// [`ControlClient::broadcast`] on RabbitMQ: reply queue first, then the request, then replies
/// until the timeout passes without one (or every destination answered).
async fn broadcast_amqp(
    url: &crate::amqp::AmqpUrl,
    b: &Broadcast,
    serializer: Serializer,
) -> Result<Replies> {
    use crate::amqp::pidbox::{self, Mailbox};
    let oid = uuid::Uuid::new_v4().to_string();
    let ticket = uuid::Uuid::new_v4().to_string();
    let mut mailbox = Mailbox::caller(url, &oid).await?;
    let env = request(b, &oid, &ticket, serializer);
    pidbox::publish(&mailbox.replier(), &env)
        .await
        .map_err(|e| url.err(e))?;
    let want = b.destination.as_ref().map(Vec::len).filter(|n| *n > 0);
    let mut out: Replies = Vec::new();
    // A cast (no reply wanted) is done once published.
    while b.reply && want.is_none_or(|n| out.len() < n) {
        let Ok(next) = tokio::time::timeout(b.timeout, mailbox.next()).await else {
            break;
        };
        let env = match next {
            Some(Ok(env)) => env,
            Some(Err(e)) => return Err(url.err(e)),
            None => break,
        };
        if let Some(m) = reply_of(&env, &ticket) {
            out.extend(m);
        }
    }
    mailbox.close().await;
    Ok(out)
}
