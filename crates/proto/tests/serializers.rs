//! kombu's other serializers: task bodies and result metas written by the pinned celery/kombu
//! with pickle (protocols 0–5), msgpack and YAML (`fixtures/serializers.json`, made by
//! `fixtures/serializers.py`) read into the JSON values hlbot works with; what hlbot writes
//! reads back the same; pickles of classes hlbot cannot rebuild are refused by name.

use base64::Engine as _;
use hlbot_proto::{DecodeErrorKind, Envelope, ResultMeta, Serializer, State, TaskMessage};
use serde_json::{Map, Value, json};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/serializers.json")).expect("fixture")
}

fn b64(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("base64 string");
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

fn envelope(content_type: &str, body: &[u8]) -> Envelope {
    let mut h = Map::new();
    h.insert("task".into(), json!("tasks.add"));
    h.insert("id".into(), json!("11111111-1111-1111-1111-111111111111"));
    let mut env = Envelope::new_json(b"[]", h, "celery", 0);
    env.body = json!(base64::engine::general_purpose::STANDARD.encode(body));
    env.content_type = content_type.into();
    env
}

#[test]
fn bodies_written_by_kombu_read_as_their_json_values() {
    let f = fixture();
    let bodies = f["bodies"].as_array().expect("bodies");
    assert_eq!(bodies.len(), 10);
    for case in bodies {
        let name = case["name"].as_str().unwrap_or("?");
        let ct = case["content_type"].as_str().expect("content type");
        let s = Serializer::from_content_type(ct).expect("known content type");
        let bytes = b64(&case["body"]);
        let v = s.decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v, case["expected"], "{name}");

        let msg = TaskMessage::from_envelope(envelope(ct, &bytes), b"raw")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(msg.serializer, s, "{name}");
        assert_eq!(
            Value::Array(msg.args.clone()),
            case["expected"][0],
            "{name}"
        );
        assert_eq!(
            Value::Object(msg.kwargs.clone()),
            case["expected"][1],
            "{name}"
        );
        let embed = &case["expected"][2];
        let got = serde_json::to_value(&msg.embed).expect("embed");
        for field in ["callbacks", "errbacks", "chain", "chord"] {
            assert_eq!(got[field], embed[field], "{name}: {field}");
        }

        // Written back (a retry keeps the app's serializer) and read again: the same values.
        let mut again = msg.clone();
        again.headers.retries += 1;
        again.sync_envelope();
        assert_eq!(again.envelope.content_type, s.content_type());
        let raw = again.envelope.to_vec();
        let back = TaskMessage::decode(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((back.args, back.kwargs), (msg.args, msg.kwargs), "{name}");
        assert_eq!(back.embed, msg.embed, "{name}");
        assert_eq!(back.headers.retries, msg.headers.retries + 1);
    }
}

#[test]
fn result_metas_written_by_celerys_backend_read_with_their_exceptions() {
    let f = fixture();
    let results = f["results"].as_array().expect("results");
    assert_eq!(results.len(), 10);
    for case in results {
        let name = case["name"].as_str().unwrap_or("?");
        let m = ResultMeta::read("22222222-2222-2222-2222-222222222222", &b64(&case["data"]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            m.status.to_string(),
            case["status"].as_str().unwrap_or(""),
            "{name}"
        );
        assert_eq!(m.result, case["result"], "{name}");
        assert_eq!(
            m.date_done.as_deref(),
            Some("2026-12-07T10:00:00+00:00"),
            "{name}"
        );
        if m.status == State::Failure {
            assert!(m.exception().is_some(), "{name}");
        }
    }
}

#[test]
fn metas_hlbot_writes_read_back_in_every_serializer() {
    let exc = hlbot_proto::ExceptionInfo::new("QuotaError", "hlbot.exceptions", vec![json!("x")]);
    let now = chrono::Utc::now();
    let metas = [
        ResultMeta::success(
            "t1",
            json!({"a": [1, 2.5, null, "ü"], "b": {"__type__": "bytes", "__value__": "raw"}}),
            now,
        ),
        ResultMeta::failure("t2", &exc, Some("Traceback".into()), now),
        ResultMeta::failure(
            "t3",
            &hlbot_proto::ExceptionInfo::builtin("ValueError", "bad"),
            None,
            now,
        ),
        ResultMeta::revoked("t4", "revoked", now),
    ];
    for s in Serializer::ALL {
        for m in &metas {
            let v = serde_json::to_value(m).expect("meta");
            let bytes = s.encode_result(&v);
            // hlbot's YAML is flow style, which reads as JSON too.
            if s != Serializer::Yaml {
                assert_eq!(Serializer::sniff(&bytes), s, "{s}");
            }
            let back = ResultMeta::read(&m.task_id, &bytes).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(&back, m, "{s}");
        }
    }
}

#[test]
fn pickles_of_other_classes_are_refused_by_name() {
    let f = fixture();
    for case in f["refused"].as_array().expect("refused") {
        let needle = case["error_contains"].as_str().unwrap_or("?");
        let bytes = b64(&case["body"]);
        let err = Serializer::Pickle.decode(&bytes).expect_err("must refuse");
        assert!(err.contains(needle), "{err}");
        let env = envelope(Serializer::Pickle.content_type(), &bytes);
        let e = TaskMessage::from_envelope(env, b"raw").expect_err("must refuse");
        assert!(
            matches!(
                e.kind,
                DecodeErrorKind::BadBody {
                    serializer: "pickle",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains(needle), "{e}");
    }
}

#[test]
fn a_content_type_outside_accept_content_is_refused_before_its_body_is_read() {
    let bytes = Serializer::Pickle.encode(&json!([[1], {}, {}]));
    let env = envelope(Serializer::Pickle.content_type(), &bytes);
    let e = TaskMessage::from_envelope_accepting(env.clone(), b"raw", &[Serializer::Json])
        .expect_err("json only");
    assert!(matches!(
        e.kind,
        DecodeErrorKind::NotAccepted {
            serializer: "pickle",
            ..
        }
    ));
    assert!(e.to_string().contains("accept_content: json"), "{e}");
    let ok = TaskMessage::from_envelope_accepting(env, b"raw", &[Serializer::Pickle])
        .expect("pickle accepted");
    assert_eq!(ok.args, vec![json!(1)]);
}

#[test]
fn hostile_pickles_fail_cleanly() {
    // Truncated, unknown opcodes, memo misses, a stack underflow, deep nesting and a
    // "billion laughs" of shared references all give errors, never a panic or a blow-up.
    let good = Serializer::Pickle.encode(&json!([[1, "two", {"k": [3]}], {}, {}]));
    for n in 0..good.len() {
        let _ = Serializer::Pickle.decode(&good[..n]);
    }
    let cases: Vec<Vec<u8>> = vec![
        vec![0x80, 4, 0xff],
        b"h\x05.".to_vec(),
        b"R.".to_vec(),
        [vec![0x80, 4], vec![b']'; 300], vec![b'a'; 299], vec![b'.']].concat(),
        {
            // l0 = [1]; each next = [prev, prev] via memo: 2^40 leaves if expanded.
            let mut p = vec![0x80, 4, b']', b'K', 1, b'a', 0x94];
            for i in 0..40u8 {
                p.extend_from_slice(&[b'h', i, b'h', i, 0x86, 0x94]);
            }
            p.push(b'.');
            p
        },
        b"\x80\x04cos\nsystem\n\x8c\x02ls\x85R.".to_vec(),
    ];
    for c in cases {
        assert!(Serializer::Pickle.decode(&c).is_err(), "{c:?}");
    }
    assert_eq!(
        Serializer::Pickle.decode(b"\x80\x04\x8c\x02ok."),
        Ok(json!("ok"))
    );
}

#[test]
fn names_and_content_types_as_celery_settings_give_them() {
    for (name, s) in [
        ("json", Serializer::Json),
        ("pickle", Serializer::Pickle),
        ("application/x-python-serialize", Serializer::Pickle),
        ("msgpack", Serializer::Msgpack),
        ("application/x-msgpack", Serializer::Msgpack),
        ("YAML", Serializer::Yaml),
        ("application/json; charset=utf-8", Serializer::Json),
    ] {
        assert_eq!(Serializer::from_name(name), Some(s), "{name}");
    }
    assert_eq!(Serializer::from_name("application/x-protobuf"), None);
}
