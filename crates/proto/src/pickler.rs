//! JSON values written as a Python pickle (protocol 4), as kombu's `pickle.dumps` would write
//! the same Python values: kombu's JSON markers become bytes, datetimes and decimals again, and
//! (for results) Celery's exception dicts become exceptions a Python client can unpickle.

use serde_json::{Map, Value};

/// Builtin exceptions and Celery's own, unpickled as the real classes; any other exception is
/// written as Celery's `UnpickleableExceptionWrapper`, which the client turns into an exception
/// of the same name and module (`get()` raises it), whether or not it can import that module.
const KNOWN: &[(&str, &[&str])] = &[
    (
        "builtins",
        &[
            "Exception",
            "ValueError",
            "TypeError",
            "KeyError",
            "IndexError",
            "RuntimeError",
            "OSError",
            "IOError",
            "EnvironmentError",
            "FileNotFoundError",
            "FileExistsError",
            "PermissionError",
            "TimeoutError",
            "ConnectionError",
            "ZeroDivisionError",
            "AttributeError",
            "NotImplementedError",
            "AssertionError",
            "LookupError",
            "ArithmeticError",
            "MemoryError",
            "OverflowError",
            "NameError",
            "ImportError",
            "IsADirectoryError",
            "NotADirectoryError",
            "UnicodeError",
        ],
    ),
    (
        "celery.exceptions",
        &[
            "TaskRevokedError",
            "NotRegistered",
            "ChordError",
            "Ignore",
            "WorkerLostError",
            "TimeLimitExceeded",
            "SoftTimeLimitExceeded",
            "MaxRetriesExceededError",
            "InvalidTaskError",
            "TaskError",
        ],
    ),
    (
        "billiard.exceptions",
        &[
            "TimeLimitExceeded",
            "SoftTimeLimitExceeded",
            "WorkerLostError",
            "Terminated",
        ],
    ),
];

/// `v` as a protocol-4 pickle. With `exceptions`, exception dicts
/// (`{"exc_type", "exc_message", "exc_module"}`) are written as exception objects, as Celery's
/// backend pickles a failure's result.
pub fn to_vec(v: &Value, exceptions: bool) -> Vec<u8> {
    let mut w = Writer {
        out: vec![0x80, 4],
        exceptions,
    };
    w.value(v);
    w.out.push(b'.');
    w.out
}

struct Writer {
    out: Vec<u8>,
    exceptions: bool,
}

impl Writer {
    fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.out.push(b'N'),
            Value::Bool(true) => self.out.push(0x88),
            Value::Bool(false) => self.out.push(0x89),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.int(i128::from(i));
                } else if let Some(u) = n.as_u64() {
                    self.int(i128::from(u));
                } else {
                    self.out.push(b'G');
                    self.out
                        .extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
                }
            }
            Value::String(s) => self.str(s),
            Value::Array(a) => {
                self.out.push(b']');
                if !a.is_empty() {
                    self.out.push(b'(');
                    a.iter().for_each(|x| self.value(x));
                    self.out.push(b'e');
                }
            }
            Value::Object(m) => self.object(m),
        }
    }

    fn int(&mut self, i: i128) {
        if (0..256).contains(&i) {
            self.out.extend_from_slice(&[b'K', i as u8]);
        } else if (0..65536).contains(&i) {
            self.out.push(b'M');
            self.out.extend_from_slice(&(i as u16).to_le_bytes());
        } else if let Ok(v) = i32::try_from(i) {
            self.out.push(b'J');
            self.out.extend_from_slice(&v.to_le_bytes());
        } else {
            // LONG1: the shortest little-endian two's complement.
            let b = i.to_le_bytes();
            let mut n = 16;
            while n > 1 {
                let (last, prev) = (b[n - 1], b[n - 2]);
                let redundant =
                    (last == 0 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0);
                if !redundant {
                    break;
                }
                n -= 1;
            }
            self.out.extend_from_slice(&[0x8a, n as u8]);
            self.out.extend_from_slice(&b[..n]);
        }
    }

    fn str(&mut self, s: &str) {
        if s.len() < 256 {
            self.out.extend_from_slice(&[0x8c, s.len() as u8]);
        } else {
            self.out.push(b'X');
            self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        self.out.extend_from_slice(s.as_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        if b.len() < 256 {
            self.out.extend_from_slice(&[b'C', b.len() as u8]);
        } else {
            self.out.push(b'B');
            self.out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        }
        self.out.extend_from_slice(b);
    }

    fn global(&mut self, module: &str, name: &str) {
        self.str(module);
        self.str(name);
        self.out.push(0x93);
    }

    /// `tuple(items)`.
    fn tuple(&mut self, items: &[&Value]) {
        match items.len() {
            0 => self.out.push(b')'),
            1..=3 => {
                items.iter().for_each(|x| self.value(x));
                self.out.push(0x84 + items.len() as u8);
            }
            _ => {
                self.out.push(b'(');
                items.iter().for_each(|x| self.value(x));
                self.out.push(b't');
            }
        }
    }

    /// `module.name(*args)`.
    fn call(&mut self, module: &str, name: &str, args: &[&Value]) {
        self.global(module, name);
        self.tuple(args);
        self.out.push(b'R');
    }

    fn object(&mut self, m: &Map<String, Value>) {
        if let (2, Some(Value::String(t)), Some(Value::String(v))) =
            (m.len(), m.get("__type__"), m.get("__value__"))
        {
            use base64::Engine as _;
            let value = Value::String(v.clone());
            match t.as_str() {
                "bytes" => return self.bytes(v.as_bytes()),
                "base64" => {
                    if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(v) {
                        return self.bytes(&b);
                    }
                }
                "datetime" => return self.call("datetime", "datetime.fromisoformat", &[&value]),
                "date" => return self.call("datetime", "date.fromisoformat", &[&value]),
                "time" => return self.call("datetime", "time.fromisoformat", &[&value]),
                "decimal" => return self.call("decimal", "Decimal", &[&value]),
                _ => {}
            }
        }
        if self.exceptions && self.exception(m) {
            return;
        }
        self.out.push(b'}');
        if !m.is_empty() {
            self.out.push(b'(');
            for (k, v) in m {
                self.str(k);
                self.value(v);
            }
            self.out.push(b'u');
        }
    }

    /// An exception dict written as the exception; false if `m` is not one.
    fn exception(&mut self, m: &Map<String, Value>) -> bool {
        let (Some(Value::String(t)), Some(module)) = (m.get("exc_type"), m.get("exc_module"))
        else {
            return false;
        };
        let module = module.as_str().unwrap_or("builtins");
        let args: Vec<Value> = match m.get("exc_message") {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(other) => vec![other.clone()],
        };
        let known = KNOWN
            .iter()
            .any(|(km, names)| *km == module && names.contains(&t.as_str()));
        let refs: Vec<&Value> = args.iter().collect();
        if known {
            self.call(module, t, &refs);
        } else {
            let text = args
                .iter()
                .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(", ");
            self.global("celery.utils.serialization", "UnpickleableExceptionWrapper");
            self.out.push(b'(');
            self.str(module);
            self.str(t);
            self.tuple(&refs);
            self.str(&text);
            self.out.extend_from_slice(b"tR");
        }
        true
    }
}
