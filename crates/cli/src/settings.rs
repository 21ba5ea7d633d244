//! Configuration, built once in two steps: raw (flags + env + TOML file) → validated `Settings`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hlbot_engine::{RedisSettings, Router};
use serde::Deserialize;

use crate::args::{Global, LogFormat};

pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379/0";
/// The seed's queues: the four work queues plus Celery's default.
pub const DEFAULT_QUEUES: [&str; 5] = ["default", "youtube", "pdf", "llm", "celery"];

/// The TOML file, as written by a user. Every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub broker_url: Option<String>,
    pub result_backend: Option<String>,
    /// Celery's `task_default_queue_type` for an AMQP broker: `classic` (default) or `quorum`.
    pub task_default_queue_type: Option<String>,
    /// Celery's `task_queue_max_priority` for an AMQP broker (`x-max-priority`).
    pub task_queue_max_priority: Option<u8>,
    pub key_prefix: Option<String>,
    /// The result backend's own prefix (default: `key_prefix`).
    pub result_key_prefix: Option<String>,
    pub result_expires: Option<u64>,
    pub visibility_timeout: Option<u64>,
    /// Master name behind a `sentinel://` URL (kombu's `master_name`).
    pub sentinel_master: Option<String>,
    /// Celery's `result_chord_ordered` (default true).
    pub result_chord_ordered: Option<bool>,
    /// Celery's `result_extended`: results carry name, args, kwargs, worker, retries, queue.
    pub result_extended: Option<bool>,
    /// Messages larger than this many bytes are dead-lettered (0: no limit).
    pub max_message_bytes: Option<usize>,
    /// Celery's `task_default_queue`: where tasks no route names go.
    pub task_default_queue: Option<String>,
    /// Celery's `task_serializer` for the messages hlbot publishes (`json`, `pickle`, …).
    pub task_serializer: Option<String>,
    /// Celery's `result_serializer` (`json`, `pickle`, `msgpack`, `yaml`).
    pub result_serializer: Option<String>,
    /// Celery's `accept_content`: names or content types a worker runs (default `["json"]`).
    pub accept_content: Option<Vec<String>>,
    /// kombu's transport options that name the Redis lists (`priority_steps`, `sep`).
    #[serde(default)]
    pub broker_transport_options: RawTransport,
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    #[serde(default)]
    pub queues: Vec<String>,
    /// Directories queued tasks may read files from (default: none — path arguments are refused).
    #[serde(default)]
    pub input_roots: Vec<std::path::PathBuf>,
    pub cache_dir: Option<std::path::PathBuf>,
    #[serde(default)]
    pub pdf: crate::domain::RawPdf,
    #[serde(default)]
    pub youtube: crate::domain::RawYoutube,
    #[serde(default)]
    pub llm: crate::domain::RawLlm,
    #[serde(default)]
    pub beat: RawBeat,
    /// `[dashboard]`: the login of `hlbot dashboard` off loopback.
    #[serde(default)]
    pub dashboard: RawDashboard,
    /// PostgreSQL URL of the library and task history (default: SQLite in `data_dir`).
    pub database_url: Option<String>,
    /// Where the SQLite library lives.
    pub data_dir: Option<std::path::PathBuf>,
    /// Days task runs are kept (0: forever; default 30).
    pub task_history_days: Option<u32>,
    /// `human` (default) or `json` log lines (`--log-format`, `HLBOT_LOG_FORMAT` win).
    pub log_format: Option<LogFormat>,
}

/// `[broker_transport_options]`: the two kombu options that change which lists a message is in.
/// A Python app that sets them (Celery's docs suggest `priority_steps = list(range(10))`, `sep =
/// ":"`) needs hlbot to set the same, or its prioritised messages wait in lists hlbot never reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransport {
    pub priority_steps: Option<Vec<u8>>,
    pub sep: Option<String>,
}

/// `[beat]`: leader lease and `[[beat.entries]]` (default: the seed's daily cache cleanups).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBeat {
    /// Seconds a leader lease lasts.
    pub lease: Option<f64>,
    pub entries: Option<Vec<hlbot_engine::beat::EntryConfig>>,
}

