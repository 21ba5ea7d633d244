//! What a task is: one async `run`, options with Celery's defaults, a context, a small outcome type.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hlbot_proto::ExceptionInfo;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// A task implementation. Only `run` is required; `options` defaults to Celery's defaults.
#[async_trait]
pub trait Task: Send + Sync + 'static {
    async fn run(
        &self,
        ctx: TaskContext,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, TaskError>;

    fn options(&self) -> TaskOptions {
        TaskOptions::default()
    }

    /// The task's parameter names in positional order, when it declares them (a [`TypedTask`]
    /// does: its input struct's fields). Shown by `hlbot tasks`.
    ///
    /// [`TypedTask`]: crate::typed::TypedTask
    fn arguments(&self) -> Option<&'static [&'static str]> {
        None
    }
}

/// Where a task's code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// In the worker process, as an async task: cheapest; a hard limit aborts it at its next await.
    #[default]
    InProcess,
    /// In a child process of the worker: a hard limit, revoke-terminate or memory cap kills it for
    /// sure, even inside native code or a busy loop.
    Process,
}

/// Per-task options (Celery's task attributes).
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// The queue this task is routed to when the caller names none (`Router::from_registry`);
    /// None: the default queue.
    pub queue: Option<String>,
    pub retry: RetryPolicy,
    pub soft_time_limit: Option<Duration>,
    pub time_limit: Option<Duration>,
    /// None: the worker's setting.
    pub acks_late: Option<bool>,
    pub isolation: Isolation,
    pub ignore_result: bool,
}

pub use crate::worker::retry::RetryPolicy;

/// How a run ended when it did not succeed.
#[derive(Debug, Clone)]
pub enum TaskError {
    /// Try again later (after `after`, or the policy's backoff), unless retries are used up.
    Retry {
        exc: ExceptionInfo,
        after: Option<Duration>,
    },
    /// Remove the message without running it again; `requeue` puts it back instead.
    Reject { exc: ExceptionInfo, requeue: bool },
    /// A final failure: stored as FAILURE with the exception.
    Fail {
        exc: ExceptionInfo,
        traceback: Option<String>,
    },
}

impl TaskError {
    /// A final failure with a builtin-looking Python exception type (`ValueError`, `RuntimeError`).
    pub fn fail(exc_type: &str, message: impl Into<String>) -> Self {
        TaskError::Fail {
            exc: ExceptionInfo::builtin(exc_type, &message.into()),
            traceback: None,
        }
    }
    /// A retryable error (backoff from the task's policy).
    pub fn retry(exc_type: &str, message: impl Into<String>) -> Self {
        TaskError::Retry {
            exc: ExceptionInfo::builtin(exc_type, &message.into()),
            after: None,
        }
    }
    /// Celery's `Ignore` (raised after `self.replace(...)`): nothing is stored for this run —
    /// its id now belongs to the replacement, which stores the result — and the message is acked.
    pub fn ignore(reason: &str) -> Self {
        TaskError::Reject {
            exc: ExceptionInfo::new("Ignore", "celery.exceptions", vec![json!(reason)]),
            requeue: false,
        }
    }
    /// This is [`TaskError::ignore`].
    pub fn is_ignore(&self) -> bool {
        matches!(self, TaskError::Reject { exc, requeue: false } if exc.exc_type == "Ignore" && exc.exc_module == "celery.exceptions")
    }
    pub fn retryable(&self) -> bool {
        matches!(self, TaskError::Retry { .. })
    }
    pub fn fatal(&self) -> bool {
        matches!(
            self,
            TaskError::Fail { .. } | TaskError::Reject { requeue: false, .. }
        )
    }
    pub fn exception(&self) -> &ExceptionInfo {
        match self {
            TaskError::Retry { exc, .. }
            | TaskError::Reject { exc, .. }
            | TaskError::Fail { exc, .. } => exc,
        }
    }
}

