//! Remote control against real Redis: ping/inspect/stats replies, destination filter, revoke
//! (persisted: a worker started after the revoke honours it), terminate of a running task,
//! pool resize, add/cancel consumer, unknown method.

use std::time::{Duration, Instant};

use hlbot_engine::control::ControlClient;
use hlbot_engine::control::client::Broadcast;
use hlbot_engine::{Registry, SendOptions};
use hlbot_proto::State;
use serde_json::{Map, Value, json};

use crate::fixture::TestRedis;
use crate::worker::{opts, start};

fn q(queue: &str) -> SendOptions {
    SendOptions {
        queue: Some(queue.into()),
        ..Default::default()
    }
}

fn args(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

async fn wait_for_ping(cc: &ControlClient, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut b = Broadcast::new("ping", Map::new());
        b.destination = Some(vec![node.to_string()]);
        let r = cc.broadcast(&b).await.expect("broadcast");
        if !r.is_empty() {
            return;
        }
    }
    panic!("worker {node} never answered ping");
}

#[tokio::test]
async fn inspect_and_control_commands() {
    let t = TestRedis::new();
    let o = opts(&["ctl"]);
    let node = o.node_name.clone();
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        o,
        Duration::from_secs(3600),
    )
    .await;
    let cc = ControlClient::new(t.broker(Duration::from_secs(3600)).await);
    wait_for_ping(&cc, &node).await;

    let one = |m: &str, a: Value| {
        let mut b = Broadcast::new(m, args(a));
        b.destination = Some(vec![node.clone()]);
        b
    };
    let r = cc.broadcast(&one("ping", json!({}))).await.expect("ping");
    assert_eq!(r, vec![(node.clone(), json!({"ok": "pong"}))]);

    // A destination naming someone else: nobody answers.
    let mut other = Broadcast::new("ping", Map::new());
    other.destination = Some(vec!["nobody@nowhere".into()]);
    other.timeout = Duration::from_millis(300);
    assert!(cc.broadcast(&other).await.expect("ping").is_empty());
    // A glob pattern that matches.
    let mut pat = Broadcast::new("ping", Map::new());
    pat.pattern = Some(format!("{}*", &node[..5]));
    assert_eq!(cc.broadcast(&pat).await.expect("ping").len(), 1);

    let stats = cc.broadcast(&one("stats", json!({}))).await.expect("stats");
    let s = &stats[0].1;
    assert!(s["total"].is_object() && s["broker"].is_object(), "{s}");
    assert_eq!(s["pool"]["max-concurrency"], json!(4));
    assert!(s["clock"].is_string());
    assert_eq!(s["writer"]["failing"], json!(false), "{s}");
    assert!(s["writer"]["backlog"].is_u64(), "{s}");

    let reg = cc
        .broadcast(&one("registered", json!({})))
        .await
        .expect("reg");
    assert!(
        reg[0]
            .1
            .as_array()
            .expect("list")
            .contains(&json!("hlbot.debug.echo"))
    );

    // A running task shows in `active`, then is terminated by revoke(terminate=True).
    let client = t.client().await;
    let h = client
        .send_task("hlbot.debug.sleep", vec![json!(30)], Map::new(), q("ctl"))
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = cc
            .broadcast(&one("active", json!({})))
            .await
            .expect("active");
        let list = a[0].1.as_array().cloned().unwrap_or_default();
        if list.iter().any(|i| i["id"] == json!(h.id)) {
            assert_eq!(list[0]["hostname"], json!(node));
            break;
        }
        assert!(Instant::now() < deadline, "task never became active");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let qt = cc
        .broadcast(&one("query_task", json!({"ids": [h.id]})))
        .await
        .expect("query_task");
    assert_eq!(qt[0].1[&h.id][0], json!("active"));
    let r = cc
        .revoke(
            std::slice::from_ref(&h.id),
            true,
            Some("SIGKILL"),
            one("revoke", json!({})),
        )
        .await
        .expect("revoke");
    assert_eq!(r[0].1, json!({"ok": format!("terminate: {}", h.id)}));
    let meta = h.wait_meta(Duration::from_secs(10)).await.expect("meta");
    assert_eq!(meta.status, State::Revoked);
    let rv = cc
        .broadcast(&one("revoked", json!({})))
        .await
        .expect("revoked");
    assert!(rv[0].1.as_array().expect("list").contains(&json!(h.id)));

    // Pool resize shows in stats.
    let r = cc
        .broadcast(&one("pool_grow", json!({"n": 2})))
        .await
        .expect("grow");
    assert_eq!(r[0].1, json!({"ok": "pool will grow"}));
    let stats = cc.broadcast(&one("stats", json!({}))).await.expect("stats");
    assert_eq!(stats[0].1["pool"]["max-concurrency"], json!(6));
    let r = cc
        .broadcast(&one("pool_shrink", json!({"n": 3})))
        .await
        .expect("shrink");
    assert_eq!(r[0].1, json!({"ok": "pool will shrink"}));
    let stats = cc.broadcast(&one("stats", json!({}))).await.expect("stats");
    assert_eq!(stats[0].1["pool"]["max-concurrency"], json!(3));

    // add_consumer makes the worker run tasks from a new queue; cancel_consumer stops that.
    let r = cc
        .broadcast(&one("add_consumer", json!({"queue": "newq"})))
        .await
        .expect("add");
    assert_eq!(r[0].1, json!({"ok": "add consumer newq"}));
    let aq = cc
        .broadcast(&one("active_queues", json!({})))
        .await
        .expect("aq");
    let names: Vec<Value> = aq[0]
        .1
        .as_array()
        .expect("list")
        .iter()
        .map(|q| q["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("ctl"), json!("newq")]);
    let h2 = client
        .send_task("hlbot.debug.echo", vec![json!(1)], Map::new(), q("newq"))
        .await
        .expect("send");
    assert!(h2.get(Duration::from_secs(10)).await.is_ok());
    let r = cc
        .broadcast(&one("cancel_consumer", json!({"queue": "newq"})))
        .await
        .expect("cancel");
    assert_eq!(r[0].1, json!({"ok": "no longer consuming from newq"}));

    let r = cc
        .broadcast(&one("enable_events", json!({})))
        .await
        .expect("ev");
    assert_eq!(r[0].1, json!({"ok": "task events enabled"}));
    let r = cc
        .broadcast(&one(
            "rate_limit",
            json!({"task_name": "nope", "rate_limit": "1/s"}),
        ))
        .await
        .expect("rl");
    assert_eq!(r[0].1, json!({"error": "unknown task"}));
    let r = cc
        .broadcast(&one("nosuch", json!({})))
        .await
        .expect("nosuch");
    assert_eq!(r[0].1, json!({"error": "KeyError('nosuch')"}));
    let r = cc.broadcast(&one("clock", json!({}))).await.expect("clock");
    assert!(r[0].1["clock"].as_u64().unwrap_or(0) > 1);

    // shutdown: no reply, the worker stops.
    let mut b = one("shutdown", json!({}));
    b.timeout = Duration::from_millis(300);
    assert!(cc.broadcast(&b).await.expect("shutdown").is_empty());
    let stopped = tokio::time::timeout(Duration::from_secs(15), w.handle).await;
    assert!(stopped.is_ok(), "worker did not stop after remote shutdown");
}

#[tokio::test]
async fn revoke_survives_when_no_worker_runs() {
    let t = TestRedis::new();
    let client = t.client().await;
    let h = client
        .send_task("hlbot.debug.echo", vec![json!("x")], Map::new(), q("late"))
        .await
        .expect("send");
    let cc = ControlClient::new(t.broker(Duration::from_secs(3600)).await);
    let mut b = Broadcast::new("revoke", Map::new());
    b.timeout = Duration::from_millis(200);
    let replies = cc
        .revoke(std::slice::from_ref(&h.id), false, None, b)
        .await
        .expect("revoke");
    assert!(replies.is_empty(), "no worker runs yet");
    // The task is still queued; a worker started now discards it as revoked.
    let o = opts(&["late"]);
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        o,
        Duration::from_secs(3600),
    )
    .await;
    let meta = h.wait_meta(Duration::from_secs(10)).await.expect("meta");
    assert_eq!(meta.status, State::Revoked);
    let good = client
        .send_task("hlbot.debug.echo", vec![json!("y")], Map::new(), q("late"))
        .await
        .expect("send");
    assert!(good.get(Duration::from_secs(10)).await.is_ok());
    w.stop().await;
}

