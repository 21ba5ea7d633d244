//! Acks and prefetch: Celery's QoS accounting, STARTED while running, the idle wake-up's unacked
//! entry written ahead of its ack, reject-with-requeue through the writer, and the batched result
//! store never overwriting a SUCCESS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hlbot_engine::{Client, Registry, Task, TaskContext, TaskError};
use hlbot_proto::State;
use redis::AsyncCommands;
use serde_json::{Map, Value, json};

use crate::fixture::TestRedis;
use crate::worker::{acks_late_worker, opts, q, start};

/// Wait until nothing is left unacked (hash and index) or queued on `queue`.
async fn settled(t: &TestRedis, client: &Client, queue: &str) {
    let mut c = t.conn().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let unacked: u64 = c.hlen(t.key("unacked")).await.expect("hlen");
        let index: u64 = c.zcard(t.key("unacked_index")).await.expect("zcard");
        let queued = client.broker().len(queue).await.expect("len");
        if (unacked, index, queued) == (0, 0, 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {unacked} unacked ({index} indexed), {queued} queued"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn prefetch_limit_is_concurrency_times_multiplier() {
    // Celery's QoS: at most concurrency × multiplier *unacked* messages. With early ack a running
    // task is acked, so -c 2 -m 1 runs 2 and reserves 2 more; with acks_late the running ones
    // still count, so it holds exactly 2.
    for (acks_late, left) in [(false, 2), (true, 4)] {
        let t = TestRedis::new();
        let client = t.client().await;
        for _ in 0..6 {
            client
                .send_task(
                    "hlbot.debug.sleep",
                    vec![json!(0.5)],
                    Map::new(),
                    q("default"),
                )
                .await
                .expect("send");
        }
        let mut o = opts(&["default"]);
        o.concurrency = 2;
        o.prefetch_multiplier = 1;
        o.acks_late = acks_late;
        let w = start(
            &t,
            Registry::with_debug_tasks(),
            o,
            Duration::from_secs(3600),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            client.broker().len("default").await.expect("len"),
            left,
            "acks_late={acks_late}: {} taken",
            6 - left
        );
        w.stop().await;
    }
}

#[tokio::test]
async fn started_is_stored_while_running_and_the_idle_wakeup_records_unacked() {
    // An idle worker (blocked in BRPOP) takes an acks_late task: STARTED is visible while it runs
    // and its unacked entry is recorded (by the writer, ahead of the ack) until it finishes.
    let t = TestRedis::new();
    let w = acks_late_worker(&t, "default").await;
    let client = t.client().await;
    // Let the worker reach its blocking wait on the empty queue.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = client
        .send_task(
            "hlbot.debug.sleep",
            vec![json!(0.6)],
            Map::new(),
            q("default"),
        )
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.state().await.expect("state") != State::Started {
        assert!(Instant::now() < deadline, "STARTED never stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut c = t.conn().await;
    let unacked: u64 = c.hlen(t.key("unacked")).await.expect("hlen");
    let index: u64 = c.zcard(t.key("unacked_index")).await.expect("zcard");
    assert_eq!(
        (unacked, index),
        (1, 1),
        "running acks_late task is unacked"
    );
    h.get(Duration::from_secs(5)).await.expect("result");
    settled(&t, &client, "default").await;
    w.stop().await;
}

#[tokio::test]
async fn one_store_call_never_overwrites_a_success_written_earlier_in_it() {
    use hlbot_engine::redis::scripts::STORE_RESULT;
    use hlbot_proto::ResultMeta;
    let t = TestRedis::new();
    let backend = t.backend().await;
    let key = backend.keys().result("x1");
    let other = backend.keys().result("x2");
    let now = chrono::Utc::now();
    let success = ResultMeta::new("x1", State::Success, json!(1), now).to_json();
    let failure = ResultMeta::new("x1", State::Failure, json!(null), now).to_json();
    let started = ResultMeta::new("x2", State::Started, json!(null), now).to_json();
    let mut c = t.conn().await;
    let n: i64 = STORE_RESULT
        .key(&key)
        .key(&key)
        .key(&other)
        .arg(60)
        .arg(&success)
        .arg(&failure)
        .arg(&started)
        .invoke_async(&mut c)
        .await
        .expect("script");
    assert_eq!(
        n, 2,
        "SUCCESS and the other key stored, the FAILURE skipped"
    );
    assert_eq!(
        backend.get("x1").await.expect("get").map(|m| m.status),
        Some(State::Success)
    );
    assert_eq!(
        backend.get("x2").await.expect("get").map(|m| m.status),
        Some(State::Started)
    );
    let ttl: i64 = c.ttl(&key).await.expect("ttl");
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
}

/// Rejects with requeue on its first `n` runs, then succeeds; counts runs.
struct RejectFirst(Arc<AtomicUsize>, usize);

#[async_trait]
impl Task for RejectFirst {
    async fn run(
        &self,
        _: TaskContext,
        _: Vec<Value>,
        _: Map<String, Value>,
    ) -> Result<Value, TaskError> {
        let run = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        if run <= self.1 {
            return Err(TaskError::Reject {
                exc: hlbot_proto::ExceptionInfo::new("Reject", "celery.exceptions", vec![]),
                requeue: true,
            });
        }
        Ok(json!(run))
    }
}

#[tokio::test]
async fn reject_with_requeue_puts_an_acks_late_message_back_once() {
    // From an idle wake-up too: the requeue runs on the writer after the unacked entry lands.
    let t = TestRedis::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut reg = Registry::with_debug_tasks();
    reg.register("test.reject_first", RejectFirst(runs.clone(), 2));
    let mut o = opts(&["default"]);
    o.acks_late = true;
    let w = start(&t, reg, o, Duration::from_secs(3600)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = t.client().await;
    let h = client
        .send_task("test.reject_first", vec![], Map::new(), q("default"))
        .await
        .expect("send");
    assert_eq!(
        h.get(Duration::from_secs(10)).await.expect("result"),
        json!(3)
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    settled(&t, &client, "default").await;
    w.stop().await;
}

/// Run a worker with `o` until every handle has its result, sampling `HLEN unacked` as fast as
/// one connection allows meanwhile; then wait for the queue to settle and stop the worker.
/// Returns the largest number of unacked entries seen.
async fn drain_max_unacked(
    t: &TestRedis,
    client: &Client,
    hs: &[hlbot_engine::AsyncResult],
    o: hlbot_engine::WorkerOptions,
    within: Duration,
) -> u64 {
    let key = t.key("unacked");
    let mut c = t.conn().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampling = stop.clone();
    let sampler = tokio::spawn(async move {
        let mut max = 0u64;
        while !sampling.load(Ordering::SeqCst) {
            let n: u64 = c.hlen(&key).await.expect("hlen");
            max = max.max(n);
        }
        max
    });
    let w = start(
        t,
        Registry::with_debug_tasks(),
        o,
        Duration::from_secs(3600),
    )
    .await;
    for h in hs {
        h.get(within).await.expect("result");
    }
    stop.store(true, Ordering::SeqCst);
    let max = sampler.await.expect("sampler");
    settled(t, client, "default").await;
    w.stop().await;
    max
}

/// Send `n` calls of `task(arg)` to `default` in one batch.
async fn send_n(
    client: &Client,
    n: usize,
    task: &str,
    arg: Value,
) -> Vec<hlbot_engine::AsyncResult> {
    let calls = (0..n)
        .map(|_| hlbot_engine::TaskCall {
            name: task.into(),
            args: vec![arg.clone()],
            kwargs: Map::new(),
            options: q("default"),
        })
        .collect();
    client.send_many(calls).await.expect("send")
}

#[tokio::test]
async fn prefetch_bound_holds_in_redis_while_tasks_sleep() {
    // Celery's QoS, seen from Redis: at -c 2 -m 1 and -m 4 the worker's unacked entries reach
    // c × m (it does prefetch) and never exceed it, although acks are written behind the next
    // fetch instead of before it.
    for m in [1usize, 4] {
        let t = TestRedis::new();
        let client = t.client().await;
        let (c, limit) = (2usize, 2 * m);
        let n = limit + c + 6;
        let hs = send_n(&client, n, "hlbot.debug.sleep", json!(0.25)).await;
        let mut o = opts(&["default"]);
        o.concurrency = c;
        o.prefetch_multiplier = m;
        let max = drain_max_unacked(&t, &client, &hs, o, Duration::from_secs(20)).await;
        assert_eq!(
            max as usize, limit,
            "-c {c} -m {m}: most unacked entries seen"
        );
    }
}

#[tokio::test]
async fn prefetch_bound_holds_in_redis_while_fast_tasks_stream() {
    // Thousands of echo tasks: every batch of acks is on the wire ahead of the fetch it makes
    // room for, so Redis never holds more than c × m of this worker's messages (early ack and
    // acks_late alike).
    for (m, acks_late) in [(1usize, false), (4, false), (1, true), (4, true)] {
        let t = TestRedis::new();
        let client = t.client().await;
        let limit = 2 * m;
        let hs = send_n(&client, 2000, "hlbot.debug.echo", json!(1)).await;
        let mut o = opts(&["default"]);
        o.concurrency = 2;
        o.prefetch_multiplier = m;
        o.acks_late = acks_late;
        let max = drain_max_unacked(&t, &client, &hs, o, Duration::from_secs(30)).await;
        assert!(max >= 1, "sampler saw nothing");
        assert!(
            max as usize <= limit,
            "-c 2 -m {m} acks_late={acks_late}: {max} unacked entries seen, limit {limit}"
        );
    }
}

/// `INFO commandstats` of a private server as command → calls (commands inside scripts count).
async fn calls(
    c: &mut redis::aio::MultiplexedConnection,
) -> std::collections::HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(c)
        .await
        .expect("info");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let n = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), n))
        })
        .collect()
}

