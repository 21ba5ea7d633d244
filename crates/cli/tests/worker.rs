//! The `hlbot` binary as operators run it: worker processes killed, signalled, starved of Redis;
//! hard limits and memory caps on child processes; `hlbot call`. Real Redis, real processes.

use std::process::Command;
use std::time::{Duration, Instant};

use hlbot_engine::{Client, Router, SendOptions, TaskCall};
use hlbot_proto::State;
use hlbot_testkit::{PrivateRedis, Proc, TestRedis};
use redis::AsyncCommands;
use serde_json::{Map, json};

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

/// A test's own key prefix on the Redis under test (from the shared kit), and the worker
/// processes it starts.
struct Env(TestRedis);

impl std::ops::Deref for Env {
    type Target = TestRedis;
    fn deref(&self) -> &TestRedis {
        &self.0
    }
}

impl Env {
    fn new() -> Self {
        Self(TestRedis::new())
    }

    fn with_url(url: &str) -> Self {
        Self(TestRedis::on(url))
    }

    fn worker(&self, extra: &[&str]) -> Proc {
        self.worker_vt(extra, "3600")
    }

    fn worker_vt(&self, extra: &[&str], vt: &str) -> Proc {
        let global = ["--visibility-timeout", vt, "-l", "info"];
        let args = [&["-Q", "default", "--count-runs"][..], extra].concat();
        hlbot_testkit::bin_worker(BIN, self, &global, &args)
    }

    async fn client(&self, vt: Duration) -> Client {
        Client::new(
            self.broker(vt).await,
            self.backend().await,
            Router::default(),
        )
    }
}

