//! The research library and task history: sources by content key, their transcripts, pages,
//! frames and images, strategies with full-text search, chart analyses, LLM usage and cost, and
//! every task run. PostgreSQL when a URL is given, else an SQLite file in the data directory —
//! one schema, queries written once through sqlx's `Any` driver (search differs: `tsvector` vs
//! FTS5). Knows neither Redis nor the domain crates: documents arrive as JSON.

pub mod browse;
pub mod claim;
pub mod config;
pub mod error;
pub mod history;
pub mod library;
pub mod migrate;
pub mod runs;
pub mod search;
mod stage;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use std::str::FromStr;

use sqlx::{AnyPool, ConnectOptions, Executor};

pub use config::{Backend, StoreConfig, default_data_dir, redact, redact_text};
pub use error::{Error, Result};
pub use runs::{RunWriter, RunWriterOptions};

/// An open store: a connection pool and which backend it is. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    redacted: String,
    cfg: StoreConfig,
    /// PostgreSQL's own pool beside the `Any` one, for what the `Any` driver cannot do (COPY).
    /// Lazy: it opens connections only when used.
    pg: Option<sqlx::PgPool>,
}

impl Store {
    /// Connect (creating the SQLite file and its folder if needed) and apply pending migrations.
    pub async fn open(cfg: &StoreConfig) -> Result<Store> {
        let store = Store::connect(cfg).await?;
        migrate::run(&store).await?;
        Ok(store)
    }

    /// Connect without migrating (`hlbot db status`).
    pub async fn connect(cfg: &StoreConfig) -> Result<Store> {
        Store::connect_with(cfg, false).await
    }

    /// A store whose connections are made on first use (a task child process: starting never
    /// waits for the database; a query fails if it is away).
    pub async fn connect_lazy(cfg: &StoreConfig) -> Result<Store> {
        Store::connect_with(cfg, true).await
    }

    async fn connect_with(cfg: &StoreConfig, lazy: bool) -> Result<Store> {
        install_default_drivers();
        let backend = cfg.backend();
        let mut url = cfg.effective_url();
        let redacted = redact(&url);
        let fail = |reason: String| Error::Connect {
            url: redacted.clone(),
            reason: redact_text(&reason),
        };
        if backend == Backend::Sqlite {
            // The file's folder (the data directory, or the one a sqlite:// URL names).
            let file = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let file = file.split('?').next().unwrap_or_default();
            let dir = std::path::Path::new(file).parent();
            if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
            }
            if !url.contains("mode=") {
                url.push_str(if url.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
        let mut opts = AnyPoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_release(|conn, _| Box::pin(async move { Ok(reusable(conn).await) }));
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                         PRAGMA busy_timeout=15000; PRAGMA foreign_keys=ON;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        if backend == Backend::Postgres && !url.contains("statement-cache-capacity") {
            // Through the Any driver a NULL is bound as an untyped (int4) parameter, and a
            // cached statement keeps the types of its first run: a later run with a value in
            // that place fails ("incorrect binary data format"). Prepare each run afresh.
            url.push_str(if url.contains('?') { "&" } else { "?" });
            url.push_str("statement-cache-capacity=0");
        }
        // sqlx would log every statement (and slow ones with their full text) on its own.
        let connect = sqlx::any::AnyConnectOptions::from_str(&url)
            .map_err(|e| fail(e.to_string()))?
            .log_statements(tracing::log::LevelFilter::Off)
            .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(60));
        let pool = if lazy {
            opts.connect_lazy_with(connect)
        } else {
            opts.connect_with(connect)
                .await
                .map_err(|e| fail(e.to_string()))?
        };
        let pg = if backend == Backend::Postgres {
            let opts = sqlx::postgres::PgConnectOptions::from_str(&url)
                .map_err(|e| fail(e.to_string()))?
                .log_statements(tracing::log::LevelFilter::Off)
                .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(60));
            Some(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(cfg.max_connections.max(1))
                    .connect_lazy_with(opts),
            )
        } else {
            None
        };
        Ok(Store {
            pool,
            backend,
            redacted,
            cfg: cfg.clone(),
            pg,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The PostgreSQL pool (None on SQLite).
    pub(crate) fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        self.pg.as_ref()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database URL with its password replaced by `***`: the only form ever shown.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Close the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
    }
}

/// Whether a connection handed back to the pool may serve again: not when a transaction is
/// still open on it. On a full disk SQLite's `COMMIT` fails *and* ends the transaction; sqlx
/// still counts it open, its rollback then fails, and from there every `BEGIN` on that
/// connection is a `SAVEPOINT` inside a transaction that never commits — writes report success,
/// hold the write lock and vanish at exit. Such a connection is closed (which ends whatever SQLite
/// still has open) and the next write opens a fresh one. The ping first runs any rollback a
/// dropped transaction queued.
async fn reusable(conn: &mut sqlx::AnyConnection) -> bool {
    use sqlx::Connection;
    conn.ping().await.is_ok() && !conn.is_in_transaction()
}

/// The `n`th (1-based) bind placeholder: `$n` for PostgreSQL, `?n` for SQLite — SQLite looks
/// a `$n` up by name in a linear list, so a statement with thousands of them takes seconds to
/// prepare; `?n` in increasing order is appended at once.
pub fn placeholder(b: Backend, n: usize) -> String {
    match b {
        Backend::Postgres => format!("${n}"),
        Backend::Sqlite => format!("?{n}"),
    }
}

/// Unix time now, in seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// `'|A|B|'` for a list (trimmed, upper-cased, empties dropped; `''` for none): one
/// `LIKE '%|A|%'` then finds a member.
pub fn bar_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|s| s.as_ref().trim().to_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("|{}|", parts.join("|"))
    }
}

/// The items of a `bar_list` string.
pub fn bar_items(s: &str) -> Vec<String> {
    s.split('|')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}