#[tokio::test]
async fn task_sent_events_from_the_client() {
    use futures::StreamExt;
    let t = TestRedis::new();
    let client = t.client().await.with_sent_events(true);
    let mut ps = t.settings.pubsub().await.expect("pubsub");
    ps.psubscribe(format!("{}/0.celeryev/*", t.prefix))
        .await
        .expect("psubscribe");
    let h = client
        .send_task("hlbot.debug.echo", vec![json!(7)], Map::new(), q("evq"))
        .await
        .expect("send");
    let msg = tokio::time::timeout(Duration::from_secs(5), ps.on_message().next())
        .await
        .expect("an event")
        .expect("message");
    assert_eq!(
        msg.get_channel_name(),
        format!("{}/0.celeryev/task.sent", t.prefix)
    );
    let env = hlbot_proto::Envelope::from_slice(msg.get_payload_bytes()).expect("envelope");
    let ev: Value = serde_json::from_slice(&env.body_bytes().expect("body")).expect("json");
    assert_eq!(ev["type"], json!("task-sent"));
    assert_eq!(ev["uuid"], json!(h.id));
    assert_eq!(ev["name"], json!("hlbot.debug.echo"));
    assert_eq!(ev["queue"], json!("evq"));
    assert_eq!(ev["args"], json!("(7,)"));
    assert!(ev["clock"].as_u64().is_some() && ev["timestamp"].is_f64());
}