/// `[dashboard]`: a user and the argon2 hash of their password (`hlbot dashboard
/// --hash-password`); the token comes from `HLBOT_DASHBOARD_TOKEN` only.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDashboard {
    pub user: Option<String>,
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for RawDashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawDashboard")
            .field("user", &self.user)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Validated settings every command reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Redis broker — with an AMQP broker, the Redis of the result backend, which then also
    /// holds revocations, control replies and events.
    pub broker: RedisSettings,
    /// RabbitMQ as the broker (`amqp://`, `amqps://`): tasks are published and consumed there.
    pub amqp: Option<hlbot_engine::amqp::AmqpUrl>,
    /// How AMQP queues are declared (`task_default_queue_type`, `task_queue_max_priority`).
    pub amqp_layout: hlbot_engine::amqp::Layout,
    pub backend: RedisSettings,
    pub result_expires: Option<Duration>,
    pub result_extended: bool,
    /// Celery's `accept_content`: the message formats a worker runs.
    pub accept_content: Vec<hlbot_proto::Serializer>,
    pub visibility_timeout: Duration,
    pub max_message_bytes: usize,
    pub router: Router,
    pub queues: Vec<String>,
    /// The config file, passed on to task child processes.
    pub config_path: Option<std::path::PathBuf>,
    /// PDF / YouTube / LLM / input-root sections, turned into task settings on demand.
    pub domain: crate::domain::RawDomain,
    pub beat: RawBeat,
    pub dashboard: RawDashboard,
    /// The research library and task history.
    pub store: hlbot_store::StoreConfig,
    pub log_format: LogFormat,
    /// The config file's own `[routes]` (the router also holds each task's default queue).
    pub config_routes: BTreeMap<String, String>,
    /// Where the values came from, for `hlbot config show`: the global options given, by
    /// clap id (`broker` → `flag:--broker` / `env:REDIS_URL`), and the dotted keys the config
    /// file sets (`pdf.languages`, `routes`, `beat.entries`).
    pub origins: BTreeMap<String, String>,
    pub file_keys: BTreeSet<String>,
    /// Warnings found while loading, logged once logging is set up (it depends on the result).
    pub warnings: Vec<String>,
}

impl Settings {
    /// The broker URL for banners and `config show`, the password masked.
    pub fn broker_display(&self) -> String {
        match &self.amqp {
            Some(a) => a.redacted(),
            None => crate::cmd::config::mask_url(&self.broker.display_url()),
        }
    }

