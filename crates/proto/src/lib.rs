//! Celery wire contract (protocol v2 messages, result metas, events, pidbox): pure serde data, no I/O.
//!
//! Everything here mirrors `celery-wire.md` (celery 5.7 / kombu 5.7) and is tested against JSON
//! captured from real Celery traffic (`tests/fixtures/`). Nothing in this crate talks to Redis.

pub mod compression;
pub mod control;
pub mod envelope;
pub mod error;
pub mod event;
pub mod message;
pub mod pickle;
pub mod pickler;
pub mod pyjson;
pub mod result;
pub mod serializer;
pub mod state;
pub mod time;

pub use envelope::{DeliveryInfo, Envelope, Properties};
pub use error::{DecodeError, DecodeErrorKind};
pub use message::{Embed, Headers, Signature, TaskMessage};
pub use result::{ExceptionInfo, ResultMeta};
pub use serializer::Serializer;
pub use state::State;

/// kombu's separator between the parts of a binding member and before a priority suffix.
pub const SEP: &str = "\x06\x16";
