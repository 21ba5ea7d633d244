//! Test set-up shared by every suite (a dev-dependency only): where the shared corpus and the
//! installed tools are — a missing one skips a test with a printed reason, or fails it when `CI`
//! is set — Redis fixtures (a key prefix per test on the shared server, or a private
//! `redis-server`), workers in-process or as `hlbot` processes with ready-waiting, child
//! processes that die with the test, local HTTP servers (a scripted JSON mock, a static file
//! server), synthetic media made with ffmpeg, PostgreSQL databases of a test's own, and a TCP
//! gate to put in front of a server (cut it, freeze it, lose a reply).

pub mod env;
pub mod gate;
pub mod http;
pub mod media;
pub mod postgres;
pub mod process;
pub mod rabbit;
pub mod redis;
pub mod worker;
pub mod ytdlp;

pub use env::{corpus, missing, shared, tool, workspace};
pub use gate::Gate;
pub use postgres::TestPostgres;
pub use process::Proc;
pub use redis::{PrivateRedis, TestRedis, redis_url};
pub use worker::{InProcess, bin_worker, hlbot, wait_until};
