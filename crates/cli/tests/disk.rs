//! A full disk under a worker: its cache and SQLite library on a small tmpfs of its own (a
//! private mount namespace through `unshare`), full when it starts and again while tasks run. A
//! task that needs the disk is retried, not failed, and succeeds once space is back; the library
//! opens once it can; the task history catches up with every run (and never holds the database's
//! write lock); the worker keeps running throughout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hlbot_engine::SendOptions;
use hlbot_proto::State;
use hlbot_testkit::{Proc, TestRedis, wait_until};
use serde_json::{Map, Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

/// The `unshare` options that let this process mount a tmpfs in a namespace of its own: plain
/// `--mount` as root, with a user namespace otherwise; `None` (a skip, a failure under CI) when
/// neither works here.
fn namespace(probe: &Path) -> Option<&'static [&'static str]> {
    const WAYS: [&[&str]; 2] = [&["--mount"], &["--map-root-user", "--mount"]];
    WAYS.into_iter()
        .find(|way| {
            Command::new("unshare")
                .args(*way)
                .args(["sh", "-c", r#"mount -t tmpfs -o size=64k tmpfs "$1""#, "sh"])
                .arg(probe)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .or_else(|| {
            hlbot_testkit::missing("unshare able to mount a tmpfs (root or user namespaces)")
        })
}

/// `hlbot worker -Q default,pdf` whose `mnt` is a 4 MiB tmpfs holding its data and cache folders,
/// filled up (`mnt/filler`) before the worker starts.
fn worker(ns: &[&str], t: &TestRedis, mnt: &Path, roots: &Path, log: &Path) -> Proc {
    let script = r#"mount -t tmpfs -o size=4m tmpfs "$1" && mkdir "$1/data" "$1/cache" &&
        { dd if=/dev/zero of="$1/filler" bs=64k 2>/dev/null; shift; exec "$@"; }"#;
    let child = Command::new("unshare")
        .args(ns)
        .args(["sh", "-c", script, "sh"])
        .arg(mnt)
        .args([
            BIN,
            "--broker",
            &t.url,
            "--key-prefix",
            &t.prefix,
            "-l",
            "info",
        ])
        .args(["worker", "-Q", "default,pdf", "-c", "2"])
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("HLBOT_CONFIG")
        .env("HLBOT_DATA_DIR", mnt.join("data"))
        .env("HLBOT_CACHE_DIR", mnt.join("cache"))
        .env("HLBOT_INPUT_ROOTS", roots)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("unshare");
    Proc(child)
}

/// Writes zeros to `file` until the filesystem refuses: it is full.
fn fill(file: &Path) {
    let mut f = std::fs::File::create(file).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(28), "{e}");
            return;
        }
    }
}

fn q(queue: &str) -> SendOptions {
    SendOptions {
        queue: Some(queue.into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_retries_the_task_and_the_history_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let Some(ns) = namespace(&mnt) else { return };
    let (Some(pdfs), Some(_)) = (
        hlbot_testkit::corpus("pdf"),
        hlbot_testkit::env::pdfium_lib(),
    ) else {
        return;
    };
    let t = TestRedis::new();
    let log = dir.path().join("w.log");
    let w = worker(ns, &t, &mnt, &pdfs, &log);
    t.wait_workers(1, Duration::from_secs(30)).await;
    let logs = || std::fs::read_to_string(&log).unwrap();
    // The worker's own view of its folders (the tmpfs is mounted in its namespace only).
    let view = PathBuf::from(format!("/proc/{}/root", w.id())).join(mnt.strip_prefix("/").unwrap());
    let filler = view.join("filler");
    assert!(logs().contains("starting without it"), "{}", logs());

    // Full since start-up: tasks that need no disk run, the one that does is retried.
    let c = t.client().await;
    let echo = |from: i64, n: i64| {
        let c = &c;
        async move {
            for i in from..from + n {
                let h = c.send_task("hlbot.debug.echo", vec![json!(i)], Map::new(), q("default"));
                h.await
                    .unwrap()
                    .get(Duration::from_secs(30))
                    .await
                    .expect("runs on a full disk");
            }
        }
    };
    echo(0, 20).await;
    let mut kw = Map::new();
    kw.insert(
        "pdf_path".into(),
        json!(pdfs.join("py-pdf-sample-files__minimal-document.pdf")),
    );
    let pdf = c
        .send_task("process_pdf_document", vec![], kw, q("pdf"))
        .await
        .unwrap();
    let meta = loop {
        let meta = pdf.meta().await.unwrap();
        if matches!(meta.status, State::Retry | State::Failure | State::Success) {
            break meta;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(meta.status, State::Retry, "{meta:?}\n{}", logs());
    assert!(
        meta.result.to_string().contains("No space left on device"),
        "{meta:?}"
    );

    // Space comes back: the library opens (retried every 10 s), the task's retry (backoff up
    // to 60 s) succeeds.
    std::fs::remove_file(&filler).unwrap();
    wait_until(Duration::from_secs(30), "the library opening", || {
        logs().contains("is back: library").then_some(())
    });
    let doc = pdf
        .get(Duration::from_secs(120))
        .await
        .expect("the retry succeeds");
    assert!(doc["text"].as_str().is_some_and(|s| !s.is_empty()), "{doc}");

    // Full again mid-run. The history writer retries each second: let it meet the full disk a
    // few times (its second failure used to leave a transaction open for good).
    fill(&filler);
    let failed_before = logs().matches("task history: cannot write").count();
    echo(20, 5).await;
    wait_until(Duration::from_secs(30), "the history write failing", || {
        (logs().matches("task history: cannot write").count() > failed_before).then_some(())
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    std::fs::remove_file(&filler).unwrap();
    echo(25, 5).await;

    // SQLite resolves /proc/<pid>/root to the host's /: read the history from inside.
    let enter: &[&str] = if ns.len() == 1 {
        &["-m"]
    } else {
        &["-U", "-m"]
    };
    let history = || -> Option<Vec<Value>> {
        let out = Command::new("nsenter")
            .args(["-t", &w.id().to_string()])
            .args(enter)
            .args([BIN, "history", "--json", "-n", "100"])
            .env_remove("DATABASE_URL")
            .env("HLBOT_DATA_DIR", mnt.join("data"))
            .output()
            .ok()?;
        // "database is locked" here was the bug: a write that never committed held the lock.
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        (rows.iter().filter(|r| r["state"] == "SUCCESS").count() == 31).then_some(rows)
    };
    let rows = wait_until(Duration::from_secs(30), "every run in the history", history);
    let pdf_row = rows.iter().find(|r| r["task_id"] == json!(pdf.id)).unwrap();
    assert!(pdf_row["retries"].as_i64() >= Some(1), "{pdf_row}");
    let text = logs();
    assert!(text.contains("task history: cannot write"), "{text}");
    assert!(text.contains("is back"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}
