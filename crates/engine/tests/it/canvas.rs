//! Groups and chords from the Rust client through an in-process worker: `send_group` saves a
//! `GroupResult` in Python's layout (and one Python wrote is restored), `send_chord` joins in
//! header order, an empty header sends the body with `[]`, a failed part is a `ChordError` on
//! the body, and the chord's keys are gone (but `.c` = `done`) afterwards.

use std::time::Duration;

use hlbot_engine::{Registry, TaskCall};
use hlbot_proto::State;
use redis::AsyncCommands;
use serde_json::{Map, Value, json};

use crate::fixture::TestRedis;
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
    w.stop().await;
}
