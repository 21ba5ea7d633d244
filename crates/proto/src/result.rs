//! Result metas as stored at `celery-task-meta-<id>` (reference §3.2), exception dicts included.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::state::State;
use crate::time;

/// `{"exc_type", "exc_message", "exc_module"}`: how Celery encodes an exception.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    pub exc_type: String,
    pub exc_message: Vec<Value>,
    pub exc_module: String,
}

impl ExceptionInfo {
    pub fn new(exc_type: &str, module: &str, args: Vec<Value>) -> Self {
        Self {
            exc_type: exc_type.into(),
            exc_message: args,
            exc_module: module.into(),
        }
    }
    /// A generic error Python rebuilds as a builtin (`RuntimeError('msg')`).
    pub fn builtin(exc_type: &str, message: &str) -> Self {
        Self::new(exc_type, "builtins", vec![Value::String(message.into())])
    }
    pub fn revoked(reason: &str) -> Self {
        Self::new("TaskRevokedError", "celery.exceptions", vec![json!(reason)])
    }
    pub fn not_registered(name: &str) -> Self {
        Self::new("NotRegistered", "celery.exceptions", vec![json!(name)])
    }
    pub fn time_limit(hard: f64) -> Self {
        Self::new(
            "TimeLimitExceeded",
            "billiard.exceptions",
            vec![json!(hard)],
        )
    }
    /// Parse an exception dict (or `None` if `v` is not one).
    pub fn from_value(v: &Value) -> Option<Self> {
        serde_json::from_value(v.clone()).ok()
    }
    /// Python `repr()` of the exception, e.g. `ValueError('bad thing')`, as events carry it.
    pub fn repr(&self) -> String {
        let args: Vec<String> = self.exc_message.iter().map(crate::pyjson::repr).collect();
        format!("{}({})", self.exc_type, args.join(", "))
    }
    /// `ValueError: bad thing`, for humans.
    pub fn display(&self) -> String {
        let args: Vec<String> = self
            .exc_message
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect();
        format!("{}: {}", self.exc_type, args.join(", "))
    }
}

/// A stored result meta. Field order is the order Celery writes; `group_id`/`parent_id` only
/// when present; `extended` holds `result_extended` fields (name, args, kwargs, worker, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMeta {
    pub status: State,
    #[serde(default)]
    pub result: Value,
    /// Python writes a string or null; other clients (celery-node) write any JSON value there:
    /// kept as its JSON text.
    #[serde(default, deserialize_with = "lenient_text")]
    pub traceback: Option<String>,
    #[serde(default)]
    pub children: Value,
    #[serde(default, deserialize_with = "lenient_text")]
    pub date_done: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(flatten)]
    pub extended: Map<String, Value>,
    /// Empty when the writer left it out; [`ResultMeta::read`] fills it from the key.
    #[serde(default)]
    pub task_id: String,
}

/// A text field that may arrive as any JSON value: null → None, a string as is, else its JSON.
fn lenient_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

impl ResultMeta {
    /// A meta for `state` with `result`; `date_done` is set for ready states.
    pub fn new(task_id: &str, status: State, result: Value, now: DateTime<Utc>) -> Self {
        let date_done = status.is_ready().then(|| time::isoformat(now));
        Self {
            status,
            result,
            traceback: None,
            children: Value::Array(vec![]),
            date_done,
            group_id: None,
            parent_id: None,
            extended: Map::new(),
            task_id: task_id.into(),
        }
    }

    pub fn success(task_id: &str, result: Value, now: DateTime<Utc>) -> Self {
        Self::new(task_id, State::Success, result, now)
    }

    pub fn failure(
        task_id: &str,
        exc: &ExceptionInfo,
        traceback: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut m = Self::new(task_id, State::Failure, exc_value(exc), now);
        m.traceback = traceback;
        m
    }

    pub fn revoked(task_id: &str, reason: &str, now: DateTime<Utc>) -> Self {
        Self::new(
            task_id,
            State::Revoked,
            exc_value(&ExceptionInfo::revoked(reason)),
            now,
        )
    }

    /// The exception, for exception states.
    pub fn exception(&self) -> Option<ExceptionInfo> {
        if self.status.is_exception() {
            ExceptionInfo::from_value(&self.result)
        } else {
            None
        }
    }

    pub fn to_json(&self) -> String {
        crate::pyjson::to_string(self)
    }

    /// The meta as `result_serializer` stores it (with pickle, a failure's exception pickled as
    /// the exception, as Celery's backend does).
    pub fn encode(&self, s: crate::Serializer) -> Vec<u8> {
        match s {
            crate::Serializer::Json => crate::pyjson::to_vec(self),
            s => s.encode_result(&serde_json::to_value(self).unwrap_or(Value::Null)),
        }
    }

    pub fn from_slice(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b)
    }

    /// The meta stored for `task_id` (`task_id` filled in when the writer left it out).
    /// Celery's compressed results (`result_compression`) are decompressed first.
    pub fn read(task_id: &str, b: &[u8]) -> Result<Self, String> {
        let mut m: Self = crate::compression::read_stored(b)?;
        if m.task_id.is_empty() {
            m.task_id = task_id.into();
        }
        Ok(m)
    }
}

fn exc_value(e: &ExceptionInfo) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}
