//! RabbitMQ as the broker, against the real server (127.0.0.1:5672 unless
//! `HLBOT_TEST_AMQP_HOST`), each test in a vhost of its own made and deleted with `rabbitmqctl`:
//! publish (confirmed) → consume → ack, reject with requeue (redelivered), a worker running
//! tasks from RabbitMQ with its results in Redis, beat ticks, failover; the shared set-up
//! (vhost, client, messages). Faults through a TCP gate: `faults.rs`; pidbox and events:
//! `control.rs`.

mod control;
mod faults;

use std::time::Duration;

use hlbot_engine::amqp::sink::{Sink, SinkOp};
use hlbot_engine::amqp::{Amqp, AmqpUrl, Layout, Session};
use hlbot_engine::{Client, Registry, Router, SendOptions};
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

    // Reject with requeue: the same message comes back, flagged redelivered. RabbitMQ may hand
    // out id-2 first: with the channel-wide (global) prefetch the freed slot and the requeue
    // reach the queue from two of its processes, in either order. Each delivery is acked, and
    // the next one flows only then (prefetch 1).
    let sink = Sink::spawn(a.clone(), None);
    let (tx, rx) = tokio::sync::oneshot::channel();
    sink.send(vec![SinkOp::Requeue(d.tag.clone()), SinkOp::Flush(tx)]);
    rx.await.expect("flushed");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let d = next(&mut s, &a, Duration::from_secs(5))
            .await
            .expect("delivery after the requeue");
        let env = d.envelope.clone().expect("envelope");
        let id = env.task_id().unwrap_or_default();
        let redelivered = env.headers.get("redelivered") == Some(&json!(true));
        assert_eq!(redelivered, id == "id-1", "{id}: redelivered {redelivered}");
        seen.push(id);
        let (tx, rx) = tokio::sync::oneshot::channel();
        sink.send(vec![SinkOp::Ack(d.tag.clone()), SinkOp::Flush(tx)]);
        rx.await.expect("flushed");
    }
    seen.sort();
    assert_eq!(seen, ["id-1", "id-2"]);
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

/// A worker with prefetch 1 (`-c 1`, multiplier 1) that holds three ETA messages an hour away
/// still runs a task sent after them: each held ETA raises `basic.qos` by one (Celery's
/// `qos.increment_eventually`). Without that RabbitMQ would deliver nothing more until an ETA
/// fell due. At the warm shutdown the held ETAs go back to the queue.
#[tokio::test]
async fn eta_holds_raise_the_qos_so_new_work_still_flows() {
    let Some(v) = Vhost::new() else { return };
    let t = TestRedis::new();
    let client = amqp_client(&t, v.url()).await;
    let mut o = opts(&["etaq"]);
    o.concurrency = 1;
    o.prefetch_multiplier = 1;
    let w = Running::start(client.clone(), Registry::with_debug_tasks(), o).await;
    let later = SendOptions {
        countdown: Some(3600.0),
        ..q("etaq")
    };
    for i in 0..3 {
        client
            .send_task(
                "hlbot.debug.echo",
                vec![json!(i)],
                Map::new(),
                later.clone(),
            )
            .await
            .expect("send");
    }
    let now = client
        .send_task(
            "hlbot.debug.echo",
            vec![json!("now")],
            Map::new(),
            q("etaq"),
        )
        .await
        .expect("send");
    let v2 = now.get(Duration::from_secs(15)).await;
    assert_eq!(
        v2.expect("the task sent after three held ETAs did not run"),
        json!({"args": ["now"], "kwargs": {}})
    );
    w.stop().await;
    assert_eq!(
        queue_messages(&v, "etaq"),
        Some(3),
        "held ETAs not given back"
    );
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

/// Chords with RabbitMQ as the broker: a body left by a worker that died (its pending record in
/// Redis, its owner's liveness key gone) is published to RabbitMQ by the next worker and runs
/// once; a chord sent now completes and its body runs. Either way the pending record is dropped
/// only after RabbitMQ confirmed the body's publish — and it is dropped.
#[tokio::test]
async fn chord_bodies_on_rabbitmq_are_sent_once_and_their_records_dropped() {
    use redis::AsyncCommands;
    let Some(v) = Vhost::new() else { return };
    let t = TestRedis::new();
    let mut c = t.conn().await;
    let body_id = crate::canvas::left_by_a_dead_worker(&t, 1).await.body_id;
    let pending = t.key("hlbot.chords.pending");
    let n: i64 = c.hlen(&pending).await.unwrap();
    assert_eq!(n, 1, "the completing step records the body");

    let client = amqp_client(&t, v.url()).await;
    let w = Running::start(
        client.clone(),
        Registry::with_debug_tasks(),
        opts(&["default"]),
    )
    .await;
    let got = client
        .handle(&body_id)
        .get(Duration::from_secs(20))
        .await
        .expect("body");
    assert_eq!(got, json!({"args": [[1], "tail"], "kwargs": {}}));

    let call = |name: &str, args: Vec<Value>| hlbot_engine::TaskCall {
        name: name.into(),
        args,
        kwargs: Map::new(),
        options: q("default"),
    };
    let h = client
        .send_chord(
            vec![
                call("hlbot.debug.echo", vec![json!(1)]),
                call("hlbot.debug.echo", vec![json!(2)]),
            ],
            call("hlbot.debug.echo", vec![json!("live")]),
        )
        .await
        .expect("send chord");
    let got = h.get(Duration::from_secs(20)).await.expect("live body");
    assert_eq!(got["args"][1], json!("live"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = c.hlen(&pending).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} pending record(s) not dropped after the confirms"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.runs(&body_id).await, 1);
    assert_eq!(t.runs(&h.id).await, 1);
    w.stop().await;
}
