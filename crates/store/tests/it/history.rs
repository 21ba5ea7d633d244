//! Task history: facts from a real worker (in-process, real Redis) land as runs with their
//! transitions; secrets never reach a row; retention prunes; the database going away mid-run
//! neither stops the worker nor loses rows (PostgreSQL behind a gate that is cut and reopened).

use std::sync::Arc;
use std::time::Duration;

use hlbot_engine::runlog::{RunFact, RunLog, RunState};
use hlbot_engine::{Registry, SendOptions};
use hlbot_store::history::HistoryQuery;
use hlbot_store::runs::write_batch;
use hlbot_store::{RunWriter, RunWriterOptions, Store, StoreConfig};
use hlbot_testkit::{Gate, InProcess, TestRedis};
use serde_json::{Map, json};

use crate::both;
use crate::common::Db;

fn q(queue: &str) -> SendOptions {
    SendOptions {
        queue: Some(queue.into()),
        ..Default::default()
    }
}

fn fact(id: &str, state: RunState, at: f64) -> RunFact {
    RunFact {
        task_id: id.into(),
        state,
        at,
        name: "t.add".into(),
        queue: "celery".into(),
        worker: "w@h".into(),
        retries: 0,
        parent_id: Some("p".into()),
        root_id: Some("r".into()),
        args: Some("('postgres://u:hunter2@db/x',)".into()),
        kwargs: Some("{'api_key': 'sk-live-123', 'n': 2}".into()),
        runtime: None,
        error_type: None,
        error_message: None,
    }
}

