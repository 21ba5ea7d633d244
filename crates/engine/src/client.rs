//! Producer client: `send_task(name, args, kwargs, options)` → [`AsyncResult`], bulk publish
//! pipelined, with Celery's options (queue, priority, countdown, eta, expires, links, ...).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hlbot_proto::{Embed, Headers, ResultMeta, Signature, State, TaskMessage, time};
use serde_json::{Map, Value};

use crate::backend::Backend;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::route::Router;

/// Options of one `send_task` call, named as in Celery's `apply_async`.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    pub queue: Option<String>,
    /// With `exchange`, publish through that exchange's binding table instead of to `queue`.
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub priority: Option<u8>,
    pub countdown: Option<f64>,
    pub eta: Option<DateTime<Utc>>,
    /// Seconds from now.
    pub expires: Option<f64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub task_id: Option<String>,
    pub ignore_result: Option<bool>,
    pub link: Vec<Signature>,
    pub link_error: Vec<Signature>,
    /// Extra headers merged into the message headers.
    pub headers: Map<String, Value>,
    pub time_limit: Option<f64>,
    pub soft_time_limit: Option<f64>,
    pub parent_id: Option<String>,
    pub root_id: Option<String>,
    pub shadow: Option<String>,
    pub retries: Option<u32>,
    pub group_id: Option<String>,
    pub group_index: Option<i64>,
    pub chain: Option<Vec<Signature>>,
    /// The chord body a header part carries (`embed.chord`); see `canvas.rs`.
    pub chord: Option<Value>,
}

/// A task to send, for [`Client::send_many`].
#[derive(Debug, Clone)]
pub struct TaskCall {
    pub name: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub options: SendOptions,
}

/// Sends tasks and reads their results.
#[derive(Clone)]
pub struct Client {
    broker: Broker,
    backend: Backend,
    router: Arc<Router>,
    origin: String,
    declared: Arc<Mutex<HashSet<String>>>,
    /// Celery's `task_send_sent_event`: publish `task-sent` for every message sent.
    sent_events: Option<Arc<crate::events::Clock>>,
    /// RabbitMQ as the broker: messages are published there (with confirms), not to Redis.
    amqp: Option<crate::amqp::Amqp>,
}

impl Client {
    pub fn new(broker: Broker, backend: Backend, router: Router) -> Self {
        let host = hostname();
        Self {
            broker,
            backend,
            router: Arc::new(router),
            origin: format!("gen{}@{host}", std::process::id()),
            declared: Arc::default(),
            sent_events: None,
            amqp: None,
        }
    }

    /// Publish to RabbitMQ instead of the Redis broker (which still holds results, control and
    /// events); a worker made from this client consumes from RabbitMQ too.
    pub fn with_amqp(mut self, amqp: crate::amqp::Amqp) -> Self {
        self.amqp = Some(amqp);
        self
    }

    pub fn amqp(&self) -> Option<&crate::amqp::Amqp> {
        self.amqp.as_ref()
    }

