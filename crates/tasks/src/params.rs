//! Python-style call binding: positional args matched to parameter names, then keyword args.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Merge `args` (by position) and `kwargs` into one object over `names`, refusing unknown or
/// doubled parameters like Python would (the engine's binding, shared with `TypedTask`).
pub fn bind(
    names: &[&str],
    args: Vec<Value>,
    kwargs: Map<String, Value>,
) -> Result<Map<String, Value>> {
    hlbot_engine::typed::bind_names(names, args, kwargs).map_err(Error::BadArguments)
}

/// Bind and deserialize into a request struct (nulls dropped so serde defaults apply).
pub fn parse<T: DeserializeOwned>(
    names: &[&str],
    args: Vec<Value>,
    kwargs: Map<String, Value>,
) -> Result<T> {
    let mut m = bind(names, args, kwargs)?;
    m.retain(|_, v| !v.is_null());
    serde_json::from_value(Value::Object(m)).map_err(|e| Error::BadArguments(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binds_like_python() {
        let m = bind(
            &["a", "b"],
            vec![json!(1)],
            [("b".to_string(), json!(2))].into_iter().collect(),
        );
        assert_eq!(m.ok().map(Value::Object), Some(json!({"a": 1, "b": 2})));
        assert!(
            bind(
                &["a"],
                vec![json!(1)],
                [("a".to_string(), json!(2))].into_iter().collect()
            )
            .is_err()
        );
        assert!(
            bind(
                &["a"],
                vec![],
                [("zz".to_string(), json!(2))].into_iter().collect()
            )
            .is_err()
        );
        assert!(bind(&["a"], vec![json!(1), json!(2)], Map::new()).is_err());
    }
}