#[tokio::test]
async fn rate_limit_and_time_limit_set_by_control_apply_to_later_runs() {
    let t = TestRedis::new();
    let o = opts(&["ctl2"]);
    let node = o.node_name.clone();
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        o,
        Duration::from_secs(3600),
    )
    .await;
    let cc = ControlClient::new(t.broker(Duration::from_secs(3600)).await);
    wait_for_ping(&cc, &node).await;
    let one = |m: &str, a: Value| {
        let mut b = Broadcast::new(m, args(a));
        b.destination = Some(vec![node.clone()]);
        b
    };
    let r = cc
        .broadcast(&one(
            "time_limit",
            json!({"task_name": "hlbot.debug.sleep", "soft": 0.3, "hard": 0.6}),
        ))
        .await
        .expect("time_limit");
    assert_eq!(r[0].1, json!({"ok": "time limits set successfully"}));
    let r = cc
        .broadcast(&one(
            "rate_limit",
            json!({"task_name": "hlbot.debug.echo", "rate_limit": "4/s"}),
        ))
        .await
        .expect("rate_limit");
    assert_eq!(r[0].1, json!({"ok": "new rate limit set successfully"}));
    let client = t.client().await;
    // The soft limit now stops a 30 s sleep.
    let h = client
        .send_task("hlbot.debug.sleep", vec![json!(30)], Map::new(), q("ctl2"))
        .await
        .expect("send");
    let m = h.wait_meta(Duration::from_secs(10)).await.expect("meta");
    assert_eq!(
        m.exception().map(|e| e.exc_type),
        Some("SoftTimeLimitExceeded".into())
    );
    // 5 echoes at 4/s take at least one second (starts 250 ms apart).
    let start_at = Instant::now();
    let mut hs = Vec::new();
    for i in 0..5 {
        hs.push(
            client
                .send_task("hlbot.debug.echo", vec![json!(i)], Map::new(), q("ctl2"))
                .await
                .expect("send"),
        );
    }
    for h in hs {
        h.get(Duration::from_secs(10)).await.expect("echo");
    }
    assert!(
        start_at.elapsed() >= Duration::from_millis(950),
        "{:?}",
        start_at.elapsed()
    );
    w.stop().await;
}

#[tokio::test]
async fn purge_held_drops_eta_messages_a_worker_holds() {
    let t = TestRedis::new();
    let o = opts(&["ctl3"]);
    let node = o.node_name.clone();
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        o,
        Duration::from_secs(3600),
    )
    .await;
    let cc = ControlClient::new(t.broker(Duration::from_secs(3600)).await);
    wait_for_ping(&cc, &node).await;
    let client = t.client().await;
    let later = SendOptions {
        countdown: Some(2.0),
        ..q("ctl3")
    };
    let h = client
        .send_task("hlbot.debug.echo", vec![json!(1)], Map::new(), later)
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.broker().len("ctl3").await.expect("len") > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut b = Broadcast::new("purge_held", args(json!({"queues": ["ctl3"]})));
    b.destination = Some(vec![node.clone()]);
    let r = cc.broadcast(&b).await.expect("purge_held");
    assert_eq!(r[0].1, json!({"ok": 1}));
    let m = h.wait_meta(Duration::from_secs(10)).await.expect("meta");
    assert_eq!(m.status, State::Revoked, "the held task never runs");
    w.stop().await;
}