    /// Send a `task-sent` event (on `celeryev/task.sent`, unbatched) for every message published.
    pub fn with_sent_events(mut self, on: bool) -> Self {
        self.sent_events = on.then(Arc::default);
        self
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }
    pub fn backend(&self) -> &Backend {
        &self.backend
    }
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Build the message `send_task` would publish.
    pub fn build(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        o: &SendOptions,
    ) -> TaskMessage {
        let id = o
            .task_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut h = Headers::new(name, &id);
        let now = Utc::now();
        let eta = o.eta.or_else(|| o.countdown.map(|s| time::after(now, s)));
        h.eta = eta.map(time::isoformat);
        h.expires = o
            .expires_at
            .or_else(|| o.expires.map(|s| time::after(now, s)))
            .map(time::isoformat);
        h.timelimit = [o.time_limit, o.soft_time_limit];
        h.ignore_result = Some(o.ignore_result.unwrap_or(false));
        h.origin = Some(self.origin.clone());
        h.parent_id = o.parent_id.clone();
        if let Some(r) = &o.root_id {
            h.root_id = Some(r.clone());
        }
        h.shadow = o.shadow.clone();
        h.retries = o.retries.unwrap_or(0);
        h.group = o.group_id.clone();
        h.group_index = o.group_index;
        for (k, v) in &o.headers {
            h.extra.insert(k.clone(), v.clone());
        }
        let embed = Embed {
            callbacks: (!o.link.is_empty()).then(|| o.link.clone()),
            errbacks: (!o.link_error.is_empty()).then(|| o.link_error.clone()),
            chain: o.chain.clone(),
            chord: o.chord.clone(),
            extra: Map::new(),
        };
        let queue = o
            .queue
            .clone()
            .unwrap_or_else(|| self.router.queue_for(name).to_string());
        let mut msg = TaskMessage::new(
            h,
            args,
            kwargs,
            embed,
            &queue,
            o.priority.unwrap_or(0).min(9),
        );
        msg.set_serializer(self.broker.settings().task_serializer);
        if let Some(ex) = &o.exchange {
            msg.envelope.properties.delivery_info.exchange = ex.clone();
            msg.envelope.properties.delivery_info.routing_key =
                o.routing_key.clone().unwrap_or(queue);
        }
        msg
    }

    /// Publish one task; returns a handle to its result.
    pub async fn send_task(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: SendOptions,
    ) -> Result<AsyncResult> {
        let msg = self.build(name, args, kwargs, &options);
        self.put(std::slice::from_ref(&msg)).await?;
        self.sent(std::slice::from_ref(&msg)).await;
        Ok(self.handle(msg.id()))
    }

    /// Publish many tasks in one pipelined round trip.
    pub async fn send_many(&self, calls: Vec<TaskCall>) -> Result<Vec<AsyncResult>> {
        let msgs: Vec<TaskMessage> = calls
            .into_iter()
            .map(|c| self.build(&c.name, c.args, c.kwargs, &c.options))
            .collect();
        self.put(&msgs).await?;
        self.sent(&msgs).await;
        Ok(msgs.iter().map(|m| self.handle(m.id())).collect())
    }

    /// Publish prepared messages (retries, callbacks, beat).
    pub async fn publish(&self, msgs: &[TaskMessage]) -> Result<()> {
        self.put(msgs).await?;
        self.sent(msgs).await;
        Ok(())
    }

    /// Declare and publish: to RabbitMQ (each confirmed) or in one Redis round trip.
    async fn put(&self, msgs: &[TaskMessage]) -> Result<()> {
        if let Some(a) = &self.amqp {
            for m in msgs {
                a.publisher.publish_retried(&m.envelope).await?;
            }
            return Ok(());
        }
        self.declare_for(msgs).await?;
        self.broker.publish_many(msgs).await
    }