#[tokio::test]
async fn a_writer_batch_writes_only_the_last_store_of_each_task_and_keeps_a_success() {
    use hlbot_engine::worker::writer::{Op, Writer};
    use hlbot_engine::{Backend, Broker, BrokerOptions};
    use hlbot_proto::ResultMeta;
    // A private server: its INFO commandstats count only this test's commands.
    let Some(r) = crate::fixture::PrivateRedis::start_with(&["--appendonly", "no"]) else {
        return;
    };
    let s = r.settings("rc");
    let broker = Broker::connect(&s, BrokerOptions::default())
        .await
        .expect("broker");
    let backend = Backend::connect(&s, Some(Duration::from_secs(60)))
        .await
        .expect("backend");
    let (a, b, c) = ("ta", "tb", "tc");
    let mut ps = s.pubsub().await.expect("pubsub");
    for id in [a, b, c] {
        ps.subscribe(backend.keys().result(id))
            .await
            .expect("subscribe");
    }
    let mut conn = redis::Client::open(r.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .expect("resetstat");
    let (writer, _h) = Writer::spawn(
        s.clone(),
        broker.conn(),
        Some(Duration::from_secs(60)),
        None,
        "test-owner",
        Default::default(),
    );
    let now = chrono::Utc::now();
    let meta = |id: &str, st: State| Op::Store(ResultMeta::new(id, st, json!(id), now));
    // One send is one batch: a runs STARTED → PROGRESS → SUCCESS, b is still running, c has a
    // SUCCESS then a (duplicate delivery's) FAILURE.
    writer.send_all(vec![
        meta(a, State::Started),
        meta(a, State::Custom("PROGRESS".into())),
        meta(b, State::Started),
        meta(a, State::Success),
        meta(c, State::Success),
        meta(c, State::Failure),
    ]);
    writer.flush().await;
    let got = calls(&mut conn).await;
    let n = |k: &str| got.get(k).copied().unwrap_or(0);
    assert_eq!(
        (n("setex"), n("publish")),
        (3, 3),
        "one store per task: {got:?}"
    );
    // One batch (its first EVALSHA may be refused with NOSCRIPT and repeated after a load), its
    // exactly-once marker checked and set by one SET … GET.
    assert_eq!((n("set"), n("get")), (1, 0), "{got:?}");
    for (id, want) in [
        (a, State::Success),
        (b, State::Started),
        (c, State::Success),
    ] {
        let m = backend.get(id).await.expect("get").expect("stored");
        assert_eq!(m.status, want, "{id}");
    }
    // What subscribers saw: one message per task, its lasting state.
    let mut seen = std::collections::HashMap::new();
    let mut stream = ps.on_message();
    while let Ok(Some(msg)) = tokio::time::timeout(
        Duration::from_millis(300),
        futures::StreamExt::next(&mut stream),
    )
    .await
    {
        let m: Value = serde_json::from_slice(msg.get_payload_bytes()).expect("json");
        seen.entry(msg.get_channel_name().to_string())
            .or_insert_with(Vec::new)
            .push(m["status"].as_str().unwrap_or("").to_string());
    }
    let want = |id: &str, st: &str| (backend.keys().result(id), vec![st.to_string()]);
    assert_eq!(
        seen,
        [want(a, "SUCCESS"), want(b, "STARTED"), want(c, "SUCCESS")]
            .into_iter()
            .collect(),
    );
}

#[tokio::test]
async fn a_batch_replayed_with_its_number_applies_nothing_twice() {
    let t = TestRedis::new();
    let mut c = t.conn().await;
    let owner = "replayed";
    let marker = t.key(&format!("hlbot.writer.{owner}"));
    let counter = t.key("counter");
    let incr = ["incr".to_string(), counter.clone()];
    for (seq, applied, want) in [(1, 1, 1), (1, 0, 1), (2, 1, 2), (2, 0, 2), (3, 1, 3)] {
        let reply = crate::fixture::batch(&t, owner, seq, &incr).await;
        assert_eq!(
            reply.first(),
            Some(&redis::Value::Int(applied)),
            "batch {seq}"
        );
        let n: i64 = c.get(&counter).await.expect("get");
        assert_eq!(n, want, "batch {seq}");
    }
    let ttl: i64 = c.ttl(&marker).await.expect("ttl");
    assert!((86000..=86400).contains(&ttl), "marker ttl {ttl}");
    let _: () = c.del(&[&marker, &counter]).await.expect("del");
}
