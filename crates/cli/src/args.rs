//! Command-line surface, in Celery's vocabulary (`send`, `result`, `purge`, `worker -Q -c`, ...).

use std::collections::BTreeMap;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

mod worker;
pub use worker::WorkerArgs;

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
    /// Broker URL (redis://[user:password@]host[:port][/db], rediss:// for TLS, a Unix socket
    /// as unix:///path?db=N or kombu's redis+socket:///path?virtual_host=N, sentinel://[:password@]host:26379;sentinel://host2:26379/db with --sentinel-master, or
    /// RabbitMQ: amqp://user:password@host:5672/vhost, amqps:// for TLS, a cluster's nodes as
    /// amqp://node1/vhost;amqp://node2/vhost).
    #[arg(short = 'b', long, global = true, env = "REDIS_URL")]
    pub broker: Option<String>,
    /// Result backend URL (default: the broker URL; with an amqp:// broker, a Redis URL, default
    /// redis://127.0.0.1:6379/0).
    #[arg(long, global = true, env = "HLBOT_RESULT_BACKEND")]
    pub result_backend: Option<String>,
    /// AMQP broker only: Celery's task_default_queue_type, `classic` (default) or `quorum`.
    #[arg(long, global = true, env = "HLBOT_QUEUE_TYPE")]
    pub queue_type: Option<String>,
    /// AMQP broker only: Celery's task_queue_max_priority, declared as `x-max-priority`.
    #[arg(long, global = true, env = "HLBOT_MAX_PRIORITY")]
    pub max_priority: Option<u8>,
    /// kombu `global_keyprefix` for every broker key and channel.
    #[arg(long, global = true, env = "HLBOT_KEY_PREFIX")]
    pub key_prefix: Option<String>,
    /// The result backend's `global_keyprefix` (Celery's result_backend_transport_options), for
    /// an app that prefixes broker and results differently; default: --key-prefix. An app that
    /// sets only broker_transport_options has unprefixed results: give --result-key-prefix ''.
    #[arg(long, global = true, env = "HLBOT_RESULT_KEY_PREFIX")]
    pub result_key_prefix: Option<String>,
    /// Seconds a delivered message may stay unacknowledged before any consumer restores it
    /// (kombu's visibility_timeout; default 3600).
    #[arg(long, global = true, env = "HLBOT_VISIBILITY_TIMEOUT")]
    pub visibility_timeout: Option<f64>,
    /// Messages larger than this many bytes are dead-lettered with a truncated copy (0: no
    /// limit; default 8 MiB).
    #[arg(long, global = true, env = "HLBOT_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Master name for a `sentinel://h1:26379;sentinel://h2:26379/0` broker or backend URL
    /// (kombu's `master_name` transport option).
    #[arg(long, global = true, env = "HLBOT_SENTINEL_MASTER")]
    pub sentinel_master: Option<String>,
    /// Celery's `result_chord_ordered` (result backend transport option): chord results in
    /// header order (true, default) or completion order (false). Every worker and client of a
    /// chord must agree.
    #[arg(long, global = true, env = "HLBOT_RESULT_CHORD_ORDERED")]
    pub result_chord_ordered: Option<bool>,
    /// Celery's `task_default_queue`: where tasks no route names go — `hlbot send` of such a
    /// name, and a worker's follow-ups (chain steps, callbacks) without a queue. Unset: hlbot's
    /// `default` for sends, the sending task's own queue for follow-ups.
    #[arg(long, global = true, env = "HLBOT_TASK_DEFAULT_QUEUE")]
    pub task_default_queue: Option<String>,
    /// Celery's `task_serializer`: the body format of the messages hlbot publishes (`hlbot
    /// send`, beat): `json` (default), `pickle`, `msgpack` or `yaml`. A worker writes the
    /// chain steps, callbacks and chord bodies a task sends in the format of that task's message.
    #[arg(long, global = true, env = "HLBOT_TASK_SERIALIZER")]
    pub task_serializer: Option<String>,
    /// Celery's `result_serializer`: results and chord entries are stored as `json`
    /// (default), `pickle`, `msgpack` or `yaml`, as the app's clients read them. Results are
    /// read in whichever of these they were stored.
    #[arg(long, global = true, env = "HLBOT_RESULT_SERIALIZER")]
    pub result_serializer: Option<String>,
    /// Celery's `accept_content`: the message formats a worker runs, comma-separated names or
    /// content types (default `json`, as Celery). Others are dead-lettered with the reason.
    #[arg(
        long,
        global = true,
        env = "HLBOT_ACCEPT_CONTENT",
        value_delimiter = ','
    )]
    pub accept_content: Option<Vec<String>>,
    /// Configuration file (TOML). Default: the first of ./hlbot.toml,
    /// $XDG_CONFIG_HOME/hlbot/config.toml (~/.config/hlbot/config.toml), /etc/hlbot/config.toml.
    #[arg(long, global = true, env = "HLBOT_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// PostgreSQL URL of the research library and task history (postgresql://user:pw@host/db;
    /// default: an SQLite file in the data directory). The password is never printed.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where hlbot keeps its SQLite library (default: $XDG_DATA_HOME/hlbot or
    /// ~/.local/share/hlbot).
    #[arg(long, global = true, env = "HLBOT_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Logging level: DEBUG, INFO, WARNING, ERROR (default: INFO for worker and beat, WARNING
    /// otherwise).
    #[arg(short = 'l', long = "loglevel", global = true, env = "HLBOT_LOGLEVEL")]
    pub loglevel: Option<String>,
    /// Log lines as `human` text (default) or `json`: one object per line with timestamp,
    /// level, target, message and the event's fields (task_id, task_name on task lines).
    #[arg(long, global = true, env = "HLBOT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

