//! Test set-up shared by every suite (a dev-dependency only): where the shared corpus and the
//! installed tools are — a missing one skips a test with a printed reason, or fails it when `CI`
//! is set — Redis fixtures (a key prefix per test on the shared server, or a private
//! `redis-server`), and child processes that die with the test.

pub mod env;
pub mod process;
pub mod redis;

pub use env::{corpus, missing, shared, tool, workspace};
pub use process::Proc;
pub use redis::{PrivateRedis, TestRedis, redis_url};
