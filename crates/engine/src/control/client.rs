//! The caller's side of remote control, like Celery's `app.control.broadcast`: declare a reply
//! queue `<oid>.reply.celery.pidbox` in the reply exchange's binding table, `PUBLISH` the request
//! on the pidbox channel, `BRPOP` replies carrying our ticket until the timeout passes without one
//! (or every destination answered), then remove the binding and lists.

use std::time::{Duration, Instant};

use hlbot_proto::control::{CONTROL_EXCHANGE, ControlRequest, REPLY_EXCHANGE, ReplyTo};
use hlbot_proto::{Envelope, pyjson};
use redis::AsyncCommands;
use serde_json::{Map, Value, json};

use crate::broker::Broker;
use crate::error::Result;
use crate::redis::Keys;
use crate::redis::keys::PRIORITY_STEPS;
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
}

impl ControlClient {
    pub fn new(broker: Broker) -> Self {
        Self { broker }
    }

    /// Publish `b` and collect the replies.
    pub async fn broadcast(&self, b: &Broadcast) -> Result<Replies> {
        let keys = self.broker.keys().clone();
        let settings = self.broker.settings().clone();
        let oid = uuid::Uuid::new_v4().to_string();
        let ticket = uuid::Uuid::new_v4().to_string();
        let queue = Keys::reply_queue_name(&oid);
        let binding = keys.binding(REPLY_EXCHANGE);
        let member = Keys::binding_member(&oid, &queue);
        let lists: Vec<String> = PRIORITY_STEPS
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
        let req = ControlRequest {
            method: b.method.clone(),
            arguments: b.arguments.clone(),
            destination: b.destination.clone(),
            pattern: b.pattern.clone(),
            matcher: b.pattern.as_ref().map(|_| "glob".to_string()),
            ticket: b.reply.then(|| ticket.clone()),
            reply_to: b.reply.then(|| ReplyTo {
                exchange: REPLY_EXCHANGE.into(),
                routing_key: oid.clone(),
            }),
        };
        let mut headers = Map::new();
        headers.insert("clock".into(), json!(1));
        let expires = hlbot_proto::time::unix(chrono::Utc::now()) + b.timeout.as_secs_f64();
        headers.insert("expires".into(), json!(expires));
        let body = serde_json::to_value(&req).unwrap_or(Value::Null);
        let mut env = Envelope::new_json(&pyjson::to_vec(&body), headers, "", 0);
        env.properties.delivery_info.exchange = CONTROL_EXCHANGE.into();
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
            let got: Option<(String, Vec<u8>)> = redis::cmd("BRPOP")
                .arg(lists)
                .arg(left.as_secs_f64().max(0.01))
                .query_async(&mut c)
                .await
                .map_err(|e| settings.err(e))?;
            let Some((_, raw)) = got else { break };
            let Ok(env) = Envelope::from_slice(&raw) else {
                continue;
            };
            if env.headers.get("ticket").and_then(Value::as_str) != Some(ticket) {
                continue;
            }
            let Some(Value::Object(m)) = env
                .body_bytes()
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            else {
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
