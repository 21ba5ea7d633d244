//! Worker semantics against the real Redis: results, failures, dead letters, ignore_result,
//! expires, ETA without duplicates, retries, time limits, prefetch, graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hlbot_engine::deadletter;
use hlbot_engine::{Client, Registry, SendOptions, Task, TaskContext, TaskError, WorkerOptions};
use hlbot_proto::State;
use redis::AsyncCommands;
use serde_json::{Map, Value, json};

use crate::fixture::TestRedis;

pub use hlbot_testkit::InProcess as Running;
pub use hlbot_testkit::worker::options as opts;

pub async fn start(t: &TestRedis, registry: Registry, o: WorkerOptions, vt: Duration) -> Running {
    let client = Client::new(t.broker(vt).await, t.backend().await, Default::default());
    Running::start(client, registry, o).await
}

/// A worker with acks_late on `queue`, running the debug tasks (one-hour visibility timeout).
pub async fn acks_late_worker(t: &TestRedis, queue: &str) -> Running {
    let mut o = opts(&[queue]);
    o.acks_late = true;
    start(
        t,
        Registry::with_debug_tasks(),
        o,
        Duration::from_secs(3600),
    )
    .await
}

pub fn q(queue: &str) -> SendOptions {
    SendOptions {
        queue: Some(queue.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn echo_fail_and_started() {
    let t = TestRedis::new();
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        opts(&["default"]),
        Duration::from_secs(3600),
    )
    .await;
    let client = t.client().await;
    let kw: Map<String, Value> = [("k".to_string(), json!("é"))].into_iter().collect();
    let h = client
        .send_task(
            "hlbot.debug.echo",
            vec![json!(1), json!([2])],
            kw,
            q("default"),
        )
        .await
        .expect("send");
    let v = h.get(Duration::from_secs(10)).await.expect("echo result");
    assert_eq!(v, json!({"args": [1, [2]], "kwargs": {"k": "é"}}));
    let f = client
        .send_task(
            "hlbot.debug.fail",
            vec![json!("bad thing")],
            Map::new(),
            q("default"),
        )
        .await
        .expect("send");
    let meta = f.wait_meta(Duration::from_secs(10)).await.expect("meta");
    assert_eq!(meta.status, State::Failure);
    let exc = meta.exception().expect("exception");
    assert_eq!(
        (exc.exc_type.as_str(), exc.exc_module.as_str()),
        ("RuntimeError", "builtins")
    );
    assert_eq!(exc.exc_message, vec![json!("bad thing")]);
    assert_eq!(t.runs(&h.id).await, 1);
    w.stop().await;
    let mut c = t.conn().await;
    let unacked: i64 = c.hlen(t.key("unacked")).await.expect("hlen");
    assert_eq!(unacked, 0, "nothing left unacked");
}

#[tokio::test]
async fn unknown_and_malformed_messages_are_dead_lettered_and_replayable() {
    let t = TestRedis::new();
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        opts(&["default"]),
        Duration::from_secs(3600),
    )
    .await;
    let client = t.client().await;
    let h = client
        .send_task("no.such.task", vec![], Map::new(), q("default"))
        .await
        .expect("send");
    let meta = h.wait_meta(Duration::from_secs(10)).await.expect("meta");
    assert_eq!(meta.status, State::Failure);
    assert_eq!(
        meta.exception().map(|e| e.exc_type),
        Some("NotRegistered".into())
    );
    let mut c = t.conn().await;
    let _: () = c
        .lpush(t.key("default"), "{\"not\": \"a kombu message\"")
        .await
        .expect("lpush");
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let d = deadletter::list(client.broker(), 10).await.expect("list");
        if d.len() >= 2 || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead.iter()
            .any(|d| d.reason.contains("not JSON") && d.raw.starts_with("{\"not\""))
    );
    assert!(
        dead.iter()
            .any(|d| d.reason.contains("not registered: no.such.task")
                && d.task_id.as_deref() == Some(h.id.as_str()))
    );
    let unacked: i64 = c.hlen(t.key("unacked")).await.expect("hlen");
    assert_eq!(unacked, 0);
    w.stop().await;
    // Replay puts it back on its queue.
    assert_eq!(
        deadletter::replay(client.broker(), Some(&h.id))
            .await
            .expect("replay"),
        1
    );
    assert_eq!(client.broker().len("default").await.expect("len"), 1);
    assert_eq!(
        deadletter::list(client.broker(), 10)
            .await
            .expect("list")
            .len(),
        1
    );
}

