//! Python pickle (protocols 0–5) read into JSON values without running anything: a stack
//! machine (`machine.rs`) that knows Python's builtin types, Celery's signatures, datetimes and
//! decimals as kombu's JSON markers, and exceptions for results (`classes.rs`). Any other class
//! is an error naming it.

mod classes;
mod machine;

use classes::marker;

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{Map, Value, json};

type Class = Rc<(String, String)>;
type List = Rc<RefCell<Vec<P>>>;
type Dict = Rc<RefCell<Vec<(P, P)>>>;

/// A value on the unpickler's stack. Containers are shared, as pickle's memo shares them.
#[derive(Clone)]
enum P {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(List),
    Tuple(Rc<Vec<P>>),
    Dict(Dict),
    Global(Class),
    /// An instance of a class this reader does not rebuild: kept as class and arguments.
    Object(Class, Rc<Vec<P>>),
    /// Already a JSON value (kombu's `{"__type__", "__value__"}` markers).
    Json(Value),
}

/// Read a pickle. With `objects`, instances of unknown classes become exception dicts
/// (`{"exc_type", "exc_message", "exc_module"}`, as results carry exceptions); without, they
/// are an error naming the class.
pub fn read(data: &[u8], objects: bool) -> Result<Value, String> {
    let top = machine::Machine::default().run(data)?;
    let mut budget = 16 * data.len() + 1024;
    to_json(&top, objects, 0, &mut budget)
}

fn class_name(c: &Class) -> String {
    format!("{}.{}", c.0, c.1)
}

/// `class(*args)` for the classes this reader rebuilds; other classes are kept as objects.
fn to_json(p: &P, objects: bool, depth: usize, budget: &mut usize) -> Result<Value, String> {
    if depth > 200 {
        return Err("pickle nests deeper than 200 levels (or refers to itself)".into());
    }
    *budget = budget
        .checked_sub(1)
        .ok_or("pickle expands past its size many times over (shared references)")?;
    let d = depth + 1;
    Ok(match p {
        P::None => Value::Null,
        P::Bool(b) => Value::Bool(*b),
        P::Int(i) => {
            if let Ok(v) = i64::try_from(*i) {
                Value::from(v)
            } else if let Ok(v) = u64::try_from(*i) {
                Value::from(v)
            } else {
                return Err(format!("pickle integer {i} is beyond 64 bits"));
            }
        }
        P::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("pickle float {f} has no JSON form"))?,
        P::Str(s) => Value::String(s.clone()),
        P::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => marker("bytes", s),
            Err(_) => {
                use base64::Engine as _;
                marker(
                    "base64",
                    &base64::engine::general_purpose::STANDARD.encode(b),
                )
            }
        },
        P::List(l) => Value::Array(
            l.borrow()
                .iter()
                .map(|x| to_json(x, objects, d, budget))
                .collect::<Result<_, _>>()?,
        ),
        P::Tuple(t) => Value::Array(
            t.iter()
                .map(|x| to_json(x, objects, d, budget))
                .collect::<Result<_, _>>()?,
        ),
        P::Dict(m) => {
            let mut out = Map::new();
            for (k, v) in m.borrow().iter() {
                out.insert(key(k)?, to_json(v, objects, d, budget)?);
            }
            Value::Object(out)
        }
        P::Json(v) => v.clone(),
        P::Global(c) if objects => Value::String(class_name(c)),
        P::Object(c, args) if objects => exception(c, args, objects, d, budget)?,
        P::Global(c) | P::Object(c, _) => {
            return Err(format!(
                "pickle holds a {} object, which hlbot cannot read (it reads Python's builtin \
                 types, datetimes, decimals and Celery signatures)",
                class_name(c)
            ));
        }
    })
}

/// An object read for a result: Celery's exception dict. `UnpickleableExceptionWrapper`
/// (what Celery pickles for exceptions it cannot pickle) names the original class.
fn exception(
    c: &Class,
    args: &[P],
    objects: bool,
    depth: usize,
    budget: &mut usize,
) -> Result<Value, String> {
    let a = |i: usize, budget: &mut usize| match args.get(i) {
        Some(p) => to_json(p, objects, depth, budget),
        None => Ok(Value::Null),
    };
    if c.0 == "celery.utils.serialization" && c.1 == "UnpickleableExceptionWrapper" {
        let module = a(0, budget)?;
        let name = a(1, budget)?;
        let msg = match a(2, budget)? {
            Value::Array(v) => v,
            Value::Null => Vec::new(),
            other => vec![other],
        };
        return Ok(json!({"exc_type": name, "exc_message": msg, "exc_module": module}));
    }
    let msg = (0..args.len())
        .map(|i| a(i, budget))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({"exc_type": c.1, "exc_message": msg, "exc_module": c.0}))
}

/// A dict key as Python's `json.dumps` writes it.
fn key(k: &P) -> Result<String, String> {
    Ok(match k {
        P::Str(s) => s.clone(),
        P::Int(i) => i.to_string(),
        P::Bool(b) => b.to_string(),
        P::None => "null".into(),
        P::Float(f) => crate::pyjson::float(*f),
        _ => return Err("pickle dict key is not a string or number".into()),
    })
}
