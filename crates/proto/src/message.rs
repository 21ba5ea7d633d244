//! The protocol-v2 task message: typed headers, body `[args, kwargs, embed]` (reference §1.2–1.3).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::envelope::Envelope;
use crate::error::{DecodeError, DecodeErrorKind};
use crate::serializer::Serializer;
use crate::{pyjson, time};

/// Protocol-v2 headers, in the order Celery writes them. Unknown headers are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headers {
    #[serde(default = "py")]
    pub lang: String,
    pub task: String,
    pub id: String,
    #[serde(default)]
    pub shadow: Option<String>,
    #[serde(default)]
    pub eta: Option<String>,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub group_index: Option<i64>,
    #[serde(default)]
    pub retries: u32,
    #[serde(default = "no_limits")]
    pub timelimit: [Option<f64>; 2],
    #[serde(default)]
    pub root_id: Option<String>,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub argsrepr: Option<String>,
    #[serde(default)]
    pub kwargsrepr: Option<String>,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub ignore_result: Option<bool>,
    #[serde(default)]
    pub replaced_task_nesting: u32,
    #[serde(default)]
    pub stamped_headers: Option<Value>,
    #[serde(default = "empty_map")]
    pub stamps: Map<String, Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn py() -> String {
    "py".into()
}
fn no_limits() -> [Option<f64>; 2] {
    [None, None]
}
fn empty_map() -> Map<String, Value> {
    Map::new()
}

impl Headers {
    /// Fresh headers for a new task, as `apply_async` fills them.
    pub fn new(task: &str, id: &str) -> Self {
        Self {
            lang: py(),
            task: task.into(),
            id: id.into(),
            shadow: None,
            eta: None,
            expires: None,
            group: None,
            group_index: None,
            retries: 0,
            timelimit: no_limits(),
            root_id: Some(id.into()),
            parent_id: None,
            argsrepr: None,
            kwargsrepr: None,
            origin: None,
            ignore_result: Some(false),
            replaced_task_nesting: 0,
            stamped_headers: None,
            stamps: Map::new(),
            extra: Map::new(),
        }
    }

    pub fn eta_time(&self) -> Option<DateTime<Utc>> {
        self.eta.as_deref().and_then(time::parse_iso)
    }
    pub fn expires_time(&self) -> Option<DateTime<Utc>> {
        self.expires.as_deref().and_then(time::parse_iso)
    }
    /// `[hard, soft]` seconds.
    pub fn hard_limit(&self) -> Option<f64> {
        self.timelimit[0].filter(|v| *v > 0.0)
    }
    pub fn soft_limit(&self) -> Option<f64> {
        self.timelimit[1].filter(|v| *v > 0.0)
    }
    /// `argsrepr`/`kwargsrepr` as Celery's `saferepr` writes them (1024 characters at most),
    /// where the sender gave none.
    pub fn fill_reprs(&mut self, args: &[Value], kwargs: &Map<String, Value>) {
        if self.argsrepr.is_none() {
            self.argsrepr = Some(pyjson::truncate(pyjson::repr_args(args), 1024));
        }
        if self.kwargsrepr.is_none() {
            let kw = Value::Object(kwargs.clone());
            self.kwargsrepr = Some(pyjson::repr_bounded(&kw, 1024));
        }
    }

