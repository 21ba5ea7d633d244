//! The engine's error type: Redis or AMQP trouble (one line, password redacted), bad messages, timeouts.

use hlbot_proto::DecodeError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Redis at {url}: {message}")]
    Redis { url: String, message: String },
    #[error("AMQP broker at {url}: {message}")]
    Amqp { url: String, message: String },
    #[error("bad message: {0}")]
    Decode(#[from] DecodeError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("timed out after {0:.1}s waiting for the result")]
    Timeout(f64),
    #[error("task {id} failed: {exc}")]
    TaskFailed {
        id: String,
        exc: String,
        meta: Box<hlbot_proto::ResultMeta>,
    },
    #[error("not registered: {0}")]
    NotRegistered(String),
    #[error("{0}")]
    Other(String),
}
