//! Broker: kombu layout, priorities, unacked bookkeeping, restore exactly once, requeue, purge.

use std::time::Duration;

use hlbot_engine::SendOptions;
use hlbot_proto::TaskMessage;
use redis::AsyncCommands;
use serde_json::json;

use crate::fixture::TestRedis;

#[tokio::test]
async fn publish_uses_kombu_layout_and_priority_buckets() {
    let t = TestRedis::new();
    let client = t.client().await;
    for p in [0u8, 2, 4, 7, 9] {
        let o = SendOptions {
            queue: Some("celery".into()),
            priority: Some(p),
            ..Default::default()
        };
        client
            .send_task("wireapp.add", vec![json!(p)], Default::default(), o)
            .await
            .expect("send");
    }
    let mut c = t.conn().await;
    let l0: i64 = c.llen(t.key("celery")).await.expect("llen");
    let l3: i64 = c.llen(t.key("celery\x06\x163")).await.expect("llen");
    let l6: i64 = c.llen(t.key("celery\x06\x166")).await.expect("llen");
    let l9: i64 = c.llen(t.key("celery\x06\x169")).await.expect("llen");
    assert_eq!((l0, l3, l6, l9), (2, 1, 1, 1));
    let member: bool = c
        .sismember(
            t.key("_kombu.binding.celery"),
            "celery\x06\x16\x06\x16celery",
        )
        .await
        .expect("binding");
    assert!(member);
    let perm: bool = c
        .sismember(
            t.key("_kombu.binding_permanent.celery"),
            "celery\x06\x16\x06\x16celery",
        )
        .await
        .expect("binding");
    assert!(perm);

    // Consumed lowest step first, FIFO inside a bucket.
    let broker = t.broker(Duration::from_secs(3600)).await;
    let mut consumer = broker
        .consumer(&["celery".into()], "w1")
        .await
        .expect("consumer");
    let got = consumer
        .fetch(10, Duration::from_millis(100))
        .await
        .expect("fetch");
    let order: Vec<u8> = got
        .iter()
        .map(|d| {
            TaskMessage::decode(&d.raw).expect("decode").args[0]
                .as_u64()
                .unwrap_or(99) as u8
        })
        .collect();
    assert_eq!(order, vec![0, 2, 4, 7, 9]);
    // Every fetched message is recorded as unacked, atomically with the pop.
    let n: i64 = c.hlen(t.key("unacked")).await.expect("hlen");
    let z: i64 = c.zcard(t.key("unacked_index")).await.expect("zcard");
    assert_eq!((n, z), (5, 5));
    let stored: Vec<u8> = c.hget(t.key("unacked"), &got[0].tag).await.expect("hget");
    let v: serde_json::Value = serde_json::from_slice(&stored).expect("unacked value is JSON");
    assert_eq!(v[1], "");
    assert_eq!(v[2], "celery");
    assert_eq!(v[0]["properties"]["delivery_tag"], got[0].tag.as_str());
    let tags: Vec<&str> = got.iter().map(|d| d.tag.as_str()).collect();
    broker.ack(&tags).await.expect("ack");
    let n: i64 = c.hlen(t.key("unacked")).await.expect("hlen");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn blocking_fetch_wakes_on_publish() {
    let t = TestRedis::new();
    let broker = t.broker(Duration::from_secs(3600)).await;
    let mut consumer = broker
        .consumer(&["q1".into(), "q2".into()], "w1")
        .await
        .expect("consumer");
    let client = t.client().await;
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let o = SendOptions {
            queue: Some("q2".into()),
            ..Default::default()
        };
        client
            .send_task("x", vec![], Default::default(), o)
            .await
            .expect("send");
    });
    let mut got = consumer
        .fetch(1, Duration::from_secs(5))
        .await
        .expect("fetch");
    sender.await.expect("join");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].queue, "q2");
    // The idle wait moved it into this worker's in-flight list in the same step it left q2.
    let list = got[0]
        .claim
        .clone()
        .expect("idle-wait deliveries carry their in-flight list");
    let mut c = t.conn().await;
    let held: Vec<Vec<u8>> = c.lrange(&list, 0, -1).await.expect("lrange");
    assert_eq!(held, vec![got[0].raw.clone()]);
    consumer.claim(&mut got).await.expect("claim");
    let z: Option<f64> = c
        .zscore(t.key("unacked_index"), &got[0].tag)
        .await
        .expect("zscore");
    assert!(z.is_some(), "a claim records the unacked entry");
    let left: i64 = c.llen(&list).await.expect("llen");
    assert_eq!(left, 0, "and takes it out of the in-flight list");
}

