//! Decode errors for queue entries: typed, and always carrying the raw bytes so nothing is lost.

use std::fmt;

/// What was wrong with a queue entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("envelope is not JSON: {0}")]
    NotJson(String),
    #[error("envelope is not a kombu message: {0}")]
    BadEnvelope(String),
    #[error("body is not valid base64: {0}")]
    BadBase64(String),
    #[error(
        "unsupported content type {0:?} (hlbot reads application/json, \
         application/x-python-serialize, application/x-msgpack and application/x-yaml)"
    )]
    ContentType(String),
    #[error(
        "content type {serializer} is not accepted (accept_content: {accepted}); Celery's \
         default accepts json only — list it in the worker's accept_content to read it"
    )]
    NotAccepted {
        serializer: &'static str,
        accepted: String,
    },
    #[error("body compressed with {codec:?} could not be decompressed: {reason}")]
    Compression { codec: String, reason: String },
    #[error("body is not valid JSON: {0}")]
    BodyNotJson(String),
    #[error("body is not a readable {serializer} value: {reason}")]
    BadBody {
        serializer: &'static str,
        reason: String,
    },
    #[error("message has no headers")]
    NoHeaders,
    #[error("message names no task")]
    NoTask,
    #[error("message has no task id")]
    NoId,
    #[error("invalid field {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

/// A queue entry that could not be decoded. `raw` is the entry exactly as it was read.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub raw: Vec<u8>,
    /// The task id, when the entry got far enough to reveal one.
    pub task_id: Option<String>,
    /// The kombu delivery tag, when the entry is JSON that carries one (so the entry recorded
    /// under it in `unacked` can be acked with the dead letter).
    pub delivery_tag: Option<String>,
}

impl DecodeError {
    pub fn new(kind: DecodeErrorKind, raw: &[u8]) -> Self {
        Self {
            kind,
            raw: raw.to_vec(),
            task_id: None,
            delivery_tag: None,
        }
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeError")
            .field("kind", &self.kind)
            .field("raw_len", &self.raw.len())
            .field("task_id", &self.task_id)
            .finish()
    }
}
