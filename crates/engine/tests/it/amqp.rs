//! RabbitMQ as the broker, against the real server (127.0.0.1:5672 unless
//! `HLBOT_TEST_AMQP_HOST`), each test in a vhost of its own made and deleted with `rabbitmqctl`:
//! publish (confirmed) → consume → ack, reject with requeue (redelivered), and a worker running
//! tasks from RabbitMQ with its results in Redis.

use std::time::Duration;

use hlbot_engine::amqp::sink::{Sink, SinkOp};
use hlbot_engine::amqp::{Amqp, AmqpUrl, Layout, Session};
use hlbot_engine::{Client, Registry, Router};
use hlbot_proto::{Envelope, TaskMessage};
use serde_json::{Map, Value, json};

use crate::fixture::TestRedis;
use crate::worker::{Running, opts, q};

/// A vhost of the test's own; deleted on drop.
struct Vhost {
    name: String,
}

fn rabbitmqctl(args: &[&str]) -> bool {
    std::process::Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Vhost {
    /// None (a printed skip, or a failure under CI) when RabbitMQ or `rabbitmqctl` is missing.
    fn new() -> Option<Self> {
        let name = format!(
            "hlbot-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        if !rabbitmqctl(&["add_vhost", &name]) {
            return hlbot_testkit::missing("RabbitMQ (rabbitmqctl add_vhost)");
        }
        assert!(rabbitmqctl(&[
            "set_permissions",
            "-p",
            &name,
            "guest",
            ".*",
            ".*",
            ".*"
        ]));
        Some(Self { name })
    }

    fn url(&self) -> AmqpUrl {
        let host =
            std::env::var("HLBOT_TEST_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1:5672".into());
        AmqpUrl::parse(&format!("amqp://guest:guest@{host}/{}", self.name)).expect("url")
    }
}

/// Ready + unacknowledged messages of `queue` in the vhost (`rabbitmqctl list_queues`).
fn queue_messages(v: &Vhost, queue: &str) -> Option<u64> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_queues",
            "-p",
            &v.name,
            "--no-table-headers",
            "name",
            "messages",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next() == Some(queue)).then(|| f.next()?.parse().ok())?
    })
}

