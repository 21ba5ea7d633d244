//! Time limits for in-process tasks: the soft limit cancels the task's token, the hard limit (or a
//! terminate) aborts it. Work that must be stopped even inside native code runs in a child
//! process instead (`child.rs`), where the same limits kill the process group.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::task::{Task, TaskContext, TaskError};

/// The longest limit, countdown or rate gap taken from outside data (100 years): larger values,
/// `inf` included, mean "never" and are clamped to this instead of overflowing a timer.
pub const MAX_SECS: f64 = 100.0 * 365.0 * 86_400.0;

/// Seconds from a message header, a control command or a config as a `Duration`: `None` for
/// zero, negative or NaN (no limit), clamped to [`MAX_SECS`]. Never panics.
pub fn secs(v: f64) -> Option<Duration> {
    if v.is_nan() || v <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(v.min(MAX_SECS)).ok()
}

/// The `(soft, hard)` limits of a run, first found wins: the message's `timelimit` header, a
/// `control time_limit` override, the task's own options, the worker's `--soft-time-limit` /
/// `--time-limit`.
pub fn resolve(
    msg: &hlbot_proto::TaskMessage,
    overrides: &serde_json::Map<String, Value>,
    task: &crate::task::TaskOptions,
    worker: &crate::worker::WorkerOptions,
) -> (Option<Duration>, Option<Duration>) {
    let set = |k: &str| overrides.get(k).and_then(Value::as_f64).and_then(secs);
    let soft = msg.headers.soft_limit().and_then(secs);
    let hard = msg.headers.hard_limit().and_then(secs);
    (
        soft.or(set("soft_time_limit"))
            .or(task.soft_time_limit)
            .or(worker.soft_time_limit),
        hard.or(set("time_limit"))
            .or(task.time_limit)
            .or(worker.time_limit),
    )
}

/// How a run ended.
#[derive(Debug)]
pub enum Ended {
    /// The task returned.
    Done(Result<Value, TaskError>),
    /// The hard time limit (seconds) stopped it.
    HardLimit(f64),
    /// A revoke with terminate stopped it.
    Terminated,
    /// The process running it died (child crashed, was OOM-killed, ...).
    WorkerLost(String),
    /// Its child process went over the memory cap (KiB seen).
    MemoryLimit(u64),
}

/// Run `task` in this process under `soft`/`hard` limits; `kill` stops it at once.
pub async fn run_in_process(
    task: Arc<dyn Task>,
    ctx: TaskContext,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    soft: Option<Duration>,
    hard: Option<Duration>,
    kill: CancellationToken,
) -> Ended {
    let cancel = ctx.cancel.clone();
    let mut handle = tokio::spawn(async move { task.run(ctx, args, kwargs).await });
    let soft_at = sleep_opt(soft);
    let hard_at = sleep_opt(hard);
    tokio::pin!(soft_at, hard_at);
    let mut soft_fired = false;
    loop {
        tokio::select! {
            r = &mut handle => {
                // A terminate that raced the task's own exit (it saw its token cancelled) wins.
                if kill.is_cancelled() {
                    return Ended::Terminated;
                }
                return Ended::Done(r.unwrap_or_else(|e| Err(panic_error(e))));
            }
            _ = &mut soft_at, if !soft_fired => {
                soft_fired = true;
                cancel.cancel();
            }
            _ = &mut hard_at => {
                handle.abort();
                return Ended::HardLimit(hard.map_or(0.0, |d| d.as_secs_f64()));
            }
            _ = kill.cancelled() => {
                cancel.cancel();
                handle.abort();
                return Ended::Terminated;
            }
        }
    }
}

/// A sleep that never ends when there is no limit.
pub async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

fn panic_error(e: tokio::task::JoinError) -> TaskError {
    let msg = if e.is_panic() {
        let p = e.into_panic();
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "task panicked".into())
    } else {
        "task was cancelled".into()
    };
    TaskError::fail("RuntimeError", format!("panic: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_numbers_never_panic() {
        assert_eq!(secs(1.5), Some(Duration::from_millis(1500)));
        assert_eq!(secs(0.0), None);
        assert_eq!(secs(-3.0), None);
        assert_eq!(secs(f64::NAN), None);
        let far = Duration::from_secs_f64(MAX_SECS);
        assert_eq!(secs(1e20), Some(far));
        assert_eq!(secs(f64::INFINITY), Some(far));
        assert_eq!(secs(f64::MAX), Some(far));
    }
}
