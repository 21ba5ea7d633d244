//! Client + result backend: options on the wire, store/wait/forget, never overwriting SUCCESS.

use std::time::{Duration, Instant};

use chrono::Utc;
use hlbot_engine::{Client, Error, RedisSettings, Router, SendOptions};
use hlbot_proto::{ExceptionInfo, ResultMeta, Signature, State, TaskMessage};
use redis::AsyncCommands;
use serde_json::json;

use crate::fixture::TestRedis;

#[tokio::test]
async fn options_reach_the_wire() {
    let t = TestRedis::new();
    // A route from configuration (the app's tasks bring their own through the registry).
    let mut router = Router::default();
    router.set("process_pdf_document", "pdf");
    let client = Client::new(
        t.broker(Duration::from_secs(3600)).await,
        t.backend().await,
        router,
    );
    let link = Signature {
        task: "cb".into(),
        args: vec![],
        kwargs: Default::default(),
        options: Default::default(),
        subtask_type: None,
        immutable: false,
        extra: Default::default(),
    };
    let o = SendOptions {
        countdown: Some(10.0),
        expires: Some(60.0),
        priority: Some(6),
        task_id: Some("fixed-id".into()),
        ignore_result: Some(true),
        link: vec![link],
        time_limit: Some(10.0),
        soft_time_limit: Some(5.0),
        headers: [("x-custom".to_string(), json!(1))].into_iter().collect(),
        ..Default::default()
    };
    let h = client
        .send_task(
            "process_pdf_document",
            vec![],
            [("pdf_path".to_string(), json!("/x.pdf"))]
                .into_iter()
                .collect(),
            o,
        )
        .await
        .expect("send");
    assert_eq!(h.id, "fixed-id");
    let mut c = t.conn().await;
    let raw: Vec<u8> = c
        .rpop(t.key("pdf\x06\x166"), None)
        .await
        .expect("routed to pdf, bucket 6");
    let m = TaskMessage::decode(&raw).expect("decode");
    assert_eq!(m.kwargs["pdf_path"], "/x.pdf");
    let eta = m.headers.eta_time().expect("eta");
    let exp = m.headers.expires_time().expect("expires");
    let now = Utc::now();
    assert!((eta - now).num_milliseconds() > 8000 && (eta - now).num_milliseconds() <= 10_000);
    assert!((exp - now).num_seconds() > 55);
    assert_eq!(m.headers.timelimit, [Some(10.0), Some(5.0)]);
    assert_eq!(m.headers.ignore_result, Some(true));
    assert_eq!(m.headers.extra["x-custom"], 1);
    assert_eq!(m.embed.callbacks.as_ref().map(Vec::len), Some(1));
    assert_eq!(m.priority(), 6);
}

#[tokio::test]
async fn bulk_publish_is_pipelined_and_complete() {
    let t = TestRedis::new();
    let client = t.client().await;
    let calls: Vec<_> = (0..500)
        .map(|i| hlbot_engine::TaskCall {
            name: "hlbot.debug.echo".into(),
            args: vec![json!(i)],
            kwargs: Default::default(),
            options: SendOptions {
                queue: Some("bulk".into()),
                ..Default::default()
            },
        })
        .collect();
    let handles = client.send_many(calls).await.expect("send_many");
    assert_eq!(handles.len(), 500);
    assert_eq!(client.broker().len("bulk").await.expect("len"), 500);
}

