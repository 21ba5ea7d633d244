//! Reliability under faults and hostile input (issue #10), against real Redis: in-flight lists of
//! dead workers given back, duplicate task ids, numbers that used to panic, messages the decoder
//! rejects, unparseable unacked entries, Redis losing its data, over-size messages, writes refused
//! by Redis (OOM, READONLY), and a shutdown that ends while Redis is away.

use std::time::{Duration, Instant};

use hlbot_engine::worker::Shutdown;
use hlbot_engine::{
    Backend, Broker, BrokerOptions, Client, Registry, Router, SendOptions, Worker, WorkerOptions,
};
use hlbot_proto::State;
use redis::AsyncCommands;
use serde_json::{Map, json};

use crate::fixture::{PrivateRedis, TestRedis};
use crate::worker::{Running, acks_late_worker, opts, q, start};

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn hlen(c: &mut redis::aio::MultiplexedConnection, k: &str) -> u64 {
    c.hlen(k).await.expect("hlen")
}

#[tokio::test]
async fn dead_workers_in_flight_lists_are_given_back_in_order_and_live_ones_kept() {
    let t = TestRedis::new();
    let broker = t.broker(Duration::from_secs(3600)).await;
    let mut c = t.conn().await;
    let keys = broker.keys().clone();
    // Two workers' lists: "dead" has no liveness key, "live" has one.
    for (w, alive) in [("dead", false), ("live", true)] {
        let list = format!("{}.1", keys.inflight(w));
        let _: () = c.lpush(&list, "m1").await.expect("lpush");
        let _: () = c.lpush(&list, "m2").await.expect("lpush");
        let _: () = c
            .hset(keys.inflights(), &list, t.key("q"))
            .await
            .expect("hset");
        if alive {
            let _: () = c.set(keys.alive(w), "node").await.expect("set");
        }
    }
    let mut suspects = hlbot_engine::liveness::Suspects::default();
    let n = hlbot_engine::liveness::recover_inflight(&broker, &mut suspects, Duration::ZERO)
        .await
        .expect("recover");
    assert_eq!(n, 2);
    // Back at the head of the queue, the oldest (m1) next in line (consumers RPOP).
    let q: Vec<String> = c.lrange(t.key("q"), 0, -1).await.expect("lrange");
    assert_eq!(q, vec!["m2", "m1"]);
    let live: u64 = c
        .llen(format!("{}.1", keys.inflight("live")))
        .await
        .expect("llen");
    assert_eq!(live, 2, "a live worker's list is left alone");
    let regs: u64 = c.hlen(keys.inflights()).await.expect("hlen");
    assert_eq!(regs, 1, "the dead list is unregistered");
}

#[tokio::test]
async fn duplicate_task_ids_run_and_ack_independently() {
    let t = TestRedis::new();
    let client = t.client().await;
    let w = acks_late_worker(&t, "dup").await;
    let id = "same-id-for-three";
    for i in 0..3 {
        let so = SendOptions {
            task_id: Some(id.into()),
            ..q("dup")
        };
        client
            .send_task(
                "hlbot.debug.sleep",
                vec![json!(0.05 * i as f64)],
                Map::new(),
                so,
            )
            .await
            .expect("send");
    }
    let mut c = t.conn().await;
    let runs_key = t.key(&format!("hlbot.runs.{id}"));
    wait_for("three committed runs", Duration::from_secs(10), || {
        let k = runs_key.clone();
        let mut c = c.clone();
        async move { c.get::<_, Option<i64>>(&k).await.ok().flatten() == Some(3) }
    })
    .await;
    wait_for("nothing left unacked", Duration::from_secs(5), || {
        let k = t.key("unacked");
        let mut c = c.clone();
        async move { hlen(&mut c, &k).await == 0 }
    })
    .await;
    let left: u64 = c.zcard(t.key("unacked_index")).await.expect("zcard");
    assert_eq!(left, 0);
    w.stop().await;
}