impl Drop for Vhost {
    fn drop(&mut self) {
        rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

fn message(queue: &str, id: &str) -> Envelope {
    let mut headers = Map::new();
    headers.insert("lang".into(), json!("py"));
    headers.insert("task".into(), json!("hlbot.debug.echo"));
    headers.insert("id".into(), json!(id));
    headers.insert("root_id".into(), json!(id));
    headers.insert("eta".into(), Value::Null);
    headers.insert("retries".into(), json!(0));
    headers.insert("timelimit".into(), json!([null, null]));
    let mut env = Envelope::new_json(br#"[[1], {}, {}]"#, headers, queue, 0);
    env.properties.correlation_id = Some(id.into());
    env
}

/// A `link` to `hlbot.debug.echo("cb")` on queue `default`, with a task id of its own.
fn echo_link() -> (String, hlbot_proto::message::Signature) {
    let id = format!("cb-{}", uuid::Uuid::new_v4());
    let mut o = Map::new();
    o.insert("task_id".into(), json!(id));
    o.insert("queue".into(), json!("default"));
    let sig = hlbot_proto::message::Signature {
        task: "hlbot.debug.echo".into(),
        args: vec![json!("cb")],
        kwargs: Map::new(),
        options: o,
        subtask_type: None,
        immutable: false,
        extra: Map::new(),
    };
    (id, sig)
}

async fn next(s: &mut Session, a: &Amqp, within: Duration) -> Option<hlbot_engine::Delivery> {
    match tokio::time::timeout(within, s.next(&a.ackers)).await {
        Ok(Some(Ok(d))) => Some(d),
        Ok(other) => panic!("session ended: {:?}", other.map(|r| r.err())),
        Err(_) => None,
    }
}

#[tokio::test]
async fn publish_consume_ack_and_requeue() {
    let Some(v) = Vhost::new() else { return };
    let a = Amqp::new(v.url(), Layout::default(), "hlbot-test");
    a.publisher
        .publish(&message("q1", "id-1"))
        .await
        .expect("confirmed publish");
    let mut s = Session::open(&a.url, a.layout, &["q1".into()], 1, "t", &a.ackers)
        .await
        .expect("session");
    let d = next(&mut s, &a, Duration::from_secs(5))
        .await
        .expect("delivery");
    assert_eq!(d.queue, "q1");
    assert!(hlbot_engine::amqp::is_amqp_tag(&d.tag));
    let env = d.envelope.clone().expect("envelope");
    let msg = TaskMessage::from_envelope(env, &d.raw).expect("task message");
    assert_eq!(msg.id(), "id-1");
    assert_eq!(msg.headers.task, "hlbot.debug.echo");
    assert_eq!(msg.args, vec![json!(1)]);
    // Prefetch 1: nothing more comes while this one is unacked.
    a.publisher
        .publish(&message("q1", "id-2"))
        .await
        .expect("publish");
    assert!(next(&mut s, &a, Duration::from_millis(500)).await.is_none());

    // Reject with requeue: the same message comes back, flagged redelivered.
    let sink = Sink::spawn(a.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    sink.send(vec![SinkOp::Requeue(d.tag.clone()), SinkOp::Flush(tx)]);
    rx.await.expect("flushed");
    let again = next(&mut s, &a, Duration::from_secs(5))
        .await
        .expect("redelivery");
    let env = again.envelope.clone().expect("envelope");
    assert_eq!(env.task_id().as_deref(), Some("id-1"));
    assert_eq!(env.headers.get("redelivered"), Some(&json!(true)));

    // Ack: the next message flows, and after acking it too the queue is empty for good.
    sink.send(vec![SinkOp::Ack(again.tag.clone())]);
    let second = next(&mut s, &a, Duration::from_secs(5))
        .await
        .expect("second");
    assert_eq!(
        second
            .envelope
            .as_ref()
            .ok()
            .and_then(|e| e.task_id())
            .as_deref(),
        Some("id-2")
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    sink.send(vec![SinkOp::Ack(second.tag.clone()), SinkOp::Flush(tx)]);
    rx.await.expect("flushed");
    drop(s);
    let mut s = Session::open(&a.url, a.layout, &["q1".into()], 10, "t2", &a.ackers)
        .await
        .expect("session");
    assert!(
        next(&mut s, &a, Duration::from_millis(700)).await.is_none(),
        "an acked message came back"
    );
    assert_eq!(a.ackers.pending(), 0);
}

#[tokio::test]
async fn unacked_deliveries_come_back_after_the_connection_dies() {
    let Some(v) = Vhost::new() else { return };
    let a = Amqp::new(v.url(), Layout::default(), "hlbot-test");
    for i in 0..3 {
        a.publisher
            .publish(&message("q2", &format!("m{i}")))
            .await
            .expect("publish");
    }
    let mut s = Session::open(&a.url, a.layout, &["q2".into()], 3, "t", &a.ackers)
        .await
        .expect("session");
    for _ in 0..3 {
        next(&mut s, &a, Duration::from_secs(5))
            .await
            .expect("delivery");
    }
    drop(s);
    let b = Amqp::new(v.url(), Layout::default(), "hlbot-test-2");
    let mut s = Session::open(&b.url, b.layout, &["q2".into()], 3, "t", &b.ackers)
        .await
        .expect("session");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let d = next(&mut s, &b, Duration::from_secs(10))
            .await
            .expect("redelivered");
        ids.push(d.envelope.expect("env").task_id().unwrap_or_default());
    }
    ids.sort();
    assert_eq!(ids, ["m0", "m1", "m2"]);
}

#[tokio::test]
async fn worker_runs_tasks_from_rabbitmq_with_results_in_redis() {
    let Some(v) = Vhost::new() else { return };
    let t = TestRedis::new();
    let client = amqp_client(&t, v.url()).await;
    let mut o = opts(&["default"]);
    o.acks_late = true;
    let w = Running::start(client.clone(), Registry::with_debug_tasks(), o).await;
    let mut handles = Vec::new();
    for i in 0..20 {
        handles.push(
            client
                .send_task("hlbot.debug.echo", vec![json!(i)], Map::new(), q("default"))
                .await
                .expect("send"),
        );
    }
    for (i, h) in handles.iter().enumerate() {
        let v = h.get(Duration::from_secs(20)).await.expect("result");
        assert_eq!(v, json!({"args": [i], "kwargs": {}}));
        assert_eq!(
            t.runs(&h.id).await,
            1,
            "task {i} committed {} times",
            t.runs(&h.id).await
        );
    }
    // Every delivery acked: nothing held by the worker or left in RabbitMQ.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while client.amqp().expect("amqp").ackers.pending() > 0 {
        assert!(std::time::Instant::now() < deadline, "acks not sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.stop().await;
    // The Redis broker was not used for the tasks.
    assert_eq!(client.broker().len("default").await.expect("len"), 0);
}

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

/// Beat with RabbitMQ as the broker: every tick is published to RabbitMQ (confirmed), none to the
/// Redis list of the same queue, and each tick once.
#[tokio::test]
async fn beat_ticks_are_published_to_rabbitmq() {
    use hlbot_engine::beat::{Beat, BeatOptions, Entry, EntryConfig, now_ms};
    use redis::AsyncCommands;
    let Some(v) = Vhost::new() else { return };
    let t = TestRedis::new();
    let client = amqp_client(&t, v.url()).await;
    let anchor = now_ms();
    let mut c = t.conn().await;
    let _: () = c
        .set(t.key("hlbot.beat.last.every"), anchor)
        .await
        .expect("set");
    let e = Entry::from_config(&EntryConfig {
        name: "every".into(),
        task: "hlbot.debug.echo".into(),
        interval: Some(0.3),
        crontab: None,
        timezone: None,
        args: vec![json!("tick")],
        kwargs: Map::new(),
        queue: Some("beatq".into()),
        options: Map::new(),
    })
    .expect("entry");
    let mut o = BeatOptions::new(vec![e]);
    o.lease = Duration::from_secs(2);
    let stop = tokio_util::sync::CancellationToken::new();
    let beat = tokio::spawn(Beat::new(client.clone(), o).run(stop.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while queue_messages(&v, "beatq").unwrap_or(0) < 3 {
        assert!(std::time::Instant::now() < deadline, "no ticks on RabbitMQ");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), beat).await;
    // One idempotency key per tick recorded as sent.
    let sent: Vec<String> = c
        .keys(t.key("hlbot.beat.sent.every.*"))
        .await
        .expect("keys");
    assert!(sent.len() >= 3);
    assert_eq!(
        queue_messages(&v, "beatq"),
        Some(sent.len() as u64),
        "each tick once"
    );
    assert_eq!(client.broker().len("beatq").await.expect("len"), 0);
}

/// The worker's pidbox and events on RabbitMQ: `ControlClient::via_amqp` pings it through the
/// `celery.pidbox` fanout exchange and gets `stats` naming the AMQP broker; its heartbeats
/// arrive on the `celeryev` topic exchange with routing key `worker.heartbeat`; a `shutdown`
/// cast stops it; nothing of this goes through Redis's pidbox binding table.
#[tokio::test]
async fn worker_pidbox_and_events_on_rabbitmq() {
    use futures::StreamExt;
    use hlbot_engine::control::ControlClient;
    use hlbot_engine::control::client::Broadcast;
    use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;

    let Some(v) = Vhost::new() else { return };
    let t = TestRedis::new();
    let client = amqp_client(&t, v.url()).await;
    let broker = client.broker().clone();
    let o = opts(&["default"]);
    let node = o.node_name.clone();
    // The dashboard's / `/metrics`' receiver on RabbitMQ, casting enable_events as Flower does.
    let stop = tokio_util::sync::CancellationToken::new();
    let monitor = hlbot_engine::monitor::Monitor::spawn_amqp(
        broker.clone(),
        v.url(),
        hlbot_engine::monitor::MonitorOptions {
            enable_events: true,
            ..Default::default()
        },
        stop.clone(),
    );
    let w = Running::start(client.clone(), Registry::with_debug_tasks(), o).await;

    // An event receiver like Flower's: its own queue bound to `celeryev` with `#`.
    let conn = v.url().connect("test events").await.expect("connect");
    let chan = conn.create_channel().await.expect("channel");
    hlbot_engine::amqp::events::declare_exchange(&chan)
        .await
        .expect("celeryev declared as Celery does");
    let evq = chan
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
    chan.queue_bind(
        evq.name().clone(),
        "celeryev".into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let mut events = chan
        .basic_consume(
            evq.name().clone(),
            "ev".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");

    let cc = ControlClient::new(broker.clone()).via_amqp(v.url());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let ping = loop {
        let mut b = Broadcast::new("ping", Map::new());
        b.destination = Some(vec![node.clone()]);
        let r = cc.broadcast(&b).await.expect("broadcast");
        if !r.is_empty() || std::time::Instant::now() > deadline {
            break r;
        }
    };
    assert_eq!(ping, vec![(node.clone(), json!({"ok": "pong"}))]);
    let stats = cc
        .broadcast(&Broadcast::new("stats", Map::new()))
        .await
        .expect("stats");
    assert_eq!(stats.len(), 1, "{stats:?}");
    assert_eq!(stats[0].1["broker"]["transport"], json!("amqp"));
    assert_eq!(stats[0].1["broker"]["virtual_host"], json!(v.name));
    // Redis's pidbox binding table was not used.
    let mut c = t.conn().await;
    let members: Vec<String> =
        redis::AsyncCommands::smembers(&mut c, t.key("_kombu.binding.celery.pidbox"))
            .await
            .unwrap_or_default();
    assert!(members.is_empty(), "{members:?}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let heartbeat = loop {
        let d = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("a worker.heartbeat within 10 s")
            .expect("stream")
            .expect("delivery");
        if d.routing_key.as_str() == "worker.heartbeat" {
            break d;
        }
    };
    let body: Value = serde_json::from_slice(&heartbeat.data).expect("json");
    assert_eq!(body["type"], json!("worker-heartbeat"));
    assert_eq!(body["hostname"], json!(node));
    assert_eq!(*heartbeat.properties.delivery_mode(), Some(1));
    let h = heartbeat.properties.headers().clone().expect("headers");
    assert!(h.inner().contains_key("hostname"));

    // Task events (enabled by the monitor's cast) reach the monitor through `celeryev`.
    let mut e = Broadcast::new("enable_events", Map::new());
    e.destination = Some(vec![node.clone()]);
    assert_eq!(
        cc.broadcast(&e).await.expect("enable_events").len(),
        1,
        "enable_events answered"
    );
    let h = client
        .send_task("hlbot.debug.echo", vec![json!(7)], Map::new(), q("default"))
        .await
        .expect("send");
    assert_eq!(
        h.get(Duration::from_secs(20)).await.expect("result"),
        json!({"args": [7], "kwargs": {}})
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while monitor.task(&h.id).is_none_or(|t| t.state != "SUCCESS") {
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor never saw the task succeed: {:?}",
            monitor.task(&h.id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(monitor.task(&h.id).expect("task").hostname, node);
    assert!(monitor.workers().iter().any(|w| w.hostname == node));
    stop.cancel();

    // `shutdown` (a cast) stops the worker: its run ends without anyone else asking.
    let mut b = Broadcast::new("shutdown", Map::new());
    b.destination = Some(vec![node.clone()]);
    b.reply = false;
    cc.broadcast(&b).await.expect("cast");
    let ended = tokio::time::timeout(Duration::from_secs(10), w.handle)
        .await
        .expect("the worker stopped after the shutdown command");
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
    // Its worker-offline event followed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let d = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("worker.offline within 5 s")
            .expect("stream")
            .expect("delivery");
        if d.routing_key.as_str() == "worker.offline" {
            break;
        }
    }
}

/// The pid of this vhost's connection whose name contains `tag` (`rabbitmqctl list_connections`).
fn connection_pid(vhost: &str, tag: &str) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_connections",
            "--no-table-headers",
            "pid",
            "vhost",
            "client_properties",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("rabbitmqctl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.split('\t').nth(1) == Some(vhost) && l.contains(tag))
        .and_then(|l| l.split('\t').next())
        .unwrap_or_else(|| panic!("no {tag} connection in:\n{text}"))
        .to_string()
}

/// The pidbox and events connections closed by the broker (`rabbitmqctl close_connection`):
/// the mailbox reopens with backoff and answers again, heartbeats come again on `celeryev`, and
/// the worker goes on running tasks.
#[tokio::test]
async fn pidbox_and_events_reconnect_after_their_connections_are_closed() {
    use hlbot_engine::control::ControlClient;
    use hlbot_engine::control::client::Broadcast;

    let Some(v) = Vhost::new() else { return };
    let t = TestRedis::new();
    let client = amqp_client(&t, v.url()).await;
    let broker = client.broker().clone();
    let o = opts(&["default"]);
    let node = o.node_name.clone();
    let w = Running::start(client.clone(), Registry::with_debug_tasks(), o).await;
    let cc = ControlClient::new(broker).via_amqp(v.url());
    let ping = || {
        let mut b = Broadcast::new("ping", Map::new());
        b.destination = Some(vec![node.clone()]);
        b.timeout = Duration::from_millis(500);
        b
    };
    let answered_within = |secs: u64| {
        let (cc, b) = (cc.clone(), ping());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(secs);
            while std::time::Instant::now() < deadline {
                if !cc.broadcast(&b).await.expect("broadcast").is_empty() {
                    return true;
                }
            }
            false
        }
    };
    assert!(answered_within(10).await, "no pong before the close");
    let pidbox = connection_pid(&v.name, "(pidbox)");
    let events = connection_pid(&v.name, "(events)");
    assert!(rabbitmqctl(&[
        "close_connection",
        &pidbox,
        "test: pidbox closed"
    ]));
    assert!(rabbitmqctl(&[
        "close_connection",
        &events,
        "test: events closed"
    ]));
    assert!(answered_within(15).await, "no pong after the reconnect");
    // A receiver bound after the close gets a heartbeat from a new events connection.
    let mut recv = hlbot_engine::amqp::events::EventReceiver::open(&v.url(), "test receiver")
        .await
        .expect("receiver");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let body = tokio::time::timeout_at(deadline, recv.next())
            .await
            .expect("a heartbeat within 15 s of the close")
            .expect("receiver open");
        let ev: Value = serde_json::from_slice(&body).unwrap_or_default();
        if ev["type"] == "worker-heartbeat" && ev["hostname"] == json!(node) {
            break;
        }
    }
    assert_ne!(connection_pid(&v.name, "(events)"), events);
    let h = client
        .send_task("hlbot.debug.echo", vec![json!(1)], Map::new(), q("default"))
        .await
        .expect("send");
    assert_eq!(
        h.get(Duration::from_secs(20)).await.expect("result"),
        json!({"args": [1], "kwargs": {}})
    );
    w.stop().await;
}

/// Wait until the result backend holds STARTED for `id` (the task runs now).
async fn wait_started(client: &Client, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = client.backend().get(id).await.expect("redis");
        if m.is_some_and(|m| m.status == hlbot_proto::State::Started) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "task never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// kombu's failover list `amqp://node1;amqp://node2`: the first node is down (nothing listens
/// on its port), so the worker's consumer, the publisher and the pidbox connect to the second
/// and the task runs; the warning names the node without its password.
#[tokio::test]
async fn failover_list_skips_a_dead_node() {
    let Some(v) = Vhost::new() else { return };
    let t = TestRedis::new();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let live = v.url();
    let url = AmqpUrl::parse(&format!(
        "amqp://guest:guest@127.0.0.1:{dead}/{};amqp://guest:guest@{}:{}/{}",
        v.name,
        live.host(),
        live.port(),
        v.name
    ))
    .expect("url");
    assert_eq!(url.nodes(), 2);
    let client = amqp_client(&t, url).await;
    let w = Running::start(
        client.clone(),
        Registry::with_debug_tasks(),
        opts(&["default"]),
    )
    .await;
    let h = client
        .send_task(
            "hlbot.debug.echo",
            vec![json!("fo")],
            Map::new(),
            q("default"),
        )
        .await
        .expect("send");
    assert_eq!(
        h.get(Duration::from_secs(30)).await.expect("result"),
        json!({"args": ["fo"], "kwargs": {}})
    );
    w.stop().await;
}

/// A client with the test's Redis as broker and backend and RabbitMQ at `url` for the tasks.
async fn amqp_client(t: &TestRedis, url: AmqpUrl) -> Client {
    Client::new(
        t.broker(Duration::from_secs(3600)).await,
        t.backend().await,
        Router::default(),
    )
    .with_amqp(Amqp::new(url, Layout::default(), "hlbot-test"))
}