#[tokio::test]
async fn store_publishes_wakes_waiters_and_never_overwrites_success() {
    let t = TestRedis::new();
    let client = t.client().await;
    let backend = client.backend().clone();
    let h = client.handle("task-1");
    assert_eq!(h.state().await.expect("state"), State::Pending);
    let waiter = {
        let h = h.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let v = h.get(Duration::from_secs(10)).await;
            (v, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut started = ResultMeta::new(
        "task-1",
        State::Started,
        json!({"pid": 1, "hostname": "w"}),
        Utc::now(),
    );
    started.date_done = None;
    assert!(backend.store(&started).await.expect("store"));
    assert!(
        backend
            .store(&ResultMeta::success("task-1", json!(42), Utc::now()))
            .await
            .expect("store")
    );
    let (v, took) = waiter.await.expect("join");
    assert_eq!(v.expect("value"), json!(42));
    assert!(
        took < Duration::from_secs(2),
        "woken by PUBLISH, not by the poll: {took:?}"
    );
    // A redelivered duplicate's FAILURE does not clobber the SUCCESS.
    let f = ResultMeta::failure(
        "task-1",
        &ExceptionInfo::builtin("ValueError", "late"),
        None,
        Utc::now(),
    );
    assert!(!backend.store(&f).await.expect("store"));
    assert_eq!(h.state().await.expect("state"), State::Success);
    let mut c = t.conn().await;
    let ttl: i64 = c.ttl(t.key("celery-task-meta-task-1")).await.expect("ttl");
    assert!(ttl > 3500 && ttl <= 3600, "result_expires 3600 s: {ttl}");
    h.forget().await.expect("forget");
    assert_eq!(h.state().await.expect("state"), State::Pending);
}

#[tokio::test]
async fn failure_is_an_error_with_the_exception_and_timeout_is_typed() {
    let t = TestRedis::new();
    let client = t.client().await;
    let f = ResultMeta::failure(
        "t2",
        &ExceptionInfo::builtin("ValueError", "bad thing"),
        None,
        Utc::now(),
    );
    client.backend().store(&f).await.expect("store");
    match client.handle("t2").get(Duration::from_secs(2)).await {
        Err(Error::TaskFailed { exc, .. }) => assert_eq!(exc, "ValueError: bad thing"),
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    match client.handle("never").get(Duration::from_millis(300)).await {
        Err(Error::Timeout(_)) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn redis_down_is_one_clear_line_without_the_password() {
    let s = RedisSettings::new("redis://:sekrit@127.0.0.1:1/0").expect("url");
    let err = match hlbot_engine::Broker::connect(&s, Default::default()).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("port 1 must refuse"),
    };
    assert!(!err.contains("sekrit"), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// With `result_serializer` pickle, msgpack or YAML a stored SUCCESS is still never overwritten
/// (the Lua check reads every serializer's form), whether hlbot or Python's backend wrote it;
/// and results are read back whatever wrote them.
#[tokio::test]
async fn a_success_in_any_serializer_is_never_overwritten() {
    use base64::Engine as _;
    let fixture: serde_json::Value = serde_json::from_str(include_str!(
        "../../../proto/tests/fixtures/serializers.json"
    ))
    .expect("fixture");
    let python_success = |ser: &str| {
        let case = fixture["results"]
            .as_array()
            .and_then(|r| {
                r.iter().find(|c| {
                    c["name"].as_str().is_some_and(|n| n.starts_with(ser))
                        && c["status"] == "SUCCESS"
                })
            })
            .expect("a Python SUCCESS");
        base64::engine::general_purpose::STANDARD
            .decode(case["data"].as_str().unwrap_or(""))
            .expect("base64")
    };
    for s in hlbot_proto::Serializer::ALL {
        let t = TestRedis::new();
        let mut settings = t.settings.clone();
        settings.result_serializer = s;
        let backend = hlbot_engine::Backend::connect(&settings, None)
            .await
            .expect("redis");
        let late = ResultMeta::failure(
            "t1",
            &ExceptionInfo::builtin("ValueError", "late"),
            None,
            Utc::now(),
        );
        assert!(
            backend
                .store(&ResultMeta::success(
                    "t1",
                    json!({"v": [1, "SUCCESS"]}),
                    Utc::now()
                ))
                .await
                .expect("store")
        );
        assert!(!backend.store(&late).await.expect("store"), "{s}");
        let got = backend.get("t1").await.expect("get").expect("stored");
        assert_eq!(
            (got.status, got.result),
            (State::Success, json!({"v": [1, "SUCCESS"]})),
            "{s}"
        );
        // A FAILURE whose message says SUCCESS is not mistaken for one.
        let said = ResultMeta::failure(
            "t2",
            &ExceptionInfo::builtin("ValueError", "status SUCCESS"),
            None,
            Utc::now(),
        );
        assert!(backend.store(&said).await.expect("store"), "{s}");
        assert!(
            backend
                .store(&ResultMeta::success("t2", json!(2), Utc::now()))
                .await
                .expect("store"),
            "{s}: a FAILURE mentioning SUCCESS blocked the retry's result"
        );
        if s != hlbot_proto::Serializer::Json {
            // What Celery's own backend wrote in this serializer.
            let mut c = t.conn().await;
            let key = t.key("celery-task-meta-t3");
            c.set::<_, _, ()>(&key, python_success(s.name()))
                .await
                .expect("set");
            let mut late3 = late.clone();
            late3.task_id = "t3".into();
            assert!(
                !backend.store(&late3).await.expect("store"),
                "{s}: Python's SUCCESS"
            );
            let got = backend.get("t3").await.expect("get").expect("stored");
            assert_eq!(got.status, State::Success, "{s}");
        }
    }
}
