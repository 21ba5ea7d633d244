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
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(float(value).as_bytes())
    }
    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        w.write_all(float(f64::from(value)).as_bytes())
    }
}

/// Python's `repr(float)` (which `json.dumps` writes too): the shortest digits that read back
/// the same, in fixed notation for exponents -4 to 15 (`0.0001`, `1e+16` beyond), scientific with
/// a signed exponent of at least two digits otherwise (`1e-07`, `1.5e+20`), `.0` on whole numbers.
pub fn float(f: f64) -> String {
    if !f.is_finite() {
        return match (f.is_nan(), f > 0.0) {
            (true, _) => "NaN".into(),
            (false, true) => "Infinity".into(),
            (false, false) => "-Infinity".into(),
        };
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: `d[.ddd]e<exp>`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let es = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{es}{:02}", exp.unsigned_abs());
    }
    let n = digits.len() as i32;
    let body = if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else if exp >= n - 1 {
        format!("{digits}{}.0", "0".repeat((exp - (n - 1)) as usize))
    } else {
        let (int, frac) = digits.split_at(exp as usize + 1);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
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
    repr_into(v, &mut s, None);
    s
}

/// Celery's `saferepr()` of an args list, as a tuple: `(1, 6)`, `(1,)`, `()` (`argsrepr`).
pub fn repr_args(args: &[Value]) -> String {
    let mut s = String::from("(");
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        repr_into(a, &mut s, Some(1));
    }
    if args.len() == 1 {
        s.push(',');
    }
    s.push(')');
    s
}

/// Celery's `saferepr()` (`kwargsrepr`, result log lines), cut to `max` characters with `...`.
pub fn repr_bounded(v: &Value, max: usize) -> String {
    let mut s = String::new();
    repr_into(v, &mut s, Some(0));
    truncate(s, max)
}

pub(crate) fn truncate(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut t: String = s.chars().take(max.saturating_sub(3)).collect();
    t.push_str("...");
    t
}

/// Python's `repr()` (`safe` None), or Celery's `saferepr` (celery/utils/saferepr.py) at nesting
/// `depth` (`safe` Some(depth); the outer tuple or dict is 0): it single-quotes every string with
/// only `'` escaped (newlines and backslashes stay as they are) and shows a container at depth 3
/// or more as `[...]` / `{...}`.
fn repr_into(v: &Value, s: &mut String, safe: Option<usize>) {
    let inner = safe.map(|d| d + 1);
    let text = |t: &str, s: &mut String| match safe {
        Some(_) => {
            s.push('\'');
            s.push_str(&t.replace('\'', "\\'"));
            s.push('\'');
        }
        None => repr_str(t, s),
    };
    match v {
        Value::Null => s.push_str("None"),
        Value::Bool(true) => s.push_str("True"),
        Value::Bool(false) => s.push_str("False"),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                s.push_str(&float(f));
            } else {
                s.push_str(&n.to_string());
            }
        }
        Value::String(t) => text(t, s),
        Value::Array(_) | Value::Object(_) if safe.is_some_and(|d| d >= 3) => {
            s.push_str(if v.is_array() { "[...]" } else { "{...}" });
        }
        Value::Array(a) => {
            s.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                repr_into(x, s, inner);
            }
            s.push(']');
        }
        Value::Object(m) => {
            s.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                text(k, s);
                s.push_str(": ");
                repr_into(x, s, inner);
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

    /// Expected strings from CPython 3.11's `repr(float)` (= `json.dumps`).
    #[test]
    fn floats_like_python() {
        for (f, py) in [
            (0.5_f64, "0.5"),
            (1e-07_f64, "1e-07"),
            (1e+20_f64, "1e+20"),
            (0.0001_f64, "0.0001"),
            (1e-05_f64, "1e-05"),
            (1e+16_f64, "1e+16"),
            (1000000000000000.0_f64, "1000000000000000.0"),
            (123456789012345.6_f64, "123456789012345.6"),
            (1.5e+20_f64, "1.5e+20"),
            (-2.5e-10_f64, "-2.5e-10"),
            (0.1_f64, "0.1"),
            (100.0_f64, "100.0"),
            (3.0_f64, "3.0"),
            (1e+22_f64, "1e+22"),
            (5e-324_f64, "5e-324"),
            (1.7976931348623157e+308_f64, "1.7976931348623157e+308"),
            (0.0_f64, "0.0"),
            (-0.0_f64, "-0.0"),
            (12345678.9_f64, "12345678.9"),
            (1234567890123456.8_f64, "1234567890123456.8"),
            (9999999999999998.0_f64, "9999999999999998.0"),
            (0.000123_f64, "0.000123"),
        ] {
            assert_eq!(float(f), py, "{f:e}");
        }
        assert_eq!(to_string(&json!([1e-7, 1e20])), "[1e-07, 1e+20]");
        assert_eq!(repr_args(&[json!(1e-7), json!(0.5)]), "(1e-07, 0.5)");
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
