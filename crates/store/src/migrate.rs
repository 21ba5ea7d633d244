//! Embedded schema migrations, one list per backend, applied in order and recorded in
//! `hlbot_migrations`. Two processes migrating at once is fine: PostgreSQL serialises them with
//! a session advisory lock, SQLite with an immediate (write-locked) transaction; each re-reads
//! what is applied after taking the lock.

use sqlx::{Any, Connection, Executor, pool::PoolConnection};

use crate::config::Backend;
use crate::{Error, Result, Store};

/// One migration: version, name, SQL text.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "library",
        sql: include_str!("../migrations/postgres/0001_library.sql"),
    },
    Migration {
        version: 2,
        name: "run_transitions",
        sql: include_str!("../migrations/postgres/0002_run_transitions.sql"),
    },
    Migration {
        version: 3,
        name: "usage_cache_hits",
        sql: include_str!("../migrations/postgres/0003_usage_cache_hits.sql"),
    },
];

const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "library",
        sql: include_str!("../migrations/sqlite/0001_library.sql"),
    },
    Migration {
        version: 2,
        name: "run_transitions",
        sql: include_str!("../migrations/sqlite/0002_run_transitions.sql"),
    },
    Migration {
        version: 3,
        name: "usage_cache_hits",
        sql: include_str!("../migrations/sqlite/0003_usage_cache_hits.sql"),
    },
];

/// The advisory lock key PostgreSQL migrations run under ("hlbot" in ASCII).
const LOCK_KEY: i64 = 0x0068_6c62_6f74;

/// The migrations this build embeds for `backend`.
pub fn embedded(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Postgres => POSTGRES,
        Backend::Sqlite => SQLITE,
    }
}

/// Where a database stands against this build's migrations.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub backend: &'static str,
    /// The redacted URL.
    pub url: String,
    pub applied: Vec<i64>,
    pub pending: Vec<i64>,
    pub latest_known: i64,
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS hlbot_migrations (\
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)";

async fn applied(conn: &mut PoolConnection<Any>) -> Result<Vec<i64>> {
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT version FROM hlbot_migrations ORDER BY version")
        .fetch_all(&mut **conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Apply every pending migration; returns the versions applied now.
pub async fn run(store: &Store) -> Result<Vec<i64>> {
    let mut conn = store.pool().acquire().await?;
    let known = embedded(store.backend());
    let done = match store.backend() {
        Backend::Postgres => {
            // Locked before anything else: even CREATE TABLE IF NOT EXISTS races in PostgreSQL.
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(LOCK_KEY)
                .execute(&mut *conn)
                .await?;
            let r = match conn.execute(CREATE_TABLE).await {
                Ok(_) => apply(&mut conn, known, false).await,
                Err(e) => Err(e.into()),
            };
            let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(LOCK_KEY)
                .execute(&mut *conn)
                .await;
            let done = r?;
            unlock?;
            done
        }
        Backend::Sqlite => apply(&mut conn, known, true).await?,
    };
    Ok(done)
}

async fn apply(
    conn: &mut PoolConnection<Any>,
    known: &[Migration],
    sqlite: bool,
) -> Result<Vec<i64>> {
    let mut done = Vec::new();
    // SQLite: BEGIN IMMEDIATE takes the write lock before reading what is applied.
    if sqlite {
        conn.execute("BEGIN IMMEDIATE").await?;
    }
    let r = match sqlite {
        true => match conn.execute(CREATE_TABLE).await {
            Ok(_) => apply_locked(conn, known, sqlite, &mut done).await,
            Err(e) => Err(e.into()),
        },
        false => apply_locked(conn, known, sqlite, &mut done).await,
    };
    if sqlite {
        match &r {
            Ok(()) => conn.execute("COMMIT").await.map(|_| ())?,
            Err(_) => {
                let _ = conn.execute("ROLLBACK").await;
            }
        }
    }
    r.map(|_| done)
}

async fn apply_locked(
    conn: &mut PoolConnection<Any>,
    known: &[Migration],
    sqlite: bool,
    done: &mut Vec<i64>,
) -> Result<()> {
    let have = applied(conn).await?;
    let latest = known.last().map(|m| m.version).unwrap_or(0);
    if let Some(&found) = have.iter().max().filter(|v| **v > latest) {
        return Err(Error::TooNew {
            found,
            known: latest,
        });
    }
    for m in known.iter().filter(|m| !have.contains(&m.version)) {
        let fail = |e: sqlx::Error| Error::Migrate {
            version: m.version,
            name: m.name.into(),
            reason: crate::config::redact_text(&e.to_string()),
        };
        if sqlite {
            sqlx::raw_sql(m.sql)
                .execute(&mut **conn)
                .await
                .map_err(fail)?;
            record(conn, m).await.map_err(fail)?;
        } else {
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(fail)?;
            record(&mut tx, m).await.map_err(fail)?;
            tx.commit().await?;
        }
        tracing::info!(version = m.version, "applied migration {}", m.name);
        done.push(m.version);
    }
    Ok(())
}

async fn record(conn: &mut sqlx::AnyConnection, m: &Migration) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO hlbot_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(m.version)
        .bind(m.name)
        .bind(crate::now())
        .execute(conn)
        .await
        .map(|_| ())
}

/// What is applied and what is pending (creates nothing but the bookkeeping table).
pub async fn status(store: &Store) -> Result<Status> {
    let mut conn = store.pool().acquire().await?;
    let exists: Option<(i64,)> = match store.backend() {
        Backend::Postgres => {
            sqlx::query_as("SELECT 1::BIGINT FROM pg_tables WHERE tablename = 'hlbot_migrations'")
                .fetch_optional(&mut *conn)
                .await?
        }
        Backend::Sqlite => {
            sqlx::query_as("SELECT 1 FROM sqlite_master WHERE name = 'hlbot_migrations'")
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    let have = match exists {
        Some(_) => applied(&mut conn).await?,
        None => Vec::new(),
    };
    let known = embedded(store.backend());
    Ok(Status {
        backend: store.backend().as_str(),
        url: store.redacted_url().to_string(),
        pending: known
            .iter()
            .map(|m| m.version)
            .filter(|v| !have.contains(v))
            .collect(),
        applied: have,
        latest_known: known.last().map(|m| m.version).unwrap_or(0),
    })
}
