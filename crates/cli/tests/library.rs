//! The research library as operators meet it, through the `hlbot` binary: `hlbot ingest`
//! stores into SQLite with no set-up and `hlbot library list|search|export` show it; a worker
//! on PostgreSQL records every task run (`hlbot history`) without ever logging the password;
//! two workers given the same PDF at once process it once.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hlbot_engine::SendOptions;
use hlbot_testkit::{Proc, TestPostgres, TestRedis};
use serde_json::{Map, Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

/// `hlbot` with its own data directory and no keys, Redis or database from the environment.
fn hlbot(data: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("DATABASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("HLBOT_CONFIG")
        .env("REDIS_URL", "redis://127.0.0.1:1/0")
        .env("HLBOT_DATA_DIR", data)
        .env("HLBOT_CACHE_DIR", data.join("cache"))
        .stdin(Stdio::null());
    c
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "hlbot failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn ingest_stores_into_sqlite_with_no_setup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let src = dir.path().join("notes.txt");
    std::fs::write(
        &src,
        "RSI divergence on EUR/USD, 1H chart: buy when price makes a lower low while RSI makes a \
         higher low. Stop below the swing low, take profit at 2R.",
    )
    .unwrap();
    let run = || {
        ok(hlbot(&data)
            .arg("ingest")
            .arg(&src)
            .args(["-m", "rules"])
            .output()
            .unwrap())
    };
    run();
    assert!(
        data.join("library.sqlite3").is_file(),
        "the SQLite library was created"
    );
    let list = json_of(&ok(hlbot(&data)
        .args(["library", "list", "--json"])
        .output()
        .unwrap()));
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(rows[0]["kind"], "text");
    assert_eq!(rows[0]["strategies"], 1);
    // The same file again: still one source (keyed by its SHA-256), its strategies replaced.
    run();
    let list = json_of(&ok(hlbot(&data)
        .args(["library", "list", "--json"])
        .output()
        .unwrap()));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["strategies"], 1);
    let text = ok(hlbot(&data).args(["library", "list"]).output().unwrap());
    assert!(text.contains("notes.txt"), "{text}");
    let found = json_of(&ok(hlbot(&data)
        .args([
            "library",
            "search",
            "rsi divergence",
            "--instrument",
            "EUR/USD",
            "--json",
        ])
        .output()
        .unwrap()));
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert!(
        found[0]["indicators"]
            .as_array()
            .unwrap()
            .contains(&json!("RSI"))
    );
    let none = json_of(&ok(hlbot(&data)
        .args([
            "library",
            "search",
            "rsi",
            "--instrument",
            "GBP/JPY",
            "--json",
        ])
        .output()
        .unwrap()));
    assert!(none.as_array().unwrap().is_empty());
    let id = list[0]["id"].to_string();
    let shown = json_of(&ok(hlbot(&data)
        .args(["library", "show", &id, "--json"])
        .output()
        .unwrap()));
    assert_eq!(shown["strategies"].as_array().unwrap().len(), 1);
    assert_eq!(shown["usage"][0]["provider"], "rules");
    let csv = ok(hlbot(&data)
        .args(["library", "export", "--format", "csv"])
        .output()
        .unwrap());
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let md = ok(hlbot(&data)
        .args(["library", "export", "--format", "md"])
        .output()
        .unwrap());
    assert!(md.starts_with("# Strategies"), "{md}");
    let st = ok(hlbot(&data).args(["db", "status"]).output().unwrap());
    assert!(st.contains("applied [1, 2, 3], pending []"), "{st}");
    // --no-library leaves nothing.
    let other = dir.path().join("other");
    ok(hlbot(&other)
        .arg("ingest")
        .arg(&src)
        .args(["-m", "rules", "--no-library"])
        .output()
        .unwrap());
    assert!(!other.join("library.sqlite3").exists());
}

/// A worker started on `pg` through `--database-url` (with a password PostgreSQL's trust auth
/// ignores), its log in `log`.
fn worker(t: &TestRedis, url: &str, queues: &str, roots: &Path, log: &Path) -> Proc {
    let c = hlbot_testkit::hlbot(BIN, t)
        .args([
            "--database-url",
            url,
            "-l",
            "INFO",
            "worker",
            "-Q",
            queues,
            "-c",
            "2",
        ])
        .env("HLBOT_INPUT_ROOTS", roots)
        .env("HLBOT_CACHE_DIR", log.with_extension("cache"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("worker");
    Proc(c)
}

fn with_password(url: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_password(Some("pw-Sekr1t")).unwrap();
    u.to_string()
}

fn q(queue: &str) -> SendOptions {
    SendOptions {
        queue: Some(queue.into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_postgres_records_every_run() {
    let Some(pg) = TestPostgres::new().await else {
        return;
    };
    let url = with_password(&pg.url);
    let dir = tempfile::tempdir().unwrap();
    let t = TestRedis::new();
    let log = dir.path().join("w.log");
    let w = worker(&t, &url, "hist", dir.path(), &log);
    t.wait_workers(1, Duration::from_secs(30)).await;
    let c = t.client().await;
    let ok1 = c
        .send_task("hlbot.debug.echo", vec![json!(1)], Map::new(), q("hist"))
        .await
        .unwrap();
    let bad = c
        .send_task(
            "hlbot.debug.fail",
            vec![json!("kaputt")],
            Map::new(),
            q("hist"),
        )
        .await
        .unwrap();
    ok1.get(Duration::from_secs(20)).await.unwrap();
    let _ = bad.get(Duration::from_secs(20)).await;
    let history = |args: &[&str]| {
        let mut c = hlbot_testkit::worker::command(BIN);
        c.args(["--database-url", &url, "history", "--json"])
            .args(args);
        json_of(&ok(c.output().unwrap()))
    };
    let rows = hlbot_testkit::wait_until(Duration::from_secs(20), "runs recorded", || {
        let rows = history(&[]);
        (rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "SUCCESS" || r["state"] == "FAILURE")
            .count()
            == 2)
            .then_some(rows)
    });
    let failed = history(&["--state", "FAILURE", "--since", "1h"]);
    assert_eq!(failed.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(failed[0]["task_id"], json!(bad.id));
    assert_eq!(failed[0]["error_type"], "RuntimeError");
    assert_eq!(failed[0]["queue"], "hist");
    let by_task = history(&["--task", "hlbot.debug.echo"]);
    assert_eq!(by_task[0]["task_id"], json!(ok1.id));
    drop(w);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("pw-Sekr1t"),
        "the password reached the log:\n{text}"
    );
    let status = {
        let mut c = hlbot_testkit::worker::command(BIN);
        ok(c.args(["--database-url", &url, "db", "status"])
            .output()
            .unwrap())
    };
    assert!(
        !status.contains("pw-Sekr1t") && status.contains("***"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_given_the_same_pdf_process_it_once() {
    let Some(pg) = TestPostgres::new().await else {
        return;
    };
    let (Some(pdfs), Some(_)) = (
        hlbot_testkit::corpus("pdf"),
        hlbot_testkit::env::pdfium_lib(),
    ) else {
        return;
    };
    let pdf = pdfs.join("gen_trading_report_with_charts.pdf");
    let dir = tempfile::tempdir().unwrap();
    let t = TestRedis::new();
    let (la, lb) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let a = worker(&t, &pg.url, "pdf", &pdfs, &la);
    let b = worker(&t, &pg.url, "pdf", &pdfs, &lb);
    t.wait_workers(2, Duration::from_secs(30)).await;
    let c = t.client().await;
    let mut kw = Map::new();
    kw.insert("pdf_path".into(), json!(pdf));
    let h1 = c
        .send_task("process_pdf_document", vec![], kw.clone(), q("pdf"))
        .await
        .unwrap();
    let h2 = c
        .send_task("process_pdf_document", vec![], kw.clone(), q("pdf"))
        .await
        .unwrap();
    let r1 = h1.get(Duration::from_secs(120)).await.expect("first");
    let r2 = h2.get(Duration::from_secs(120)).await.expect("second");
    assert_eq!(r1["document_id"], r2["document_id"]);
    let logs = || {
        format!(
            "{}{}",
            std::fs::read_to_string(&la).unwrap(),
            std::fs::read_to_string(&lb).unwrap()
        )
    };
    assert!(
        r1 == r2,
        "the second reused the first's result; logs:\n{}",
        logs()
    );
    // A third request (any worker) reuses it; force=True processes again.
    let h3 = c
        .send_task("process_pdf_document", vec![], kw.clone(), q("pdf"))
        .await
        .unwrap();
    h3.get(Duration::from_secs(120)).await.unwrap();
    kw.insert("force".into(), json!(true));
    let h4 = c
        .send_task("process_pdf_document", vec![], kw, q("pdf"))
        .await
        .unwrap();
    h4.get(Duration::from_secs(120)).await.unwrap();
    drop((a, b));
    let logs = logs();
    let reused = logs.matches("reusing the stored result").count();
    assert_eq!(
        reused, 2,
        "two of four requests reused (the concurrent one and the third):\n{logs}"
    );
    let out = ok(hlbot_testkit::worker::command(BIN)
        .args(["--database-url", &pg.url, "library", "list", "--json"])
        .output()
        .unwrap());
    let list = json_of(&out);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let shown = json_of(&ok(hlbot_testkit::worker::command(BIN)
        .args(["--database-url", &pg.url, "library", "show", "--json"])
        .arg(r1["document_id"].as_str().unwrap())
        .output()
        .unwrap()));
    assert_eq!(shown["kind"], "pdf");
    assert_eq!(
        shown["pages"].as_array().unwrap().len(),
        r1["pages"].as_array().unwrap().len()
    );
}
