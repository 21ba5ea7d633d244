//! Celery events (reference §5): a flat JSON object with common fields plus per-type fields.

use serde_json::{Map, Value, json};

/// The fields every event carries, filled by the sender.
#[derive(Debug, Clone)]
pub struct EventSource {
    pub hostname: String,
    pub pid: u32,
    /// Hours west of UTC, like Python's `time.timezone / 3600` (0.0 on a UTC host).
    pub utcoffset: f64,
}

/// Build an event object: `hostname, utcoffset, pid, clock, <fields>, timestamp, type`.
pub fn event(
    src: &EventSource,
    kind: &str,
    clock: u64,
    timestamp: f64,
    fields: Map<String, Value>,
) -> Value {
    let mut m = Map::new();
    m.insert("hostname".into(), json!(src.hostname));
    m.insert("utcoffset".into(), json!(src.utcoffset));
    m.insert("pid".into(), json!(src.pid));
    m.insert("clock".into(), json!(clock));
    for (k, v) in fields {
        m.insert(k, v);
    }
    m.insert("timestamp".into(), json!(timestamp));
    m.insert("type".into(), json!(kind));
    Value::Object(m)
}

/// Routing key of an event type: `task-succeeded` → `task.succeeded`.
pub fn routing_key(kind: &str) -> String {
    kind.replace('-', ".")
}

/// Worker-event fields (`worker-online`/`-heartbeat`/`-offline`).
pub fn worker_fields(
    freq: f64,
    active: usize,
    processed: u64,
    loadavg: [f64; 3],
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("freq".into(), json!(freq));
    m.insert("active".into(), json!(active));
    m.insert("processed".into(), json!(processed));
    m.insert("loadavg".into(), json!(loadavg));
    m.insert("sw_ident".into(), json!("hlbot"));
    m.insert("sw_ver".into(), json!(env!("CARGO_PKG_VERSION")));
    m.insert("sw_sys".into(), json!("Linux"));
    m
}

/// Shorthand for building a field map from pairs.
pub fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
