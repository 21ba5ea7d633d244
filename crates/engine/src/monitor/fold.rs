//! Folding one event into the monitor's live state: a worker's row from its `worker-*` events,
//! a task's view and the counters from its `task-*` events (late or crossing events never move a
//! task backwards).

use std::collections::{HashMap, VecDeque};

use serde_json::{Value, json};

use super::now;
use super::view::{Counters, RUNTIME_BUCKETS, TaskView, WorkerView};

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) tasks: HashMap<String, TaskView>,
    /// Insertion order of `tasks` (eviction order).
    pub(super) order: VecDeque<String>,
    pub(super) workers: HashMap<String, WorkerView>,
    pub(super) counters: Counters,
}

pub(super) fn worker_event(st: &mut State, kind: &str, host: &str, ev: &Value) -> Option<Value> {
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

pub(super) fn task_event(
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
