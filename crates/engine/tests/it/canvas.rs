//! Groups and chords from the Rust client through an in-process worker: `send_group` saves a
//! `GroupResult` in Python's layout (and one Python wrote is restored), `send_chord` joins in
//! header order, an empty header sends the body with `[]`, a failed part is a `ChordError` on
//! the body, and the chord's keys are gone (but `.c` = `done`) afterwards.

use std::time::Duration;

use hlbot_engine::{Registry, TaskCall};
use hlbot_proto::State;
use redis::AsyncCommands;
use serde_json::{Map, Value, json};

use crate::fixture::{TestRedis, batch};
use crate::worker::{opts, q, start};

fn call(name: &str, args: Vec<Value>) -> TaskCall {
    TaskCall {
        name: name.into(),
        args,
        kwargs: Map::new(),
        options: q("default"),
    }
}

#[tokio::test]
async fn groups_and_chords_from_rust() {
    let t = TestRedis::new();
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        opts(&["default"]),
        Duration::from_secs(3600),
    )
    .await;
    let client = t.client().await;
    let mut c = t.conn().await;

    // A group, saved as Python saves a GroupResult.
    let g = client
        .send_group(vec![
            call("hlbot.debug.echo", vec![json!(1)]),
            call("hlbot.debug.echo", vec![json!(2)]),
        ])
        .await
        .unwrap();
    let saved: String = c
        .get(t.key(&format!("celery-taskset-meta-{}", g.id)))
        .await
        .unwrap();
    let want = format!(
        "{{\"result\": [[\"{}\", null], [[[\"{}\", null], null], [[\"{}\", null], null]]]}}",
        g.id, g.results[0].id, g.results[1].id
    );
    assert_eq!(saved, want);
    assert_eq!(
        client.backend().restore_group(&g.id).await.unwrap(),
        Some(g.ids())
    );
    // One Python wrote (captured from GroupResult.save(), a nested group inside).
    let _: () = c
        .set(
            t.key("celery-taskset-meta-py"),
            r#"{"result": [["py", null], [[["a", null], null], [["inner", null], [[["b", null], null]]]]]}"#,
        )
        .await
        .unwrap();
    assert_eq!(
        client.backend().restore_group("py").await.unwrap(),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(client.backend().restore_group("nope").await.unwrap(), None);

    // A chord: the longest part first, results still in header order.
    let body = call("hlbot.debug.echo", vec![json!("tail")]);
    let h = client
        .send_chord(
            vec![
                call("hlbot.debug.sleep", vec![json!(0.3)]),
                call("hlbot.debug.sleep", vec![json!(0.0)]),
            ],
            body.clone(),
        )
        .await
        .unwrap();
    let v = h.get(Duration::from_secs(20)).await.unwrap();
    assert_eq!(v, json!({"args": [[0.3, 0.0], "tail"], "kwargs": {}}));

    // An empty header: the body at once, with [].
    let h = client.send_chord(vec![], body.clone()).await.unwrap();
    let v = h.get(Duration::from_secs(20)).await.unwrap();
    assert_eq!(v, json!({"args": [[], "tail"], "kwargs": {}}));

    // A failed part: ChordError on the body.
    let h = client
        .send_chord(
            vec![
                call("hlbot.debug.echo", vec![json!(1)]),
                call("hlbot.debug.fail", vec![json!("no")]),
            ],
            body,
        )
        .await
        .unwrap();
    let m = h.wait_meta(Duration::from_secs(20)).await.unwrap();
    assert_eq!(m.status, State::Failure);
    assert_eq!(m.result["exc_type"], "ChordError");
    assert!(
        m.result["exc_message"][0]
            .as_str()
            .is_some_and(|s| s.ends_with("raised RuntimeError('no')")),
        "{}",
        m.result
    );
    // Each body went with its pending record: nothing is left for a recovery to send again.
    let left: i64 = c.hlen(t.key("hlbot.chords.pending")).await.unwrap();
    assert_eq!(left, 0);
    w.stop().await;
}

/// The `chord` op of a header part, as the writer sends it (token `<owner>:<seq>:0`).
pub(crate) fn chord_op(
    t: &TestRedis,
    owner: &str,
    seq: u64,
    gid: &str,
    id: &str,
    index: i64,
    body: &Value,
) -> Vec<String> {
    use hlbot_engine::worker::chord::ChordPart;
    use hlbot_engine::worker::links::Parent;
    let entry = hlbot_proto::pyjson::to_string(&json!([1, id, "SUCCESS", index + 1]));
    let part = ChordPart {
        group: gid.into(),
        id: id.into(),
        index: Some(index),
        entry: entry.clone(),
        callback: body.clone(),
        parent: Parent {
            id: id.into(),
            root_id: Some(id.into()),
            origin: None,
            queue: "default".into(),
            priority: 0,
            serializer: Default::default(),
        },
        progress: None,
    };
    [
        "chord",
        "0",
        &t.key(&format!("celery-taskset-meta-{gid}")),
        id,
        &entry,
        &index.to_string(),
        "1",
        "",
        "",
        &serde_json::to_string(&part).expect("json"),
        &format!("{owner}:{seq}:0"),
    ]
    .map(String::from)
    .to_vec()
}