#[tokio::test]
async fn ignore_result_and_expires() {
    let t = TestRedis::new();
    let client = t.client().await;
    let ignored = client
        .send_task(
            "hlbot.debug.echo",
            vec![],
            Map::new(),
            SendOptions {
                ignore_result: Some(true),
                ..q("default")
            },
        )
        .await
        .expect("send");
    let expired = client
        .send_task(
            "hlbot.debug.echo",
            vec![],
            Map::new(),
            SendOptions {
                expires: Some(-1.0),
                ..q("default")
            },
        )
        .await
        .expect("send");
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        opts(&["default"]),
        Duration::from_secs(3600),
    )
    .await;
    let meta = expired
        .wait_meta(Duration::from_secs(10))
        .await
        .expect("meta");
    assert_eq!(meta.status, State::Revoked);
    assert_eq!(
        meta.exception().map(|e| e.exc_message),
        Some(vec![json!("expired")])
    );
    assert_eq!(t.runs(&expired.id).await, 0, "expired task must not run");
    // The ignored one ran but stored nothing at all.
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.runs(&ignored.id).await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.runs(&ignored.id).await, 1);
    assert_eq!(ignored.state().await.expect("state"), State::Pending);
    w.stop().await;
}

#[tokio::test]
async fn eta_held_past_visibility_timeout_runs_exactly_once() {
    let t = TestRedis::new();
    let vt = Duration::from_secs(2);
    let w = start(&t, Registry::with_debug_tasks(), opts(&["default"]), vt).await;
    let client = t.client().await;
    let sent = Instant::now();
    let h = client
        .send_task(
            "hlbot.debug.echo",
            vec![json!("eta")],
            Map::new(),
            SendOptions {
                countdown: Some(6.0),
                ..q("default")
            },
        )
        .await
        .expect("send");
    // A restorer racing beside the worker every 200 ms, like a kombu consumer would.
    let restorer = t.broker(vt).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let racer = tokio::spawn(async move {
        let mut restored = 0;
        while !stop2.load(Ordering::SeqCst) {
            restored += restorer.restore_visible().await.unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        restored
    });
    h.get(Duration::from_secs(20)).await.expect("result");
    assert!(
        sent.elapsed() >= Duration::from_millis(5900),
        "ran before its ETA: {:?}",
        sent.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let restored = racer.await.expect("join");
    assert_eq!(restored, 0, "the held message was never restored");
    assert_eq!(t.runs(&h.id).await, 1);
    w.stop().await;
}

/// A task that ignores cancellation (only a hard limit stops it) and counts its starts.
struct Stubborn(Arc<AtomicUsize>);

#[async_trait]
impl Task for Stubborn {
    async fn run(
        &self,
        _: TaskContext,
        args: Vec<Value>,
        _: Map<String, Value>,
    ) -> Result<Value, TaskError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let secs = args.first().and_then(Value::as_f64).unwrap_or(30.0);
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        Ok(json!("finished"))
    }
}

#[tokio::test]
async fn soft_and_hard_time_limits_and_the_worker_keeps_serving() {
    let t = TestRedis::new();
    let starts = Arc::new(AtomicUsize::new(0));
    let mut reg = Registry::with_debug_tasks();
    reg.register("test.stubborn", Stubborn(starts.clone()));
    let w = start(&t, reg, opts(&["default"]), Duration::from_secs(3600)).await;
    let client = t.client().await;
    let soft = client
        .send_task(
            "hlbot.debug.sleep",
            vec![json!(30)],
            Map::new(),
            SendOptions {
                soft_time_limit: Some(0.5),
                ..q("default")
            },
        )
        .await
        .expect("send");
    let hard = client
        .send_task(
            "test.stubborn",
            vec![json!(30)],
            Map::new(),
            SendOptions {
                time_limit: Some(1.0),
                ..q("default")
            },
        )
        .await
        .expect("send");
    let started = Instant::now();
    let m = soft.wait_meta(Duration::from_secs(10)).await.expect("meta");
    assert_eq!(
        m.exception().map(|e| e.exc_type),
        Some("SoftTimeLimitExceeded".into())
    );
    let m = hard.wait_meta(Duration::from_secs(10)).await.expect("meta");
    assert_eq!(m.status, State::Failure);
    let e = m.exception().expect("exc");
    assert_eq!(
        (e.exc_type.as_str(), e.exc_module.as_str()),
        ("TimeLimitExceeded", "billiard.exceptions")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let after = client
        .send_task(
            "hlbot.debug.echo",
            vec![json!("still here")],
            Map::new(),
            q("default"),
        )
        .await
        .expect("send");
    assert_eq!(
        after.get(Duration::from_secs(10)).await.expect("ok")["args"][0],
        "still here"
    );
    w.stop().await;
}

#[tokio::test]
async fn retries_republish_with_backoff_then_succeed() {
    let t = TestRedis::new();
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        opts(&["default"]),
        Duration::from_secs(3600),
    )
    .await;
    let client = t.client().await;
    let key = uuid::Uuid::new_v4().to_string();
    let h = client
        .send_task(
            "hlbot.debug.flaky",
            vec![json!(2), json!(key)],
            Map::new(),
            q("default"),
        )
        .await
        .expect("send");
    // The RETRY state is visible in between.
    let mut saw_retry = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = h.meta().await.expect("meta");
        if m.status == State::Retry {
            saw_retry = true;
            assert_eq!(
                m.exception().map(|e| e.exc_type),
                Some("RuntimeError".into())
            );
        }
        if m.status == State::Success || Instant::now() > deadline {
            assert_eq!(m.result["attempts"], 3);
            assert_eq!(
                m.parent_id.as_deref(),
                Some(h.id.as_str()),
                "retries carry parent_id = own id"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(saw_retry);
    w.stop().await;
}

#[tokio::test]
async fn warm_shutdown_restores_reserved_and_held_messages() {
    let t = TestRedis::new();
    let mut o = opts(&["default"]);
    o.concurrency = 1;
    o.prefetch_multiplier = 3;
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        o,
        Duration::from_secs(3600),
    )
    .await;
    let client = t.client().await;
    let running = client
        .send_task(
            "hlbot.debug.sleep",
            vec![json!(1.0)],
            Map::new(),
            q("default"),
        )
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reserved = client
        .send_task("hlbot.debug.echo", vec![], Map::new(), q("default"))
        .await
        .expect("send");
    let held = client
        .send_task(
            "hlbot.debug.echo",
            vec![],
            Map::new(),
            SendOptions {
                countdown: Some(60.0),
                ..q("default")
            },
        )
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        client.broker().len("default").await.expect("len"),
        0,
        "both prefetched"
    );
    w.stop().await;
    // The running one finished; the other two are back on the queue, nothing unacked.
    assert_eq!(running.state().await.expect("state"), State::Success);
    assert_eq!(client.broker().len("default").await.expect("len"), 2);
    let mut c = t.conn().await;
    let unacked: i64 = c.hlen(t.key("unacked")).await.expect("hlen");
    assert_eq!(unacked, 0);
    let peek = client.broker().peek("default", 10).await.expect("peek");
    let ids: Vec<String> = peek
        .into_iter()
        .filter_map(|m| m.ok())
        .map(|m| m.id().to_string())
        .collect();
    assert!(ids.contains(&reserved.id) && ids.contains(&held.id));
}

#[tokio::test]
async fn results_are_stored_after_redis_forgets_its_scripts() {
    let t = TestRedis::new();
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        opts(&["default"]),
        Duration::from_secs(3600),
    )
    .await;
    let client = t.client().await;
    let h = client
        .send_task("hlbot.debug.echo", vec![json!(1)], Map::new(), q("default"))
        .await
        .expect("send");
    h.get(Duration::from_secs(10)).await.expect("first");
    // What a Redis restart does to the script cache.
    let mut c = t.conn().await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut c)
        .await
        .expect("flush");
    let h = client
        .send_task("hlbot.debug.echo", vec![json!(2)], Map::new(), q("default"))
        .await
        .expect("send");
    assert_eq!(
        h.get(Duration::from_secs(10))
            .await
            .expect("stored after the flush")["args"][0],
        2
    );
    assert_eq!(t.runs(&h.id).await, 1);
    w.stop().await;
}
