//! Property tests (proptest, stable toolchain) over the untrusted-bytes decoders: the envelope and
//! body decoder must never panic on any input — random bytes, captured Celery messages with
//! bytes flipped, cut or inserted, JSON-shaped envelopes with hostile field types — and what
//! hlbot encodes must decode back unchanged; `pyjson` output must be ASCII JSON that parses back
//! to the same value; pickle, msgpack and YAML likewise. Case counts: `PROPTEST_CASES` (default 256; `scripts/fuzz.sh` runs more).

use base64::Engine;
use hlbot_proto::{Embed, Envelope, Headers, Serializer, TaskMessage, pyjson};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn captured() -> Vec<Vec<u8>> {
    let msgs: Vec<Value> =
        serde_json::from_str(include_str!("fixtures/published_messages.json")).expect("fixture");
    msgs.into_iter()
        .map(|mut m| {
            if let Some(o) = m.as_object_mut() {
                o.remove("body_decoded");
            }
            serde_json::to_vec(&m).expect("serialize")
        })
        .collect()
}

/// Any JSON value, a few levels deep, with the awkward corners: big and negative numbers,
/// floats, non-ASCII and control characters, empty containers.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\é€😀a-z]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A mutation of a captured message: flip, cut or insert bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn apply(mut raw: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        if raw.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, b) => {
                let i = i % raw.len();
                raw[i] ^= b;
            }
            Mutation::Cut(i) => raw.truncate(i % raw.len()),
            Mutation::Insert(i, b) => {
                let i = i % raw.len();
                raw.splice(i..i, b.iter().copied());
            }
        }
    }
    raw
}

/// Found by `pyjson_is_ascii_json_that_parses_back` / `encode_then_decode_round_trips`: without
/// serde_json's `float_roundtrip` feature these floats came back 1 ULP off (Python's `json`
/// round-trips them exactly), so a task saw different arguments than the client sent.
#[test]
fn regression_extreme_floats_round_trip_exactly() {
    for f in [-2.9858247546743043e147, 1.8230289233452278e-252] {
        let v = json!({ "x": [f] });
        let back: Value = serde_json::from_str(&pyjson::to_string(&v)).expect("JSON");
        assert_eq!(back, v);
        let m = TaskMessage::new(
            Headers::new("t", "0b4c2b1e-3f0a-4c7e-9d1a-2b3c4d5e6f70"),
            vec![json!(f)],
            Map::new(),
            Embed::default(),
            "default",
            0,
        );
        let back = TaskMessage::decode(&m.envelope.to_vec()).expect("decodes");
        assert_eq!(back.args, vec![json!(f)]);
    }
}

proptest! {
    // Crashes found become named regression tests (below), not a persistence file.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn random_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = TaskMessage::decode(&raw);
        let _ = Envelope::from_slice(&raw);
    }

    #[test]
    fn mutated_captured_messages_never_panic(
        which in 0usize..10,
        ms in prop::collection::vec(mutation(), 1..6),
    ) {
        let all = captured();
        let raw = apply(all[which % all.len()].clone(), &ms);
        if let Ok(m) = TaskMessage::decode(&raw) {
            // Whatever decodes re-encodes and decodes again.
            let mut m = m;
            m.sync_envelope();
            let again = TaskMessage::decode(&m.envelope.to_vec());
            prop_assert!(again.is_ok(), "{:?}", again.err());
        }
    }

    /// An envelope whose fields hold any JSON: wrong types where strings, objects and numbers
    /// belong, and a base64 body of any JSON.
    #[test]
    fn hostile_envelope_fields_never_panic(
        headers in json_value(),
        properties in json_value(),
        body in json_value(),
        priority in json_value(),
        encoding in prop_oneof![Just(json!("base64")), Just(json!("utf-8")), json_value()],
        content_type in prop_oneof![Just(json!("application/json")), json_value()],
    ) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&body).unwrap());
        for props in [properties.clone(), json!({"body_encoding": encoding, "delivery_tag": "t", "priority": priority, "delivery_info": {"routing_key": "q"}})] {
            let raw = serde_json::to_vec(&json!({
                "body": b64, "content-encoding": "utf-8", "content-type": content_type,
                "headers": headers, "properties": props,
            })).unwrap();
            let _ = TaskMessage::decode(&raw);
        }
    }

    /// What hlbot encodes, hlbot (and so Celery's wire) decodes unchanged.
    #[test]
    fn encode_then_decode_round_trips(
        args in prop::collection::vec(json_value(), 0..5),
        kwargs in prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..5),
        task in "[a-z_.]{1,30}",
        priority in 0u8..10,
    ) {
        let kwargs: Map<String, Value> = kwargs.into_iter().collect();
        let headers = Headers::new(&task, "0b4c2b1e-3f0a-4c7e-9d1a-2b3c4d5e6f70");
        let m = TaskMessage::new(headers, args.clone(), kwargs.clone(), Embed::default(), "default", priority);
        let back = TaskMessage::decode(&m.envelope.to_vec()).expect("own message decodes");
        prop_assert_eq!(back.args, args);
        prop_assert_eq!(back.kwargs, kwargs);
        prop_assert_eq!(back.headers.task, task);
    }

    /// kombu's other serializers: random bytes, and hlbot's own pickle/msgpack/YAML with bytes
    /// flipped, cut or inserted, never panic (nor blow up: shared pickle references are
    /// budgeted); every value hlbot writes reads back unchanged.
    #[test]
    fn other_serializers_never_panic_and_round_trip(
        v in json_value(),
        ms in prop::collection::vec(mutation(), 0..4),
        raw in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        for s in Serializer::ALL {
            let _ = s.decode(&raw);
            let bytes = s.encode(&v);
            prop_assert_eq!(s.decode(&bytes).expect("own encoding"), v.clone(), "{}", s);
            let _ = s.decode(&apply(bytes, &ms));
            let _ = Serializer::read_any(&apply(s.encode_result(&v), &ms));
        }
    }

    #[test]
    fn pyjson_is_ascii_json_that_parses_back(v in json_value()) {
        let s = pyjson::to_string(&v);
        prop_assert!(s.is_ascii(), "{}", s);
        let back: Value = serde_json::from_str(&s).expect("valid JSON");
        prop_assert_eq!(back, v.clone());
        let r = pyjson::repr_bounded(&v, 64);
        prop_assert!(r.chars().count() <= 64, "{}", r);
    }
}