/// A chord of `parts` parts (each returning its index + 1) completed by batches of a writer whose
/// worker died right after (its liveness key never written): the body's pending record is left.
pub(crate) struct DeadOwners {
    pub owner: String,
    /// The record's field (the chord's taskset key).
    pub field: String,
    pub body_id: String,
    /// The reply of the batch that completed the chord.
    pub reply: Vec<redis::Value>,
}

pub(crate) async fn left_by_a_dead_worker(t: &TestRedis, parts: i64) -> DeadOwners {
    let mut c = t.conn().await;
    let owner = format!("dead-{}", uuid::Uuid::new_v4().simple());
    let gid = uuid::Uuid::new_v4().to_string();
    let body_id = uuid::Uuid::new_v4().to_string();
    let field = t.key(&format!("celery-taskset-meta-{gid}"));
    let body = json!({"task": "hlbot.debug.echo", "args": ["tail"], "kwargs": {},
        "options": {"task_id": body_id, "queue": "default"}, "subtask_type": null, "immutable": false});
    let _: () = c.set(format!("{field}.s"), parts).await.unwrap();
    let mut reply = Vec::new();
    for i in 0..parts {
        let seq = i as u64 + 1;
        let id = format!("part{i}");
        reply = batch(
            t,
            &owner,
            seq,
            &chord_op(t, &owner, seq, &gid, &id, i, &body),
        )
        .await;
    }
    DeadOwners {
        owner,
        field,
        body_id,
        reply,
    }
}

/// What a worker SIGKILLed right after the step that completed a chord leaves behind: the chord
/// counted and claimed, its body's pending record owned by a worker whose liveness key is gone,
/// and no body sent. A worker that starts takes the record over and sends the body, once; the
/// dead owner's batch arriving late (its old token) sends nothing. Without the pending record
/// the body would never run (the test waits for its result).
#[tokio::test]
async fn a_chord_body_left_by_a_worker_that_died_is_sent_once() {
    let t = TestRedis::new();
    let mut c = t.conn().await;
    let DeadOwners {
        owner,
        field,
        body_id,
        reply,
    } = left_by_a_dead_worker(&t, 2).await;
    assert!(
        matches!(reply.last(), Some(redis::Value::Array(d)) if d.len() == 3),
        "the second part completes the chord: {reply:?}"
    );
    let pending = t.key("hlbot.chords.pending");
    let rec: Option<String> = c.hget(&pending, &field).await.unwrap();
    let rec: Value = serde_json::from_str(&rec.expect("a pending record")).unwrap();
    assert_eq!(
        (rec["o"].as_str(), rec["k"].as_str()),
        (Some(owner.as_str()), Some(format!("{owner}:2:0").as_str()))
    );

    // The owner is dead (no liveness key): a new worker sends the body at start.
    let w = start(
        &t,
        Registry::with_debug_tasks(),
        opts(&["default"]),
        Duration::from_secs(3600),
    )
    .await;
    let v = t
        .client()
        .await
        .handle(&body_id)
        .get(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(v, json!({"args": [[1, 2], "tail"], "kwargs": {}}));
    let left: i64 = c.hlen(&pending).await.unwrap();
    assert_eq!(left, 0, "the record goes with the body's publish");
    let sent: Option<f64> = c.zscore(t.key("hlbot.chords.sent"), &field).await.unwrap();
    assert!(sent.is_some(), "the body is noted as sent");

    // The dead owner's body batch arrives late: skipped, nothing pushed.
    let probe = t.key("probe");
    let late = |field: &str, token: &str, what: &str| {
        ["take", "0", field, token, "0", "lpush", &probe, what, "end"]
            .map(String::from)
            .to_vec()
    };
    let reply = batch(
        &t,
        &owner,
        3,
        &late(&field, &format!("{owner}:2:0"), "late"),
    )
    .await;
    assert!(
        reply.iter().any(|v| matches!(v, redis::Value::Array(d) if d.first() == Some(&redis::Value::BulkString(b"skip".to_vec())))),
        "{reply:?}"
    );
    // A take of a record Redis no longer has and never sent (data lost): the body goes.
    batch(
        &t,
        &owner,
        4,
        &late(&t.key("celery-taskset-meta-lost"), "x", "lost"),
    )
    .await;
    let probed: Vec<String> = c.lrange(&probe, 0, -1).await.unwrap();
    assert_eq!(probed, vec!["lost".to_string()]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.runs(&body_id).await, 1, "the body ran once");
    w.stop().await;
}
