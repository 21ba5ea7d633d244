//! The worker's settings (Celery's worker options) and their defaults.

use std::time::Duration;

use super::child::ChildOptions;

/// Worker settings (Celery's worker options).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Node name, `name@host`.
    pub node_name: String,
    pub queues: Vec<String>,
    pub concurrency: usize,
    pub prefetch_multiplier: usize,
    /// Ack after the task instead of when it starts (per-task setting wins).
    pub acks_late: bool,
    /// With acks_late: requeue instead of failing when the process running a task dies.
    pub reject_on_worker_lost: bool,
    pub soft_time_limit: Option<Duration>,
    pub time_limit: Option<Duration>,
    /// Store STARTED when a task starts.
    pub track_started: bool,
    /// Celery's `result_extended`: results also carry the task's name, args, kwargs, worker,
    /// retries and queue (`AsyncResult.name`, `.args`, … in Python).
    pub result_extended: bool,
    /// Celery's `accept_content`: the body formats this worker reads (default JSON only, as
    /// Celery's); a message in another is dead-lettered with the content type named.
    pub accept_content: Vec<hlbot_proto::Serializer>,
    /// Send task events from the start (`-E`).
    pub task_events: bool,
    /// How to start child processes for `Isolation::Process` tasks (None: run them in-process).
    pub child: Option<ChildOptions>,
    /// Warm shutdown waits this long for running tasks before stopping them.
    pub shutdown_timeout: Duration,
    /// Count committed runs per task id in `hlbot.runs.<id>` (tests, crash drills).
    pub count_runs: bool,
    /// Worker heartbeat interval (Celery: 2 s).
    pub heartbeat: Duration,
    /// Where writes that could not reach Redis at exit are saved, and replayed from at start.
    pub spill_file: Option<std::path::PathBuf>,
    /// How long this worker's liveness key lasts without a refresh: after a crash, survivors
    /// give back its in-flight messages within about this time.
    pub inflight_lease: Duration,
    /// A worker whose liveness key stays gone this long (at two looks this far apart) has
    /// died: survivors give back every message it held unacked (reserved, ETA-held, running
    /// `acks_late`) without waiting for the visibility timeout. A worker frozen longer than this
    /// (`SIGSTOP`, a suspended VM) finds its messages given back and may run one twice, as after
    /// the visibility timeout. `None`: only the visibility timeout (Celery's behaviour).
    pub reclaim_after: Option<Duration>,
    /// Where task-run facts go (the store's task history); None: nowhere.
    pub runlog: Option<std::sync::Arc<dyn crate::runlog::RunLog>>,
}

/// The most concurrency slots a worker takes (config, `-c`, `pool_grow`, `autoscale`).
pub const MAX_CONCURRENCY: usize = 10_000;

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            node_name: format!("celery@{}", crate::client::hostname()),
            queues: vec!["celery".into()],
            concurrency: 2,
            prefetch_multiplier: 1,
            acks_late: false,
            reject_on_worker_lost: true,
            soft_time_limit: Some(Duration::from_secs(30 * 60)),
            time_limit: Some(Duration::from_secs(40 * 60)),
            track_started: true,
            result_extended: false,
            accept_content: vec![hlbot_proto::Serializer::Json],
            task_events: false,
            child: None,
            shutdown_timeout: Duration::from_secs(60),
            count_runs: false,
            heartbeat: Duration::from_secs(2),
            spill_file: None,
            inflight_lease: Duration::from_secs(10),
            reclaim_after: Some(Duration::from_secs(60)),
            runlog: None,
        }
    }
}
