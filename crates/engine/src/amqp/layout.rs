//! Celery's AMQP layout, as kombu's `pyamqp` transport declares and writes it (captured from
//! Celery 5.7 / kombu 5.7 against RabbitMQ, see docs/amqp.md): pure data, no I/O.
//!
//! | entity            | declaration                                                          |
//! |-------------------|----------------------------------------------------------------------|
//! | exchange `<q>`    | type `direct`, durable, not auto-delete, no arguments                |
//! | queue `<q>`       | durable, not exclusive, not auto-delete; arguments: none, or         |
//! |                   | `x-queue-type: quorum` (`task_default_queue_type = "quorum"`) and/or |
//! |                   | `x-max-priority: N` (`task_queue_max_priority`)                      |
//! | binding           | exchange `<q>` → queue `<q>`, routing key `<q>`                      |
//! | task message      | published to the default exchange `""` with routing key `<q>`;       |
//! |                   | body = the JSON `[args, kwargs, embed]`; properties `content_type`    |
//! |                   | `application/json`, `content_encoding` `utf-8`, `delivery_mode` 2,   |
//! |                   | `priority` (when set), `correlation_id` = task id, `reply_to`;       |
//! |                   | protocol v2 headers as an AMQP field table (`None` → void)           |
//!
//! The worker sees a delivery as the same kombu [`Envelope`] a Redis list holds, so everything
//! above the transport (dispatch, retries, results) is shared.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hlbot_proto::envelope::{DeliveryInfo, Properties};
use hlbot_proto::{DecodeErrorKind, Envelope};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Number, Value};

/// Celery's `task_default_queue_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

impl std::str::FromStr for QueueType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(Self::Classic),
            "quorum" => Ok(Self::Quorum),
            other => Err(format!(
                "queue type must be \"classic\" or \"quorum\", not {other:?}"
            )),
        }
    }
}

/// How queues are declared: the settings that change a queue's arguments. Every producer and
/// consumer of a queue must agree (RabbitMQ refuses a redeclaration with other arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    pub queue_type: QueueType,
    /// Celery's `task_queue_max_priority` (`x-max-priority`), 1..=255.
    pub max_priority: Option<u8>,
}

/// One queue's declarations: its direct exchange, the queue and the binding between them.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDecl {
    pub exchange: String,
    pub queue: String,
    pub routing_key: String,
    pub arguments: FieldTable,
}

impl Layout {
    /// The queue arguments Celery would declare `queue` with.
    pub fn queue_arguments(&self) -> FieldTable {
        let mut t = FieldTable::default();
        if self.queue_type == QueueType::Quorum {
            t.insert("x-queue-type".into(), long_string("quorum"));
        }
        if let Some(p) = self.max_priority {
            t.insert("x-max-priority".into(), AMQPValue::LongInt(i32::from(p)));
        }
        t
    }

    /// What Celery declares for a queue named `queue` (`Queue(name, Exchange(name), name)`).
    pub fn declaration(&self, queue: &str) -> QueueDecl {
        QueueDecl {
            exchange: queue.to_string(),
            queue: queue.to_string(),
            routing_key: queue.to_string(),
            arguments: self.queue_arguments(),
        }
    }
}

/// A message ready for `basic.publish`.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

/// An envelope (built by hlbot, or read back from a Redis list) as kombu's amqp transport would
/// publish it: the body decoded, `properties` and headers moved into AMQP properties.
pub fn outgoing(env: &Envelope) -> Result<Outgoing, DecodeErrorKind> {
    let body = env.body_bytes()?;
    let p = &env.properties;
    let mut props = BasicProperties::default()
        .with_content_type(env.content_type.as_str().into())
        .with_content_encoding(env.content_encoding.as_str().into())
        .with_delivery_mode(p.delivery_mode)
        .with_headers(table(&env.headers));
    if p.priority > 0 {
        props = props.with_priority(p.priority);
    }
    if let Some(c) = &p.correlation_id {
        props = props.with_correlation_id(c.as_str().into());
    }
    if let Some(r) = &p.reply_to {
        props = props.with_reply_to(r.as_str().into());
    }
    Ok(Outgoing {
        exchange: p.delivery_info.exchange.clone(),
        routing_key: p.delivery_info.routing_key.clone(),
        body,
        properties: props,
    })
}

/// A received message as the kombu envelope the worker reads; `tag` is hlbot's handle on the
/// delivery (acks and rejects go through it). The body is carried base64-encoded, as on Redis,
/// so any bytes survive a restore or a dead letter.
pub fn envelope(
    tag: &str,
    exchange: &str,
    routing_key: &str,
    redelivered: bool,
    props: &BasicProperties,
    body: &[u8],
) -> Envelope {
    let mut headers = props.headers().as_ref().map(map).unwrap_or_default();
    let mut info = Map::new();
    if redelivered {
        headers.insert("redelivered".into(), Value::Bool(true));
        info.insert("redelivered".into(), Value::Bool(true));
    }
    Envelope {
        body: Value::String(B64.encode(body)),
        content_encoding: props
            .content_encoding()
            .as_ref()
            .map_or_else(|| "utf-8".into(), |s| s.to_string()),
        content_type: props
            .content_type()
            .as_ref()
            .map_or_else(|| "application/json".into(), |s| s.to_string()),
        headers,
        properties: Properties {
            correlation_id: props.correlation_id().as_ref().map(|s| s.to_string()),
            reply_to: props.reply_to().as_ref().map(|s| s.to_string()),
            delivery_mode: props.delivery_mode().unwrap_or(2),
            delivery_info: DeliveryInfo {
                exchange: exchange.to_string(),
                routing_key: routing_key.to_string(),
                extra: info,
            },
            priority: props.priority().unwrap_or(0),
            body_encoding: Some("base64".into()),
            delivery_tag: tag.to_string(),
            extra: Map::new(),
        },
        extra: Map::new(),
    }
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// JSON → AMQP field value the way py-amqp encodes Python values: str → `S`, int → `I` (32-bit)
/// or `l`, float → `d`, bool → `t`, None → `V`, list → `A`, dict → `F`.
pub fn value(v: &Value) -> AMQPValue {
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => match i32::try_from(i) {
                Ok(i) => AMQPValue::LongInt(i),
                Err(_) => AMQPValue::LongLongInt(i),
            },
            (None, Some(u)) => AMQPValue::LongLongInt(u as i64),
            _ => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => long_string(s),
        Value::Array(a) => {
            AMQPValue::FieldArray(FieldArray::from(a.iter().map(value).collect::<Vec<_>>()))
        }
        Value::Object(o) => AMQPValue::FieldTable(table(o)),
    }
}