    pub fn load(g: &Global, origins: BTreeMap<String, String>) -> anyhow::Result<Self> {
        let config_path = g.config.clone().or_else(default_config);
        let (raw, file_keys) = match &config_path {
            Some(p) => read_config(p)?,
            None => (RawConfig::default(), BTreeSet::new()),
        };
        let broker_url = g
            .broker
            .clone()
            .or(raw.broker_url)
            .unwrap_or_else(|| DEFAULT_REDIS.into());
        let mut warnings = Vec::new();
        let amqp = if hlbot_engine::amqp::is_amqp(&broker_url) {
            Some(hlbot_engine::amqp::AmqpUrl::parse(&broker_url)?)
        } else {
            None
        };
        let backend_url = g
            .result_backend
            .clone()
            .or(raw.result_backend)
            .unwrap_or_else(|| {
                if amqp.is_some() {
                    warnings.push(format!(
                        "AMQP broker without a result backend: using {DEFAULT_REDIS} for results, \
                         revocations and control (give --result-backend redis://…)"
                    ));
                    DEFAULT_REDIS.into()
                } else {
                    broker_url.clone()
                }
            });
        if hlbot_engine::amqp::is_amqp(&backend_url) {
            anyhow::bail!(
                "the result backend must be Redis (redis://, rediss://, sentinel://), not AMQP"
            );
        }
        let amqp_layout = hlbot_engine::amqp::Layout {
            queue_type: match g.queue_type.clone().or(raw.task_default_queue_type) {
                Some(t) => t.parse().map_err(|e: String| anyhow::anyhow!(e))?,
                None => Default::default(),
            },
            max_priority: g
                .max_priority
                .or(raw.task_queue_max_priority)
                .filter(|p| *p > 0),
        };
        // With RabbitMQ as the broker, "the broker" below is the result backend's Redis.
        let broker_url = if amqp.is_some() {
            backend_url.clone()
        } else {
            broker_url
        };
        let prefix = g.key_prefix.clone().or(raw.key_prefix).unwrap_or_default();
        let result_prefix = g
            .result_key_prefix
            .clone()
            .or(raw.result_key_prefix)
            .unwrap_or_else(|| prefix.clone());
        let ordered = g
            .result_chord_ordered
            .or(raw.result_chord_ordered)
            .unwrap_or(true);
        let master = g.sentinel_master.clone().or(raw.sentinel_master);
        let mut broker = RedisSettings::new(&broker_url)?
            .with_prefix(&prefix)
            .with_result_prefix(&result_prefix)
            .with_sentinel_master(master.as_deref())?;
        let mut backend = if backend_url == broker_url {
            broker.clone()
        } else {
            RedisSettings::new(&backend_url)?
                .with_prefix(&prefix)
                .with_result_prefix(&result_prefix)
                .with_sentinel_master(master.as_deref())?
        };
        broker.chord_ordered = ordered;
        backend.chord_ordered = ordered;
        let result_serializer = match g.result_serializer.clone().or(raw.result_serializer) {
            None => hlbot_proto::Serializer::Json,
            Some(n) => serializer(&n, "result_serializer")?,
        };
        broker.result_serializer = result_serializer;
        backend.result_serializer = result_serializer;
        if let Some(n) = g.task_serializer.clone().or(raw.task_serializer) {
            broker.task_serializer = serializer(&n, "task_serializer")?;
        }
        let accept_content = match g.accept_content.clone().or(raw.accept_content) {
            None => vec![hlbot_proto::Serializer::Json],
            Some(names) => {
                let mut out = Vec::new();
                for n in names.iter().filter(|n| !n.trim().is_empty()) {
                    let s = serializer(n, "accept_content")?;
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
                if out.is_empty() {
                    anyhow::bail!("accept_content is empty: a worker would run nothing");
                }
                out
            }
        };
        let t = &raw.broker_transport_options;
        let layout =
            hlbot_engine::redis::keys::Layout::new(t.sep.as_deref(), t.priority_steps.as_deref())
                .map_err(|e| anyhow::anyhow!("config [broker_transport_options]: {e}"))?;
        broker.layout = layout.clone();
        backend.layout = layout;
        let queues = if raw.queues.is_empty() {
            DEFAULT_QUEUES.iter().map(|s| s.to_string()).collect()
        } else {
            raw.queues
        };
        let mut s = Self {
            broker,
            amqp,
            amqp_layout,
            backend,
            result_expires: match raw.result_expires {
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s)),
                None => Some(hlbot_engine::backend::DEFAULT_RESULT_EXPIRES),
            },
            result_extended: raw.result_extended.unwrap_or(false),
            accept_content,
            visibility_timeout: {
                let v = g
                    .visibility_timeout
                    .or(raw.visibility_timeout.map(|v| v as f64))
                    .unwrap_or(3600.0);
                if !v.is_finite() || v <= 0.0 {
                    anyhow::bail!(
                        "visibility timeout must be a positive number of seconds, not {v}"
                    );
                }
                hlbot_engine::worker::limits::secs(v.max(0.1)).unwrap_or(Duration::from_secs(3600))
            },
            max_message_bytes: g
                .max_message_bytes
                .or(raw.max_message_bytes)
                .unwrap_or(hlbot_engine::broker::DEFAULT_MAX_MESSAGE_BYTES),
            router: Router::default(),
            queues,
            config_path,
            domain: crate::domain::RawDomain {
                input_roots: raw.input_roots,
                cache_dir: raw.cache_dir,
                pdf: raw.pdf,
                youtube: raw.youtube,
                llm: raw.llm,
            },
            beat: raw.beat,
            dashboard: raw.dashboard,
            store: store_config(g, raw.database_url, raw.data_dir, raw.task_history_days),
            log_format: g.log_format.or(raw.log_format).unwrap_or(LogFormat::Human),
            config_routes: raw.routes.clone(),
            origins,
            file_keys,
            warnings,
        };
        // Routes: each task's own queue, then the config's `[routes]`.
        let registry = crate::cmd::worker::registry(&s, None);
        let mut router = Router::from_registry(&registry);
        for (task, queue) in &raw.routes {
            if registry.get(task).is_none() {
                s.warnings.push(format!(
                    "config [routes]: no task named {task:?} is registered in hlbot (see `hlbot \
                     tasks`); the route only applies to tasks sent under exactly that name"
                ));
            }
            router.set(task, queue);
        }
        if let Some(q) = g
            .task_default_queue
            .clone()
            .or(raw.task_default_queue.clone())
            .filter(|q| !q.is_empty())
        {
            router.set_default(&q);
        }
        s.router = router;
        Ok(s)
    }
}