/// Queues rotate after each fetch; the next idle wait reuses its blocking connections in the
/// new order. It used to fail there ("empty command": an empty registration pipeline) and
/// rebuild every connection after each message of a multi-queue worker.
#[tokio::test]
async fn idle_waits_after_rotation_keep_their_connections() {
    let t = TestRedis::new();
    let broker = t.broker(Duration::from_secs(3600)).await;
    let mut consumer = broker
        .consumer(&["q1".into(), "q2".into()], "w1")
        .await
        .expect("consumer");
    let client = t.client().await;
    for (round, queue) in ["q2", "q1", "q2", "q1"].into_iter().enumerate() {
        let c = client.clone();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let o = SendOptions {
                queue: Some(queue.into()),
                ..Default::default()
            };
            c.send_task("x", vec![], Default::default(), o)
                .await
                .expect("send");
        });
        let mut got = consumer
            .fetch(1, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("idle wait {round} after rotation: {e}"));
        sender.await.expect("join");
        assert_eq!(got.len(), 1, "round {round}");
        assert_eq!(got[0].queue, queue);
        consumer.claim(&mut got).await.expect("claim");
    }
}

#[tokio::test]
async fn restore_puts_expired_unacked_at_head_once_even_with_racing_restorers() {
    let t = TestRedis::new();
    let client = t.client().await;
    for i in 0..3 {
        let o = SendOptions {
            queue: Some("celery".into()),
            ..Default::default()
        };
        client
            .send_task("x", vec![json!(i)], Default::default(), o)
            .await
            .expect("send");
    }
    let broker = t.broker(Duration::from_secs(1)).await;
    let mut consumer = broker
        .consumer(&["celery".into()], "w1")
        .await
        .expect("consumer");
    let got = consumer.fetch(1, Duration::ZERO).await.expect("fetch");
    assert_eq!(got.len(), 1);
    let first_tag = got[0].tag.clone();
    // Not yet past the visibility timeout: nothing restored.
    assert_eq!(broker.restore_visible().await.expect("restore"), 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Eight restorers race; exactly one restores it.
    let mut joins = vec![];
    for _ in 0..8 {
        let b = t.broker(Duration::from_secs(1)).await;
        joins.push(tokio::spawn(async move {
            b.restore_visible().await.expect("restore")
        }));
    }
    let mut total = 0;
    for j in joins {
        total += j.await.expect("join");
    }
    assert_eq!(total, 1);
    let mut c = t.conn().await;
    let len: i64 = c.llen(t.key("celery")).await.expect("llen");
    assert_eq!(len, 3);
    // At the head (next popped), flagged redelivered, same tag.
    let head: Vec<u8> = c.lindex(t.key("celery"), -1).await.expect("lindex");
    let m = TaskMessage::decode(&head).expect("decode");
    assert_eq!(m.delivery_tag(), first_tag);
    assert!(m.headers.redelivered());
    assert_eq!(
        m.envelope.properties.delivery_info.extra["redelivered"],
        true
    );
    let n: i64 = c.hlen(t.key("unacked")).await.expect("hlen");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn refreshed_messages_are_not_restored() {
    let t = TestRedis::new();
    let client = t.client().await;
    client
        .send_task(
            "x",
            vec![],
            Default::default(),
            SendOptions {
                queue: Some("celery".into()),
                ..Default::default()
            },
        )
        .await
        .expect("send");
    let broker = t.broker(Duration::from_secs(1)).await;
    let mut consumer = broker
        .consumer(&["celery".into()], "w1")
        .await
        .expect("consumer");
    let got = consumer.fetch(1, Duration::ZERO).await.expect("fetch");
    tokio::time::sleep(Duration::from_millis(700)).await;
    broker
        .refresh(&[got[0].tag.clone()])
        .await
        .expect("refresh");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(broker.restore_visible().await.expect("restore"), 0);
    // An acked tag is never resurrected by refresh.
    broker.ack(&[got[0].tag.as_str()]).await.expect("ack");
    broker
        .refresh(&[got[0].tag.clone()])
        .await
        .expect("refresh");
    let mut c = t.conn().await;
    let z: i64 = c.zcard(t.key("unacked_index")).await.expect("zcard");
    assert_eq!(z, 0);
}

#[tokio::test]
async fn requeue_goes_to_tail_once_and_purge_counts() {
    let t = TestRedis::new();
    let client = t.client().await;
    for i in 0..2 {
        let o = SendOptions {
            queue: Some("pq".into()),
            priority: Some(if i == 0 { 0 } else { 9 }),
            ..Default::default()
        };
        client
            .send_task("x", vec![json!(i)], Default::default(), o)
            .await
            .expect("send");
    }
    let broker = t.broker(Duration::from_secs(3600)).await;
    let mut consumer = broker
        .consumer(&["pq".into()], "w1")
        .await
        .expect("consumer");
    let got = consumer.fetch(1, Duration::ZERO).await.expect("fetch");
    assert!(broker.requeue(&got[0]).await.expect("requeue"));
    assert!(
        !broker.requeue(&got[0]).await.expect("requeue"),
        "second requeue is a no-op"
    );
    assert_eq!(broker.len("pq").await.expect("len"), 2);
    assert_eq!(broker.purge(&["pq".into()]).await.expect("purge"), 2);
    assert_eq!(broker.len("pq").await.expect("len"), 0);
}

#[tokio::test]
async fn malformed_entries_are_dead_lettered_in_the_same_step() {
    let t = TestRedis::new();
    let mut c = t.conn().await;
    let _: () = c
        .lpush(t.key("bad"), "this is not json")
        .await
        .expect("lpush");
    let broker = t.broker(Duration::from_secs(3600)).await;
    let mut consumer = broker
        .consumer(&["bad".into()], "w1")
        .await
        .expect("consumer");
    let got = consumer.fetch(5, Duration::ZERO).await.expect("fetch");
    assert!(got.is_empty());
    assert_eq!(consumer.dead.len(), 1);
    assert_eq!(consumer.dead[0].0, "envelope is not JSON");
    let dead = hlbot_engine::deadletter::list(&broker, 10)
        .await
        .expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].raw, "this is not json");
    assert_eq!(dead[0].queue, "bad");
}

