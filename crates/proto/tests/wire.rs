//! The wire contract against JSON captured from real celery 5.7 / kombu 5.7 traffic.

use hlbot_proto::{Envelope, ExceptionInfo, ResultMeta, State, TaskMessage, pyjson};
use serde_json::{Value, json};

fn published() -> Vec<Value> {
    let text = include_str!("fixtures/published_messages.json");
    serde_json::from_str(text).expect("fixture parses")
}

#[test]
fn decodes_every_captured_message_to_what_python_sent() {
    let msgs = published();
    assert_eq!(msgs.len(), 10);
    for mut m in msgs {
        let expected = m
            .as_object_mut()
            .and_then(|o| o.remove("body_decoded"))
            .expect("body_decoded");
        let raw = serde_json::to_vec(&m).expect("serialize");
        let msg = TaskMessage::decode(&raw).expect("decodes");
        assert_eq!(Value::Array(msg.args.clone()), expected[0]);
        assert_eq!(Value::Object(msg.kwargs.clone()), expected[1]);
        assert_eq!(msg.headers.task, "wireapp.add");
        assert_eq!(msg.headers.id, m["headers"]["id"]);
        assert_eq!(
            msg.priority() as u64,
            m["properties"]["priority"].as_u64().unwrap_or(0)
        );
        // Our serializer reproduces Python's body bytes exactly.
        let body = pyjson::to_vec(&expected);
        let env = Envelope::from_slice(&raw).expect("envelope");
        assert_eq!(env.body_bytes().expect("b64"), body);
    }
}

#[test]
fn headers_eta_expires_timelimit_and_links() {
    let msgs = published();
    let decode = |i: usize| {
        let mut m = msgs[i].clone();
        m.as_object_mut().map(|o| o.remove("body_decoded"));
        TaskMessage::decode(&serde_json::to_vec(&m).expect("ser")).expect("decodes")
    };
    let first = decode(0);
    let cbs = first.embed.callbacks.clone().unwrap_or_default();
    assert_eq!(cbs.len(), 1);
    assert_eq!(cbs[0].args, vec![json!(10)]);
    let ebs = first.embed.errbacks.clone().unwrap_or_default();
    assert!(ebs[0].immutable);
    let second = decode(1);
    assert_eq!(
        second.headers.eta.as_deref(),
        Some("2030-01-01T00:00:00+00:00")
    );
    assert!(second.headers.eta_time().is_some());
    assert_eq!(second.headers.hard_limit(), Some(10.0));
    assert_eq!(second.headers.soft_limit(), Some(5.0));
    let third = decode(2);
    assert!(third.headers.expires_time().is_some());
}

#[test]
fn reencoded_headers_keep_python_order_and_unknown_fields() {
    let mut m = published()[0].clone();
    m.as_object_mut().map(|o| o.remove("body_decoded"));
    m["headers"]["custom_header"] = json!("kept");
    let mut msg = TaskMessage::decode(&serde_json::to_vec(&m).expect("ser")).expect("decodes");
    msg.headers.retries += 1;
    msg.sync_envelope();
    let keys: Vec<&String> = msg.envelope.headers.keys().collect();
    assert_eq!(keys[0], "lang");
    assert_eq!(keys[1], "task");
    assert_eq!(msg.envelope.headers["custom_header"], "kept");
    assert_eq!(msg.envelope.headers["retries"], 1);
    let again = TaskMessage::decode(&msg.envelope.to_vec()).expect("round trip");
    assert_eq!(again.args, msg.args);
    assert_eq!(again.embed, msg.embed);
}

#[test]
fn result_metas_round_trip_byte_for_byte() {
    let text = include_str!("fixtures/result_metas.jsonl");
    let mut n = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let meta = ResultMeta::from_slice(line.as_bytes()).expect("meta parses");
        assert_eq!(meta.to_json(), line);
        n += 1;
    }
    assert!(n >= 5);
}

