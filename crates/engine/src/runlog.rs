//! The task-run hook: the worker reports each task's state changes (received, started,
//! succeeded, failed, retried, revoked) to a [`RunLog`] the caller passes in. The engine knows
//! nothing of where they go; the store crate implements it. Owns the fact type, not its storage.

use hlbot_proto::message::TaskMessage;

/// A task's state as the run log sees it (Celery's state names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Received,
    Started,
    Succeeded,
    Failed,
    Retried,
    Revoked,
}

impl RunState {
    /// Celery's state name (`RECEIVED`, `STARTED`, `SUCCESS`, `FAILURE`, `RETRY`, `REVOKED`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Received => "RECEIVED",
            RunState::Started => "STARTED",
            RunState::Succeeded => "SUCCESS",
            RunState::Failed => "FAILURE",
            RunState::Retried => "RETRY",
            RunState::Revoked => "REVOKED",
        }
    }

    /// Whether no later state follows (for this delivery).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Revoked
        )
    }
}

/// One state change of one task run. Argument summaries are Celery's `argsrepr`/`kwargsrepr`
/// as sent (on `Received` only); the store caps and scrubs them before writing.
#[derive(Debug, Clone)]
pub struct RunFact {
    pub task_id: String,
    pub state: RunState,
    /// Unix time in seconds.
    pub at: f64,
    pub name: String,
    pub queue: String,
    pub worker: String,
    pub retries: u32,
    pub parent_id: Option<String>,
    pub root_id: Option<String>,
    pub args: Option<String>,
    pub kwargs: Option<String>,
    /// Seconds the task ran (final states after a run).
    pub runtime: Option<f64>,
    /// Exception type and message (FAILURE, RETRY, REVOKED).
    pub error_type: Option<String>,
    pub error_message: Option<String>,
}

impl RunFact {
    /// A fact for `msg` in `state` now, without runtime or error.
    pub fn new(msg: &TaskMessage, state: RunState, worker: &str) -> Self {
        let h = &msg.headers;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        RunFact {
            task_id: msg.id().to_string(),
            state,
            at: now,
            name: h.display_name().to_string(),
            queue: msg.queue().to_string(),
            worker: worker.to_string(),
            retries: h.retries,
            parent_id: h.parent_id.clone(),
            root_id: h.root_id.clone(),
            // The summaries once per delivery (the store keeps them across later states).
            args: h.argsrepr.clone().filter(|_| state == RunState::Received),
            kwargs: h.kwargsrepr.clone().filter(|_| state == RunState::Received),
            runtime: None,
            error_type: None,
            error_message: None,
        }
    }
}

/// Where the worker reports task-run facts. `record` is called on the worker's hot path: it
/// must not block or wait on I/O (queue the fact and return); losing a fact never fails a task.
pub trait RunLog: Send + Sync + std::fmt::Debug {
    fn record(&self, fact: RunFact);
}