/// Receives PROGRESS updates (the worker stores them; `hlbot call` draws a progress bar).
pub trait ProgressSink: Send + Sync {
    fn progress(&self, task_id: &str, state: &str, meta: Value);
}

/// Shared services a task may use: sending subtasks, a counter store.
#[async_trait]
pub trait Services: Send + Sync {
    /// Send another task (playlists fan out into per-video tasks); returns its id.
    async fn send(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<String, String>;
    /// Wait for a task's result value (Err: the exception text).
    async fn wait(&self, id: &str, timeout: Duration) -> Result<Value, String>;
    /// Increment a named counter and return the new value.
    async fn incr(&self, key: &str) -> Result<u64, String>;
    /// Send a chord: `header` tasks `(name, kwargs)`, then `body` once all are done, with their
    /// results prepended, under id `body_id` (a task that replaces itself passes its own id).
    /// `partial`: the body also runs when parts failed, each part then given as `{"id",
    /// "state", "result"}` (an hlbot option; Python workers completing it raise ChordError).
    /// `progress`: each finished part stores PROGRESS `{"done", "total"}` on `body_id`.
    async fn send_chord(&self, chord: ChordSpec) -> Result<String, String>;
}

/// A chord a task sends through [`Services::send_chord`].
#[derive(Debug, Clone)]
pub struct ChordSpec {
    pub header: Vec<(String, Map<String, Value>)>,
    pub body: String,
    pub body_args: Vec<Value>,
    pub body_id: String,
    pub partial: bool,
    pub progress: bool,
}

/// What a running task knows about itself.
#[derive(Clone)]
pub struct TaskContext {
    pub id: String,
    pub name: String,
    pub retries: u32,
    pub hostname: String,
    /// Cancelled at the soft time limit, on revoke(terminate) and on cold shutdown.
    pub cancel: CancellationToken,
    progress: Option<Arc<dyn ProgressSink>>,
    services: Option<Arc<dyn Services>>,
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl TaskContext {
    pub fn new(
        id: &str,
        name: &str,
        retries: u32,
        hostname: &str,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            retries,
            hostname: hostname.into(),
            cancel,
            progress: None,
            services: None,
        }
    }

    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = Some(sink);
        self
    }

    pub fn with_services(mut self, services: Arc<dyn Services>) -> Self {
        self.services = Some(services);
        self
    }

    /// Report progress: stored as a `PROGRESS` state with `meta` (Celery's `update_state`).
    pub fn progress(&self, meta: Value) {
        self.update_state("PROGRESS", meta);
    }

    /// Store a custom state with `meta`.
    pub fn update_state(&self, state: &str, meta: Value) {
        if let Some(p) = &self.progress {
            p.progress(&self.id, state, meta);
        }
    }

    /// Broker services (None under `hlbot call`, which runs without Redis).
    pub fn services(&self) -> Option<&Arc<dyn Services>> {
        self.services.as_ref()
    }

    /// `Err(TaskError)` once the soft limit / revoke has cancelled this task: `?` it in loops.
    pub fn check_cancelled(&self) -> Result<(), TaskError> {
        if self.cancel.is_cancelled() {
            return Err(soft_limit_error());
        }
        Ok(())
    }
}

/// Celery's `SoftTimeLimitExceeded()`.
pub fn soft_limit_error() -> TaskError {
    TaskError::Fail {
        exc: ExceptionInfo::new("SoftTimeLimitExceeded", "billiard.exceptions", vec![]),
        traceback: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_like_the_seed() {
        let p = RetryPolicy {
            jitter: false,
            ..Default::default()
        };
        let got: Vec<u64> = (0..5).map(|n| p.countdown(n).as_secs()).collect();
        assert_eq!(got, vec![60, 120, 240, 480, 600]);
        let j = RetryPolicy::default();
        assert!((0..50).all(|_| j.countdown(2) <= Duration::from_secs(240)));
    }
}
