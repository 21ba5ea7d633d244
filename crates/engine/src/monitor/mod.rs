//! The event receiver a dashboard or a metrics endpoint reads: subscribes to the `celeryev`
//! fanout exactly like Flower (`PSUBSCRIBE <prefix>/<db>.celeryev/*`, or on RabbitMQ a queue of
//! its own bound to the `celeryev` topic exchange with `#`; single events and `task.multi`
//! batches), keeps a bounded live window of tasks (oldest evicted first), a worker
//! table from heartbeats, and Prometheus-style counters per (task name, hostname). Knows no
//! domain and owns no history: anything older than the window comes from the store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::control::client::{Broadcast, ControlClient};
use crate::redis::pubsub::Subscription;

mod fold;
mod view;

use fold::{State, task_event, worker_event};
pub use view::{COUNTED, Counters, Histogram, RUNTIME_BUCKETS, TaskFilter, TaskView, WorkerView};

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
                let mut sub = Subscription::pattern(broker.settings(), &pattern).await?;
                while let Some(msg) = sub.next().await {
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
    use serde_json::json;

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
