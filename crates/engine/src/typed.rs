//! Typed task inputs: a [`TypedTask`] declares its input struct; Celery's positional and keyword
//! arguments are bound into it once, the way Python binds a call — positional ones by the order
//! of the struct's fields, then keywords — with a clear `TypeError` for unknown, doubled, missing
//! or ill-typed arguments. Tasks no longer keep name lists apart from their input structs.

use async_trait::async_trait;
use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Map, Value};

use crate::task::{Task, TaskContext, TaskError, TaskOptions};

/// A task with a typed input. Register it wrapped: `registry.register(name, Typed(task))`.
#[async_trait]
pub trait TypedTask: Send + Sync + 'static {
    /// The arguments, as one struct (field order = positional order).
    type Input: DeserializeOwned + Send;

    async fn run(&self, ctx: TaskContext, input: Self::Input) -> Result<Value, TaskError>;

    fn options(&self) -> TaskOptions {
        TaskOptions::default()
    }
}

/// The adapter that makes a [`TypedTask`] a [`Task`].
pub struct Typed<T>(pub T);

#[async_trait]
impl<T: TypedTask> Task for Typed<T> {
    async fn run(
        &self,
        ctx: TaskContext,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, TaskError> {
        let input = bind::<T::Input>(args, kwargs)
            .map_err(|m| TaskError::fail("TypeError", format!("{}() {m}", ctx.name)))?;
        self.0.run(ctx, input).await
    }

    fn options(&self) -> TaskOptions {
        self.0.options()
    }

    fn arguments(&self) -> Option<&'static [&'static str]> {
        field_names::<T::Input>()
    }
}

/// Bind `args` (by field order) and `kwargs` into `I`; the message says what was wrong, as
/// Python would (`missing required argument 'url'`, `unexpected keyword argument 'x'`, …).
/// Nulls are dropped first, so a field's default applies to `None` from Python.
pub fn bind<I: DeserializeOwned>(
    args: Vec<Value>,
    kwargs: Map<String, Value>,
) -> Result<I, String> {
    let names = field_names::<I>().ok_or("the task's input is not a struct with named fields")?;
    let mut out = bind_names(names, args, kwargs)?;
    out.retain(|_, v| !v.is_null());
    serde_json::from_value(Value::Object(out)).map_err(|e| {
        let m = e.to_string();
        match m.strip_prefix("missing field ") {
            Some(f) => format!("missing required argument {f}"),
            None => format!("bad argument: {m}"),
        }
    })
}

/// Merge `args` (by position over `names`) and `kwargs` into one object, refusing extra, unknown
/// or doubled arguments as Python would.
pub fn bind_names(
    names: &[&str],
    args: Vec<Value>,
    kwargs: Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    if args.len() > names.len() {
        return Err(format!(
            "takes at most {} positional argument(s) but {} were given",
            names.len(),
            args.len()
        ));
    }
    let mut out = Map::new();
    for (name, v) in names.iter().zip(args) {
        out.insert((*name).to_string(), v);
    }
    for (k, v) in kwargs {
        if !names.contains(&k.as_str()) {
            return Err(format!("unexpected keyword argument {k:?}"));
        }
        if out.contains_key(&k) {
            return Err(format!("got multiple values for argument {k:?}"));
        }
        out.insert(k, v);
    }
    Ok(out)
}

/// The field names of struct `I`, in declaration order (what serde passes to
/// `deserialize_struct`).
pub fn field_names<I: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut cap = Capture(None);
    let _ = I::deserialize(&mut cap);
    cap.0
}

struct Capture(Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for &mut Capture {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = Some(fields);
        Err(de::Error::custom("fields captured"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Video {
        url: String,
        #[serde(default = "yes")]
        extract_frames: bool,
        #[serde(default)]
        max: Option<u32>,
    }

    fn yes() -> bool {
        true
    }

    fn kw(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn binds_like_python() {
        assert_eq!(
            field_names::<Video>(),
            Some(&["url", "extract_frames", "max"][..])
        );
        let v: Video = bind(vec![json!("u"), json!(false)], kw(json!({"max": 3}))).unwrap();
        assert_eq!(
            v,
            Video {
                url: "u".into(),
                extract_frames: false,
                max: Some(3)
            }
        );
        // None from Python means "the default".
        let v: Video = bind(vec![], kw(json!({"url": "u", "extract_frames": null}))).unwrap();
        assert!(v.extract_frames);
        let e = bind::<Video>(vec![], kw(json!({}))).unwrap_err();
        assert_eq!(e, "missing required argument `url`");
        let e = bind::<Video>(vec![], kw(json!({"url": "u", "zz": 1}))).unwrap_err();
        assert_eq!(e, "unexpected keyword argument \"zz\"");
        let e = bind::<Video>(vec![json!("u")], kw(json!({"url": "u"}))).unwrap_err();
        assert_eq!(e, "got multiple values for argument \"url\"");
        let e = bind::<Video>(vec![json!(1), json!(1), json!(1), json!(1)], Map::new());
        assert!(e.unwrap_err().contains("at most 3 positional"));
        let e = bind::<Video>(vec![json!(5)], Map::new()).unwrap_err();
        assert!(e.starts_with("bad argument: invalid type"), "{e}");
    }
}
