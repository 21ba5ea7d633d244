//! JSON text exactly as Python's `json.dumps` writes it (`", "`/`": "`, ASCII-only escapes), and
//! Python `repr()` of JSON values (for `argsrepr`/`kwargsrepr` and event fields).

use serde::Serialize;
use serde_json::Value;
use std::io;

/// serde_json formatter producing `json.dumps(obj)` output (default separators, ensure_ascii).
#[derive(Debug, Default)]
pub struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        let mut buf = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut buf) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Serialize like Python's `json.dumps`. Serializing plain data cannot fail; a failure would be a
/// bug in a `Serialize` impl, so it falls back to `null`.
pub fn to_vec<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PyFormatter);
    if v.serialize(&mut ser).is_err() {
        return b"null".to_vec();
    }
    out
}

/// [`to_vec`] as a `String`.
pub fn to_string<T: Serialize + ?Sized>(v: &T) -> String {
    String::from_utf8(to_vec(v)).unwrap_or_else(|_| "null".into())
}

/// Python `repr()` of a JSON value as Python would hold it after `json.loads`.
pub fn repr(v: &Value) -> String {
    let mut s = String::new();
    repr_into(v, &mut s);
    s
}

/// Python `repr()` of an args list, as a tuple: `(1, 6)`, `(1,)`, `()`.
pub fn repr_args(args: &[Value]) -> String {
    let mut s = String::from("(");
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        repr_into(a, &mut s);
    }
    if args.len() == 1 {
        s.push(',');
    }
    s.push(')');
    s
}

/// `repr()` cut to `max` characters the way Celery's `saferepr` bounds it (with `...`).
pub fn repr_bounded(v: &Value, max: usize) -> String {
    truncate(repr(v), max)
}

pub(crate) fn truncate(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut t: String = s.chars().take(max.saturating_sub(3)).collect();
    t.push_str("...");
    t
}

fn repr_into(v: &Value, s: &mut String) {
    match v {
        Value::Null => s.push_str("None"),
        Value::Bool(true) => s.push_str("True"),
        Value::Bool(false) => s.push_str("False"),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.fract() == 0.0 && f.abs() < 1e16 {
                    s.push_str(&format!("{f:.1}"));
                } else {
                    s.push_str(&f.to_string());
                }
            } else {
                s.push_str(&n.to_string());
            }
        }
        Value::String(t) => repr_str(t, s),
        Value::Array(a) => {
            s.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                repr_into(x, s);
            }
            s.push(']');
        }
        Value::Object(m) => {
            s.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                repr_str(k, s);
                s.push_str(": ");
                repr_into(x, s);
            }
            s.push('}');
        }
    }
}

fn repr_str(t: &str, s: &mut String) {
    let q = if t.contains('\'') && !t.contains('"') {
        '"'
    } else {
        '\''
    };
    s.push(q);
    for c in t.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c == q => {
                s.push('\\');
                s.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                s.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => s.push(c),
        }
    }
    s.push(q);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dumps_like_python() {
        let v = json!({"a": [1, 2.5, null], "b": "é€😀", "c": {}});
        assert_eq!(
            to_string(&v),
            r#"{"a": [1, 2.5, null], "b": "\u00e9\u20ac\ud83d\ude00", "c": {}}"#
        );
    }

    #[test]
    fn repr_like_python() {
        assert_eq!(repr_args(&[json!(1), json!(6)]), "(1, 6)");
        assert_eq!(repr_args(&[json!("x")]), "('x',)");
        assert_eq!(
            repr(&json!({"k": [true, null, 1.0, "it's"]})),
            r#"{'k': [True, None, 1.0, "it's"]}"#
        );
    }
}
