//! `hlbot worker -B` runs beat ticks from the config; `hlbot inspect`/`control` steer it; the
//! `shutdown` control command stops worker and embedded beat. Real Redis, real processes.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hlbot_testkit::TestRedis;
use redis::Commands;

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

/// The test's own key prefix (shared kit: its keys go when it ends) and a scratch folder.
struct Env {
    r: TestRedis,
    dir: std::path::PathBuf,
}

impl Env {
    fn new() -> Self {
        let r = TestRedis::new();
        let dir =
            std::env::temp_dir().join(format!("hlbot-ctl-{}", r.prefix.trim_end_matches(':')));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        Self { r, dir }
    }

    fn cmd(&self) -> Command {
        hlbot_testkit::hlbot(BIN, &self.r)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run hlbot")
    }

    fn redis(&self) -> redis::Connection {
        redis::Client::open(self.r.url.as_str())
            .expect("url")
            .get_connection()
            .expect("redis")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn worker_with_embedded_beat_inspected_and_shut_down() {
    let e = Env::new();
    let cfg = e.dir.join("hlbot.toml");
    std::fs::write(
        &cfg,
        "[beat]\nlease = 2.0\n\n[[beat.entries]]\nname = \"echo\"\ntask = \"hlbot.debug.echo\"\n\
         interval = 0.3\nargs = [\"tick\"]\nqueue = \"default\"\n",
    )
    .expect("config");
    let mut worker = e
        .cmd()
        .args(["--config", cfg.to_str().unwrap_or_default()])
        .args(["worker", "-B", "-Q", "default", "-n", "ctl@test"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut r = e.redis();
    // Beat ticks are run by the worker: results appear.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let keys: Vec<String> = r
            .keys(format!("{}celery-task-meta-*", e.r.prefix))
            .unwrap_or_default();
        if keys.len() >= 3 {
            let v: String = r.get(&keys[0]).expect("meta");
            assert!(v.contains("\"SUCCESS\"") && v.contains("tick"), "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "no beat ticks ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = e.run(&["inspect", "ping", "-j"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"ctl@test":{"ok":"pong"}}"#
    );
    let out = e.run(&["inspect", "stats", "-d", "ctl@test"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("->  ctl@test: OK") && text.contains("1 node online."),
        "{text}"
    );
    let out = e.run(&[
        "control",
        "time_limit",
        "hlbot.debug.echo",
        "60",
        "90",
        "-j",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"ctl@test":{"ok":"time limits set successfully"}}"#
    );
    let out = e.run(&["control", "rate_limit", "onlyone"]);
    assert!(!out.status.success(), "bad usage is an error");
    let out = e.run(&["control", "shutdown", "-t", "0.3"]);
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = worker.try_wait().expect("wait") {
            assert!(st.success(), "{st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "worker did not stop on remote shutdown"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The embedded beat released its lease on the way out.
    let lease: Option<String> = r
        .get(format!("{}hlbot.beat.lease", e.r.prefix))
        .expect("get");
    assert_eq!(lease, None);
}

#[test]
fn beat_rejects_a_bad_schedule() {
    let e = Env::new();
    let cfg = e.dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "[[beat.entries]]\nname = \"x\"\ntask = \"t\"\ncrontab = \"61 * * * *\"\n",
    )
    .expect("config");
    let out = e.run(&["--config", cfg.to_str().unwrap_or_default(), "beat"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("beat entry \"x\"") && err.contains("crontab"),
        "{err}"
    );
}
