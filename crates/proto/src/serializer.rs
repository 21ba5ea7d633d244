//! kombu's serializers — JSON, pickle, msgpack, YAML — by name and content type: bodies and
//! results read into JSON values, and written back in the format a Celery app asked for.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A kombu serializer (serde: its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Serializer {
    #[default]
    Json,
    Pickle,
    Msgpack,
    Yaml,
}

impl Serializer {
    pub const ALL: [Serializer; 4] = [Self::Json, Self::Pickle, Self::Msgpack, Self::Yaml];

    /// The serializer of a message's `content-type` (parameters such as `; charset` ignored).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Self::ALL.into_iter().find(|s| {
            s.content_type() == base
                || (*s == Self::Json && base == "application/x-json")
                || (*s == Self::Yaml && base == "application/yaml")
        })
    }

    /// By kombu name (`json`, `pickle`, `msgpack`, `yaml`) or content type, as Celery's
    /// `accept_content` and `*_serializer` settings name them.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|s| s.name() == n)
            .or_else(|| Self::from_content_type(&n))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Pickle => "pickle",
            Self::Msgpack => "msgpack",
            Self::Yaml => "yaml",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Pickle => "application/x-python-serialize",
            Self::Msgpack => "application/x-msgpack",
            Self::Yaml => "application/x-yaml",
        }
    }

    pub fn content_encoding(self) -> &'static str {
        match self {
            Self::Json | Self::Yaml => "utf-8",
            Self::Pickle | Self::Msgpack => "binary",
        }
    }

    /// A message body read into a JSON value. Pickles holding instances of classes other than
    /// builtins, datetimes, decimals and Celery signatures are refused with the class named.
    pub fn decode(self, b: &[u8]) -> Result<Value, String> {
        match self {
            Self::Json => serde_json::from_slice(b).map_err(|e| e.to_string()),
            Self::Pickle => crate::pickle::read(b, false),
            Self::Msgpack => msgpack_read(b),
            Self::Yaml => serde_yaml::from_slice(b).map_err(|e| e.to_string()),
        }
    }

    /// A value written in this format (exception dicts stay dicts).
    pub fn encode(self, v: &Value) -> Vec<u8> {
        self.write(v, false)
    }

    /// A stored result value (a meta, a chord entry) written in this format: with pickle, as
    /// Celery's backend does, a failure's exception dict becomes the exception itself.
    pub fn encode_result(self, v: &Value) -> Vec<u8> {
        self.write(v, true)
    }

    fn write(self, v: &Value, exceptions: bool) -> Vec<u8> {
        match self {
            Self::Json => crate::pyjson::to_vec(v),
            Self::Pickle => crate::pickler::to_vec(v, exceptions),
            Self::Msgpack => {
                let mut out = Vec::new();
                // Writing to a Vec cannot fail.
                let _ = rmpv::encode::write_value(&mut out, &to_msgpack(v));
                out
            }
            Self::Yaml => {
                let mut out = String::new();
                yaml_flow(v, &mut out);
                out.push('\n');
                out.into_bytes()
            }
        }
    }

    /// The format of bytes a result backend stored (it does not say which): pickle starts with
    /// its PROTO opcode, msgpack with a map, JSON with `{`/`[`; anything else is read as YAML.
    pub fn sniff(b: &[u8]) -> Self {
        match b.first() {
            Some(0x80) if b.get(1).is_some_and(|v| (2..=5).contains(v)) => Self::Pickle,
            Some(0x81..=0x8f | 0xde | 0xdf | 0x90..=0x9f | 0xdc | 0xdd) => Self::Msgpack,
            Some(b'{' | b'[' | b'"') => Self::Json,
            Some(c) if c.is_ascii_whitespace() => Self::Json,
            Some(c) if c.is_ascii() => Self::Yaml,
            _ => Self::Json,
        }
    }

    /// A stored value read whatever format wrote it (exceptions in pickles become dicts).
    pub fn read_any(b: &[u8]) -> Result<Value, String> {
        match Self::sniff(b) {
            Self::Pickle => crate::pickle::read(b, true),
            Self::Yaml => serde_json::from_slice(b)
                .or_else(|_| serde_yaml::from_slice(b))
                .map_err(|e| e.to_string()),
            s => s.decode(b),
        }
    }
}

