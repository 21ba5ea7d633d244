//! Migrations, library writes, search, export and dedup claims.

use std::time::Duration;

use hlbot_store::claim::Claim;
use hlbot_store::library::{
    Content, MediaRow, PageRow, SegmentRow, SourceKey, StrategySet, UsageRow,
};
use hlbot_store::search::SearchQuery;
use hlbot_store::{Store, migrate};
use serde_json::{Value, json};

use crate::both;
use crate::common::Db;

fn strategy(name: &str, inst: &[&str], tf: &[&str], ind: &[&str], rule: &str) -> Value {
    json!({
        "name": name, "instruments": inst, "timeframes": tf, "style": "swing",
        "indicators": ind.iter().map(|i| json!({"name": i, "parameters": {}})).collect::<Vec<_>>(),
        "key_levels": [], "entry_rules": [rule], "exit_rules": ["close at the opposite band"],
        "risk_management": [], "filters": [], "confidence": 0.8,
        "evidence": [{"quote": "watch the divergence", "timestamp": "00:01:00"}]
    })
}

async fn migrations(db: Db) {
    // Two more processes starting at once: both succeed, nothing applied twice.
    let (a, b) = tokio::join!(Store::open(&db.cfg), Store::open(&db.cfg));
    a.expect("first");
    b.expect("second");
    let st = migrate::status(&db.store).await.unwrap();
    assert_eq!(st.applied, vec![1, 2, 3]);
    assert!(st.pending.is_empty());
    assert!(
        migrate::run(&db.store).await.unwrap().is_empty(),
        "re-run applies nothing"
    );
}
both!(migrations_sqlite, migrations_postgres, migrations);

async fn every_write(db: Db) {
    let s = &db.store;
    let key = SourceKey::new("youtube", "dQw4w9WgXcQ", "frames");
    let id = s.source_id(&key).await.unwrap();
    assert_eq!(s.source_id(&key).await.unwrap(), id, "one row per key");
    let content = Content {
        uri: Some("https://youtu.be/dQw4w9WgXcQ".into()),
        title: Some("RSI divergence masterclass".into()),
        metadata: Some(json!({"channel": "c"})),
        segments: (0..3)
            .map(|i| SegmentRow {
                start: Some(i as f64),
                end: Some(i as f64 + 1.0),
                text: format!("line {i}"),
            })
            .collect(),
        pages: vec![
            PageRow {
                page: 1,
                text: "page one".into(),
                ocr: false,
            },
            PageRow {
                page: 2,
                text: "scanned".into(),
                ocr: true,
            },
        ],
        media: vec![MediaRow {
            kind: "frame".into(),
            path: "/tmp/f1.jpg".into(),
            width: Some(1280),
            height: Some(720),
            bytes: Some(4096),
            at_s: Some(12.5),
        }],
    };
    s.save_content(id, &content).await.unwrap();
    s.save_content(id, &content).await.unwrap(); // replaces, never duplicates
    let set = StrategySet {
        provider: Some("rules".into()),
        model: Some("rules".into()),
        strategies: vec![strategy(
            "RSI divergence",
            &["EUR/USD"],
            &["1H"],
            &["RSI"],
            "enter on bullish divergence",
        )],
    };
    let ids = s.save_strategies(Some(id), &set).await.unwrap();
    assert_eq!(ids.len(), 1);
    s.save_analysis(
        Some(id),
        Some("/tmp/c.png"),
        Some("rules"),
        Some("rules"),
        &json!({"trend": "up"}),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        s.save_usage(
            Some(id),
            &UsageRow {
                task_id: Some("t1".into()),
                purpose: Some("strategy".into()),
                provider: "anthropic".into(),
                model: "claude-sonnet-4".into(),
                input_tokens: 1000,
                output_tokens: 200,
                calls: 1,
                cache_hits: 0,
                cost_usd: Some(0.25),
            },
        )
        .await
        .unwrap();
    }
    let shown = s.show_source("dQw4w9WgXcQ").await.unwrap().expect("shown");
    assert_eq!(shown["title"], "RSI divergence masterclass");
    assert_eq!(shown["segments"].as_array().unwrap().len(), 3);
    assert_eq!(shown["segments"][2]["text"], "line 2");
    assert_eq!(shown["pages"][1]["ocr"], true);
    assert_eq!(shown["media"][0]["width"], 1280);
    assert_eq!(shown["strategies"][0]["instruments"], json!(["EUR/USD"]));
    assert_eq!(
        shown["strategies"][0]["strategy"]["entry_rules"][0],
        "enter on bullish divergence"
    );
    assert_eq!(shown["analyses"][0]["analysis"]["trend"], "up");
    assert_eq!(shown["usage"].as_array().unwrap().len(), 2);
    let list = s.list_sources(10).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].strategies, 1);
    assert!((list[0].cost_usd - 0.5).abs() < 1e-9);
    assert!(s.show_source("nope").await.unwrap().is_none());
}
both!(every_write_sqlite, every_write_postgres, every_write);

