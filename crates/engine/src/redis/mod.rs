//! Redis plumbing: key names, connection settings, long-lived connections that notice a silent
//! server, and the Lua scripts for atomic multi-key steps.

pub mod clock;
pub mod conn;
pub mod keys;
pub mod manager;
pub mod pubsub;
pub mod scripts;
pub mod sentinel;
pub mod tls;

pub use conn::{RedisSettings, redact_url};
pub use keys::Keys;
pub use manager::Conn;
