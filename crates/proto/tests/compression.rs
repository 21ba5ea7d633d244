//! kombu's compressed bodies and Celery's compressed results, made by kombu 5.7 / celery 5.7
//! (`fixtures/compressed.json`), decoded; decompression bombs and broken streams are typed
//! errors that name the codec.

use base64::Engine as _;
use hlbot_proto::compression::{MAX_INFLATED, decompress, result_payload};
use hlbot_proto::{DecodeErrorKind, ResultMeta, TaskMessage};
use serde_json::{Value, json};
use std::io::Write;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/compressed.json")).expect("fixture")
}

fn b64(s: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().expect("text"))
        .expect("base64")
}

/// A protocol-2 envelope whose body is `body` (already compressed) with `compression` set.
fn envelope(body: &[u8], compression: &str) -> Vec<u8> {
    json!({
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"lang": "py", "task": "t", "id": "i", "compression": compression},
        "properties": {"body_encoding": "base64", "delivery_tag": "d", "priority": 0,
            "delivery_info": {"exchange": "", "routing_key": "default"}}
    })
    .to_string()
    .into_bytes()
}

#[test]
fn every_kombu_codec_decodes_to_the_plain_body() {
    let f = fixture();
    let plain = f["plain"].as_str().expect("plain").as_bytes();
    let codecs = f["bodies"].as_object().expect("bodies");
    assert_eq!(codecs.len(), 5);
    for (codec, data) in codecs {
        assert_eq!(
            decompress(codec, &b64(data)).expect(codec),
            plain,
            "{codec}"
        );
        let m = TaskMessage::decode(&envelope(&b64(data), codec)).expect(codec);
        assert_eq!(m.args, vec![json!("x".repeat(50)), json!(1)], "{codec}");
        assert_eq!(m.kwargs["k"], "ü");
    }
    // kombu's aliases name the same codecs.
    let gz = b64(&f["bodies"]["application/x-gzip"]);
    assert_eq!(decompress("gzip", &gz).expect("alias"), plain);
}

#[test]
fn compressed_results_are_read_and_plain_ones_pass_through() {
    let f = fixture();
    for codec in ["gzip", "zstd"] {
        let raw = b64(&f["results"][codec]);
        let m = ResultMeta::read("t1", &raw).expect(codec);
        assert_eq!((m.result, m.task_id.as_str()), (json!(42), "t1"));
    }
    let plain = br#"{"status": "SUCCESS", "result": 1, "task_id": "t"}"#;
    assert!(matches!(
        result_payload(plain),
        Ok(std::borrow::Cow::Borrowed(_))
    ));
}

#[test]
fn bombs_broken_streams_and_unknown_codecs_are_typed_errors() {
    // 65 MiB of zeros in a zlib stream of ~65 KB: stops at the cap.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..=(MAX_INFLATED >> 20) {
        z.write_all(&chunk).expect("zlib");
    }
    let bomb = z.finish().expect("zlib");
    assert!(bomb.len() < 1 << 20);
    let err = decompress("application/x-gzip", &bomb).expect_err("bomb");
    assert!(err.contains("inflates past 64 MiB"), "{err}");
    let e = TaskMessage::decode(&envelope(&bomb, "application/x-gzip")).expect_err("bomb");
    assert!(
        matches!(&e.kind, DecodeErrorKind::Compression { codec, .. } if codec == "application/x-gzip")
    );
    assert_eq!(e.task_id.as_deref(), Some("i"));
    let mut xz = Vec::new();
    let zeros = vec![0u8; (MAX_INFLATED + 1) as usize];
    lzma_rs::xz_compress(&mut std::io::Cursor::new(&zeros), &mut xz).expect("xz");
    let err = decompress("application/x-lzma", &xz).expect_err("xz bomb");
    assert!(err.contains("inflates past"), "{err}");

    for codec in [
        "application/x-gzip",
        "application/x-bz2",
        "application/zstd",
        "application/x-lzma",
        "application/x-brotli",
    ] {
        let e = TaskMessage::decode(&envelope(b"not compressed at all", codec)).expect_err(codec);
        let text = e.to_string();
        assert!(
            text.contains(codec) && text.contains("could not be decompressed"),
            "{text}"
        );
    }
    let e = TaskMessage::decode(&envelope(b"x", "application/x-snappy")).expect_err("unknown");
    assert!(e.to_string().contains("unknown codec"), "{e}");
}