#[test]
fn failure_retry_revoked_and_custom_states() {
    let failure = r#"{"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["bad thing"], "exc_module": "builtins"}, "traceback": "Traceback ...", "children": [], "date_done": "2026-11-28T14:36:29.870688+00:00", "task_id": "11111111-0000-0000-0000-000000000004"}"#;
    let m = ResultMeta::from_slice(failure.as_bytes()).expect("parses");
    assert_eq!(m.status, State::Failure);
    let e = m.exception().expect("exception");
    assert_eq!(e.repr(), "ValueError('bad thing')");
    assert_eq!(m.to_json(), failure);

    let retry = r#"{"status": "RETRY", "result": {"exc_type": "RuntimeError", "exc_message": ["try again 0"], "exc_module": "builtins"}, "traceback": "x", "children": [[["11111111-0000-0000-0000-000000000006", null], null]], "date_done": null, "task_id": "11111111-0000-0000-0000-000000000006"}"#;
    assert_eq!(
        ResultMeta::from_slice(retry.as_bytes())
            .expect("parses")
            .to_json(),
        retry
    );

    let now = chrono::Utc::now();
    let mut p = ResultMeta::new(
        "t1",
        State::Custom("PROGRESS".into()),
        json!({"current": 3, "total": 10}),
        now,
    );
    p.parent_id = Some("p".into());
    let s = p.to_json();
    assert!(
        s.starts_with(r#"{"status": "PROGRESS", "result": {"current": 3, "total": 10}"#),
        "{s}"
    );
    assert!(s.contains(r#""date_done": null"#));
    assert!(s.contains(r#""parent_id": "p", "task_id": "t1"}"#));

    let r = ResultMeta::revoked("t2", "expired", now);
    assert_eq!(r.exception(), Some(ExceptionInfo::revoked("expired")));
    assert!(r.date_done.is_some());
}

#[test]
fn bad_entries_are_typed_errors_with_raw_bytes() {
    use hlbot_proto::DecodeErrorKind as K;
    let base = || {
        let mut m = published()[4].clone();
        m.as_object_mut().map(|o| o.remove("body_decoded"));
        m
    };
    let mut bad_b64 = base();
    bad_b64["body"] = json!("!!!not base64");
    let mut no_headers = base();
    no_headers["headers"] = json!({});
    let mut no_task = base();
    no_task["headers"]["task"] = json!(null);
    let mut pickle = base();
    pickle["content-type"] = json!("application/x-python-serialize");
    let mut protobuf = base();
    protobuf["content-type"] = json!("application/x-protobuf");
    let mut bad_eta = base();
    bad_eta["headers"]["eta"] = json!("soon");
    type Case = (Vec<u8>, fn(&K) -> bool);
    let cases: Vec<Case> = vec![
        (b"{not json".to_vec(), |k| matches!(k, K::NotJson(_))),
        (serde_json::to_vec(&bad_b64).unwrap_or_default(), |k| {
            matches!(k, K::BadBase64(_))
        }),
        (serde_json::to_vec(&no_headers).unwrap_or_default(), |k| {
            matches!(k, K::NoHeaders)
        }),
        (serde_json::to_vec(&no_task).unwrap_or_default(), |k| {
            matches!(k, K::NoTask)
        }),
        (serde_json::to_vec(&protobuf).unwrap_or_default(), |k| {
            matches!(k, K::ContentType(_))
        }),
        // A JSON body labelled pickle: read as what the label says, and refused.
        (serde_json::to_vec(&pickle).unwrap_or_default(), |k| {
            matches!(
                k,
                K::BadBody {
                    serializer: "pickle",
                    ..
                }
            )
        }),
        (serde_json::to_vec(&bad_eta).unwrap_or_default(), |k| {
            matches!(k, K::InvalidField { field: "eta", .. })
        }),
    ];
    for (raw, check) in cases {
        let err = TaskMessage::decode(&raw).expect_err("must fail");
        assert!(check(&err.kind), "{:?}", err.kind);
        assert_eq!(err.raw, raw);
    }
}

#[test]
fn new_message_is_complete_for_kombu() {
    let h = hlbot_proto::Headers::new("hlbot.debug.echo", "abc");
    let msg = TaskMessage::new(
        h,
        vec![json!(1), json!("x")],
        Default::default(),
        Default::default(),
        "default",
        6,
    );
    let env: Value = serde_json::from_slice(&msg.envelope.to_vec()).expect("json");
    assert_eq!(env["properties"]["delivery_info"]["routing_key"], "default");
    assert_eq!(env["properties"]["delivery_info"]["exchange"], "");
    assert_eq!(env["properties"]["body_encoding"], "base64");
    assert_eq!(env["properties"]["priority"], 6);
    assert_eq!(env["properties"]["correlation_id"], "abc");
    assert!(
        env["properties"]["delivery_tag"]
            .as_str()
            .is_some_and(|t| t.len() == 36)
    );
    assert_eq!(env["headers"]["argsrepr"], "(1, 'x')");
    assert_eq!(env["headers"]["root_id"], "abc");
}

/// Celery 5.7 with `task_protocol = 1` (captured with that setting): a task with a link, a link
/// error, a countdown, expires and time limits, then a chord's header part. Read as Celery's
/// worker reads them (`hybrid_to_proto2`): nothing of what they carry is dropped.
#[test]
fn protocol1_messages_keep_links_limits_groups_and_chords() {
    let msgs: Vec<TaskMessage> = include_str!("fixtures/protocol1_messages.jsonl")
        .lines()
        .map(|l| TaskMessage::decode(l.as_bytes()).expect("decodes"))
        .collect();
    let linked = &msgs[0];
    assert_eq!(linked.headers.task, "hlbot.debug.echo");
    assert_eq!(linked.headers.id, "11111111-1111-4111-8111-111111111111");
    assert_eq!(linked.args, vec![json!(3)]);
    assert_eq!(linked.kwargs["k"], "v");
    assert!(linked.headers.eta_time().is_some());
    assert!(linked.headers.expires_time().is_some());
    assert_eq!(linked.headers.hard_limit(), Some(7.0));
    assert_eq!(linked.headers.soft_limit(), Some(5.0));
    let cbs = linked.embed.callbacks.clone().unwrap_or_default();
    assert_eq!(cbs.len(), 1);
    assert_eq!(cbs[0].args, vec![json!("cb")]);
    assert_eq!(
        cbs[0].options["task_id"],
        "22222222-2222-4222-8222-222222222222"
    );
    let ebs = linked.embed.errbacks.clone().unwrap_or_default();
    assert_eq!(ebs[0].args, vec![json!("eb")]);
    assert_eq!(linked.headers.argsrepr.as_deref(), Some("(3,)"));
    assert_eq!(linked.headers.kwargsrepr.as_deref(), Some("{'k': 'v'}"));

    let part = &msgs[1];
    assert_eq!(
        part.headers.group.as_deref(),
        Some("16f7cc72-79eb-4049-982c-3120e3feb695")
    );
    assert_eq!(part.headers.group_index, Some(0));
    let body = part.embed.chord.as_ref().expect("the chord's body");
    assert_eq!(
        body["options"]["task_id"],
        "55555555-5555-4555-8555-555555555555"
    );
    assert_eq!(part.headers.hard_limit(), None);
}

/// celery-node's protocol-1 shape: only task, id, args and kwargs in the body, camelCase
/// properties.
#[test]
fn a_minimal_protocol1_body_decodes() {
    use base64::Engine as _;
    let body = json!({"task": "t", "id": "i", "args": [1], "kwargs": {}});
    let raw = json!({
        "body": base64::engine::general_purpose::STANDARD.encode(body.to_string()),
        "content-type": "application/json", "content-encoding": "utf-8", "headers": {},
        "properties": {"correlationId": "i", "replyTo": "", "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": "default"}, "delivery_mode": 2,
            "delivery_tag": "d"}
    });
    let m = TaskMessage::decode(raw.to_string().as_bytes()).expect("decodes");
    assert_eq!((m.headers.task.as_str(), m.headers.id.as_str()), ("t", "i"));
    assert_eq!(m.args, vec![json!(1)]);
    assert_eq!(m.embed, Default::default());
    assert_eq!(m.headers.timelimit, [None, None]);
}

/// `argsrepr`/`kwargsrepr` as Celery 5.7's `saferepr` writes them (`fixtures/saferepr.tsv`: the
/// value as JSON, then Python's string; generated with the pinned celery): quotes, unescaped
/// newlines and backslashes, floats (`1e-07`, `1e+16`), containers past depth 3 as `[...]`.
#[test]
fn argsrepr_and_kwargsrepr_match_celerys_saferepr() {
    for line in include_str!("fixtures/saferepr.tsv").lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let value: Value = serde_json::from_str(cols[0]).expect("value");
        let want: String = serde_json::from_str(cols[1]).expect("repr");
        let got = match (cols.get(2), &value) {
            (Some(&"kw"), v) => pyjson::repr_bounded(v, 1024),
            (_, Value::Array(a)) => pyjson::repr_args(a),
            _ => unreachable!("a list of args or a kwargs row"),
        };
        assert_eq!(got, want, "{}", cols[0]);
    }
}
