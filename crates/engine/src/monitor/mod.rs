//! The event receiver a dashboard or a metrics endpoint reads: subscribes to the `celeryev`
//! fanout exactly like Flower (`PSUBSCRIBE <prefix>/<db>.celeryev/*`, or on RabbitMQ a queue of
//! its own bound to the `celeryev` topic exchange with `#`; single events and `task.multi`
//! batches), keeps a bounded live window of tasks (oldest evicted first), a worker
//! table from heartbeats, and Prometheus-style counters per (task name, hostname). Knows no
//! domain and owns no history: anything older than the window comes from the store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::control::client::{Broadcast, ControlClient};

/// Task event kinds counted, in celery-exporter's order (`celery_task_<kind>_total`).
pub const COUNTED: [&str; 8] = [
    "sent",
    "received",
    "started",
    "succeeded",
    "failed",
    "retried",
    "revoked",
    "rejected",
];

/// Upper bounds (seconds) of the `celery_task_runtime` histogram: Prometheus' default buckets,
/// as celery-exporter uses.
pub const RUNTIME_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Monitor settings.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Tasks kept in the live window; the oldest is dropped past this.
    pub max_tasks: usize,
    /// Only events from this node (a worker's own `/metrics`); `None`: the whole fleet.
    pub only_host: Option<String>,
    /// Ask workers to send task events (`enable_events` cast, as Flower does), every minute.
    pub enable_events: bool,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        Self {
            max_tasks: 10_000,
            only_host: None,
            enable_events: true,
        }
    }
}

/// A task as the events describe it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskView {
    pub uuid: String,
    pub name: String,
    /// Celery state: PENDING (sent), RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED, REJECTED.
    pub state: String,
    pub hostname: String,
    pub args: String,
    pub kwargs: String,
    pub result: Option<String>,
    pub exception: Option<String>,
    pub traceback: Option<String>,
    pub retries: i64,
    pub parent_id: Option<String>,
    pub root_id: Option<String>,
    pub queue: Option<String>,
    pub eta: Option<String>,
    pub sent: Option<f64>,
    pub received: Option<f64>,
    pub started: Option<f64>,
    pub finished: Option<f64>,
    pub runtime: Option<f64>,
    /// Last event time.
    pub timestamp: f64,
}

/// A worker from its `worker-*` events.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerView {
    pub hostname: String,
    pub pid: Option<u64>,
    pub freq: f64,
    pub active: u64,
    pub processed: u64,
    pub failed: u64,
    pub loadavg: Vec<f64>,
    pub sw_ident: String,
    pub sw_ver: String,
    /// Unix time of the last worker event.
    pub last_heartbeat: f64,
    /// A `worker-offline` arrived (a clean stop).
    pub offline: bool,
}

impl WorkerView {
    /// Alive: no `worker-offline` and a heartbeat within two intervals (Celery's
    /// `heartbeat_expires` with its 200 % window).
    pub fn online(&self, now: f64) -> bool {
        !self.offline && now - self.last_heartbeat <= self.freq.max(1.0) * 2.0 + 1.0
    }
}

/// The runtime histogram of one (task name, hostname).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Histogram {
    /// Cumulative counts per bound of `RUNTIME_BUCKETS`.
    pub buckets: [u64; 14],
    pub count: u64,
    pub sum: f64,
}

/// Counters since the monitor started.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// (kind, task name, hostname) → events.
    pub tasks: HashMap<(String, String, String), u64>,
    /// (task name, hostname) → runtimes.
    pub runtime: HashMap<(String, String), Histogram>,
    /// Events received in all (for the dashboard's footer and tests).
    pub events: u64,
}

#[derive(Debug, Default)]
struct State {
    tasks: HashMap<String, TaskView>,
    /// Insertion order of `tasks` (eviction order).
    order: VecDeque<String>,
    workers: HashMap<String, WorkerView>,
    counters: Counters,
}

/// The live view. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Monitor {
    state: Arc<Mutex<State>>,
    opts: Arc<MonitorOptions>,
    updates: broadcast::Sender<Arc<Value>>,
}

impl Monitor {
    /// A monitor fed by hand (`apply`); `spawn` feeds one from Redis.
    pub fn new(opts: MonitorOptions) -> Self {
        let (updates, _) = broadcast::channel(1024);
        Self {
            state: Arc::default(),
            opts: Arc::new(opts),
            updates,
        }
    }

    /// Subscribe to the broker's events until `stop` (reconnecting after errors).
    pub fn spawn(broker: Broker, opts: MonitorOptions, stop: CancellationToken) -> Self {
        let m = Monitor::new(opts);
        tokio::spawn(m.clone().receive(broker.clone(), stop.clone()));
        if m.opts.enable_events {
            tokio::spawn(enable_events(ControlClient::new(broker), stop));
        }
        m
    }