/// A message a Python client routed through a topic exchange (`Queue('pdf', Exchange('media',
/// type='topic'), routing_key='media.#')`) goes back to `pdf` when restored, found through the
/// regex kombu stores in the binding; it used to go to a `media.pdf` list nobody reads.
#[tokio::test]
async fn a_topic_routed_message_is_restored_to_its_bound_queue() {
    let t = TestRedis::new();
    let mut c = t.conn().await;
    let sep = hlbot_proto::SEP;
    c.sadd::<_, _, ()>(
        t.key("_kombu.binding.media"),
        format!("media.#{sep}^media\\..*?${sep}pdf"),
    )
    .await
    .expect("bind");
    let client = t.client().await;
    let o = SendOptions {
        queue: Some("pdf".into()),
        ..Default::default()
    };
    let mut msg = client.build("x", vec![json!(1)], Default::default(), &o);
    msg.envelope.properties.delivery_info.exchange = "media".into();
    msg.envelope.properties.delivery_info.routing_key = "media.pdf".into();
    let broker = t.broker(Duration::from_secs(1)).await;
    broker
        .publish_raw("pdf", 0, &msg.envelope.to_vec())
        .await
        .expect("publish");
    assert_eq!(
        broker.lookup("media", "media.pdf").await.expect("lookup"),
        Some("pdf".into())
    );
    assert_eq!(
        broker.lookup("media", "video.mp4").await.expect("lookup"),
        None
    );
    let mut consumer = broker
        .consumer(&["pdf".into()], "w1")
        .await
        .expect("consumer");
    assert_eq!(
        consumer
            .fetch(1, Duration::ZERO)
            .await
            .expect("fetch")
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(broker.restore_visible().await.expect("restore"), 1);
    let bound: i64 = c.llen(t.key("pdf")).await.expect("llen");
    let stray: i64 = c.llen(t.key("media.pdf")).await.expect("llen");
    assert_eq!((bound, stray), (1, 0));
}
