//! Redis plumbing: key names, connection settings, and the Lua scripts for atomic multi-key steps.

pub mod conn;
pub mod keys;
pub mod scripts;
pub mod sentinel;

pub use conn::{RedisSettings, redact_url};
pub use keys::Keys;
