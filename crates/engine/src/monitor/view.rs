//! What the monitor shows: a task and a worker as their events describe them, the counters and
//! runtime histograms behind `/metrics`, and the live list's filter.

use std::collections::HashMap;

use serde::Serialize;

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

/// Filters of the live task list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<String>,
    pub name: Option<String>,
    pub worker: Option<String>,
}

impl TaskFilter {
    pub(super) fn matches(&self, t: &TaskView) -> bool {
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