fn q() -> SendOptions {
    SendOptions {
        queue: Some("default".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_run_loses_nothing_and_runs_nothing_twice() {
    let env = Env::new();
    let vt = Duration::from_secs(2);
    let client = env.client(vt).await;
    let calls: Vec<TaskCall> = (0..1000)
        .map(|i| TaskCall {
            name: "hlbot.debug.echo".into(),
            args: vec![json!(i)],
            kwargs: Map::new(),
            options: q(),
        })
        .collect();
    let handles = client.send_many(calls).await.expect("send");
    let mut w = env.worker_vt(
        &["--acks-late", "-c", "4", "--prefetch-multiplier", "8"],
        "2",
    );
    // Kill it once a part of the work is done.
    let mut conn = env.conn().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = client.broker().len("default").await.expect("len");
        if left < 800 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    w.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = w.wait();
    let unacked: i64 = conn
        .hlen(format!("{}unacked", env.prefix))
        .await
        .expect("hlen");
    eprintln!("killed with {unacked} messages in flight");
    // A new worker restores the in-flight ones after the visibility timeout and finishes.
    let mut w2 = env.worker_vt(&["--acks-late", "-c", "4"], "2");
    for h in &handles {
        let m = h
            .wait_meta(Duration::from_secs(60))
            .await
            .expect("every task finishes");
        assert_eq!(m.status, State::Success);
    }
    for h in &handles {
        assert_eq!(
            env.runs(&h.id).await,
            1,
            "task {} committed more than once",
            h.id
        );
    }
    w2.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        w2.wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_limit_kills_a_busy_loop_in_its_child_and_the_worker_serves_on() {
    let env = Env::new();
    let client = env.client(Duration::from_secs(3600)).await;
    let mut w = env.worker(&["-c", "2"]);
    let started = Instant::now();
    let cpu = client
        .send_task(
            "hlbot.debug.cpu",
            vec![json!(60)],
            Map::new(),
            SendOptions {
                time_limit: Some(1.0),
                ..q()
            },
        )
        .await
        .expect("send");
    let m = cpu.wait_meta(Duration::from_secs(30)).await.expect("meta");
    assert_eq!(m.status, State::Failure);
    assert_eq!(
        m.exception().map(|e| e.exc_type),
        Some("TimeLimitExceeded".into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let echo = client
        .send_task("hlbot.debug.echo", vec![json!("ok")], Map::new(), q())
        .await
        .expect("send");
    assert_eq!(
        echo.get(Duration::from_secs(20)).await.expect("echo")["args"][0],
        "ok"
    );
    // No busy child left behind.
    let spinning = Command::new("pgrep")
        .args(["-f", "worker-child"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let pids: Vec<u32> = String::from_utf8_lossy(&spinning)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid_is_ours = stat.split_whitespace().nth(3) == Some(&w.id().to_string());
        let running = stat.split_whitespace().nth(2) == Some("R");
        assert!(!(ppid_is_ours && running), "child {pid} still spinning");
    }
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(w.wait_exit(Duration::from_secs(20)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_reused_and_recycled_after_max_tasks_per_child() {
    let env = Env::new();
    let client = env.client(Duration::from_secs(3600)).await;
    let mut pids = Vec::new();
    for extra in [
        &["-c", "1"][..],
        &["-c", "1", "--max-tasks-per-child", "1"][..],
    ] {
        let mut w = env.worker(extra);
        let mut got = Vec::new();
        for _ in 0..2 {
            let h = client
                .send_task("hlbot.debug.cpu", vec![json!(0)], Map::new(), q())
                .await
                .expect("send");
            let v = h.get(Duration::from_secs(30)).await.expect("cpu");
            let pid = v["pid"].as_u64().expect("pid");
            assert_ne!(pid, u64::from(w.id()), "ran in a child, not in the worker");
            got.push(pid);
        }
        pids.push(got);
        w.signal(nix::sys::signal::Signal::SIGTERM);
        assert!(w.wait_exit(Duration::from_secs(20)).is_some());
    }
    assert_eq!(
        pids[0][0], pids[0][1],
        "a child serves many tasks by default"
    );
    assert_ne!(
        pids[1][0], pids[1][1],
        "--max-tasks-per-child 1 recycles after each task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cap_kills_the_child_with_a_clear_error() {
    let env = Env::new();
    let client = env.client(Duration::from_secs(3600)).await;
    // 1 MiB cap: any child process is over it at once.
    let mut w = env.worker(&["--max-memory-per-child", "1024"]);
    let h = client
        .send_task("hlbot.debug.cpu", vec![json!(30)], Map::new(), q())
        .await
        .expect("send");
    let m = h.wait_meta(Duration::from_secs(30)).await.expect("meta");
    assert_eq!(
        m.exception().map(|e| e.exc_type),
        Some("MemoryLimitExceeded".into())
    );
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(w.wait_exit(Duration::from_secs(20)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_second_signal_requeues_acks_late_work() {
    let env = Env::new();
    let client = env.client(Duration::from_secs(3600)).await;
    let mut w = env.worker(&["--acks-late", "-c", "1"]);
    let long = client
        .send_task("hlbot.debug.sleep", vec![json!(30)], Map::new(), q())
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(20);
    while long.state().await.expect("state") != State::Started && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.signal(nix::sys::signal::Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        w.try_wait().expect("wait").is_none(),
        "warm shutdown waits for the running task"
    );
    w.signal(nix::sys::signal::Signal::SIGTERM);
    let status = w.wait_exit(Duration::from_secs(20));
    assert!(status.is_some(), "cold shutdown exits");
    // Nothing lost: the message is back on the queue, flagged redelivered; nothing unacked.
    let peek = client.broker().peek("default", 10).await.expect("peek");
    let back: Vec<_> = peek.into_iter().filter_map(Result::ok).collect();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id(), long.id);
    assert!(back[0].headers.redelivered());
    let mut c = env.conn().await;
    let unacked: i64 = c
        .hlen(format!("{}unacked", env.prefix))
        .await
        .expect("hlen");
    assert_eq!(unacked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_resumes_consuming_after_redis_restarts() {
    let Some(mut server) = PrivateRedis::start() else {
        return;
    };
    let env = Env::with_url(&server.url());
    let mut w = env.worker(&[]);
    {
        let client = env.client(Duration::from_secs(3600)).await;
        let h = client
            .send_task("hlbot.debug.echo", vec![json!(1)], Map::new(), q())
            .await
            .expect("send");
        h.get(Duration::from_secs(20))
            .await
            .expect("before restart");
    }
    server.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart();
    let client = env.client(Duration::from_secs(3600)).await;
    let h = client
        .send_task("hlbot.debug.echo", vec![json!(2)], Map::new(), q())
        .await
        .expect("send");
    let v = h
        .get(Duration::from_secs(30))
        .await
        .expect("after restart the worker consumes again");
    assert_eq!(v["args"][0], 2);
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(w.wait_exit(Duration::from_secs(20)).is_some());
}

#[test]
fn call_runs_in_process_without_redis() {
    let out = hlbot_testkit::worker::command(BIN)
        .args([
            "--broker",
            "redis://127.0.0.1:1/0",
            "call",
            "hlbot.debug.echo",
            "--args",
            "[1, \"x\"]",
            "--kwargs",
            "{\"k\": true}",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(last).ok(),
        Some(json!({"args": [1, "x"], "kwargs": {"k": true}}))
    );
    let out = hlbot_testkit::worker::command(BIN)
        .args(["call", "hlbot.debug.fail", "--args", "[\"boom\"]"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RuntimeError: boom"));
    let out = hlbot_testkit::worker::command(BIN)
        .args(["call", "no.such"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotRegistered"));
}
