//! RabbitMQ faults through a TCP gate in front of the server: publishes unconfirmed at exit
//! spilled and sent by the next start, a redelivery while the first copy runs, and callbacks of
//! a redelivered copy of a succeeded task.

use std::time::Duration;

use hlbot_engine::Registry;
use hlbot_engine::amqp::AmqpUrl;
use serde_json::{Map, json};

use super::*;
use crate::fixture::TestRedis;
use crate::worker::{Running, opts, q};

/// The worker's result lands in Redis but RabbitMQ is unreachable (a TCP gate between them is
/// cut) when the run's callback is to be published: the sink retries it until the warm shutdown
/// gives up, the callback goes to the spill file, and the next worker started on that file
/// publishes it (it runs). The task's own message, its ack lost with the connection, comes back
/// redelivered and is acked without a second run (its SUCCESS is already in Redis).
#[tokio::test]
async fn unconfirmed_publish_at_exit_is_spilled_and_sent_by_the_next_start() {
    let Some(v) = Vhost::new() else { return };
    let t = TestRedis::new();
    let host = std::env::var("HLBOT_TEST_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1:5672".into());
    let gate = hlbot_testkit::Gate::start(&host).await;
    let gated = AmqpUrl::parse(&format!("amqp://guest:guest@{}/{}", gate.addr, v.name)).unwrap();
    let client = |url: AmqpUrl| {
        let t = &t;
        async move { amqp_client(t, url).await }
    };
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("w.spill.jsonl");
    let mut o = opts(&["default"]);
    o.acks_late = true;
    o.shutdown_timeout = Duration::from_secs(2);
    o.spill_file = Some(spill.clone());
    let w = Running::start(client(gated).await, Registry::with_debug_tasks(), o.clone()).await;

    let direct = client(v.url()).await;
    let (cb_id, cb) = echo_link();
    let mut so = q("default");
    so.link = vec![cb];
    let h = direct
        .send_task("hlbot.debug.sleep", vec![json!(1.0)], Map::new(), so)
        .await
        .expect("send");
    // Cut RabbitMQ off once the task runs.
    wait_started(&direct, &h.id).await;
    gate.cut();
    assert_eq!(
        h.get(Duration::from_secs(10)).await.expect("result"),
        json!(1.0)
    );
    w.stop().await;
    let spilled = std::fs::read_to_string(&spill).expect("a spill file");
    assert!(spilled.contains(&cb_id), "callback not spilled: {spilled}");
    assert!(direct.backend().get(&cb_id).await.expect("redis").is_none());

    // The next start on the same spill file, RabbitMQ reachable: the callback is published.
    gate.open();
    let w = Running::start(client(v.url()).await, Registry::with_debug_tasks(), o).await;
    let v2 = direct
        .handle(&cb_id)
        .get(Duration::from_secs(20))
        .await
        .expect("callback result");
    assert_eq!(v2, json!({"args": [1.0, "cb"], "kwargs": {}}));
    assert!(!spill.exists(), "spill file not consumed");
    // The parent's redelivered copy is acked without a second run.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while queue_messages(&v, "default") != Some(0) {
        assert!(
            std::time::Instant::now() < deadline,
            "redelivered copy not acked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.stop().await;
    assert_eq!(t.runs(&h.id).await, 1, "the parent ran twice");
    assert_eq!(t.runs(&cb_id).await, 1);
}

/// The connection drops while an acks_late task runs and comes back at once: RabbitMQ requeues
/// the message and the worker's new channel receives it (redelivered) while the first copy is
/// still running. The copy waits for the first run to finish and its SUCCESS to be in Redis,
/// then is acked without running: one committed run, nothing left in the queue.
#[tokio::test]
async fn redelivery_during_the_first_run_is_not_run_again() {
    let Some(v) = Vhost::new() else { return };
    let t = TestRedis::new();
    let host = std::env::var("HLBOT_TEST_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1:5672".into());
    let gate = hlbot_testkit::Gate::start(&host).await;
    let gated = AmqpUrl::parse(&format!("amqp://guest:guest@{}/{}", gate.addr, v.name)).unwrap();
    let client = amqp_client(&t, gated).await;
    let mut o = opts(&["default"]);
    o.acks_late = true;
    let w = Running::start(client.clone(), Registry::with_debug_tasks(), o).await;
    let (cb_id, cb) = echo_link();
    let mut so = q("default");
    so.link = vec![cb];
    let h = client
        .send_task("hlbot.debug.sleep", vec![json!(1.5)], Map::new(), so)
        .await
        .expect("send");
    wait_started(&client, &h.id).await;
    gate.cut();
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.open();
    assert_eq!(
        h.get(Duration::from_secs(20)).await.expect("result"),
        json!(1.5)
    );
    let cb = client.handle(&cb_id).get(Duration::from_secs(20)).await;
    assert_eq!(
        cb.expect("callback"),
        json!({"args": [1.5, "cb"], "kwargs": {}})
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while queue_messages(&v, "default") != Some(0) {
        assert!(
            std::time::Instant::now() < deadline,
            "redelivered copy not acked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.stop().await;
    assert_eq!(t.runs(&h.id).await, 1, "the task ran twice");
    // Its callback was published by the first run only: the skipped copy did not resend it.
    assert_eq!(t.runs(&cb_id).await, 1, "the callback ran twice");
}

/// A worker was killed after the run's SUCCESS reached Redis but before its callback was
/// published (simulated: the SUCCESS stored by hand, the message delivered once and its channel
/// closed unacked). The redelivered copy is not run again, and its callback is published then.
#[tokio::test]
async fn redelivered_copy_of_a_succeeded_task_publishes_its_callbacks() {
    use base64::Engine as _;
    let Some(v) = Vhost::new() else { return };
    let t = TestRedis::new();
    let id = format!("p-{}", uuid::Uuid::new_v4());
    let (cb_id, cb) = echo_link();
    let backend = t.backend().await;
    backend
        .store(&hlbot_proto::ResultMeta::new(
            &id,
            hlbot_proto::State::Success,
            json!(7),
            chrono::Utc::now(),
        ))
        .await
        .expect("store");
    let a = Amqp::new(v.url(), Layout::default(), "hlbot-test");
    let mut env = message("default", &id);
    let embed = json!({"callbacks": [cb], "errbacks": null, "chain": null, "chord": null});
    let body = serde_json::to_vec(&json!([[1], {}, embed])).unwrap();
    env.body = Value::String(base64::engine::general_purpose::STANDARD.encode(body));
    a.publisher.publish(&env).await.expect("publish");
    let mut s = Session::open(&a.url, a.layout, &["default".into()], 1, "t", &a.ackers)
        .await
        .expect("session");
    next(&mut s, &a, Duration::from_secs(5))
        .await
        .expect("delivery");
    drop(s);

    let client = Client::new(
        t.broker(Duration::from_secs(3600)).await,
        backend,
        Router::default(),
    )
    .with_amqp(Amqp::new(v.url(), Layout::default(), "hlbot-test-2"));
    let mut o = opts(&["default"]);
    o.acks_late = true;
    let w = Running::start(client.clone(), Registry::with_debug_tasks(), o).await;
    let got = client.handle(&cb_id).get(Duration::from_secs(20)).await;
    assert_eq!(
        got.expect("callback"),
        json!({"args": [7, "cb"], "kwargs": {}})
    );
    w.stop().await;
    assert_eq!(t.runs(&id).await, 0, "the succeeded task ran again");
    assert_eq!(t.runs(&cb_id).await, 1);
}

/// A publish whose confirm never comes — the connection open but silent (the TCP gate freezes
/// it: no FIN, no RST, as from a hung broker or a dropped NAT entry) — is not waited on forever:
/// the attempt ends at its cap (30 s, `amqp/guard.rs`), that connection is dropped, and the retry
/// on a new one is confirmed. The message is in the queue once (the frozen copy never passed the
/// gate). Without the cap lapin's confirm waits as long as the socket stays open, and the worker's
/// sink — every ack behind the publish — with it.
#[tokio::test]
async fn a_publish_on_a_connection_that_stopped_answering_is_retried_on_a_new_one() {
    let Some(v) = Vhost::new() else { return };
    let host = std::env::var("HLBOT_TEST_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1:5672".into());
    let gate = hlbot_testkit::Gate::start(&host).await;
    let gated = AmqpUrl::parse(&format!("amqp://guest:guest@{}/{}", gate.addr, v.name)).unwrap();
    let p = hlbot_engine::amqp::Publisher::new(gated, hlbot_engine::amqp::Layout::default(), "t");
    let never = tokio_util::sync::CancellationToken::new();
    p.publish_until_confirmed(&message("frozen", "m1"), &never)
        .await
        .expect("first publish");
    gate.freeze();
    let t0 = std::time::Instant::now();
    let m2 = message("frozen", "m2");
    let second = p.publish_until_confirmed(&m2, &never);
    let r = tokio::time::timeout(Duration::from_secs(90), second).await;
    let took = t0.elapsed();
    assert!(
        r.is_ok(),
        "the publish still waits on the frozen connection after 90 s"
    );
    r.unwrap().expect("confirmed on a new connection");
    assert!(
        took >= Duration::from_secs(25),
        "confirmed after {took:?}: the frozen connection was not the one tried first"
    );
    assert_eq!(queue_messages(&v, "frozen"), Some(2));
}

/// A client's send whose connection stopped answering (frozen at the gate) is tried again on a
/// new connection, as Celery's `task_publish_retry` does: the first attempt ends at its 30 s cap,
/// the retry is confirmed. Without the retry `send_task` returns the error.
#[tokio::test]
async fn a_client_send_on_a_connection_that_stopped_answering_is_retried() {
    let Some(v) = Vhost::new() else { return };
    let host = std::env::var("HLBOT_TEST_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1:5672".into());
    let gate = hlbot_testkit::Gate::start(&host).await;
    let gated = AmqpUrl::parse(&format!("amqp://guest:guest@{}/{}", gate.addr, v.name)).unwrap();
    let t = TestRedis::new();
    let client = amqp_client(&t, gated).await;
    let send = |i: i64| {
        let client = client.clone();
        async move {
            client
                .send_task("hlbot.debug.echo", vec![json!(i)], Map::new(), q("frozen"))
                .await
        }
    };
    send(1).await.expect("first send");
    gate.freeze();
    let r = tokio::time::timeout(Duration::from_secs(90), send(2))
        .await
        .expect("the send still waits after 90 s");
    r.expect("the send was not retried on a new connection");
    assert_eq!(queue_messages(&v, "frozen"), Some(2));
}

/// A callback RabbitMQ refuses (its queue has a `max-length` 0 `reject-publish` policy, so every
/// publish is `basic.nack`ed) is not retried forever: after 15 s of refusals it goes to the Redis
/// dead-letter list with the reason, and the worker's acks behind it flow — with prefetch 1 the
/// tasks sent after it run. Retried forever, the publish would hold up the next ack and RabbitMQ
/// would deliver nothing more.
#[tokio::test]
async fn a_publish_the_broker_keeps_refusing_is_dead_lettered_and_work_goes_on() {
    let Some(v) = Vhost::new() else { return };
    let policy = r#"{"max-length":0,"overflow":"reject-publish"}"#;
    assert!(rabbitmqctl(&[
        "set_policy",
        "-p",
        &v.name,
        "full",
        "^full$",
        policy,
        "--apply-to",
        "queues"
    ]));
    let t = TestRedis::new();
    let client = amqp_client(&t, v.url()).await;
    let mut o = opts(&["default"]);
    o.concurrency = 1;
    o.prefetch_multiplier = 1;
    let w = Running::start(client.clone(), Registry::with_debug_tasks(), o).await;
    let (cb_id, mut cb) = echo_link();
    cb.options.insert("queue".into(), json!("full"));
    let mut so = q("default");
    so.link = vec![cb];
    let first = client
        .send_task("hlbot.debug.echo", vec![json!("a")], Map::new(), so)
        .await
        .expect("send");
    let mut later = Vec::new();
    for i in 0..3 {
        later.push(
            client
                .send_task("hlbot.debug.echo", vec![json!(i)], Map::new(), q("default"))
                .await
                .expect("send"),
        );
    }
    first.get(Duration::from_secs(10)).await.expect("first");
    // The refused callback holds the sink for REFUSED_FOR (15 s) before it is dead-lettered.
    for h in &later {
        h.get(Duration::from_secs(40))
            .await
            .expect("a task sent after the refused callback did not run");
    }
    let dead = hlbot_engine::deadletter::list(client.broker(), 100)
        .await
        .expect("dead letters");
    let rec = dead
        .iter()
        .find(|d| d.task_id.as_deref() == Some(&cb_id))
        .unwrap_or_else(|| panic!("callback not dead-lettered: {dead:?}"));
    assert!(rec.reason.contains("refused"), "{}", rec.reason);
    assert_eq!(rec.queue, "full");
    w.stop().await;

    // `hlbot dead replay` on a RabbitMQ fleet: refused again while the policy holds (the record
    // stays), then published to RabbitMQ once it is lifted (the record goes).
    let amqp = client.amqp().expect("amqp");
    let broker = client.broker();
    let again = hlbot_engine::deadletter::replay_amqp(broker, amqp, Some(&cb_id)).await;
    assert!(
        again.is_err(),
        "replayed into a queue that refuses it: {again:?}"
    );
    assert!(rabbitmqctl(&["clear_policy", "-p", &v.name, "full"]));
    let n = hlbot_engine::deadletter::replay_amqp(broker, amqp, Some(&cb_id))
        .await
        .expect("replay");
    assert_eq!(n, 1);
    assert_eq!(queue_messages(&v, "full"), Some(1));
    let left = hlbot_engine::deadletter::list(broker, 100)
        .await
        .expect("list");
    assert!(left.iter().all(|d| d.task_id.as_deref() != Some(&cb_id)));
}

/// A publish to an exchange that does not exist (RabbitMQ closes the channel: `NOT_FOUND`) is a
/// refusal too: `publish_until_confirmed` stops once it has lasted `REFUSED_FOR` instead of
/// retrying forever.
#[tokio::test]
async fn a_publish_to_a_missing_exchange_is_a_refusal() {
    let Some(v) = Vhost::new() else { return };
    let p = hlbot_engine::amqp::Publisher::new(v.url(), hlbot_engine::amqp::Layout::default(), "t");
    let mut env = message("x", "m1");
    env.properties.delivery_info.exchange = "no-such-exchange".into();
    let never = tokio_util::sync::CancellationToken::new();
    let t0 = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(40),
        p.publish_until_confirmed(&env, &never),
    )
    .await
    .expect("still retrying after 40 s");
    assert!(t0.elapsed() >= hlbot_engine::amqp::publish::REFUSED_FOR);
    let e = r.expect_err("published to a missing exchange");
    assert!(hlbot_engine::amqp::publish::is_refusal(&e), "{e}");
    assert!(e.to_string().contains("NOT_FOUND"), "{e}");
    // The publisher still works for a good message afterwards.
    p.publish_until_confirmed(&message("x", "m2"), &never)
        .await
        .expect("a good message after the refusal");
}