    /// Receive events from RabbitMQ's `celeryev` exchange instead (the broker of an AMQP
    /// worker); `enable_events` is cast on its pidbox exchange.
    pub fn spawn_amqp(
        broker: Broker,
        url: crate::amqp::AmqpUrl,
        opts: MonitorOptions,
        stop: CancellationToken,
    ) -> Self {
        let m = Monitor::new(opts);
        tokio::spawn(m.clone().receive_amqp(url.clone(), stop.clone()));
        if m.opts.enable_events {
            let control = ControlClient::new(broker).via_amqp(url);
            tokio::spawn(enable_events(control, stop));
        }
        m
    }

    async fn receive_amqp(self, url: crate::amqp::AmqpUrl, stop: CancellationToken) {
        use crate::amqp::events::EventReceiver;
        let mut backoff = crate::backoff::FIRST;
        while !stop.is_cancelled() {
            let opened = tokio::select! {
                r = EventReceiver::open(&url, "hlbot monitor") => r,
                _ = stop.cancelled() => return,
            };
            match opened {
                Ok(mut r) => {
                    backoff = crate::backoff::FIRST;
                    loop {
                        let body = tokio::select! {
                            b = r.next() => b,
                            _ = stop.cancelled() => return,
                        };
                        let Some(body) = body else { break };
                        self.apply_body(&body);
                    }
                }
                Err(e) => tracing::warn!("event receiver: {e}"),
            }
            crate::backoff::pause(&stop, &mut backoff).await;
        }
    }

    async fn receive(self, broker: Broker, stop: CancellationToken) {
        let pattern = broker.keys().event_pattern();
        loop {
            let run = async {
                let mut ps = broker.settings().pubsub().await?;
                ps.psubscribe(&pattern)
                    .await
                    .map_err(|e| broker.settings().err(e))?;
                let mut stream = ps.on_message();
                while let Some(msg) = stream.next().await {
                    self.apply_raw(msg.get_payload_bytes());
                }
                crate::Result::Ok(())
            };
            tokio::select! {
                r = run => {
                    let r: crate::Result<()> = r;
                    if let Err(e) = r {
                        tracing::warn!("event receiver: {e}");
                    }
                }
                _ = stop.cancelled() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Apply one published event envelope (a single event or a `task.multi` list).
    pub fn apply_raw(&self, payload: &[u8]) {
        let Ok(env) = hlbot_proto::Envelope::from_slice(payload) else {
            return;
        };
        if let Ok(b) = env.body_bytes() {
            self.apply_body(&b);
        }
    }

    /// Apply one event message body (a single event or a `task.multi` list).
    pub fn apply_body(&self, body: &[u8]) {
        let Ok(body) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        match body {
            Value::Array(events) => events.iter().for_each(|e| self.apply(e)),
            one => self.apply(&one),
        }
    }

    /// Apply one event object.
    pub fn apply(&self, ev: &Value) {
        let kind = ev["type"].as_str().unwrap_or_default();
        let host = ev["hostname"].as_str().unwrap_or_default();
        if let Some(only) = &self.opts.only_host {
            // task-sent comes from the client, not from this node.
            if host != only {
                return;
            }
        }
        let update = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.counters.events += 1;
            if let Some(k) = kind.strip_prefix("worker-") {
                worker_event(&mut st, k, host, ev)
            } else if let Some(k) = kind.strip_prefix("task-") {
                task_event(&mut st, k, host, ev, self.opts.max_tasks)
            } else {
                None
            }
        };
        if let Some(u) = update {
            let _ = self.updates.send(Arc::new(u));
        }
    }

    /// Changes as they happen: `{"kind": "task"|"worker", ...view}`.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Value>> {
        self.updates.subscribe()
    }

    /// Tasks in the window, newest event first, filtered; at most `limit`.
    pub fn tasks(&self, f: &TaskFilter, limit: usize) -> Vec<TaskView> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<TaskView> = st
            .tasks
            .values()
            .filter(|t| f.matches(t))
            .cloned()
            .collect();
        out.sort_by(|a, b| b.timestamp.total_cmp(&a.timestamp));
        out.truncate(limit);
        out
    }

    pub fn task(&self, uuid: &str) -> Option<TaskView> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.tasks.get(uuid).cloned()
    }

    /// Tasks in the window whose parent is `uuid`.
    pub fn children(&self, uuid: &str) -> Vec<TaskView> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.tasks
            .values()
            .filter(|t| t.parent_id.as_deref() == Some(uuid))
            .cloned()
            .collect()
    }

    /// Workers by name.
    pub fn workers(&self) -> Vec<WorkerView> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<WorkerView> = st.workers.values().cloned().collect();
        v.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        v
    }

    pub fn counters(&self) -> Counters {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counters
            .clone()
    }

    /// Tasks held now (never above `max_tasks`).
    pub fn window_len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tasks
            .len()
    }
}

