//! Run a registered task in this process, without a broker (Celery's `apply()`): `hlbot call`.

use std::sync::Arc;

use hlbot_proto::ExceptionInfo;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::task::{ProgressSink, TaskContext, TaskError};
use crate::worker::limits::{Ended, run_in_process};

/// Run `name` now and return its value or its error. Retry requests are returned as errors (there
/// is no broker to retry through); the task's own time limits apply.
pub async fn apply(
    registry: &Registry,
    name: &str,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    progress: Option<Arc<dyn ProgressSink>>,
    cancel: CancellationToken,
) -> Result<Value, TaskError> {
    let task = registry.get(name).ok_or_else(|| TaskError::Fail {
        exc: ExceptionInfo::not_registered(name),
        traceback: None,
    })?;
    let opts = task.options();
    let id = uuid::Uuid::new_v4().to_string();
    let mut ctx = TaskContext::new(
        &id,
        name,
        0,
        &crate::client::hostname(),
        CancellationToken::new(),
    );
    if let Some(p) = progress {
        ctx = ctx.with_progress(p);
    }
    match run_in_process(
        task,
        ctx,
        args,
        kwargs,
        opts.soft_time_limit,
        opts.time_limit,
        cancel,
    )
    .await
    {
        Ended::Done(r) => r,
        Ended::HardLimit(s) => Err(TaskError::Fail {
            exc: ExceptionInfo::time_limit(s),
            traceback: None,
        }),
        Ended::Terminated => Err(TaskError::fail("KeyboardInterrupt", "interrupted")),
        Ended::WorkerLost(w) => Err(TaskError::fail("WorkerLostError", w)),
        Ended::MemoryLimit(k) => Err(TaskError::fail("MemoryLimitExceeded", format!("{k} KiB"))),
    }
}
