//! The classes the unpickler rebuilds (`class(*args)`): sets, bytes, ordered dicts, Celery's
//! signatures, datetimes, dates, times and decimals; any other class stays an object.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{Value, json};

use super::{P, class_name};

pub(super) fn reduce(class: P, args: P) -> Result<P, String> {
    let class = match class {
        P::Global(c) => c,
        P::Object(c, _) => {
            return Err(format!(
                "pickle calls what {} returned, which hlbot cannot read",
                class_name(&c)
            ));
        }
        _ => return Err("pickle REDUCE on something not a class".into()),
    };
    let args: Rc<Vec<P>> = match args {
        P::Tuple(t) => t,
        P::List(l) => Rc::new(l.borrow().clone()),
        _ => {
            return Err(format!(
                "pickle REDUCE of {} without a tuple",
                class_name(&class)
            ));
        }
    };
    let first = args.first().cloned();
    let (module, name) = (class.0.as_str(), class.1.as_str());
    let module = if module == "__builtin__" {
        "builtins"
    } else {
        module
    };
    Ok(match (module, name, first) {
        // `getattr(cls, "name")`, as pickle reaches class attributes (`ZoneInfo._unpickle`).
        ("builtins", "getattr", Some(P::Global(c))) => match args.get(1) {
            Some(P::Str(attr)) => P::Global(Rc::new((c.0.clone(), format!("{}.{attr}", c.1)))),
            _ => return Err("pickle getattr without an attribute name".into()),
        },
        ("celery.canvas", "signature" | "subtask" | "maybe_signature", Some(d @ P::Dict(_))) => d,
        ("builtins", "set" | "frozenset" | "list", Some(l @ P::List(_))) => l,
        ("builtins", "set" | "frozenset" | "list" | "tuple", None) => P::List(Rc::default()),
        ("builtins", "tuple", Some(P::List(l))) => P::Tuple(Rc::new(l.borrow().clone())),
        ("builtins", "bytearray" | "bytes", None) => P::Bytes(Vec::new()),
        ("builtins", "bytearray" | "bytes", Some(P::Bytes(b))) => P::Bytes(b),
        ("builtins" | "_codecs", "bytearray" | "encode", Some(P::Str(s))) => {
            P::Bytes(s.chars().map(|c| c as u32 as u8).collect())
        }
        ("collections", "OrderedDict", None) => P::Dict(Rc::default()),
        ("collections", "OrderedDict", Some(P::List(l))) => {
            let mut d = Vec::new();
            for item in l.borrow().iter() {
                match item {
                    P::Tuple(kv) if kv.len() == 2 => d.push((kv[0].clone(), kv[1].clone())),
                    P::List(kv) if kv.borrow().len() == 2 => {
                        let kv = kv.borrow();
                        d.push((kv[0].clone(), kv[1].clone()));
                    }
                    _ => return Err("pickle OrderedDict item is not a pair".into()),
                }
            }
            P::Dict(Rc::new(RefCell::new(d)))
        }
        ("decimal", "Decimal", Some(P::Str(s))) => P::Json(marker("decimal", &s)),
        // What hlbot's own pickler writes for kombu's datetime markers.
        ("datetime", "datetime.fromisoformat", Some(P::Str(s))) => P::Json(marker("datetime", &s)),
        ("datetime", "date.fromisoformat", Some(P::Str(s))) => P::Json(marker("date", &s)),
        ("datetime", "time.fromisoformat", Some(P::Str(s))) => P::Json(marker("time", &s)),
        ("datetime", "timedelta", _) => {
            let n = |i: usize| match args.get(i) {
                Some(P::Int(v)) => *v as f64,
                _ => 0.0,
            };
            P::Float(n(0) * 86400.0 + n(1) + n(2) / 1e6)
        }
        ("datetime", "timezone", Some(P::Float(secs))) => {
            P::Object(class.clone(), Rc::new(vec![P::Float(secs)]))
        }
        ("datetime", "datetime" | "date" | "time", Some(P::Bytes(b))) => {
            P::Json(marker(name, &datetime_text(name, &b, args.get(1))?))
        }
        ("datetime", "datetime" | "date" | "time", Some(P::Str(s))) => {
            // Protocol 2 writes the state as text via `_codecs.encode`; a str means Latin-1.
            let b: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
            P::Json(marker(name, &datetime_text(name, &b, args.get(1))?))
        }
        _ => P::Object(class.clone(), args),
    })
}

pub(super) fn marker(t: &str, v: &str) -> Value {
    json!({"__type__": t, "__value__": v})
}

/// Python's `isoformat()` of a pickled datetime/date/time state (and its `timezone`).
fn datetime_text(kind: &str, b: &[u8], tz: Option<&P>) -> Result<String, String> {
    let bad = || format!("pickled datetime.{kind} has a {}-byte state", b.len());
    let time = |t: &[u8]| {
        let us = (u32::from(t[3]) << 16) | (u32::from(t[4]) << 8) | u32::from(t[5]);
        let mut s = format!("{:02}:{:02}:{:02}", t[0], t[1], t[2]);
        if us > 0 {
            s.push_str(&format!(".{us:06}"));
        }
        s
    };
    let date = |d: &[u8]| {
        let year = (u32::from(d[0]) << 8) | u32::from(d[1]);
        format!("{year:04}-{:02}-{:02}", d[2] & 0x7f, d[3])
    };
    let mut s = match kind {
        "date" if b.len() == 4 => return Ok(date(b)),
        "datetime" if b.len() == 10 => format!("{}T{}", date(&b[..4]), time(&b[4..])),
        "time" if b.len() == 6 => time(b),
        _ => return Err(bad()),
    };
    match tz {
        None | Some(P::None) => {}
        Some(P::Object(c, a)) if c.0 == "datetime" && c.1 == "timezone" => {
            let secs = match a.first() {
                Some(P::Float(f)) => f.round() as i64,
                _ => 0,
            };
            let sign = if secs < 0 { '-' } else { '+' };
            let m = secs.abs() / 60;
            s.push_str(&format!("{sign}{:02}:{:02}", m / 60, m % 60));
        }
        Some(P::Object(c, _)) => {
            return Err(format!(
                "pickled datetime with a {} time zone (only fixed offsets are read)",
                class_name(c)
            ));
        }
        Some(_) => return Err("pickled datetime with an unreadable time zone".into()),
    }
    Ok(s)
}