/// A copy flagged redelivered (given back by a restore, a lost fetch's settlement or a dead
/// worker's sweep) that reaches a worker still running an earlier copy of the same task id — or
/// holding its SUCCESS in the writer while Redis is away — is not run a second time: it waits for
/// the earlier copy and the writer, then finds the SUCCESS and is only acked. Before, only
/// RabbitMQ deliveries waited; on Redis both copies ran and both committed.
#[tokio::test]
async fn a_redelivered_copy_waits_for_the_copy_running_here() {
    let t = TestRedis::new();
    let client = t.client().await;
    let w = acks_late_worker(&t, "redeliv").await;
    let id = "one-task-two-copies";
    for redelivered in [false, true] {
        let mut so = SendOptions {
            task_id: Some(id.into()),
            ..q("redeliv")
        };
        if redelivered {
            so.headers.insert("redelivered".into(), json!(true));
        }
        client
            .send_task("hlbot.debug.sleep", vec![json!(0.5)], Map::new(), so)
            .await
            .expect("send");
    }
    let c = t.conn().await;
    // A fetched message sits in the worker's in-flight list before its `unacked` record: wait
    // for the committed run first, so "nothing unacked" is not seen in that window.
    wait_for(
        "the first copy's committed run",
        Duration::from_secs(10),
        || async { t.runs(id).await >= 1 },
    )
    .await;
    wait_for("both copies acked", Duration::from_secs(10), || {
        let (u, k) = (t.key("unacked"), t.key("redeliv"));
        let mut c = c.clone();
        async move { hlen(&mut c, &u).await == 0 && c.llen::<_, u64>(&k).await.unwrap_or(1) == 0 }
    })
    .await;
    // Time for a second run (the task takes 0.5 s) if the redelivered copy were to run.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(t.runs(id).await, 1, "the redelivered copy ran too");
    w.stop().await;
}

#[tokio::test]
async fn hostile_numbers_neither_panic_nor_wedge_the_worker() {
    let t = TestRedis::new();
    let client = t.client().await;
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        opts(&["hostile"]),
        Duration::from_secs(3600),
    )
    .await;
    // A time limit of 1e20 s (Python: send_task(..., time_limit=1e20)): clamped, the task runs.
    let so = SendOptions {
        time_limit: Some(1e20),
        soft_time_limit: Some(f64::MAX),
        countdown: Some(0.0),
        ..q("hostile")
    };
    let h = client
        .send_task("hlbot.debug.echo", vec![json!(1)], Map::new(), so)
        .await
        .expect("send");
    let v = h.get(Duration::from_secs(10)).await.expect("runs");
    assert_eq!(v["args"], json!([1]));
    // Control: a rate of 1e-30/s and a huge pool_grow are taken without a panic.
    let ctl = hlbot_engine::control::client::ControlClient::new(client.broker().clone());
    for (m, a) in [
        (
            "rate_limit",
            json!({"task_name": "hlbot.debug.echo", "rate_limit": "1e-30/s"}),
        ),
        ("pool_grow", json!({"n": 1_000_000_000_000_000i64})),
        (
            "time_limit",
            json!({"task_name": "hlbot.debug.echo", "soft": 1e300, "hard": 1e300}),
        ),
    ] {
        let b = hlbot_engine::control::client::Broadcast::new(
            m,
            a.as_object().cloned().unwrap_or_default(),
        );
        let r = ctl.broadcast(&b).await.expect("broadcast");
        assert!(!r.is_empty(), "{m}: the worker answered");
    }
    // The first start after the rate limit goes at once; the worker still serves and stops.
    let h = client
        .send_task("hlbot.debug.echo", vec![json!(2)], Map::new(), q("hostile"))
        .await
        .expect("send");
    h.get(Duration::from_secs(10)).await.expect("still serving");
    let t0 = Instant::now();
    w.shutdown.warm.cancel();
    tokio::time::timeout(Duration::from_secs(15), w.handle)
        .await
        .expect("warm shutdown ends")
        .expect("join")
        .expect("run");
    assert!(t0.elapsed() < Duration::from_secs(12));
}