impl std::fmt::Display for Serializer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// YAML that PyYAML's `safe_load` (YAML 1.1) reads back as the same values: flow style with
/// every string double-quoted (so `yes`, `on`, `2026-01-01`, `0x10` stay strings) and every float
/// with a dot (`1.0e-07`: YAML 1.1 reads `1e-07` as a string).
fn yaml_flow(v: &Value, out: &mut String) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = crate::pyjson::float(n.as_f64().unwrap_or(0.0));
            match f.find('e') {
                Some(i) if !f[..i].contains('.') => {
                    out.push_str(&f[..i]);
                    out.push_str(".0");
                    out.push_str(&f[i..]);
                }
                _ => out.push_str(&f),
            }
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                yaml_flow(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                yaml_str(k, out);
                out.push_str(": ");
                yaml_flow(x, out);
            }
            out.push('}');
        }
        Value::String(t) => yaml_str(t, out),
        // null, booleans and integers are YAML 1.1 as JSON writes them.
        other => out.push_str(&other.to_string()),
    }
}

/// A double-quoted YAML string: characters YAML does not allow raw (controls, DEL, C1, U+FFFE/F)
/// or reads as line breaks (NEL, U+2028/9) or a byte-order mark escaped.
fn yaml_str(t: &str, out: &mut String) {
    out.push('"');
    for c in t.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn msgpack_read(mut b: &[u8]) -> Result<Value, String> {
    let v = rmpv::decode::read_value_with_max_depth(&mut b, 200).map_err(|e| e.to_string())?;
    from_msgpack(v)
}

fn from_msgpack(v: rmpv::Value) -> Result<Value, String> {
    use rmpv::Value as M;
    Ok(match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(v), _) => Value::from(v),
            (_, Some(v)) => Value::from(v),
            _ => return Err("msgpack integer out of range".into()),
        },
        M::F32(f) => float(f64::from(f))?,
        M::F64(f) => float(f)?,
        M::String(s) => Value::String(s.into_str().ok_or("msgpack string is not UTF-8")?),
        M::Binary(b) => match String::from_utf8(b) {
            Ok(s) => serde_json::json!({"__type__": "bytes", "__value__": s}),
            Err(e) => {
                use base64::Engine as _;
                let s = base64::engine::general_purpose::STANDARD.encode(e.into_bytes());
                serde_json::json!({"__type__": "base64", "__value__": s})
            }
        },
        M::Array(a) => Value::Array(a.into_iter().map(from_msgpack).collect::<Result<_, _>>()?),
        M::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let k = match k {
                    M::String(s) => s.into_str().ok_or("msgpack key is not UTF-8")?,
                    M::Integer(i) => i.to_string(),
                    M::Boolean(b) => b.to_string(),
                    M::Nil => "null".into(),
                    _ => return Err("msgpack map key is not a string or number".into()),
                };
                out.insert(k, from_msgpack(v)?);
            }
            Value::Object(out)
        }
        M::Ext(t, _) => return Err(format!("msgpack extension type {t} is not supported")),
    })
}

fn float(f: f64) -> Result<Value, String> {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("msgpack float {f} has no JSON form"))
}

fn to_msgpack(v: &Value) -> rmpv::Value {
    use rmpv::Value as M;
    match v {
        Value::Null => M::Nil,
        Value::Bool(b) => M::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                M::from(i)
            } else if let Some(u) = n.as_u64() {
                M::from(u)
            } else {
                M::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => M::from(s.as_str()),
        Value::Array(a) => M::Array(a.iter().map(to_msgpack).collect()),
        Value::Object(m) => {
            if let (2, Some("bytes"), Some(Value::String(s))) = (
                m.len(),
                m.get("__type__").and_then(Value::as_str),
                m.get("__value__"),
            ) {
                return M::Binary(s.as_bytes().to_vec());
            }
            M::Map(
                m.iter()
                    .map(|(k, v)| (M::from(k.as_str()), to_msgpack(v)))
                    .collect(),
            )
        }
    }
}
