//! `hlbot library list|show|search|export`, `hlbot history`, `hlbot db migrate|status`, and
//! opening the store for the worker and `ingest` (which must never fail because of it).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hlbot_store::Store;
use hlbot_store::history::{HistoryQuery, parse_span};
use hlbot_store::search::SearchQuery;

use crate::args::{DbCommand, HistoryArgs, LibraryCommand};
use crate::settings::Settings;

/// Open (and migrate) the store, or say why not.
pub async fn open(s: &Settings) -> anyhow::Result<Store> {
    Ok(Store::open(&s.store).await?)
}

/// The store for a worker or `ingest`: None, with a warning, when it cannot be opened in time —
/// the work runs without it.
pub async fn open_optional(s: &Settings) -> Option<Store> {
    match tokio::time::timeout(Duration::from_secs(15), Store::open(&s.store)).await {
        Ok(Ok(st)) => Some(st),
        Ok(Err(e)) => {
            tracing::warn!("research library unavailable, running without it: {e}");
            None
        }
        Err(_) => {
            tracing::warn!(
                "research library {} did not answer in 15 s, running without it",
                hlbot_store::redact(&s.store.effective_url())
            );
            None
        }
    }
}

/// The store for a long-running process (worker, dashboard): opened now if the database answers
/// within 5 s; else a store that connects on use, and a background task that retries the
/// migrations every 10 s until they apply — the library and the task history (buffered
/// meanwhile) work from then on, without a restart. A database that is down or a disk that is
/// full at start-up therefore costs the runs of that time nothing.
pub async fn open_in_background(s: &Settings) -> Option<Store> {
    let url = hlbot_store::redact(&s.store.effective_url());
    let why = match tokio::time::timeout(Duration::from_secs(5), Store::open(&s.store)).await {
        Ok(Ok(st)) => return Some(st),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer in 5 s".to_string(),
    };
    let store = match Store::connect_lazy(&s.store).await {
        Ok(st) => st,
        Err(e) => {
            tracing::warn!("research library unavailable, running without it: {e}");
            return None;
        }
    };
    tracing::warn!(
        "research library {url} unavailable ({why}); starting without it and retrying every 10 s"
    );
    // Its own thread and runtime (sqlx's migration future is not `Send`), and its own
    // connection: the worker's lazy pool connects by itself once the database answers.
    let cfg = s.store.clone();
    let spawned = std::thread::Builder::new()
        .name("hlbot-library-retry".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    if let Ok(st) = Store::open(&cfg).await {
                        st.close().await;
                        tracing::info!(
                            "research library {url} is back: library and task history on"
                        );
                        return;
                    }
                }
            });
        });
    if let Err(e) = spawned {
        tracing::warn!("research library: cannot start the retry thread: {e}");
    }
    Some(store)
}

fn time(t: f64) -> String {
    chrono::DateTime::from_timestamp(t as i64, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

pub async fn library(s: &Settings, cmd: LibraryCommand) -> anyhow::Result<ExitCode> {
    let store = open(s).await?;
    match cmd {
        LibraryCommand::List { limit, json } => {
            let rows = store.list_sources(limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("the library is empty ({})", store.redacted_url());
            }
            for r in rows.iter().filter(|_| !json) {
                println!(
                    "{:>5}  {}  {:<8} {:<20} {:>3} strategies  ${:.4}  {}  {}",
                    r.id,
                    time(r.updated_at),
                    r.kind,
                    truncate(&r.content_key, 20),
                    r.strategies,
                    r.cost_usd,
                    r.status,
                    r.title.as_deref().or(r.uri.as_deref()).unwrap_or("")
                );
            }
        }
        LibraryCommand::Show { source, json } => {
            let Some(v) = store.show_source(&source).await? else {
                eprintln!("no source {source:?} in the library");
                return Ok(ExitCode::FAILURE);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_source(&v);
            }
        }
        LibraryCommand::Search {
            text,
            instrument,
            timeframe,
            indicator,
            limit,
            json,
        } => {
            let q = SearchQuery {
                text,
                instrument,
                timeframe,
                indicator,
                limit,
            };
            let rows = store.search(&q).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no strategy matches");
            }
            for r in rows.iter().filter(|_| !json) {
                println!(
                    "{:>6}  {}  [{}] [{}] [{}]  conf {:.2}  source {}",
                    r.id,
                    r.name,
                    r.instruments.join(", "),
                    r.timeframes.join(", "),
                    r.indicators.join(", "),
                    r.confidence.unwrap_or(0.0),
                    r.source_id.map(|i| i.to_string()).unwrap_or("-".into())
                );
            }
        }
        LibraryCommand::Export { format, output } => {
            let text = store.export(&format).await?;
            match output {
                Some(p) => {
                    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_source(v: &serde_json::Value) {
    let g = |k: &str| v[k].as_str().unwrap_or("").to_string();
    println!("{} {} — {}", g("kind"), g("content_key"), g("title"));
    if !g("uri").is_empty() {
        println!("  {}", g("uri"));
    }
    let n = |k: &str| v[k].as_array().map(Vec::len).unwrap_or(0);
    println!(
        "  {} transcript segments, {} pages, {} frames/images, {} strategies",
        n("segments"),
        n("pages"),
        n("media"),
        n("strategies")
    );
    for st in v["strategies"].as_array().into_iter().flatten() {
        println!(
            "  • {}  [{}]",
            st["name"].as_str().unwrap_or(""),
            st["instruments"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
    }
    let cost: f64 = v["usage"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["cost_usd"].as_f64())
        .sum();
    println!("  LLM cost: ${cost:.4}");
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

pub async fn history(s: &Settings, a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let store = open(s).await?;
    let q = HistoryQuery {
        state: a.state,
        task: a.task,
        since_secs: a.since.as_deref().map(parse_span).transpose()?,
        limit: a.limit,
    };
    let rows = store.history(&q).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no task runs recorded");
    }
    for r in rows {
        println!(
            "{}  {:<8} {}  {}  {}{}",
            time(r.updated_at),
            r.state,
            r.task_id,
            r.name,
            r.runtime.map(|t| format!("{t:.3}s ")).unwrap_or_default(),
            r.error_type
                .map(|e| format!("{e}: {}", r.error_message.unwrap_or_default()))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn db(s: &Settings, cmd: DbCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DbCommand::Migrate => {
            let store = Store::connect(&s.store).await?;
            let done = hlbot_store::migrate::run(&store).await?;
            println!(
                "{}: applied {} migration(s){}",
                store.redacted_url(),
                done.len(),
                if done.is_empty() { " (up to date)" } else { "" }
            );
        }
        DbCommand::Status { json } => {
            let store = Store::connect(&s.store).await?;
            let st = hlbot_store::migrate::status(&store).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!(
                    "{} ({}): applied {:?}, pending {:?}",
                    st.url, st.backend, st.applied, st.pending
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