#[tokio::test]
async fn messages_the_decoder_rejects_are_dead_lettered_and_acked() {
    let t = TestRedis::new();
    let mut c = t.conn().await;
    // fetch.lua accepts it (it has a tag), the decoder does not (`headers: null`).
    let raw = json!({
        "body": "W1tdLCB7fSwge31d", "content-encoding": "utf-8",
        "content-type": "application/json", "headers": null,
        "properties": {"delivery_tag": "tag-null-headers", "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": "nullq"}, "priority": 0}
    })
    .to_string();
    let _: () = c.lpush(t.key("nullq"), &raw).await.expect("lpush");
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        opts(&["nullq"]),
        Duration::from_secs(3600),
    )
    .await;
    let dead = t.key("hlbot.dead");
    wait_for("a dead letter", Duration::from_secs(10), || {
        let mut c = c.clone();
        let k = dead.clone();
        async move { c.llen::<_, u64>(&k).await.unwrap_or(0) == 1 }
    })
    .await;
    wait_for("its unacked entry acked", Duration::from_secs(5), || {
        let k = t.key("unacked");
        let mut c = c.clone();
        async move { hlen(&mut c, &k).await == 0 }
    })
    .await;
    w.stop().await;
}

#[tokio::test]
async fn unparseable_unacked_entries_cannot_hide_real_ones_from_restore() {
    let t = TestRedis::new();
    let client = t.client().await;
    let mut c = t.conn().await;
    // 1 100 junk entries older than the real one.
    let mut p = redis::pipe();
    for i in 0..1100 {
        p.hset(t.key("unacked"), format!("junk{i}"), "not a kombu entry")
            .ignore()
            .zadd(t.key("unacked_index"), format!("junk{i}"), 1.0 + i as f64)
            .ignore();
    }
    let _: () = p.query_async(&mut c).await.expect("junk");
    client
        .send_task("hlbot.debug.echo", vec![], Map::new(), q("real"))
        .await
        .expect("send");
    let broker = t.broker(Duration::from_secs(1)).await;
    let mut consumer = broker
        .consumer(&["real".into()], "w")
        .await
        .expect("consumer");
    let got = consumer.fetch(1, Duration::ZERO).await.expect("fetch");
    assert_eq!(got.len(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let n = broker.restore_visible().await.expect("restore");
    assert_eq!(n, 1, "the real message is restored");
    assert_eq!(broker.len("real").await.expect("len"), 1);
    assert_eq!(hlen(&mut c, &t.key("unacked")).await, 0);
    let dead: u64 = c.llen(t.key("hlbot.dead")).await.expect("llen");
    assert_eq!(dead, 1100, "junk is dead-lettered, not left in unacked");
}

#[tokio::test]
async fn held_eta_messages_survive_redis_losing_its_data() {
    let t = TestRedis::new();
    let client = t.client().await;
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        opts(&["eta"]),
        Duration::from_secs(2),
    )
    .await;
    let so = SendOptions {
        countdown: Some(3.0),
        ..q("eta")
    };
    let h = client
        .send_task("hlbot.debug.echo", vec![json!("later")], Map::new(), so)
        .await
        .expect("send");
    let mut c = t.conn().await;
    wait_for("the worker to hold it", Duration::from_secs(5), || {
        let k = t.key("unacked");
        let mut c = c.clone();
        async move { hlen(&mut c, &k).await == 1 }
    })
    .await;
    // What FLUSHALL does to this test's keys: unacked, index and bindings gone.
    let keys: Vec<String> = c.keys(format!("{}*", t.prefix)).await.expect("keys");
    let _: () = c.del(keys).await.expect("del");
    wait_for("the entry recorded again", Duration::from_secs(3), || {
        let k = t.key("unacked");
        let mut c = c.clone();
        async move { hlen(&mut c, &k).await == 1 }
    })
    .await;
    let v = h.get(Duration::from_secs(10)).await.expect("ran");
    assert_eq!(v["args"], json!(["later"]));
    wait_for("nothing left unacked", Duration::from_secs(5), || {
        let k = t.key("unacked");
        let mut c = c.clone();
        async move { hlen(&mut c, &k).await == 0 }
    })
    .await;
    let runs: Option<i64> = c
        .get(t.key(&format!("hlbot.runs.{}", h.id)))
        .await
        .expect("runs");
    assert_eq!(runs, Some(1));
    w.stop().await;
}

#[tokio::test]
async fn over_size_messages_are_dead_lettered_with_a_truncated_copy() {
    let t = TestRedis::new();
    let small = BrokerOptions {
        visibility_timeout: Duration::from_secs(3600),
        max_message_bytes: 2000,
    };
    let client = Client::new(
        Broker::connect(&t.settings, small.clone())
            .await
            .expect("broker"),
        t.backend().await,
        Router::default(),
    );
    let big = "x".repeat(5000);
    // One waits in the queue (batch fetch), one arrives while the worker idles (in-flight path).
    client
        .send_task("hlbot.debug.echo", vec![json!(big)], Map::new(), q("big"))
        .await
        .expect("send");
    let worker = Worker::new(client.clone(), Registry::with_debug_tasks(), opts(&["big"]))
        .await
        .expect("worker");
    let shutdown = Shutdown::default();
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client
        .send_task("hlbot.debug.echo", vec![json!(big)], Map::new(), q("big"))
        .await
        .expect("send");
    let ok = client
        .send_task(
            "hlbot.debug.echo",
            vec![json!("small")],
            Map::new(),
            q("big"),
        )
        .await
        .expect("send");
    ok.get(Duration::from_secs(10))
        .await
        .expect("a small one still runs");
    let dead = hlbot_engine::deadletter::list(client.broker(), 10)
        .await
        .expect("list");
    assert_eq!(dead.len(), 2);
    for d in &dead {
        assert!(d.truncated && d.size.unwrap_or(0) > 5000, "{d:?}");
        assert!(d.raw.len() <= 4096);
        assert!(d.reason.contains("2000-byte limit"), "{}", d.reason);
    }
    let mut c = t.conn().await;
    assert_eq!(hlen(&mut c, &t.key("unacked")).await, 0);
    let lists: Vec<String> = c
        .keys(format!("{}hlbot.inflight.*", t.prefix))
        .await
        .expect("keys");
    for l in lists {
        let n: u64 = c.llen(&l).await.expect("llen");
        assert_eq!(n, 0, "{l} left non-empty");
    }
    shutdown.warm.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
}

async fn private_client(r: &PrivateRedis, prefix: &str, vt: Duration) -> Client {
    let s = r.settings(prefix);
    let o = BrokerOptions {
        visibility_timeout: vt,
        ..Default::default()
    };
    Client::new(
        Broker::connect(&s, o).await.expect("broker"),
        Backend::connect(&s, Some(Duration::from_secs(3600)))
            .await
            .expect("backend"),
        Router::default(),
    )
}

async fn private_worker(client: &Client, o: WorkerOptions) -> Running {
    Running::start(client.clone(), Registry::with_debug_tasks(), o).await
}

async fn config(c: &mut redis::aio::MultiplexedConnection, args: &[&str]) {
    let _: () = redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(c)
        .await
        .expect("config");
}

#[tokio::test]
async fn writes_refused_by_redis_are_kept_and_retried_and_fetching_pauses() {
    let Some(r) = PrivateRedis::start() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("hlbot_engine=info")
        .try_init();
    let client = private_client(&r, "", Duration::from_secs(3600)).await;
    let mut c = r.conn().await;
    let phases: [(&str, &[&str], &[&str]); 2] = [
        (
            "OOM",
            &["CONFIG", "SET", "maxmemory", "1"],
            &["CONFIG", "SET", "maxmemory", "0"],
        ),
        // A replica of a master that is not there: READONLY for every write, data kept.
        (
            "READONLY",
            &["REPLICAOF", "127.0.0.1", "1"],
            &["REPLICAOF", "NO", "ONE"],
        ),
    ];
    config(&mut c, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await;
    for (name, refuse, accept) in phases {
        let mut ids = Vec::new();
        for i in 0..150 {
            let h = client
                .send_task("hlbot.debug.echo", vec![json!(i)], Map::new(), q("refused"))
                .await
                .expect("send");
            ids.push(h.id);
        }
        config(&mut c, refuse).await;
        let mut o = opts(&["refused"]);
        o.acks_late = true;
        o.concurrency = 2;
        let w = private_worker(&client, o).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let queued = client.broker().len("refused").await.expect("len");
        assert!(
            150 - queued <= 4,
            "{name}: the worker took {} messages while Redis refused its writes",
            150 - queued
        );
        config(&mut c, accept).await;
        let done = || {
            let ids = ids.clone();
            let client = client.clone();
            async move {
                for id in &ids {
                    match client.backend().get(id).await {
                        Ok(Some(m)) if m.status == State::Success => {}
                        _ => return false,
                    }
                }
                true
            }
        };
        wait_for(
            "every result once writes are accepted",
            Duration::from_secs(30),
            done,
        )
        .await;
        w.stop().await;
        let unacked: u64 = c.hlen("unacked").await.expect("hlen");
        assert_eq!(unacked, 0, "{name}: left in unacked");
        for id in &ids {
            let runs: Option<i64> = c.get(format!("hlbot.runs.{id}")).await.expect("runs");
            assert_eq!(runs, Some(1), "{name}: {id} committed {runs:?} times");
        }
    }
}

#[tokio::test]
async fn shutdown_ends_with_redis_gone_and_the_spill_file_gives_back_held_messages() {
    let Some(mut r) = PrivateRedis::start() else {
        return;
    };
    let spill = tempfile::tempdir().expect("tempdir");
    let spill_file = spill.path().join("w.jsonl");
    let client = private_client(&r, "", Duration::from_secs(3600)).await;
    let so = SendOptions {
        countdown: Some(4.0),
        ..q("spill")
    };
    let h = client
        .send_task("hlbot.debug.echo", vec![json!("held")], Map::new(), so)
        .await
        .expect("send");
    let mut o = opts(&["spill"]);
    o.spill_file = Some(spill_file.clone());
    o.shutdown_timeout = Duration::from_secs(2);
    let w = private_worker(&client, o.clone()).await;
    let mut c = r.conn().await;
    wait_for("the worker to hold it", Duration::from_secs(5), || {
        let mut c = c.clone();
        async move { hlen(&mut c, "unacked").await == 1 }
    })
    .await;
    r.kill();
    let t0 = Instant::now();
    w.shutdown.warm.cancel();
    tokio::time::timeout(Duration::from_secs(6), w.handle)
        .await
        .expect("warm shutdown ends although Redis is gone")
        .expect("join")
        .expect("run");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let text = std::fs::read_to_string(&spill_file).expect("spill file written");
    assert!(text.contains("\"op\":\"restore\""), "{text}");
    // Redis comes back (from its AOF); the next worker replays the file before fetching.
    r.restart();
    c = r.conn().await;
    let client = private_client(&r, "", Duration::from_secs(3600)).await;
    let w = private_worker(&client, o).await;
    let v = client
        .handle(&h.id)
        .get(Duration::from_secs(15))
        .await
        .expect("ran after the restart");
    assert_eq!(v["args"], json!(["held"]));
    assert!(!spill_file.exists(), "the replayed file is gone");
    wait_for("nothing left unacked", Duration::from_secs(5), || {
        let mut c = c.clone();
        async move { hlen(&mut c, "unacked").await == 0 }
    })
    .await;
    w.stop().await;
}