/// Filters of the live task list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<String>,
    pub name: Option<String>,
    pub worker: Option<String>,
}

impl TaskFilter {
    fn matches(&self, t: &TaskView) -> bool {
        let has = |want: &Option<String>, got: &str| {
            want.as_deref()
                .is_none_or(|w| w.is_empty() || got.contains(w))
        };
        self.state
            .as_deref()
            .is_none_or(|s| s.is_empty() || t.state.eq_ignore_ascii_case(s))
            && has(&self.name, &t.name)
            && has(&self.worker, &t.hostname)
    }
}

fn worker_event(st: &mut State, kind: &str, host: &str, ev: &Value) -> Option<Value> {
    let w = st
        .workers
        .entry(host.to_string())
        .or_insert_with(|| WorkerView {
            hostname: host.to_string(),
            ..Default::default()
        });
    w.last_heartbeat = ev["timestamp"].as_f64().unwrap_or_else(now);
    w.offline = kind == "offline";
    w.pid = ev["pid"].as_u64().or(w.pid);
    w.freq = ev["freq"].as_f64().unwrap_or(w.freq);
    w.active = ev["active"].as_u64().unwrap_or(w.active);
    w.processed = ev["processed"].as_u64().unwrap_or(w.processed);
    if let Some(l) = ev["loadavg"].as_array() {
        w.loadavg = l.iter().filter_map(Value::as_f64).collect();
    }
    for (field, slot) in [("sw_ident", &mut w.sw_ident), ("sw_ver", &mut w.sw_ver)] {
        if let Some(s) = ev[field].as_str() {
            *slot = s.to_string();
        }
    }
    let mut v = serde_json::to_value(&*w).unwrap_or(Value::Null);
    v["kind"] = json!("worker");
    v["online"] = json!(w.online(now()));
    Some(v)
}

fn task_event(
    st: &mut State,
    kind: &str,
    host: &str,
    ev: &Value,
    max_tasks: usize,
) -> Option<Value> {
    let uuid = ev["uuid"].as_str()?.to_string();
    let ts = ev["timestamp"].as_f64().unwrap_or_else(now);
    if !st.tasks.contains_key(&uuid) {
        st.order.push_back(uuid.clone());
        while st.order.len() > max_tasks.max(1) {
            if let Some(old) = st.order.pop_front() {
                st.tasks.remove(&old);
            }
        }
    }
    let t = st.tasks.entry(uuid.clone()).or_insert_with(|| TaskView {
        uuid: uuid.clone(),
        ..Default::default()
    });
    let s = |k: &str| ev[k].as_str().map(str::to_string);
    if let Some(n) = s("name") {
        t.name = n;
    }
    for (k, slot) in [("args", &mut t.args), ("kwargs", &mut t.kwargs)] {
        if let Some(v) = s(k) {
            *slot = v;
        }
    }
    t.parent_id = s("parent_id").or(t.parent_id.take());
    t.root_id = s("root_id").or(t.root_id.take());
    t.eta = s("eta").or(t.eta.take());
    t.queue = s("queue").or(s("routing_key")).or(t.queue.take());
    if let Some(r) = ev["retries"].as_i64() {
        t.retries = r;
    }
    t.timestamp = ts;
    let state = match kind {
        "sent" => {
            t.sent = Some(ts);
            "PENDING"
        }
        "received" => {
            t.received = Some(ts);
            t.hostname = host.to_string();
            "RECEIVED"
        }
        "started" => {
            t.started = Some(ts);
            t.hostname = host.to_string();
            "STARTED"
        }
        "succeeded" => {
            t.finished = Some(ts);
            t.result = s("result");
            t.runtime = ev["runtime"].as_f64();
            "SUCCESS"
        }
        "failed" => {
            t.finished = Some(ts);
            t.exception = s("exception");
            t.traceback = s("traceback");
            "FAILURE"
        }
        "retried" => {
            t.exception = s("exception");
            t.traceback = s("traceback");
            "RETRY"
        }
        "revoked" => "REVOKED",
        "rejected" => "REJECTED",
        _ => return None,
    };
    // A late `received`/`started` after the outcome (batches cross) does not undo it.
    let done = matches!(
        t.state.as_str(),
        "SUCCESS" | "FAILURE" | "REVOKED" | "REJECTED"
    );
    // Nor does the sender's late `sent` (published after the message, so it can arrive after
    // the worker's events) or a late `received` move a task back along sent → received → started.
    let step = |s: &str| match s {
        "PENDING" => Some(0),
        "RECEIVED" => Some(1),
        "STARTED" => Some(2),
        _ => None,
    };
    let behind = matches!((step(&t.state), step(state)), (Some(now), Some(new)) if new < now);
    let undo = done && matches!(state, "PENDING" | "RECEIVED" | "STARTED");
    if !(behind || undo) {
        t.state = state.to_string();
    }
    let name = if t.name.is_empty() {
        "unknown".to_string()
    } else {
        t.name.clone()
    };
    // The sender's hostname labels `sent` (celery-exporter does the same).
    let label_host = host.to_string();
    let runtime = (kind == "succeeded").then_some(t.runtime).flatten();
    let mut v = serde_json::to_value(&*t).unwrap_or(Value::Null);
    v["kind"] = json!("task");
    *st.counters
        .tasks
        .entry((kind.to_string(), name.clone(), label_host.clone()))
        .or_default() += 1;
    if let Some(rt) = runtime {
        let h = st.counters.runtime.entry((name, label_host)).or_default();
        h.count += 1;
        h.sum += rt;
        for (i, b) in RUNTIME_BUCKETS.iter().enumerate() {
            if rt <= *b {
                h.buckets[i] += 1;
            }
        }
    }
    if kind == "failed" {
        if let Some(w) = st.workers.get_mut(host) {
            w.failed += 1;
        }
    }
    Some(v)
}

