//! Store benchmark driver (not a test, never run in CI; `scripts/bench-store.sh` runs it):
//!
//! store_bench search --url URL [-n 100000] [--runs 200]   fill N strategies, time library searches
//! store_bench rows --url URL -n N [--timeout S]          wait until N SUCCESS task runs are stored
//! store_bench write --url URL -n N                       write N runs (3 facts each) through the
//!                                                        writer's batch path; CPU per run, both sides

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hlbot_store::library::{SourceKey, StrategySet};
use hlbot_store::search::SearchQuery;
use hlbot_store::{Store, StoreConfig};
use serde_json::json;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let url = get("--url").expect("--url");
    let n: usize = get("-n").map(|v| v.parse().expect("-n")).unwrap_or(100_000);
    let dir = std::env::temp_dir();
    let mut cfg = StoreConfig::sqlite_in(dir);
    cfg.url = Some(url);
    let out = match args.first().map(String::as_str) {
        Some("search") => {
            let runs = get("--runs")
                .map(|v| v.parse().expect("--runs"))
                .unwrap_or(200);
            search(&cfg, n, runs).await
        }
        Some("rows") => {
            let t = get("--timeout")
                .map(|v| v.parse().expect("--timeout"))
                .unwrap_or(600.0);
            rows(&cfg, n, t).await
        }
        Some("write") => write(&cfg, n).await,
        _ => Err("usage: store_bench search|rows|write --url URL [-n N]".into()),
    };
    match out {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("store_bench: {e}");
            std::process::exit(1);
        }
    }
}

const INSTRUMENTS: [&str; 8] = [
    "EUR/USD", "GBP/USD", "USD/JPY", "XAU/USD", "BTC/USD", "SPX", "NQ", "AUD/USD",
];
const TIMEFRAMES: [&str; 5] = ["5M", "15M", "1H", "4H", "1D"];
const INDICATORS: [&str; 7] = [
    "RSI",
    "MACD",
    "EMA",
    "SMA",
    "ATR",
    "Bollinger Bands",
    "VWAP",
];
const WORDS: [&str; 12] = [
    "divergence",
    "breakout",
    "pullback",
    "reversal",
    "trend",
    "range",
    "momentum",
    "support",
    "resistance",
    "squeeze",
    "retest",
    "continuation",
];

