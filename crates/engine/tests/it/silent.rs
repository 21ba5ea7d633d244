//! A Redis that goes silent or pauses, against real Redis: every connection of a worker frozen
//! without being closed, a writer batch that arrives past its deadline, and the liveness look
//! that must not take a live worker's in-flight list after a pause (docs/engine.md, "A Redis
//! that goes silent"; chaos scenario (j) pauses a whole redis-server).

use std::time::{Duration, Instant};

use hlbot_engine::control::ControlClient;
use hlbot_engine::control::client::Broadcast;
use hlbot_engine::liveness::{Suspects, recover_inflight};
use hlbot_engine::{Backend, Broker, BrokerOptions, Client, Registry, Router};
use redis::AsyncCommands;
use serde_json::{Map, json};

use crate::fixture::{TestRedis, batch, batch_until, gated};
use crate::worker::{Running, opts, q};

/// A liveness key missing at one look is not enough to take a worker's in-flight list: after a
/// Redis pause past the lease every key lapses at once while the owners live on. The list moves
/// only when the key is still missing a lease later; an owner that renews in between keeps it.
#[tokio::test]
async fn an_in_flight_list_moves_only_when_its_owner_stays_gone_for_a_lease() {
    let t = TestRedis::new();
    let broker = t.broker(Duration::from_secs(3600)).await;
    let mut c = t.conn().await;
    let keys = broker.keys().clone();
    let list = format!("{}.1", keys.inflight("w"));
    let _: () = c.lpush(&list, "m1").await.expect("lpush");
    let _: () = c
        .hset(keys.inflights(), &list, t.key("q"))
        .await
        .expect("hset");
    let lease = Duration::from_millis(300);
    let mut s = Suspects::default();
    let look = async |s: &mut Suspects| recover_inflight(&broker, s, lease).await.expect("recover");
    assert_eq!(look(&mut s).await, 0, "moved at the first look");
    // The owner renews its key (it was only paused): the suspicion is dropped.
    let _: () = c.set(keys.alive("w"), "node").await.expect("set");
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert_eq!(look(&mut s).await, 0, "moved while the owner is alive");
    // Gone again: first look starts the clock anew, the look a lease later moves the list.
    let _: () = c.del(keys.alive("w")).await.expect("del");
    assert_eq!(look(&mut s).await, 0, "an earlier suspicion was kept");
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert_eq!(look(&mut s).await, 1);
    let q: Vec<String> = c.lrange(t.key("q"), 0, -1).await.expect("lrange");
    assert_eq!(q, vec!["m1"]);
}

/// A writer batch that reaches Redis past its deadline writes nothing — not even its marker —
/// and says so: the writer has retried it and perhaps sent later batches, which a late copy
/// (Redis paused, bytes delivered long after) must not be applied after.
#[tokio::test]
async fn a_writer_batch_past_its_deadline_writes_nothing() {
    let t = TestRedis::new();
    let mut c = t.conn().await;
    let ops = ["incr".to_string(), t.key("counter")];
    let r = batch_until(&t, "w", 1, &ops, 1.0).await;
    assert!(
        matches!(r.first(), Some(redis::Value::BulkString(b)) if b == b"!stale"),
        "{r:?}"
    );
    let n: Option<i64> = c.get(t.key("counter")).await.expect("get");
    assert_eq!(n, None, "a stale batch was applied");
    let marker: Option<String> = c.get(t.key("hlbot.writer.w")).await.expect("get");
    assert_eq!(marker, None, "a stale batch set the marker");
    batch(&t, "w", 1, &ops).await;
    let n: Option<i64> = c.get(t.key("counter")).await.expect("get");
    assert_eq!(n, Some(1));
}

/// A Redis that stops answering on the connections a worker holds, without closing them (a
/// partition, a NAT or load balancer that forgot the flows, a fail-over behind one address):
/// every connection the idle worker has open goes silent at once, new ones pass. The worker must
/// notice on its own — a blocking fetch unanswered past its time-out, a command past the response
/// time-out, a subscription whose ping goes unanswered — connect again and go on: run a task sent
/// afterwards, store its result, and answer a control ping. Before: it waited for ever.
#[tokio::test]
async fn a_worker_whose_redis_connections_go_silent_connects_again_and_goes_on() {
    let t = TestRedis::new();
    let (gate, settings) = gated(&t).await;
    let worker_client = Client::new(
        Broker::connect(&settings, BrokerOptions::default())
            .await
            .expect("broker"),
        Backend::connect(&settings, Some(Duration::from_secs(3600)))
            .await
            .expect("backend"),
        Router::default(),
    );
    let o = opts(&["silent"]);
    let node = o.node_name.clone();
    let w = Running::start(worker_client, Registry::with_debug_tasks(), o).await;
    let client = t.client().await;
    let cc = ControlClient::new(t.broker(Duration::from_secs(3600)).await);
    let ping = || {
        let mut b = Broadcast::new("ping", Map::new());
        b.destination = Some(vec![node.clone()]);
        b
    };
    let echo = |i: i64| {
        let client = client.clone();
        async move {
            client
                .send_task("hlbot.debug.echo", vec![json!(i)], Map::new(), q("silent"))
                .await
                .expect("send")
        }
    };
    let h = echo(1).await;
    h.get(Duration::from_secs(10))
        .await
        .expect("before the freeze");
    assert!(!cc.broadcast(&ping()).await.expect("ping").is_empty());

    // The worker is idle, blocked in its fetch: freeze every connection it holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    gate.freeze();
    let frozen = Instant::now();
    let h = echo(2).await;
    let v = h
        .get(Duration::from_secs(90))
        .await
        .expect("a task sent after the connections went silent runs");
    assert_eq!(v, json!({"args": [2], "kwargs": {}}));
    eprintln!(
        "task sent after the freeze done in {:.1} s",
        frozen.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if !cc.broadcast(&ping()).await.expect("ping").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never answered a control ping after its connections went silent"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "control ping answered {:.1} s after the freeze",
        frozen.elapsed().as_secs_f64()
    );
    assert_eq!(t.runs(&h.id).await, 1);
    w.stop().await;
    drop(gate);
}
