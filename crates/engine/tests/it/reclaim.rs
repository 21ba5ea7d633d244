//! Messages a worker held unacked when it could no longer run them, against real Redis: a worker
//! that died (its liveness key stays gone) and a fetch whose reply was lost after Redis ran it.
//! Both used to wait out the visibility timeout (an hour by default); both come back now
//! (docs/engine.md, "A worker that dies").

use std::time::{Duration, Instant};

use hlbot_engine::liveness::{Suspects, keep_alive, recover_held};
use hlbot_engine::{Broker, BrokerOptions, WorkerOptions};
use redis::AsyncCommands;
use serde_json::{Map, json};

use crate::fixture::{TestRedis, gated};
use crate::worker::{opts, q, start};

/// A worker fetched three messages and died (its liveness key lapses, nothing acks them); a
/// live worker holds one more. A survivor gives the dead worker's three back to their queue
/// within `reclaim_after` — not the hour of the visibility timeout — and runs each once; the
/// live holder's message is left alone, and the dead worker leaves `hlbot.holders`.
#[tokio::test]
async fn a_dead_workers_unacked_messages_come_back_without_the_visibility_timeout() {
    let t = TestRedis::new();
    let vt = Duration::from_secs(3600);
    let broker = t.broker(vt).await;
    let client = t.client().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let h = client
            .send_task("hlbot.debug.echo", vec![json!(i)], Map::new(), q("reclaim"))
            .await
            .expect("send");
        ids.push(h);
    }
    client
        .send_task(
            "hlbot.debug.echo",
            vec![json!("kept")],
            Map::new(),
            q("reclaim-live"),
        )
        .await
        .expect("send");

    // The worker that dies: registered, a short lease, three messages fetched, never acked.
    keep_alive(&broker, "ghost", "ghost@test", Duration::from_millis(300))
        .await
        .expect("alive");
    let mut ghost = broker
        .consumer(&["reclaim".into()], "ghost")
        .await
        .expect("consumer");
    let got = ghost.fetch(10, Duration::ZERO).await.expect("fetch");
    assert_eq!(got.len(), 3);
    drop(ghost);
    // A live holder (its key renewed for the whole test) with one message.
    keep_alive(&broker, "live", "live@test", Duration::from_secs(600))
        .await
        .expect("alive");
    let mut live = broker
        .consumer(&["reclaim-live".into()], "live")
        .await
        .expect("consumer");
    assert_eq!(
        live.fetch(10, Duration::ZERO).await.expect("fetch").len(),
        1
    );

    let mut c = t.conn().await;
    let held: u64 = c.hlen(t.key("hlbot.held")).await.expect("hlen");
    assert_eq!(held, 4, "every fetched entry names its holder");

    let began = Instant::now();
    let o = WorkerOptions {
        reclaim_after: Some(Duration::from_secs(1)),
        inflight_lease: Duration::from_millis(500),
        ..opts(&["reclaim"])
    };
    let w = start(&t, hlbot_engine::Registry::with_debug_tasks(), o, vt).await;
    for h in &ids {
        h.get(Duration::from_secs(30))
            .await
            .expect("a dead worker's message runs without waiting for the visibility timeout");
        assert_eq!(t.runs(&h.id).await, 1);
    }
    eprintln!(
        "the dead worker's 3 messages done {:.1} s after a survivor started",
        began.elapsed().as_secs_f64()
    );
    let holders: Vec<String> = c.hkeys(t.key("hlbot.holders")).await.expect("hkeys");
    assert!(!holders.contains(&"ghost".to_string()), "{holders:?}");
    assert!(holders.contains(&"live".to_string()), "{holders:?}");
    let left: Vec<(String, String)> = c.hgetall(t.key("hlbot.held")).await.expect("hgetall");
    assert!(
        left.iter().all(|(_, v)| !v.starts_with("ghost ")),
        "the dead worker's holder records stay: {left:?}"
    );
    assert!(
        left.iter().any(|(_, v)| v == "live 1"),
        "the live holder's record went: {left:?}"
    );
    let unacked: u64 = c.hlen(t.key("unacked")).await.expect("hlen");
    assert_eq!(unacked, 1, "only the live holder's message stays unacked");
    let queued: u64 = c.llen(t.key("reclaim-live")).await.expect("llen");
    assert_eq!(queued, 0, "the live holder's message was given back");
    w.stop().await;
    let holders: Vec<String> = c.hkeys(t.key("hlbot.holders")).await.expect("hkeys");
    assert_eq!(
        holders,
        vec!["live".to_string()],
        "a clean exit leaves the holders"
    );
}

