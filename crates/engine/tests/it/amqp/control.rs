//! Remote control and events on RabbitMQ: the worker's pidbox on `celery.pidbox` and its events on
//! `celeryev`, and both connections recovering after RabbitMQ closes them.

use std::time::Duration;

use hlbot_engine::Registry;
use serde_json::{Map, json};

use super::*;
use crate::fixture::TestRedis;
use crate::worker::{Running, opts, q};

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
