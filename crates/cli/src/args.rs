//! Command-line surface, in Celery's vocabulary (`send`, `result`, `purge`, `worker -Q -c`, ...).

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hlbot",
    version,
    about = "hlbot: a Celery-compatible task system in Rust (Redis broker, Celery protocol v2).",
    long_about = "hlbot runs Celery tasks: it reads and writes Celery's wire format on Redis, so Python \
apps, `celery inspect`/`control` and Flower work with hlbot workers unchanged.\n\n\
Broker: --broker, else $REDIS_URL, else redis://127.0.0.1:6379/0. Result backend likewise."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Broker URL (redis://[user:password@]host[:port][/db], rediss:// for TLS).
    #[arg(short = 'b', long, global = true, env = "REDIS_URL")]
    pub broker: Option<String>,
    /// Result backend URL (default: the broker URL).
    #[arg(long, global = true, env = "HLBOT_RESULT_BACKEND")]
    pub result_backend: Option<String>,
    /// kombu `global_keyprefix` for every broker key and channel.
    #[arg(long, global = true, env = "HLBOT_KEY_PREFIX")]
    pub key_prefix: Option<String>,
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "HLBOT_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Logging level: DEBUG, INFO, WARNING, ERROR.
    #[arg(short = 'l', long = "loglevel", global = true, default_value = "warn")]
    pub loglevel: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a task by name; prints its id (with --wait, its result as JSON on the last line).
    Send(SendArgs),
    /// Show a task's result (with --wait, wait for it).
    Result(ResultArgs),
    /// Remove all messages from queues.
    Purge(PurgeArgs),
    /// Show queued messages decoded, without consuming them (JSON lines).
    Peek(PeekArgs),
}

#[derive(Debug, Args)]
pub struct PeekArgs {
    /// Queue to look at.
    #[arg(short = 'Q', long, default_value = "celery")]
    pub queue: String,
    /// At most this many messages, next-to-run first.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Task name, e.g. process_pdf_document or app.workers.tasks.process_pdf_document.
    pub task: String,
    /// Positional arguments as a JSON list.
    #[arg(short = 'a', long, default_value = "[]")]
    pub args: String,
    /// Keyword arguments as a JSON object.
    #[arg(short = 'k', long, default_value = "{}")]
    pub kwargs: String,
    /// Queue (default: from the routes).
    #[arg(short = 'Q', long)]
    pub queue: Option<String>,
    /// Seconds to wait before running.
    #[arg(long)]
    pub countdown: Option<f64>,
    /// Earliest run time (ISO 8601).
    #[arg(long)]
    pub eta: Option<String>,
    /// Priority 0-9 (0 is served first on Redis).
    #[arg(long)]
    pub priority: Option<u8>,
    /// Seconds after which the task is revoked instead of run.
    #[arg(long)]
    pub expires: Option<f64>,
    /// Task id to use (default: a new uuid4).
    #[arg(long)]
    pub task_id: Option<String>,
    /// Wait for the result and print it.
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(short = 't', long, default_value_t = 60.0)]
    pub timeout: f64,
}

#[derive(Debug, Args)]
pub struct ResultArgs {
    /// Task id.
    pub id: String,
    /// Wait until the task is done.
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(short = 't', long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Print the whole stored meta instead of the value.
    #[arg(long)]
    pub meta: bool,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Comma-separated queues (default: every configured queue).
    #[arg(short = 'Q', long, value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Don't ask for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
}
