//! The store against real databases: every scenario on PostgreSQL (a database of the test's own
//! on 127.0.0.1:5432, dropped after) and on SQLite (a temp file). Migrations, every write,
//! search, export, dedup under two concurrent claimers, task history from a real worker, and
//! the database going away mid-run (the worker keeps running; rows catch up).

mod browse;
mod common;
mod history;
mod library;
mod pool;