    /// Display name: `shadow or task`.
    pub fn display_name(&self) -> &str {
        self.shadow.as_deref().unwrap_or(&self.task)
    }
    pub fn redelivered(&self) -> bool {
        self.extra
            .get("redelivered")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// A signature inside `callbacks`/`errbacks`/`chain`/`chord`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub task: String,
    #[serde(default)]
    pub args: Vec<Value>,
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    #[serde(default)]
    pub options: Map<String, Value>,
    #[serde(default)]
    pub subtask_type: Option<String>,
    #[serde(default)]
    pub immutable: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The third body element: linked callbacks, errbacks, chain and chord.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Embed {
    #[serde(default)]
    pub callbacks: Option<Vec<Signature>>,
    #[serde(default)]
    pub errbacks: Option<Vec<Signature>>,
    #[serde(default)]
    pub chain: Option<Vec<Signature>>,
    #[serde(default)]
    pub chord: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A decoded task message: the envelope it came in, typed headers and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage {
    pub envelope: Envelope,
    pub headers: Headers,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub embed: Embed,
    /// The body's format: what it was read from, and what [`TaskMessage::sync_envelope`] writes.
    pub serializer: Serializer,
}

impl TaskMessage {
    /// A new message for `task` with id `id`, addressed to `queue` (anonymous exchange).
    pub fn new(
        headers: Headers,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        embed: Embed,
        queue: &str,
        priority: u8,
    ) -> Self {
        let mut m = Self {
            envelope: Envelope::new_json(b"[]", Map::new(), queue, priority),
            headers,
            args,
            kwargs,
            embed,
            serializer: Serializer::Json,
        };
        m.headers.fill_reprs(&m.args, &m.kwargs);
        m.envelope.properties.correlation_id = Some(m.headers.id.clone());
        m.sync_envelope();
        m
    }

    /// Decode a raw queue entry (protocol 2; protocol 1 bodies are converted).
    pub fn decode(raw: &[u8]) -> Result<Self, DecodeError> {
        let envelope = Envelope::from_slice(raw)?;
        Self::from_envelope(envelope, raw)
    }

    /// Decode the task part of an already-parsed envelope, in any serializer hlbot reads.
    /// `raw` is kept in errors.
    pub fn from_envelope(envelope: Envelope, raw: &[u8]) -> Result<Self, DecodeError> {
        Self::from_envelope_accepting(envelope, raw, &Serializer::ALL)
    }

    /// Decode the task part of an envelope whose content type is in `accept` (Celery's
    /// `accept_content`); any other content type is refused before its body is read.
    pub fn from_envelope_accepting(
        envelope: Envelope,
        raw: &[u8],
        accept: &[Serializer],
    ) -> Result<Self, DecodeError> {
        let fail = |kind: DecodeErrorKind, env: &Envelope| DecodeError {
            kind,
            raw: raw.to_vec(),
            task_id: env.task_id(),
            delivery_tag: Some(env.properties.delivery_tag.clone()),
        };
        let Some(serializer) = Serializer::from_content_type(&envelope.content_type) else {
            return Err(fail(
                DecodeErrorKind::ContentType(envelope.content_type.clone()),
                &envelope,
            ));
        };
        if !accept.contains(&serializer) {
            let names: Vec<&str> = accept.iter().map(|s| s.name()).collect();
            return Err(fail(
                DecodeErrorKind::NotAccepted {
                    serializer: serializer.name(),
                    accepted: names.join(", "),
                },
                &envelope,
            ));
        }
        let mut bytes = envelope.body_bytes().map_err(|k| fail(k, &envelope))?;
        if let Some(c) = envelope.headers.get("compression").and_then(Value::as_str) {
            bytes = crate::compression::decompress(c, &bytes).map_err(|reason| {
                fail(
                    DecodeErrorKind::Compression {
                        codec: c.to_string(),
                        reason,
                    },
                    &envelope,
                )
            })?;
        }
        let body: Value = serializer.decode(&bytes).map_err(|e| {
            let kind = match serializer {
                Serializer::Json => DecodeErrorKind::BodyNotJson(e),
                s => DecodeErrorKind::BadBody {
                    serializer: s.name(),
                    reason: e,
                },
            };
            fail(kind, &envelope)
        })?;
        if envelope.headers.is_empty() && body.get("task").is_none() {
            return Err(fail(DecodeErrorKind::NoHeaders, &envelope));
        }
        if !envelope.headers.contains_key("task") {
            return Self::from_protocol1(envelope, body, raw, serializer);
        }
        if !envelope.headers.get("task").is_some_and(Value::is_string) {
            return Err(fail(DecodeErrorKind::NoTask, &envelope));
        }
        if !envelope.headers.get("id").is_some_and(Value::is_string) {
            return Err(fail(DecodeErrorKind::NoId, &envelope));
        }
        // Deserialize from a borrowed value (no copy of the header map), then put the map back.
        let mut envelope = envelope;
        let header_value = Value::Object(std::mem::take(&mut envelope.headers));
        let parsed = Headers::deserialize(&header_value);
        if let Value::Object(m) = header_value {
            envelope.headers = m;
        }
        let headers = parsed.map_err(|e| {
            fail(
                DecodeErrorKind::InvalidField {
                    field: "headers",
                    reason: e.to_string(),
                },
                &envelope,
            )
        })?;
        let (args, kwargs, embed) = split_body(body).map_err(|k| fail(k, &envelope))?;
        check_dates(&headers).map_err(|k| fail(k, &envelope))?;
        Ok(Self {
            envelope,
            headers,
            args,
            kwargs,
            embed,
            serializer,
        })
    }

    /// A protocol-1 (or hybrid) message read as Celery's worker reads it (`hybrid_to_proto2`):
    /// the headers come from the body's fields, overlaid with the envelope's own headers, and
    /// `callbacks`/`errbacks`/`chord` become the embed — so links, chords, groups and time
    /// limits sent with `task_protocol = 1` are kept, not dropped.
    fn from_protocol1(
        envelope: Envelope,
        body: Value,
        raw: &[u8],
        serializer: Serializer,
    ) -> Result<Self, DecodeError> {
        let tid = body.get("id").and_then(Value::as_str).map(str::to_string);
        let fail = |kind| DecodeError {
            kind,
            raw: raw.to_vec(),
            task_id: tid.clone(),
            delivery_tag: Some(envelope.properties.delivery_tag.clone()),
        };
        let Value::Object(mut b) = body else {
            return Err(fail(DecodeErrorKind::NoTask));
        };
        if !b.get("task").is_some_and(Value::is_string) {
            return Err(fail(DecodeErrorKind::NoTask));
        }
        if tid.is_none() {
            return Err(fail(DecodeErrorKind::NoId));
        }
        let mut h = Map::new();
        for field in PROTOCOL1_HEADERS {
            match b.get(*field) {
                None | Some(Value::Null) => {}
                Some(v) => {
                    h.insert((*field).into(), v.clone());
                }
            }
        }
        if !h.contains_key("group") {
            if let Some(t) = b.get("taskset").filter(|t| !t.is_null()) {
                h.insert("group".into(), t.clone());
            }
        }
        h.extend(envelope.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut headers = Headers::deserialize(&Value::Object(h)).map_err(|e| {
            fail(DecodeErrorKind::InvalidField {
                field: "headers",
                reason: e.to_string(),
            })
        })?;
        let embed = serde_json::json!({
            "callbacks": b.remove("callbacks"),
            "errbacks": b.remove("errbacks"),
            "chord": b.remove("chord"),
            "chain": null,
        });
        let args = b.remove("args").unwrap_or(Value::Null);
        let kwargs = b.remove("kwargs").unwrap_or(Value::Null);
        let (args, kwargs, embed) =
            split_body(Value::Array(vec![args, kwargs, embed])).map_err(fail)?;
        headers.fill_reprs(&args, &kwargs);
        check_dates(&headers).map_err(fail)?;
        Ok(Self {
            envelope,
            headers,
            args,
            kwargs,
            embed,
            serializer,
        })
    }

    /// Write the body in `serializer` from now on (re-encoded only when that changes it).
    pub fn set_serializer(&mut self, serializer: Serializer) {
        if serializer != self.serializer {
            self.serializer = serializer;
            self.sync_envelope();
        }
    }

    /// Write headers and body back into the envelope (after changing them).
    pub fn sync_envelope(&mut self) {
        // Serialized from borrows: no copy of args/kwargs/embed, no throwaway envelope.
        let body = (&self.args, &self.kwargs, &self.embed);
        let bytes = match self.serializer {
            Serializer::Json => pyjson::to_vec(&body),
            s => s.encode(&serde_json::to_value(body).unwrap_or(Value::Null)),
        };
        self.envelope.set_body(self.serializer, &bytes);
        // The body is written whole, uncompressed.
        self.headers.extra.remove("compression");
        if let Value::Object(h) = serde_json::to_value(&self.headers).unwrap_or(Value::Null) {
            self.envelope.headers = h;
        }
    }

    /// The queue this message was published to (routing key of the anonymous exchange).
    pub fn queue(&self) -> &str {
        &self.envelope.properties.delivery_info.routing_key
    }

    pub fn delivery_tag(&self) -> &str {
        &self.envelope.properties.delivery_tag
    }

    pub fn priority(&self) -> u8 {
        self.envelope.properties.priority
    }

    pub fn id(&self) -> &str {
        &self.headers.id
    }
}

/// The body fields of a protocol-1 message that become headers (Celery's `hybrid_to_proto2`,
/// plus `group_index`).
const PROTOCOL1_HEADERS: &[&str] = &[
    "lang",
    "task",
    "id",
    "root_id",
    "parent_id",
    "group",
    "group_index",
    "meth",
    "shadow",
    "eta",
    "expires",
    "retries",
    "timelimit",
    "argsrepr",
    "kwargsrepr",
    "origin",
];

fn invalid(field: &'static str, reason: &str) -> DecodeErrorKind {
    DecodeErrorKind::InvalidField {
        field,
        reason: reason.into(),
    }
}

type Body = (Vec<Value>, Map<String, Value>, Embed);

fn split_body(body: Value) -> Result<Body, DecodeErrorKind> {
    let Value::Array(mut parts) = body else {
        return Err(invalid("body", "not a [args, kwargs, embed] list"));
    };
    if parts.is_empty() || parts.len() > 3 {
        return Err(invalid("body", "not a [args, kwargs, embed] list"));
    }
    parts.resize(3, Value::Null);
    let embed = parts.pop().unwrap_or(Value::Null);
    let kwargs = parts.pop().unwrap_or(Value::Null);
    let args = parts.pop().unwrap_or(Value::Null);
    let args = match args {
        Value::Array(a) => a,
        Value::Null => vec![],
        _ => return Err(invalid("args", "not a list")),
    };
    let kwargs = match kwargs {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => return Err(invalid("kwargs", "not a dict")),
    };
    let embed = match embed {
        Value::Null => Embed::default(),
        e => serde_json::from_value(e).map_err(|e| invalid("embed", &e.to_string()))?,
    };
    Ok((args, kwargs, embed))
}

fn check_dates(h: &Headers) -> Result<(), DecodeErrorKind> {
    for (field, value) in [("eta", &h.eta), ("expires", &h.expires)] {
        if let Some(v) = value.as_ref().filter(|v| time::parse_iso(v).is_none()) {
            return Err(invalid(field, &format!("not an ISO-8601 date: {v:?}")));
        }
    }
    Ok(())
}