/// Cast `enable_events` now and every minute (a worker started later gets it too).
async fn enable_events(control: ControlClient, stop: CancellationToken) {
    let mut b = Broadcast::new("enable_events", Map::new());
    b.reply = false;
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = control.broadcast(&b).await {
            tracing::debug!("enable_events: {e}");
        }
    }
}

fn now() -> f64 {
    hlbot_proto::time::unix(chrono::Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, uuid: &str, extra: Value) -> Value {
        let mut v = json!({"type": kind, "uuid": uuid, "hostname": "w1@h", "timestamp": 1.0});
        if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        v
    }

    #[test]
    fn window_is_bounded_and_counts_stay() {
        let m = Monitor::new(MonitorOptions {
            max_tasks: 3,
            ..Default::default()
        });
        for i in 0..10 {
            let id = format!("t{i}");
            m.apply(&ev("task-received", &id, json!({"name": "add"})));
            m.apply(&ev("task-succeeded", &id, json!({"runtime": 0.02})));
        }
        assert_eq!(m.window_len(), 3);
        assert!(m.task("t9").is_some() && m.task("t0").is_none());
        let c = m.counters();
        let key = |k: &str| (k.to_string(), "add".to_string(), "w1@h".to_string());
        assert_eq!(c.tasks[&key("succeeded")], 10);
        let h = &c.runtime[&("add".to_string(), "w1@h".to_string())];
        assert_eq!((h.count, h.buckets[1], h.buckets[2]), (10, 0, 10));
    }

    #[test]
    fn late_started_does_not_undo_success() {
        let m = Monitor::new(MonitorOptions::default());
        m.apply(&ev("task-succeeded", "a", json!({})));
        m.apply(&ev("task-started", "a", json!({})));
        assert_eq!(m.task("a").unwrap().state, "SUCCESS");
    }

    #[test]
    fn late_sent_or_received_does_not_move_a_task_back() {
        let m = Monitor::new(MonitorOptions::default());
        m.apply(&ev("task-received", "a", json!({})));
        m.apply(&ev("task-started", "a", json!({})));
        m.apply(&ev("task-sent", "a", json!({})));
        assert_eq!(m.task("a").unwrap().state, "STARTED");
        m.apply(&ev("task-received", "a", json!({})));
        assert_eq!(m.task("a").unwrap().state, "STARTED");
        assert!(m.task("a").unwrap().sent.is_some());
        m.apply(&ev("task-retried", "a", json!({})));
        m.apply(&ev("task-received", "a", json!({})));
        assert_eq!(m.task("a").unwrap().state, "RECEIVED");
    }

    #[test]
    fn workers_from_heartbeats() {
        let m = Monitor::new(MonitorOptions::default());
        let t = now();
        m.apply(
            &json!({"type": "worker-heartbeat", "hostname": "w1@h", "timestamp": t,
                        "freq": 2.0, "active": 1, "processed": 5}),
        );
        let w = &m.workers()[0];
        assert!(w.online(t + 1.0) && !w.online(t + 10.0));
        assert_eq!((w.active, w.processed), (1, 5));
        m.apply(&json!({"type": "worker-offline", "hostname": "w1@h", "timestamp": t}));
        assert!(!m.workers()[0].online(t));
    }
}