/// Parse the command line; also where each global option given came from, by its id
/// (`broker` → `flag:--broker` or `env:REDIS_URL`), for `hlbot config show`.
pub fn parse() -> (Cli, BTreeMap<String, String>) {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, origins(&matches))
}

fn origins(m: &ArgMatches) -> BTreeMap<String, String> {
    let cmd = Cli::command();
    let mut out = BTreeMap::new();
    for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
        let id = arg.get_id().as_str();
        let source = match m.value_source(id) {
            Some(ValueSource::CommandLine) => arg.get_long().map(|l| format!("flag:--{l}")),
            Some(ValueSource::EnvVariable) => arg
                .get_env()
                .map(|e| format!("env:{}", e.to_string_lossy())),
            _ => None,
        };
        if let Some(s) = source {
            out.insert(id.to_string(), s);
        }
    }
    out
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
    /// Start a worker.
    Worker(WorkerArgs),
    /// Run a registered task in this process, without a broker (Celery's apply()).
    Call(CallArgs),
    /// Dead-lettered messages: list them, put them back on their queues, or delete them.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Internal: serve tasks for a worker over stdin/stdout (process isolation).
    #[command(hide = true)]
    WorkerChild,
    /// Internal: the PDFium child process.
    #[command(hide = true)]
    PdfChild,
    /// The main job: a PDF, YouTube URL, chart image or caption/text file → a trading strategy.
    Ingest(IngestArgs),
    /// The research library: every ingested source and its strategies (list, show, search,
    /// export).
    #[command(subcommand)]
    Library(LibraryCommand),
    /// Task runs kept in the database: newest first, filtered by state, task name, age.
    History(HistoryArgs),
    /// The library database's schema: migrate (apply pending migrations), status.
    #[command(subcommand)]
    Db(DbCommand),
    /// Print the clean transcript of a caption file (WebVTT, SRT, TTML/DFXP, SBV, SSA/ASS, YouTube
    /// json3/srv1/srv2/srv3).
    Captions(CaptionsArgs),
    /// Ask workers (hlbot or Python): ping, active, reserved, scheduled, revoked, registered,
    /// stats, active_queues, conf, report, query_task ID..., clock.
    Inspect(ControlArgs),
    /// Steer workers: revoke ID... [--terminate], terminate SIG ID..., rate_limit TASK RATE,
    /// time_limit TASK SOFT [HARD], add_consumer Q, cancel_consumer Q, pool_grow [N],
    /// pool_shrink [N], autoscale MAX MIN, enable_events, disable_events, heartbeat, shutdown.
    Control(ControlArgs),
    /// Send periodic tasks from the `[[beat.entries]]` of the config (highly available: run
    /// several, exactly one sends each tick).
    Beat(BeatArgs),
    /// Queue lengths (per priority), unacknowledged and ETA-held messages, dead letters and
    /// consumers, per queue.
    Queues(QueuesArgs),
    /// The tasks this binary registers, their arguments and queues (no worker needed).
    Tasks(TasksArgs),
    /// Print a shell completion script: `hlbot completions bash > /etc/bash_completion.d/hlbot`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `hlbot man > hlbot.1 && man ./hlbot.1`.
    Man,
    /// Check the deployment: Redis (reachable, version, persistence, maxmemory policy,
    /// Sentinel), the database, yt-dlp, ffmpeg, tesseract and its languages, PDFium, input roots,
    /// cache and data folders, LLM keys. One line per check with the fix; exit 1 on a FAIL.
    Doctor(DoctorArgs),
    /// The effective configuration: `hlbot config show` prints every key with its value and
    /// where it came from (default, file, environment, flag), secrets masked.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Ask a worker's health endpoint (`worker --health-address`); exit 0 when healthy, 1 when
    /// not. For a container HEALTHCHECK.
    Health(HealthArgs),
    /// Web dashboard (Flower's job, with persistent history, the library and LLM costs) and a
    /// fleet-wide Prometheus `/metrics`. Off loopback a login is required.
    Dashboard(DashboardArgs),
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to listen on; any non-loopback address requires a login.
    #[arg(long, env = "HLBOT_DASHBOARD_ADDRESS", default_value = "127.0.0.1")]
    pub address: String,
    #[arg(long, env = "HLBOT_DASHBOARD_PORT", default_value_t = 5555)]
    pub port: u16,
    /// Login token (at least 16 characters).
    #[arg(long, env = "HLBOT_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Tasks kept in the live window (older ones come from the history).
    #[arg(long, default_value_t = 10_000)]
    pub max_tasks: usize,
    /// Read a password on standard input, print its argon2 hash for `[dashboard]
    /// password_hash`, and exit.
    #[arg(long)]
    pub hash_password: bool,
}