/// The config file used when none is named: the first of `./hlbot.toml`,
/// `$XDG_CONFIG_HOME/hlbot/config.toml` (default `~/.config/hlbot/config.toml`) and
/// `/etc/hlbot/config.toml` that exists.
pub fn default_config() -> Option<std::path::PathBuf> {
    let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty());
    let xdg = var("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| var("HOME").map(|h| std::path::PathBuf::from(h).join(".config")));
    let mut candidates = vec![std::path::PathBuf::from("hlbot.toml")];
    candidates.extend(xdg.map(|d| d.join("hlbot/config.toml")));
    candidates.push("/etc/hlbot/config.toml".into());
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or(p))
}

/// Flags and env first, then the config file; the data directory defaults to
/// `$XDG_DATA_HOME/hlbot` or `~/.local/share/hlbot`.
fn store_config(
    g: &Global,
    url: Option<String>,
    data_dir: Option<std::path::PathBuf>,
    days: Option<u32>,
) -> hlbot_store::StoreConfig {
    let data_dir = g.data_dir.clone().or(data_dir).unwrap_or_else(|| {
        hlbot_store::default_data_dir(
            std::env::var("XDG_DATA_HOME").ok().as_deref(),
            std::env::var("HOME").ok().as_deref(),
        )
    });
    let mut c = hlbot_store::StoreConfig::sqlite_in(data_dir);
    c.url = g.database_url.clone().or(url).filter(|u| !u.is_empty());
    if let Some(d) = days {
        c.task_history_days = d;
    }
    c
}

/// The file's settings, and the dotted keys it sets (`pdf.languages`; whole tables for
/// `routes`, `llm.aliases` and `beat.entries`).
fn read_config(p: &Path) -> anyhow::Result<(RawConfig, BTreeSet<String>)> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))?;
    let raw = toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))?;
    let table: toml::Table = toml::from_str(&text).unwrap_or_default();
    let mut keys = BTreeSet::new();
    for (k, v) in &table {
        match v.as_table() {
            Some(t)
                if ["pdf", "youtube", "llm", "beat", "broker_transport_options"]
                    .contains(&k.as_str()) =>
            {
                keys.extend(t.keys().map(|sub| format!("{k}.{sub}")));
            }
            _ => {
                keys.insert(k.clone());
            }
        }
    }
    Ok((raw, keys))
}

/// A serializer named in `setting` (kombu name or content type).
fn serializer(name: &str, setting: &str) -> anyhow::Result<hlbot_proto::Serializer> {
    hlbot_proto::Serializer::from_name(name).ok_or_else(|| {
        anyhow::anyhow!("{setting}: unknown serializer {name:?} (json, pickle, msgpack or yaml)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration example in README.md is a real configuration.
    #[test]
    fn readme_config_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```toml\nresult_expires")
            .expect("README has the config example");
        let body = &readme[start + "```toml\n".len()..];
        let text = &body[..body.find("```").expect("fence closed")];
        let raw: RawConfig = toml::from_str(text).expect("README config parses");
        let pdf = crate::domain::task_settings(
            &crate::domain::RawDomain {
                pdf: raw.pdf,
                ..Default::default()
            },
            &[],
        )
        .pdf;
        assert_eq!(pdf.worker_processes, 2);
        assert!(pdf.prestart_workers);
        assert_eq!(pdf.default_languages, "eng+deu");
    }
}
