//! The real-Redis fixtures, from the shared test kit.

pub use hlbot_testkit::{PrivateRedis, TestRedis};