async fn search_and_export(db: Db) {
    let s = &db.store;
    let id = s
        .source_id(&SourceKey::new("pdf", "abc", ""))
        .await
        .unwrap();
    let set = StrategySet {
        provider: Some("rules".into()),
        model: Some("rules".into()),
        strategies: vec![
            strategy(
                "RSI divergence reversal",
                &["EUR/USD"],
                &["1H"],
                &["RSI"],
                "buy the bullish divergence",
            ),
            strategy(
                "RSI divergence on gold",
                &["XAU/USD"],
                &["4H"],
                &["RSI", "MACD"],
                "sell bearish divergences",
            ),
            strategy(
                "Moving average cross",
                &["EUR/USD"],
                &["1D"],
                &["SMA"],
                "buy when the 50 crosses the 200",
            ),
        ],
    };
    s.save_strategies(Some(id), &set).await.unwrap();
    let q = |text: &str| SearchQuery {
        text: text.into(),
        limit: 50,
        ..Default::default()
    };
    let names = |v: Vec<hlbot_store::search::StrategyRow>| {
        v.into_iter().map(|r| r.name).collect::<Vec<_>>()
    };
    let both = names(s.search(&q("rsi divergence")).await.unwrap());
    assert_eq!(both.len(), 2, "{both:?}");
    let stemmed = names(s.search(&q("bullish crosses")).await.unwrap());
    assert!(stemmed.is_empty(), "all words required: {stemmed:?}");
    let cross = names(s.search(&q("crossing")).await.unwrap());
    assert_eq!(cross, vec!["Moving average cross"], "stemmed match");
    let eur = names(
        s.search(&SearchQuery {
            instrument: Some("eur/usd".into()),
            ..q("rsi divergence")
        })
        .await
        .unwrap(),
    );
    assert_eq!(eur, vec!["RSI divergence reversal"]);
    let macd = names(
        s.search(&SearchQuery {
            indicator: Some("MACD".into()),
            ..q("")
        })
        .await
        .unwrap(),
    );
    assert_eq!(macd, vec!["RSI divergence on gold"]);
    let tf = names(
        s.search(&SearchQuery {
            timeframe: Some("1d".into()),
            ..q("")
        })
        .await
        .unwrap(),
    );
    assert_eq!(tf, vec!["Moving average cross"]);
    assert!(
        s.search(&q("\"); DROP TABLE strategies; --"))
            .await
            .unwrap()
            .is_empty()
    );

    let j: Value = serde_json::from_str(&s.export("json").await.unwrap()).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 3);
    assert_eq!(j[0]["source"]["content_key"], "abc");
    let csv = s.export("csv").await.unwrap();
    assert_eq!(csv.lines().count(), 4);
    assert!(
        csv.contains("RSI divergence on gold,XAU/USD,4H,RSI;MACD"),
        "{csv}"
    );
    let md = s.export("md").await.unwrap();
    assert!(
        md.contains("## Moving average cross") && md.contains("entry rules: buy when"),
        "{md}"
    );
    assert!(s.export("xml").await.is_err());
}
both!(search_sqlite, search_postgres, search_and_export);

async fn dedup(db: Db) {
    let key = SourceKey::new("youtube", "vid123", "frames");
    let lease = Duration::from_secs(60);
    let wait = Duration::from_secs(20);
    // Two workers claim at once: exactly one processes; the other waits and reuses its result.
    let work = |name: &'static str| {
        let (store, key) = (db.store.clone(), key.clone());
        async move {
            match store.claim(&key, name, lease, wait, false).await.unwrap() {
                Claim::Mine { id } => {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    store.complete(id, &json!({"by": name})).await.unwrap();
                    (true, json!({"by": name}))
                }
                Claim::Done { result, .. } => (false, result),
            }
        }
    };
    let ((a_did, a_res), (b_did, b_res)) = tokio::join!(work("a"), work("b"));
    assert!(a_did ^ b_did, "exactly one processed: a={a_did} b={b_did}");
    assert_eq!(a_res, b_res, "the other reused its result");
    // A later request reuses it; force re-processes.
    assert!(matches!(
        db.store.claim(&key, "c", lease, wait, false).await.unwrap(),
        Claim::Done { .. }
    ));
    let Claim::Mine { id } = db.store.claim(&key, "d", lease, wait, true).await.unwrap() else {
        panic!("force must re-process");
    };
    // While d holds it, a forced claim by e waits (times out here), never processes twice.
    let e = db
        .store
        .claim(&key, "e", lease, Duration::from_millis(500), true)
        .await;
    assert!(
        matches!(e, Err(hlbot_store::Error::ClaimTimeout(_))),
        "{e:?}"
    );
    // A failure releases it: the next claim processes again.
    db.store.release(id, "boom").await.unwrap();
    assert!(
        matches!(
            db.store.claim(&key, "f", lease, wait, false).await.unwrap(),
            Claim::Mine { .. }
        ),
        "a released claim is processed again"
    );
    // An expired lease (its worker died) is taken over.
    let k2 = SourceKey::new("pdf", "sha", "");
    assert!(matches!(
        db.store
            .claim(&k2, "g", Duration::from_millis(1), wait, false)
            .await
            .unwrap(),
        Claim::Mine { .. }
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(matches!(
        db.store.claim(&k2, "h", lease, wait, false).await.unwrap(),
        Claim::Mine { .. }
    ));
}
both!(dedup_sqlite, dedup_postgres, dedup);

/// Four processes starting at once on an empty database: every one opens, the schema is
/// applied once (PostgreSQL: advisory lock taken before anything is created; SQLite: an
/// immediate transaction).
async fn four_at_once(cfg: hlbot_store::StoreConfig) {
    let open = || Store::open(&cfg);
    let (a, b, c, d) = tokio::join!(open(), open(), open(), open());
    for s in [a, b, c, d] {
        let s = s.expect("every concurrent open succeeds");
        assert_eq!(migrate::status(&s).await.unwrap().applied, vec![1, 2, 3]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_migrations_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    four_at_once(hlbot_store::StoreConfig::sqlite_in(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_migrations_postgres() {
    let Some(pg) = hlbot_testkit::TestPostgres::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = hlbot_store::StoreConfig::sqlite_in(dir.path());
    cfg.url = Some(pg.url.clone());
    four_at_once(cfg).await;
}