    /// `task-sent` events, best-effort like Celery's.
    async fn sent(&self, msgs: &[TaskMessage]) {
        let Some(clock) = &self.sent_events else {
            return;
        };
        let src = hlbot_proto::event::EventSource {
            hostname: self.origin.clone(),
            pid: std::process::id(),
            utcoffset: crate::events::utcoffset(),
        };
        let keys = self.broker.keys();
        let mut p = redis::pipe();
        for m in msgs {
            let h = &m.headers;
            let di = &m.envelope.properties.delivery_info;
            let f = hlbot_proto::event::fields([
                ("uuid", serde_json::json!(m.id())),
                ("root_id", serde_json::json!(h.root_id)),
                ("parent_id", serde_json::json!(h.parent_id)),
                ("name", serde_json::json!(h.task)),
                ("args", serde_json::json!(h.argsrepr)),
                ("kwargs", serde_json::json!(h.kwargsrepr)),
                ("retries", serde_json::json!(h.retries)),
                ("eta", serde_json::json!(h.eta)),
                ("expires", serde_json::json!(h.expires)),
                ("queue", serde_json::json!(m.queue())),
                ("exchange", serde_json::json!(di.exchange)),
                ("routing_key", serde_json::json!(di.routing_key)),
            ]);
            let ts = time::unix(Utc::now());
            let ev = hlbot_proto::event::event(&src, "task-sent", clock.forward(), ts, f);
            let mut headers = Map::new();
            headers.insert("hostname".into(), serde_json::json!(self.origin));
            let mut env = hlbot_proto::Envelope::new_json(
                &hlbot_proto::pyjson::to_vec(&ev),
                headers,
                "task.sent",
                0,
            );
            env.properties.delivery_mode = 1;
            env.properties.delivery_info.exchange = "celeryev".into();
            p.publish(keys.event_channel("task.sent"), env.to_vec())
                .ignore();
        }
        let mut c = self.broker.conn();
        if let Err(e) = p.query_async::<()>(&mut c).await {
            tracing::debug!("task-sent events not published: {e}");
        }
    }

    async fn declare_for(&self, msgs: &[TaskMessage]) -> Result<()> {
        let fresh: Vec<String> = {
            let declared = self
                .declared
                .lock()
                .map_err(|_| Error::Other("poisoned".into()))?;
            let mut v: Vec<String> = msgs
                .iter()
                .filter(|m| m.envelope.properties.delivery_info.exchange.is_empty())
                .map(|m| m.queue().to_string())
                .filter(|q| !declared.contains(q))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        if fresh.is_empty() {
            return Ok(());
        }
        self.broker.declare(&fresh).await?;
        if let Ok(mut d) = self.declared.lock() {
            d.extend(fresh);
        }
        Ok(())
    }

    /// A handle for an existing task id.
    pub fn handle(&self, id: &str) -> AsyncResult {
        AsyncResult {
            id: id.to_string(),
            backend: self.backend.clone(),
        }
    }
}

/// Handle to a task's result (Celery's `AsyncResult`).
#[derive(Clone)]
pub struct AsyncResult {
    pub id: String,
    backend: Backend,
}

impl AsyncResult {
    /// The stored meta, or a PENDING one when nothing is stored.
    pub async fn meta(&self) -> Result<ResultMeta> {
        Ok(self
            .backend
            .get(&self.id)
            .await?
            .unwrap_or_else(|| ResultMeta {
                status: State::Pending,
                result: Value::Null,
                traceback: None,
                children: Value::Array(vec![]),
                date_done: None,
                group_id: None,
                parent_id: None,
                extended: Map::new(),
                task_id: self.id.clone(),
            }))
    }

    pub async fn state(&self) -> Result<State> {
        Ok(self.meta().await?.status)
    }

    /// Wait for the result: the value on SUCCESS, [`Error::TaskFailed`] on FAILURE/REVOKED.
    pub async fn get(&self, timeout: Duration) -> Result<Value> {
        let meta = self.backend.wait(&self.id, timeout).await?;
        into_value(meta)
    }

    /// Wait and return the whole meta, whatever the outcome.
    pub async fn wait_meta(&self, timeout: Duration) -> Result<ResultMeta> {
        self.backend.wait(&self.id, timeout).await
    }

    pub async fn forget(&self) -> Result<()> {
        self.backend.forget(&self.id).await
    }
}

/// SUCCESS → the value; other ready states → `TaskFailed` with the exception.
pub fn into_value(meta: ResultMeta) -> Result<Value> {
    if meta.status == State::Success {
        return Ok(meta.result);
    }
    let exc = meta
        .exception()
        .map_or_else(|| meta.status.to_string(), |e| e.display());
    Err(Error::TaskFailed {
        id: meta.task_id.clone(),
        exc,
        meta: Box::new(meta),
    })
}

/// This machine's host name (for node names and `origin`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