#[derive(Debug, Args)]
pub struct QueuesArgs {
    /// Comma-separated queues (default: the configured ones, plus any with unacked or dead
    /// messages).
    #[arg(short = 'Q', long, value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Seconds to wait for workers to say which queues they consume.
    #[arg(short = 't', long, default_value_t = 1.0)]
    pub timeout: f64,
    /// One JSON object per queue.
    #[arg(short = 'j', long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    /// One JSON object per task.
    #[arg(short = 'j', long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Comma-separated queues this host's workers consume: only the tools their tasks need are
    /// checked (pdf: pdfium, tesseract; youtube: yt-dlp, ffmpeg). Default: every tool.
    #[arg(short = 'Q', long, value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Also make one cheap authenticated call to the LLM provider (its model list) to check
    /// the key.
    #[arg(long)]
    pub online: bool,
    /// One JSON object per check.
    #[arg(short = 'j', long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every configuration key with its effective value and source, secrets masked.
    Show {
        /// One JSON object per key.
        #[arg(short = 'j', long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The worker's `--health-address`.
    #[arg(long, env = "HLBOT_HEALTH_ADDRESS", default_value = "127.0.0.1:8001")]
    pub address: String,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Command name (Celery's).
    pub method: String,
    /// The command's arguments, in Celery's order.
    pub args: Vec<String>,
    /// Comma-separated node names to ask (default: all).
    #[arg(short = 'd', long, value_delimiter = ',')]
    pub destination: Vec<String>,
    /// Seconds to wait for the next reply.
    #[arg(short = 't', long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Print the replies as one JSON object.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// revoke: also stop the task if it is running.
    #[arg(long)]
    pub terminate: bool,
    /// revoke --terminate: signal name (SIGTERM, SIGKILL, ...).
    #[arg(short = 's', long)]
    pub signal: Option<String>,
}

#[derive(Debug, Args)]
pub struct BeatArgs {
    /// Seconds a leader lease lasts (a dead leader is replaced within this time).
    #[arg(long)]
    pub lease: Option<f64>,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Task name.
    pub task: String,
    /// Positional arguments as a JSON list.
    #[arg(short = 'a', long, default_value = "[]")]
    pub args: String,
    /// Keyword arguments as a JSON object.
    #[arg(short = 'k', long, default_value = "{}")]
    pub kwargs: String,
}

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead letters, newest first.
    List {
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Put a dead letter (by task id) or all of them back on their queues.
    Replay {
        /// Task id to replay.
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Delete a dead letter (by task id) or all of them, for good.
    Delete {
        /// Task id to delete.
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct PeekArgs {
    /// Queue to look at (default: the default queue, `default`).
    #[arg(short = 'Q', long)]
    pub queue: Option<String>,
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
    /// Send a group: one task per element of this JSON list of argument lists (`--args` and
    /// `--task-id` are then not used). Prints the group id, then each task id.
    #[arg(long)]
    pub each: Option<String>,
    /// With --each: a chord — this task runs once every group task is done, with their results
    /// (a list, in --each order) as its first argument. Prints the callback's id.
    #[arg(long, requires = "each")]
    pub chord_callback: Option<String>,
    /// Further positional arguments of --chord-callback as a JSON list.
    #[arg(long, default_value = "[]", requires = "chord_callback")]
    pub callback_args: String,
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

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// A PDF, a YouTube URL (a video, or a playlist or channel: each of its videos), a video or
    /// audio file, an image (PNG/JPEG/WebP/GIF), a caption file
    /// (.vtt/.srt/.ttml/.dfxp/.sbv/.ass/.ssa/.json3/.srv1-3) or a .txt/.md file.
    pub source: String,
    /// Model: claude-*, openai:MODEL, ollama:MODEL or rules (default: claude-sonnet-4, or rules
    /// when no API key is set).
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// Print the whole result as JSON.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Don't extract video frames.
    #[arg(long)]
    pub no_frames: bool,
    /// Don't read the charts found among a PDF's images or a video's frames.
    #[arg(long)]
    pub no_charts: bool,
    /// Send the pipeline to the workers through Redis (a Celery chain) and wait for it.
    #[arg(long)]
    pub queue: bool,
    /// Process the source again even if the library already holds it.
    #[arg(long)]
    pub force: bool,
    /// Don't store this run in the library.
    #[arg(long)]
    pub no_library: bool,
    /// Seconds to wait with --queue.
    #[arg(short = 't', long, default_value_t = 3600.0)]
    pub timeout: f64,
    /// A playlist or channel URL: ingest at most this many of its videos (default: all).
    #[arg(long)]
    pub max_videos: Option<usize>,
}

#[derive(Debug, Args)]
pub struct CaptionsArgs {
    /// Caption file.
    pub file: std::path::PathBuf,
    /// Print segments (start, end, text) as JSON instead of the text.
    #[arg(short = 'j', long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum LibraryCommand {
    /// Sources, newest first, with their strategy count and LLM cost.
    List {
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: i64,
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// One source (id or content key: video id, file SHA-256) with its transcript, pages,
    /// frames, strategies, analyses and cost.
    Show {
        source: String,
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Strategies by full text ("rsi divergence": every word, stemmed) and filters.
    Search {
        #[arg(default_value = "")]
        text: String,
        #[arg(long)]
        instrument: Option<String>,
        #[arg(long)]
        timeframe: Option<String>,
        #[arg(long)]
        indicator: Option<String>,
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: i64,
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Every strategy with its source, as json, csv or md (to stdout or --output).
    Export {
        #[arg(short = 'f', long, default_value = "json")]
        format: String,
        #[arg(short = 'o', long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only runs in this state (SUCCESS, FAILURE, RETRY, REVOKED, STARTED, RECEIVED).
    #[arg(long)]
    pub state: Option<String>,
    /// Only runs of this task name.
    #[arg(long)]
    pub task: Option<String>,
    /// Only runs updated within this span (30m, 2h, 1d, 1w).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(short = 'n', long, default_value_t = 50)]
    pub limit: i64,
    #[arg(short = 'j', long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations (also done at every start).
    Migrate,
    /// Which migrations are applied and pending.
    Status {
        #[arg(short = 'j', long)]
        json: bool,
    },
}