/// A JSON object as an AMQP field table.
pub fn table(m: &Map<String, Value>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in m {
        t.insert(ShortString::from(k.as_str()), value(v));
    }
    t
}

/// AMQP field value → JSON (the reverse of [`value`]; timestamps as integers, bytes as text).
pub fn json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Void => Value::Null,
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(i) => (*i).into(),
        AMQPValue::ShortShortUInt(i) => (*i).into(),
        AMQPValue::ShortInt(i) => (*i).into(),
        AMQPValue::ShortUInt(i) => (*i).into(),
        AMQPValue::LongInt(i) => (*i).into(),
        AMQPValue::LongUInt(i) => (*i).into(),
        AMQPValue::LongLongInt(i) => (*i).into(),
        AMQPValue::Timestamp(t) => (*t).into(),
        AMQPValue::Float(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        AMQPValue::Double(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let x = f64::from(d.value) / 10f64.powi(i32::from(d.scale));
            Number::from_f64(x).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(s) => Value::String(s.to_string()),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::ByteArray(b) => Value::String(String::from_utf8_lossy(b.as_slice()).into()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(json).collect()),
        AMQPValue::FieldTable(t) => Value::Object(map(t)),
    }
}

/// An AMQP field table as a JSON object.
pub fn map(t: &FieldTable) -> Map<String, Value> {
    t.inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), json(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn declarations_match_celery() {
        let d = Layout::default().declaration("celery");
        assert_eq!(
            (
                d.exchange.as_str(),
                d.queue.as_str(),
                d.routing_key.as_str()
            ),
            ("celery", "celery", "celery")
        );
        assert!(d.arguments.inner().is_empty());
        let q = Layout {
            queue_type: QueueType::Quorum,
            max_priority: Some(10),
        }
        .queue_arguments();
        assert_eq!(q.inner().get("x-queue-type"), Some(&long_string("quorum")));
        assert_eq!(
            q.inner().get("x-max-priority"),
            Some(&AMQPValue::LongInt(10))
        );
        assert_eq!("Quorum".parse::<QueueType>(), Ok(QueueType::Quorum));
        assert!("stream".parse::<QueueType>().is_err());
    }

    #[test]
    fn headers_round_trip_like_py_amqp() {
        let h = json!({"task": "hlbot.add", "id": "i", "eta": null, "retries": 0,
            "timelimit": [null, 3.5], "stamps": {}, "big": 5_000_000_000i64, "ignore_result": false});
        let t = table(h.as_object().unwrap());
        assert_eq!(t.inner().get("eta"), Some(&AMQPValue::Void));
        assert_eq!(t.inner().get("retries"), Some(&AMQPValue::LongInt(0)));
        assert_eq!(
            t.inner().get("big"),
            Some(&AMQPValue::LongLongInt(5_000_000_000))
        );
        assert_eq!(Value::Object(map(&t)), h);
    }

    #[test]
    fn envelope_to_amqp_and_back() {
        let mut headers = Map::new();
        headers.insert("task".into(), json!("hlbot.add"));
        headers.insert("id".into(), json!("abc"));
        let mut env = Envelope::new_json(br#"[[2,3],{},{}]"#, headers, "celery", 5);
        env.properties.correlation_id = Some("abc".into());
        env.properties.reply_to = Some("r".into());
        let out = outgoing(&env).unwrap();
        assert_eq!(
            (out.exchange.as_str(), out.routing_key.as_str()),
            ("", "celery")
        );
        assert_eq!(out.body, br#"[[2,3],{},{}]"#);
        let p = &out.properties;
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            p.content_encoding().as_ref().map(|s| s.as_str()),
            Some("utf-8")
        );
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(*p.priority(), Some(5));
        assert_eq!(p.correlation_id().as_ref().map(|s| s.as_str()), Some("abc"));
        let back = envelope("amqp.1.7", "", "celery", true, p, &out.body);
        assert_eq!(back.body_bytes().unwrap(), out.body);
        assert_eq!(back.headers.get("task"), Some(&json!("hlbot.add")));
        assert_eq!(back.headers.get("redelivered"), Some(&json!(true)));
        assert_eq!(back.properties.delivery_tag, "amqp.1.7");
        assert_eq!(back.properties.priority, 5);
        assert_eq!(back.properties.reply_to.as_deref(), Some("r"));
        // No priority set: the property is left out, as kombu does.
        env.properties.priority = 0;
        assert_eq!(*outgoing(&env).unwrap().properties.priority(), None);
    }
}