async fn batches(db: Db) {
    let s = &db.store;
    let now = hlbot_store::now();
    let mut f = vec![
        fact("a", RunState::Received, now),
        fact("a", RunState::Started, now + 0.1),
        fact("b", RunState::Received, now),
    ];
    let mut done = fact("a", RunState::Failed, now + 0.2);
    done.runtime = Some(0.1);
    done.error_type = Some("ValueError".into());
    // Every character COPY's text format must escape, and some it must not touch.
    done.error_message = Some("bad input:\tcol\nline 2\r\\N 'q' \"dq\" ünï ✓".into());
    f.push(done);
    write_batch(s, &f).await.unwrap();
    // A later batch: b succeeds.
    let mut ok = fact("b", RunState::Succeeded, now + 0.3);
    ok.runtime = Some(0.3);
    write_batch(s, &[ok]).await.unwrap();
    let all = s.history(&HistoryQuery::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    let a = all.iter().find(|r| r.task_id == "a").unwrap();
    assert_eq!(a.state, "FAILURE");
    assert_eq!(a.error_type.as_deref(), Some("ValueError"));
    assert_eq!(
        a.error_message.as_deref(),
        Some("bad input:\tcol\nline 2\r\\N 'q' \"dq\" ünï ✓"),
        "text round-trips unchanged"
    );
    assert_eq!(
        (a.parent_id.as_deref(), a.root_id.as_deref()),
        (Some("p"), Some("r"))
    );
    assert!(a.received_at.is_some() && a.started_at.is_some() && a.finished_at.is_some());
    let b = all.iter().find(|r| r.task_id == "b").unwrap();
    assert_eq!((b.state.as_str(), b.runtime), ("SUCCESS", Some(0.3)));
    assert_eq!(
        b.received_at,
        Some(now),
        "received time kept across batches"
    );
    for r in &all {
        let text = format!("{:?} {:?}", r.args, r.kwargs);
        assert!(
            !text.contains("hunter2") && !text.contains("sk-live"),
            "{text}"
        );
    }
    let failed = s
        .history(&HistoryQuery {
            state: Some("failure".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    let t = s.transitions("a").await.unwrap();
    let states: Vec<&str> = t.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(states, ["RECEIVED", "STARTED", "FAILURE"]);
    assert!((t[1].1 - (now + 0.1)).abs() < 0.002, "times kept: {t:?}");
    // Across batches the transitions append.
    let tb: Vec<String> = s
        .transitions("b")
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(tb, ["RECEIVED", "SUCCESS"]);
    assert_eq!(b.transitions.len(), 2, "{b:?}");
    // Retention: rows older than the window go, with their transitions.
    write_batch(
        s,
        &[fact("old", RunState::Succeeded, now - 40.0 * 86_400.0)],
    )
    .await
    .unwrap();
    assert_eq!(s.prune_history(30).await.unwrap(), 1);
    assert_eq!(s.history(&HistoryQuery::default()).await.unwrap().len(), 2);
    let recent = s
        .history(&HistoryQuery {
            since_secs: Some(3600.0),
            task: Some("t.add".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(recent.len(), 2);
}
both!(batches_sqlite, batches_postgres, batches);

/// A worker with the store's run log: every task's run is recorded with its final state.
async fn from_a_worker(db: Db) {
    let t = TestRedis::new();
    let (log, _writer) = RunWriter::start(db.store.clone(), RunWriterOptions::default());
    let mut o = hlbot_testkit::worker::options(&["hist"]);
    o.runlog = Some(log.clone() as Arc<dyn RunLog>);
    let w = InProcess::start(t.client().await, Registry::with_debug_tasks(), o).await;
    let c = t.client().await;
    let ok = c
        .send_task("hlbot.debug.echo", vec![json!(1)], Map::new(), q("hist"))
        .await
        .unwrap();
    let bad = c
        .send_task(
            "hlbot.debug.fail",
            vec![json!("nope")],
            Map::new(),
            q("hist"),
        )
        .await
        .unwrap();
    ok.get(Duration::from_secs(10)).await.unwrap();
    let _ = bad.get(Duration::from_secs(10)).await;
    w.stop().await;
    assert!(log.flush().await, "writes succeed");
    let rows = db.store.history(&HistoryQuery::default()).await.unwrap();
    let state = |id: &str| {
        rows.iter()
            .find(|r| r.task_id == id)
            .map(|r| r.state.clone())
    };
    assert_eq!(
        state(ok.id.as_str()).as_deref(),
        Some("SUCCESS"),
        "{rows:?}"
    );
    assert_eq!(state(bad.id.as_str()).as_deref(), Some("FAILURE"));
    let r = rows.iter().find(|r| r.task_id == bad.id.as_str()).unwrap();
    assert_eq!(r.queue.as_deref(), Some("hist"));
    assert_eq!(r.error_type.as_deref(), Some("RuntimeError"));
    assert!(r.runtime.is_some() && r.started_at.is_some());
}
both!(worker_sqlite, worker_postgres, from_a_worker);

/// PostgreSQL goes away mid-run: tasks keep succeeding, and once it is back every run lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_away_mid_run() {
    let Some(pg) = hlbot_testkit::TestPostgres::new().await else {
        return;
    };
    let gate = Gate::start(&pg.server_addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::sqlite_in(dir.path());
    cfg.url = Some(pg.url_via(gate.addr));
    let store = Store::open(&cfg).await.expect("open through the gate");
    let (log, _writer) = RunWriter::start(
        store.clone(),
        RunWriterOptions {
            retry: Duration::from_millis(200),
            ..Default::default()
        },
    );
    let t = TestRedis::new();
    let mut o = hlbot_testkit::worker::options(&["away"]);
    o.runlog = Some(log.clone() as Arc<dyn RunLog>);
    let w = InProcess::start(t.client().await, Registry::with_debug_tasks(), o).await;
    let c = t.client().await;
    let first = c
        .send_task("hlbot.debug.echo", vec![json!(0)], Map::new(), q("away"))
        .await
        .unwrap();
    first.get(Duration::from_secs(10)).await.unwrap();
    assert!(log.flush().await);
    gate.cut();
    let mut ids = vec![first.id.clone()];
    for i in 1..=20 {
        let h = c
            .send_task("hlbot.debug.echo", vec![json!(i)], Map::new(), q("away"))
            .await
            .unwrap();
        h.get(Duration::from_secs(10))
            .await
            .expect("tasks succeed while the database is away");
        ids.push(h.id.clone());
    }
    assert!(!log.flush().await, "writes fail while the database is away");
    assert!(
        log.stats()
            .failed_writes
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    gate.open();
    let direct = Store::open(&StoreConfig {
        url: Some(pg.url.clone()),
        ..cfg.clone()
    })
    .await
    .unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = direct
            .history(&HistoryQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let done = ids.iter().all(|id| {
            rows.iter()
                .any(|r| &r.task_id == id && r.state == "SUCCESS")
        });
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "rows never caught up: {} of {}",
            rows.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        log.stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    w.stop().await;
    store.close().await;
    direct.close().await;
}

/// A full buffer while the database is away drops the oldest facts, counted; the newest land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_drops_the_oldest() {
    let Some(pg) = hlbot_testkit::TestPostgres::new().await else {
        return;
    };
    let gate = Gate::start(&pg.server_addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::sqlite_in(dir.path());
    cfg.url = Some(pg.url_via(gate.addr));
    let store = Store::open(&cfg).await.unwrap();
    let (log, _w) = RunWriter::start(
        store.clone(),
        RunWriterOptions {
            max_buffer: 10,
            retry: Duration::from_millis(100),
            ..Default::default()
        },
    );
    gate.cut();
    let now = hlbot_store::now();
    for i in 0..50 {
        log.record(fact(
            &format!("t{i:02}"),
            RunState::Succeeded,
            now + f64::from(i),
        ));
    }
    assert!(!log.flush().await, "nothing written while away");
    gate.open();
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !log.flush().await {
        assert!(std::time::Instant::now() < end, "never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        log.stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        40
    );
    let direct = Store::open(&StoreConfig {
        url: Some(pg.url.clone()),
        ..cfg.clone()
    })
    .await
    .unwrap();
    let rows = direct
        .history(&HistoryQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut ids: Vec<String> = rows.into_iter().map(|r| r.task_id).collect();
    ids.sort();
    let want: Vec<String> = (40..50).map(|i| format!("t{i:02}")).collect();
    assert_eq!(ids, want, "the newest 10 landed");
    store.close().await;
    direct.close().await;
}

/// The same statement text first with a NULL and then with a value in one place (PostgreSQL
/// must not keep the first run's guessed parameter types: "incorrect binary data format").
async fn nulls_then_values(db: Db) {
    let s = &db.store;
    let now = hlbot_store::now();
    write_batch(s, &[fact("n1", RunState::Received, now)])
        .await
        .unwrap();
    let mut done = fact("n2", RunState::Succeeded, now);
    done.runtime = Some(1.5);
    done.error_type = Some("X".into());
    write_batch(s, &[done]).await.unwrap();
    write_batch(s, &[fact("n3", RunState::Received, now)])
        .await
        .unwrap();
    let mut started = fact("n4", RunState::Started, now);
    started.args = None;
    started.parent_id = None;
    write_batch(s, &[started]).await.unwrap();
    let set = |style: Option<&str>| hlbot_store::library::StrategySet {
        provider: None,
        model: style.map(str::to_string),
        strategies: vec![json!({"name": "n", "style": style, "confidence": style.map(|_| 0.5)})],
    };
    s.save_strategies(None, &set(None)).await.unwrap();
    s.save_strategies(None, &set(Some("swing"))).await.unwrap();
    let rows = s.history(&HistoryQuery::default()).await.unwrap();
    assert_eq!(rows.len(), 4);
}
both!(
    nulls_then_values_sqlite,
    nulls_then_values_postgres,
    nulls_then_values
);
