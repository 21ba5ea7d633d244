//! `hlbot worker`'s flags (Celery's `worker -Q -c --prefetch-multiplier …` and hlbot's own).

use clap::Args;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Comma-separated queues to consume (default: default,youtube,pdf,llm,celery).
    #[arg(short = 'Q', long, value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Number of tasks run at once.
    #[arg(short = 'c', long, default_value_t = 2)]
    pub concurrency: usize,
    /// Node name; %h is replaced by the host name.
    #[arg(short = 'n', long, default_value = "celery@%h")]
    pub hostname: String,
    /// Messages reserved per concurrency slot.
    #[arg(long, default_value_t = 1)]
    pub prefetch_multiplier: usize,
    /// Recycle a task child process after this many tasks.
    #[arg(long)]
    pub max_tasks_per_child: Option<u32>,
    /// Kill a task child process above this resident memory (KiB): MemoryLimitExceeded.
    #[arg(long)]
    pub max_memory_per_child: Option<u64>,
    /// Soft time limit in seconds (the task is asked to stop).
    #[arg(long, default_value_t = 1800.0)]
    pub soft_time_limit: f64,
    /// Hard time limit in seconds (the task is stopped for sure).
    #[arg(long, default_value_t = 2400.0)]
    pub time_limit: f64,
    /// Send task events (for Flower / celery events).
    #[arg(short = 'E', long = "task-events")]
    pub task_events: bool,
    /// Ack messages after the task ran instead of when it starts.
    #[arg(long)]
    pub acks_late: bool,
    /// Celery's result_extended: stored results also carry the task's name, args, kwargs,
    /// worker, retries and queue (Python's AsyncResult.name, .args, …). Also `result_extended =
    /// true` in the config.
    #[arg(long)]
    pub result_extended: bool,
    /// Seconds a warm shutdown waits for running tasks; those still running then go back to
    /// the head of their queue (acked early or late) and run again elsewhere. The default fits
    /// the 30 s grace period of Kubernetes and systemd's TimeoutStopSec in deploy/.
    #[arg(long, default_value_t = 25.0)]
    pub shutdown_timeout: f64,
    /// Seconds a worker's liveness key must stay gone before the survivors give back every
    /// message it held unacked (reserved, ETA-held, running acks_late) — instead of waiting for
    /// the visibility timeout. 0: only the visibility timeout, as in Celery.
    #[arg(long, default_value_t = 60.0)]
    pub reclaim_after: f64,
    /// Count committed runs per task id in Redis (crash drills, tests).
    #[arg(long, hide = true)]
    pub count_runs: bool,
    /// Serve `GET /healthz` here (e.g. 127.0.0.1:8001): 200 while consuming with a live
    /// heartbeat, 503 otherwise. For container health checks and load balancers.
    #[arg(long, env = "HLBOT_HEALTH_ADDRESS")]
    pub health_address: Option<String>,
    /// Serve `/metrics` (Prometheus, this worker's task counters and runtimes; turns task
    /// events on), `/healthz` and `/readyz` on this port, all interfaces.
    #[arg(long, env = "HLBOT_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// Refuse to start when a tool the queues' tasks need is missing (pdfium, yt-dlp,
    /// tesseract languages) instead of warning.
    #[arg(long)]
    pub strict: bool,
    /// Also run beat in this process (periodic tasks from the config).
    #[arg(short = 'B', long)]
    pub beat: bool,
    /// Threads of the worker's event loop. In-process tasks are async (like Celery's gevent
    /// pool) and CPU-heavy work runs in child processes or the blocking pool, so one thread is
    /// fastest: no cross-thread wake-ups between fetch, run and write. Raise it for in-process
    /// tasks that compute between awaits.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Don't record task runs in the database (the library is still used by the tasks).
    #[arg(long)]
    pub no_history: bool,
}