/// A `fetch.lua` call that Redis ran but whose reply never arrived (the connection closed in
/// between — a restart, a proxy, a network fault) left its messages in `unacked` with no one to
/// run them until the visibility timeout. The consumer now remembers the call and, once it can
/// no longer run (past its deadline), gives what it took back to the queue: the next fetch
/// takes them, flagged redelivered.
#[tokio::test]
async fn a_fetch_whose_reply_was_lost_gives_its_messages_back() {
    let t = TestRedis::new();
    let (gate, settings) = gated(&t).await;
    let options = BrokerOptions {
        visibility_timeout: Duration::from_secs(3600),
        ..Default::default()
    };
    let broker = Broker::connect(&settings, options).await.expect("broker");
    let queue = format!("lostreply{}", uuid::Uuid::new_v4().simple());
    let mut consumer = broker
        .consumer(std::slice::from_ref(&queue), "w1")
        .await
        .expect("consumer");
    // The script is loaded and the clock measured before the fault.
    assert!(
        consumer
            .fetch(10, Duration::ZERO)
            .await
            .expect("fetch")
            .is_empty()
    );

    let client = t.client().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let h = client
            .send_task("hlbot.debug.echo", vec![json!(i)], Map::new(), q(&queue))
            .await
            .expect("send");
        ids.push(h.id);
    }
    gate.lose_reply_to(queue.as_bytes());
    let r = consumer.fetch(10, Duration::ZERO).await;
    assert!(gate.tripped(), "the fetch went through the gate");
    assert!(
        r.is_err(),
        "a fetch whose connection closed reports it: {r:?}"
    );
    let mut c = t.conn().await;
    let unacked: u64 = c.hlen(t.key("unacked")).await.expect("hlen");
    assert_eq!(unacked, 3, "Redis ran the fetch whose reply was lost");
    assert!(consumer.unsettled());

    let lost = Instant::now();
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(
            lost.elapsed() < Duration::from_secs(60),
            "the messages of the lost fetch never came back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(d) = consumer.fetch(10, Duration::ZERO).await {
            got = d;
        }
    }
    eprintln!(
        "messages of the lost fetch taken again {:.1} s later",
        lost.elapsed().as_secs_f64()
    );
    assert!(!consumer.unsettled());
    let envs: Vec<_> = got
        .iter()
        .map(|d| d.envelope.as_ref().expect("envelope"))
        .collect();
    let mut again: Vec<String> = envs.iter().filter_map(|e| e.task_id()).collect();
    again.sort();
    ids.sort();
    assert_eq!(again, ids);
    assert!(
        envs.iter()
            .all(|e| e.headers.get("redelivered") == Some(&json!(true))),
        "given back flagged redelivered"
    );
    let unacked: u64 = c.hlen(t.key("unacked")).await.expect("hlen");
    assert_eq!(
        unacked, 3,
        "each message is unacked once, under the new fetch"
    );
    let held: Vec<String> = c.hvals(t.key("hlbot.held")).await.expect("hvals");
    assert!(
        held.iter().all(|v| v != "w1 2"),
        "the lost fetch's holder records stay: {held:?}"
    );
    drop(gate);
}

/// A worker cut off from Redis past its lease is taken for dead: a survivor gives back the ETA
/// messages it held. When the worker is back it must not run its own copies as well — it learns
/// from the survivor's `hlbot.reclaimed` mark, drops the copies whose `hlbot.held` record is no
/// longer the one its fetch wrote, and runs only the copies it fetches again: each task once.
/// Before, it recorded the vanished entries again (as after a Redis data loss) and ran both.
#[tokio::test]
async fn a_worker_taken_for_dead_drops_the_copies_that_were_given_back() {
    let t = TestRedis::new();
    let vt = Duration::from_secs(3600);
    let (gate, settings) = gated(&t).await;
    let worker_client = hlbot_engine::Client::new(
        Broker::connect(
            &settings,
            BrokerOptions {
                visibility_timeout: vt,
                ..Default::default()
            },
        )
        .await
        .expect("broker"),
        hlbot_engine::Backend::connect(&settings, Some(vt))
            .await
            .expect("backend"),
        hlbot_engine::Router::default(),
    );
    let o = WorkerOptions {
        concurrency: 8,
        inflight_lease: Duration::from_millis(600),
        reclaim_after: None,
        ..opts(&["frozen"])
    };
    let w =
        crate::worker::Running::start(worker_client, hlbot_engine::Registry::with_debug_tasks(), o)
            .await;
    let client = t.client().await;
    let mut handles = Vec::new();
    for _ in 0..3 {
        let opts = hlbot_engine::SendOptions {
            countdown: Some(9.0),
            ..q("frozen")
        };
        let h = client
            .send_task("hlbot.debug.sleep", vec![json!(1.0)], Map::new(), opts)
            .await
            .expect("send");
        handles.push(h);
    }
    let mut c = t.conn().await;
    let held = Instant::now();
    loop {
        let n: u64 = c.hlen(t.key("unacked")).await.expect("hlen");
        if n == 3 {
            break;
        }
        assert!(
            held.elapsed() < Duration::from_secs(5),
            "the worker never held the ETA tasks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Cut off: its liveness key lapses; a survivor confirms it gone and gives its messages back.
    gate.cut();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let broker = t.broker(vt).await;
    let mut s = Suspects::default();
    let grace = Duration::from_millis(500);
    assert_eq!(recover_held(&broker, &mut s, grace).await.expect("look"), 0);
    tokio::time::sleep(grace + Duration::from_millis(100)).await;
    assert_eq!(
        recover_held(&broker, &mut s, grace).await.expect("recover"),
        3
    );
    let queued: u64 = c.llen(t.key("frozen")).await.expect("llen");
    assert_eq!(queued, 3, "given back to the queue");
    gate.open();

    for h in &handles {
        h.get(Duration::from_secs(30)).await.expect("the task runs");
    }
    // Past the ETA and the 1 s run of any second copy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for h in &handles {
        assert_eq!(t.runs(&h.id).await, 1, "task {} ran twice", h.id);
    }
    let unacked: u64 = c.hlen(t.key("unacked")).await.expect("hlen");
    assert_eq!(unacked, 0, "all acked");
    w.stop().await;
    drop(gate);
}