async fn search(cfg: &StoreConfig, n: usize, runs: usize) -> Res<serde_json::Value> {
    let store = Store::open(cfg).await?;
    let have: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM strategies")
        .fetch_one(store.pool())
        .await?;
    let fill_started = Instant::now();
    let mut i = have.0 as usize;
    while i < n {
        let src = store
            .source_id(&SourceKey::new("text", &format!("bench-{}", i / 100), ""))
            .await?;
        let batch: Vec<serde_json::Value> = (i..(i + 100).min(n))
            .map(|k| {
                let w = |o: usize| WORDS[(k / 7 + o) % WORDS.len()];
                json!({
                    "name": format!("{} {} #{k}", INDICATORS[k % 7], w(0)),
                    "instruments": [INSTRUMENTS[k % 8], INSTRUMENTS[(k / 8) % 8]],
                    "timeframes": [TIMEFRAMES[k % 5]],
                    "indicators": [{"name": INDICATORS[k % 7]}, {"name": INDICATORS[(k / 7) % 7]}],
                    "style": if k % 2 == 0 { "swing" } else { "day" },
                    "entry_rules": [format!("enter on {} {} after a {}", w(1), w(2), w(3))],
                    "exit_rules": [format!("exit at the {} level", w(4))],
                    "confidence": (k % 100) as f64 / 100.0,
                    "evidence": [{"quote": format!("we look for {} with {}", w(5), INDICATORS[k % 7])}]
                })
            })
            .collect();
        // Several batches per source would replace each other: one source per 100.
        store
            .save_strategies(
                Some(src),
                &StrategySet {
                    provider: Some("rules".into()),
                    model: Some("rules".into()),
                    strategies: batch,
                },
            )
            .await?;
        i += 100;
    }
    let fill_secs = fill_started.elapsed().as_secs_f64();
    let queries = [
        SearchQuery {
            text: "rsi divergence".into(),
            ..Default::default()
        },
        SearchQuery {
            text: "rsi divergence".into(),
            instrument: Some("EUR/USD".into()),
            timeframe: Some("1H".into()),
            ..Default::default()
        },
        SearchQuery {
            text: "breakout retest".into(),
            indicator: Some("ATR".into()),
            ..Default::default()
        },
        SearchQuery {
            instrument: Some("XAU/USD".into()),
            ..Default::default()
        },
    ];
    let mut results = Vec::new();
    for q in &queries {
        let mut times = Vec::with_capacity(runs);
        let mut hits = 0;
        for _ in 0..runs {
            let t = Instant::now();
            hits = store.search(q).await?.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
        results.push(json!({
            "text": q.text, "instrument": q.instrument, "timeframe": q.timeframe,
            "indicator": q.indicator, "hits": hits,
            "p50_ms": pct(0.5), "p95_ms": pct(0.95), "max_ms": pct(1.0),
        }));
    }
    Ok(json!({
        "bench": "search", "backend": store.backend().as_str(), "strategies": n,
        "filled": n.saturating_sub(have.0 as usize), "fill_secs": fill_secs, "queries": results,
    }))
}

async fn rows(cfg: &StoreConfig, n: usize, timeout: f64) -> Res<serde_json::Value> {
    let store = Store::open(cfg).await?;
    let start = Instant::now();
    let mut first: Option<f64> = None;
    loop {
        let (c,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM task_runs WHERE state = 'SUCCESS'")
            .fetch_one(store.pool())
            .await?;
        let t = start.elapsed().as_secs_f64();
        if c > 0 && first.is_none() {
            first = Some(t);
        }
        if c as usize >= n {
            let (tr,): (i64,) = sqlx::query_as(
                "SELECT COALESCE(SUM(LENGTH(transitions) - LENGTH(REPLACE(transitions, ';', ''))), 0) \
                 FROM task_runs",
            )
            .fetch_one(store.pool())
            .await?;
            let span = t - first.unwrap_or(0.0);
            return Ok(json!({
                "bench": "rows", "backend": store.backend().as_str(), "runs": c,
                "transitions": tr, "first_row_secs": first, "all_rows_secs": t,
                "runs_per_sec": c as f64 / span.max(1e-3),
                "facts_per_sec": tr as f64 / span.max(1e-3),
            }));
        }
        if t > timeout {
            return Err(format!("only {c} of {n} runs stored after {timeout} s").into());
        }
        // Every 250 ms: each poll is a scan of the table, which would take CPU from the drain
        // it measures if it ran every few milliseconds.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// CPU seconds (user + system) of process `pid` (`self` for this one), from /proc.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// Write `n` runs (RECEIVED, STARTED, SUCCESS each, in 5 000-fact batches as the writer makes
/// them) and report the time and the CPU it took: this process and, on PostgreSQL, the server
/// backends of this database (same machine; whichever of the store's pools did the writes).
async fn write(cfg: &StoreConfig, n: usize) -> Res<serde_json::Value> {
    use hlbot_engine::runlog::{RunFact, RunState};
    let mut cfg = cfg.clone();
    cfg.max_connections = 1;
    let store = Store::open(&cfg).await?;
    let pg = store.backend() == hlbot_store::Backend::Postgres;
    // CPU seconds of each server backend connected to this database, by pid.
    let backends = || async {
        let pids: Vec<(i32,)> =
            sqlx::query_as("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                .fetch_all(store.pool())
                .await?;
        Ok::<_, sqlx::Error>(
            pids.into_iter()
                .map(|(p,)| (p, cpu_secs(&p.to_string())))
                .collect::<HashMap<i32, f64>>(),
        )
    };
    let tag = format!("{:x}", std::process::id());
    let fact = |i: usize, state: RunState| RunFact {
        task_id: format!("{tag}-{i:08}-0000-0000-000000000000"),
        state,
        at: 1.8e9 + i as f64 * 1e-4,
        name: "hlbot.debug.echo".into(),
        queue: "bench".into(),
        worker: "celery@bench".into(),
        retries: 0,
        parent_id: None,
        root_id: Some(format!("{tag}-{i:08}-0000-0000-000000000000")),
        args: (state == RunState::Received).then(|| format!("({i},)")),
        kwargs: (state == RunState::Received).then(|| "{}".into()),
        runtime: (state == RunState::Succeeded).then_some(0.0001),
        error_type: None,
        error_message: None,
    };
    // The order a busy worker produces: a window of tasks in flight, their facts interleaved.
    let mut facts = Vec::with_capacity(n * 3);
    for i in 0..n {
        facts.push(fact(i, RunState::Received));
        facts.push(fact(i, RunState::Started));
        facts.push(fact(i, RunState::Succeeded));
    }
    let s0 = if pg { Some(backends().await?) } else { None };
    let c0 = cpu_secs("self");
    let t = Instant::now();
    for b in facts.chunks(5000) {
        hlbot_store::runs::write_batch(&store, b).await?;
    }
    let secs = t.elapsed().as_secs_f64();
    let client = cpu_secs("self") - c0;
    let server = match s0 {
        Some(before) => Some(
            backends()
                .await?
                .iter()
                .map(|(p, after)| after - before.get(p).copied().unwrap_or(0.0))
                .sum::<f64>(),
        ),
        None => None,
    };
    Ok(json!({
        "bench": "write", "backend": store.backend().as_str(), "runs": n, "secs": secs,
        "runs_per_sec": n as f64 / secs, "client_cpu_us_per_run": client * 1e6 / n as f64,
        "server_cpu_us_per_run": server.map(|s| s * 1e6 / n as f64),
    }))
}
