//! `--log-format json`: a worker's whole stderr is JSON, one object per line with timestamp,
//! level, target and message, and its task lines carry `task_id` and `task_name` as fields —
//! in-process tasks and tasks run in a child process alike. `HLBOT_LOG_FORMAT` and the config
//! key `log_format` choose it too.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use hlbot_testkit::{Proc, TestRedis};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

/// Run a worker configured by `set`, send it `task`, stop it: every stderr line parsed.
fn worker_log(r: &TestRedis, task: &str, set: impl FnOnce(&mut Command)) -> (String, Vec<Value>) {
    let mut c = hlbot_testkit::hlbot(BIN, r);
    c.env_remove("HLBOT_LOG_FORMAT");
    set(&mut c);
    let mut w = Proc(
        c.args(["worker", "-Q", "default", "-c", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn worker"),
    );
    let sent = hlbot_testkit::hlbot(BIN, r)
        .args(["send", task, "--args", "[1]", "--wait", "-t", "60"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    let id = String::from_utf8_lossy(&sent.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        w.wait_exit(Duration::from_secs(30)).is_some(),
        "worker stops"
    );
    let mut err = String::new();
    w.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let lines = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    (id, lines)
}

/// The line whose message contains `word`, for task `id`.
fn task_line<'a>(lines: &'a [Value], id: &str, word: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["task_id"] == id && v["message"].as_str().is_some_and(|m| m.contains(word)))
        .unwrap_or_else(|| panic!("no {word:?} line with task_id {id}: {lines:#?}"))
}

#[test]
fn a_worker_logs_json_lines_with_task_fields() {
    let r = TestRedis::new();
    let (id, lines) = worker_log(&r, "hlbot.debug.echo", |c| {
        c.args(["--log-format", "json"]);
    });
    assert!(lines.len() >= 3, "{lines:#?}");
    for v in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(v.get(field).is_some(), "{field} missing: {v}");
        }
    }
    // The banner is one event with its facts as fields.
    let banner = lines
        .iter()
        .find(|v| v.get("node").is_some())
        .unwrap_or_else(|| panic!("no banner event: {lines:#?}"));
    assert_eq!(banner["queues"], "default", "{banner}");
    assert_eq!(banner["concurrency"], 1, "{banner}");
    assert!(banner.get("tools").is_some(), "{banner}");
    for word in ["received", "succeeded"] {
        let l = task_line(&lines, &id, word);
        assert_eq!(l["task_name"], "hlbot.debug.echo", "{l}");
        assert_eq!(l["level"], "INFO", "{l}");
        assert!(
            l["target"].as_str().unwrap().starts_with("hlbot_engine"),
            "{l}"
        );
        chrono::DateTime::parse_from_rfc3339(l["timestamp"].as_str().unwrap()).expect("RFC 3339");
    }
}

#[test]
fn the_variable_and_the_config_key_choose_json_too() {
    let r = TestRedis::new();
    let (id, lines) = worker_log(&r, "hlbot.debug.cpu", |c| {
        c.env("HLBOT_LOG_FORMAT", "json");
    });
    // hlbot.debug.cpu runs in a child process: its lines are JSON too.
    task_line(&lines, &id, "succeeded");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hlbot.toml");
    std::fs::write(&cfg, "log_format = \"json\"\n").unwrap();
    let (id, lines) = worker_log(&r, "hlbot.debug.echo", |c| {
        c.env("HLBOT_CONFIG", &cfg);
    });
    task_line(&lines, &id, "received");
}

#[test]
fn human_lines_do_not_repeat_the_task_fields() {
    let r = TestRedis::new();
    let mut c = hlbot_testkit::hlbot(BIN, &r);
    let mut w = Proc(
        c.env_remove("HLBOT_LOG_FORMAT")
            .args(["worker", "-Q", "default", "-c", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let sent = hlbot_testkit::hlbot(BIN, &r)
        .args(["send", "hlbot.debug.echo", "--wait"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    w.signal(nix::sys::signal::Signal::SIGTERM);
    w.wait_exit(Duration::from_secs(30));
    let mut err = String::new();
    w.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let received = err
        .lines()
        .find(|l| l.contains("] received"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(!received.contains("task_id="), "{received}");
    assert!(received.trim_end().ends_with("received"), "{received}");
    assert!(!err.trim_start().starts_with('{'), "{err}");
}

#[test]
fn beat_logs_json_lines_too() {
    let r = TestRedis::new();
    let mut b = Proc(
        hlbot_testkit::hlbot(BIN, &r)
            .args(["--log-format", "json", "-l", "info", "beat"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    b.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(b.wait_exit(Duration::from_secs(20)).is_some(), "beat stops");
    let mut err = String::new();
    b.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let lines: Vec<Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    // The default entries (the cache cleanups), each one event with its schedule as a field.
    let entries: Vec<&Value> = lines
        .iter()
        .filter(|v| v["message"] == "beat entry")
        .collect();
    assert!(entries.len() >= 2, "{lines:#?}");
    assert!(
        entries
            .iter()
            .all(|e| e["schedule"].is_string() && e["task"].is_string())
    );
}
