//! The kombu virtual-transport envelope stored in a Redis list (reference §1.1, §2.7).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::{DecodeError, DecodeErrorKind};
use crate::serializer::Serializer;

/// One list element: body (base64 of the serialized payload), content type, headers, properties.
/// Unknown top-level fields are kept so that restoring or dead-lettering loses nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub body: Value,
    #[serde(rename = "content-encoding", default = "utf8")]
    pub content_encoding: String,
    #[serde(rename = "content-type", default = "app_json")]
    pub content_type: String,
    #[serde(default)]
    pub headers: Map<String, Value>,
    pub properties: Properties,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn utf8() -> String {
    "utf-8".into()
}
fn app_json() -> String {
    "application/json".into()
}

/// `properties` of an envelope. `delivery_tag` and `delivery_info` are required by kombu consumers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Properties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default = "two")]
    pub delivery_mode: u8,
    pub delivery_info: DeliveryInfo,
    #[serde(default, deserialize_with = "lenient_priority")]
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<String>,
    pub delivery_tag: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn two() -> u8 {
    2
}

fn lenient_priority<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(v.as_u64().map_or(0, |p| p.min(255) as u8))
}

/// Where the message was published: exchange (`""` = the anonymous direct exchange) and routing key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryInfo {
    #[serde(default)]
    pub exchange: String,
    #[serde(default)]
    pub routing_key: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Envelope {
    /// A fresh envelope for `body` (already-serialized JSON bytes) published to `queue` through the
    /// anonymous exchange, complete enough for Python consumers (reference §2.7).
    pub fn new_json(body: &[u8], headers: Map<String, Value>, queue: &str, priority: u8) -> Self {
        Self::new(Serializer::Json, body, headers, queue, priority)
    }

    /// [`Envelope::new_json`] for a body `serializer` wrote.
    pub fn new(
        serializer: Serializer,
        body: &[u8],
        headers: Map<String, Value>,
        queue: &str,
        priority: u8,
    ) -> Self {
        let mut env = Self {
            body: Value::Null,
            content_encoding: utf8(),
            content_type: app_json(),
            headers,
            properties: Properties {
                correlation_id: None,
                reply_to: None,
                delivery_mode: 2,
                delivery_info: DeliveryInfo {
                    exchange: String::new(),
                    routing_key: queue.to_string(),
                    extra: Map::new(),
                },
                priority,
                body_encoding: Some("base64".into()),
                delivery_tag: uuid::Uuid::new_v4().to_string(),
                extra: Map::new(),
            },
            extra: Map::new(),
        };
        env.set_body(serializer, body);
        env
    }

    /// Put `body` (bytes `serializer` wrote) in, base64-encoded as kombu's Redis transport does,
    /// with its content type and encoding.
    pub fn set_body(&mut self, serializer: Serializer, body: &[u8]) {
        self.body = Value::String(B64.encode(body));
        self.properties.body_encoding = Some("base64".into());
        self.content_type = serializer.content_type().into();
        self.content_encoding = serializer.content_encoding().into();
    }

    /// The serializer the content type names (JSON when it names none hlbot reads).
    pub fn serializer(&self) -> Serializer {
        Serializer::from_content_type(&self.content_type).unwrap_or_default()
    }

    /// Parse a queue entry. Errors carry the raw bytes.
    pub fn from_slice(raw: &[u8]) -> Result<Self, DecodeError> {
        // Straight into the typed envelope (the common case); on failure, parse again only to
        // say whether the bytes were not JSON at all or JSON of the wrong shape.
        if let Ok(env) = serde_json::from_slice::<Self>(raw) {
            return Ok(env);
        }
        let v: Value = serde_json::from_slice(raw)
            .map_err(|e| DecodeError::new(DecodeErrorKind::NotJson(e.to_string()), raw))?;
        if !v.is_object() {
            return Err(DecodeError::new(
                DecodeErrorKind::BadEnvelope("not an object".into()),
                raw,
            ));
        }
        // Whatever `fetch.lua` would record it under: the same tag, read the same lenient way.
        let tag = v
            .pointer("/properties/delivery_tag")
            .and_then(Value::as_str)
            .map(str::to_string);
        let id = v
            .pointer("/headers/id")
            .and_then(Value::as_str)
            .map(str::to_string);
        serde_json::from_value(v).map_err(|e| {
            let mut d = DecodeError::new(DecodeErrorKind::BadEnvelope(e.to_string()), raw);
            d.delivery_tag = tag;
            d.task_id = id;
            d
        })
    }

    /// The decoded body bytes (base64-decoded when `body_encoding` says so).
    pub fn body_bytes(&self) -> Result<Vec<u8>, DecodeErrorKind> {
        let text = match &self.body {
            Value::String(s) => s.as_str(),
            other => return Ok(serde_json::to_vec(other).unwrap_or_default()),
        };
        match self.properties.body_encoding.as_deref() {
            Some("base64") => B64.decode(text.as_bytes()).or_else(|_| {
                // Line-wrapped base64 (some producers): strip whitespace and try again.
                let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                B64.decode(cleaned.as_bytes())
                    .map_err(|e| DecodeErrorKind::BadBase64(e.to_string()))
            }),
            _ => Ok(text.as_bytes().to_vec()),
        }
    }

    /// Serialize the way kombu does (Python `json.dumps`).
    pub fn to_vec(&self) -> Vec<u8> {
        crate::pyjson::to_vec(self)
    }

    /// Mark as restored from `unacked` (reference §2.5): `headers.redelivered` and
    /// `properties.delivery_info.redelivered` set to true; the delivery tag stays.
    pub fn mark_redelivered(&mut self) {
        self.headers.insert("redelivered".into(), Value::Bool(true));
        self.properties
            .delivery_info
            .extra
            .insert("redelivered".into(), Value::Bool(true));
    }

    /// The task id, if the headers name one (used to file undecodable messages).
    pub fn task_id(&self) -> Option<String> {
        self.headers
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_keeps_raw() {
        let e = Envelope::from_slice(b"not json").err();
        assert!(matches!(
            e.as_ref().map(|e| &e.kind),
            Some(DecodeErrorKind::NotJson(_))
        ));
        assert_eq!(e.map(|e| e.raw), Some(b"not json".to_vec()));
        let e = Envelope::from_slice(b"[1]").err().map(|e| e.kind);
        assert!(matches!(e, Some(DecodeErrorKind::BadEnvelope(_))));
    }
}

/// The string value of the first `"key": "…"` in `raw`, found without decoding it (for entries
/// too large to parse: their task id and name still go into the dead-letter record).
pub fn sniff(raw: &[u8], key: &str) -> Option<String> {
    let pat = format!("\"{key}\"");
    let pat = pat.as_bytes();
    let mut from = 0;
    while let Some(i) = raw[from..].windows(pat.len()).position(|w| w == pat) {
        let mut j = from + i + pat.len();
        let skip_ws = |j: &mut usize| {
            while raw.get(*j).is_some_and(u8::is_ascii_whitespace) {
                *j += 1;
            }
        };
        skip_ws(&mut j);
        if raw.get(j) == Some(&b':') {
            j += 1;
            skip_ws(&mut j);
            if raw.get(j) == Some(&b'"') {
                let start = j + 1;
                let end = raw[start..].iter().position(|b| *b == b'"')? + start;
                return std::str::from_utf8(&raw[start..end])
                    .ok()
                    .map(str::to_string);
            }
        }
        from += i + 1;
    }
    None
}

#[cfg(test)]
mod sniff_tests {
    #[test]
    fn finds_fields_without_decoding() {
        let raw =
            br#"{"body": "eHh4", "headers": {"root_id": "r", "id" : "abc-1", "task": "t.x"}}"#;
        assert_eq!(super::sniff(raw, "id").as_deref(), Some("abc-1"));
        assert_eq!(super::sniff(raw, "task").as_deref(), Some("t.x"));
        assert_eq!(super::sniff(raw, "nope"), None);
        assert_eq!(super::sniff(b"{\"id\": 3}", "id"), None);
    }
}
