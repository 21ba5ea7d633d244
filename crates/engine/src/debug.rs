//! Diagnostic tasks, always registered: `hlbot.debug.echo|sleep|fail|flaky|cpu`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::registry::Registry;
use crate::task::{Isolation, RetryPolicy, Task, TaskContext, TaskError, TaskOptions};

pub fn register(r: &mut Registry) {
    r.register("hlbot.debug.echo", Echo);
    r.register("hlbot.debug.sleep", Sleep);
    r.register("hlbot.debug.fail", Fail);
    r.register("hlbot.debug.flaky", Flaky);
    r.register("hlbot.debug.cpu", Cpu);
}

/// Positional argument `i`, else the keyword `name`.
pub(crate) fn arg<'a>(
    args: &'a [Value],
    kwargs: &'a Map<String, Value>,
    i: usize,
    name: &str,
) -> Option<&'a Value> {
    args.get(i).or_else(|| kwargs.get(name))
}

fn seconds(v: Option<&Value>) -> Result<f64, TaskError> {
    v.and_then(Value::as_f64)
        .filter(|s| *s >= 0.0)
        .ok_or_else(|| TaskError::fail("TypeError", "seconds must be a number >= 0"))
}

/// `echo(*args, **kwargs)` → `{"args": [...], "kwargs": {...}}`.
struct Echo;

#[async_trait]
impl Task for Echo {
    async fn run(
        &self,
        _: TaskContext,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, TaskError> {
        Ok(json!({"args": args, "kwargs": kwargs}))
    }
}

/// `sleep(seconds)`: sleeps cooperatively (a soft limit or revoke ends it early).
struct Sleep;

#[async_trait]
impl Task for Sleep {
    async fn run(
        &self,
        ctx: TaskContext,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, TaskError> {
        let s = seconds(arg(&args, &kwargs, 0, "seconds"))?;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(s)) => Ok(json!(s)),
            _ = ctx.cancel.cancelled() => ctx.check_cancelled().map(|_| Value::Null),
        }
    }
}

/// `fail(message)`: raises `RuntimeError(message)`.
struct Fail;

#[async_trait]
impl Task for Fail {
    async fn run(
        &self,
        _: TaskContext,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, TaskError> {
        let msg = arg(&args, &kwargs, 0, "message")
            .and_then(Value::as_str)
            .unwrap_or("failed on purpose");
        Err(TaskError::fail("RuntimeError", msg))
    }
}

/// `flaky(fail_times, key)`: fails (retryably) `fail_times` times per `key`, then succeeds.
struct Flaky;

#[async_trait]
impl Task for Flaky {
    async fn run(
        &self,
        ctx: TaskContext,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, TaskError> {
        let times = arg(&args, &kwargs, 0, "fail_times")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let key = arg(&args, &kwargs, 1, "key")
            .and_then(Value::as_str)
            .unwrap_or(&ctx.id)
            .to_string();
        let n = match ctx.services() {
            Some(s) => s
                .incr(&key)
                .await
                .map_err(|e| TaskError::retry("ConnectionError", e))?,
            None => u64::from(ctx.retries) + 1,
        };
        if n <= times {
            return Err(TaskError::retry(
                "RuntimeError",
                format!("flaky failure {n} of {times}"),
            ));
        }
        Ok(json!({"attempts": n, "key": key}))
    }

    fn options(&self) -> TaskOptions {
        TaskOptions {
            retry: RetryPolicy {
                max_retries: Some(10),
                delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(2),
                jitter: false,
            },
            ..Default::default()
        }
    }
}

/// `cpu(seconds)`: a busy loop that never yields; runs in a child process so a hard limit kills it.
/// Returns the pid it ran in (shows child recycling).
struct Cpu;

#[async_trait]
impl Task for Cpu {
    async fn run(
        &self,
        _: TaskContext,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, TaskError> {
        let s = seconds(arg(&args, &kwargs, 0, "seconds"))?;
        let start = Instant::now();
        let mut x: u64 = 0;
        while start.elapsed().as_secs_f64() < s {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
            }
        }
        Ok(json!({"seconds": s, "spins": x % 1000, "pid": std::process::id()}))
    }

    fn options(&self) -> TaskOptions {
        TaskOptions {
            isolation: Isolation::Process,
            ..Default::default()
        }
    }
}
