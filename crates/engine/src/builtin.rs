//! Celery's builtin `celery.map` and `celery.starmap` (what `sig.map(it)`, `sig.starmap(it)` and
//! `sig.chunks(it, n)` send): the named task run once per item, in this worker, one after another;
//! the list of results, or the first item's error. The task is looked up in the registry as it
//! was when these were added (they never run each other), and runs in this process whatever its
//! own isolation (as Celery calls the task's function inline). A `celery.chunks` message (only a
//! Python worker applying a chain step sends one) is not run here: hlbot workers expand chunks
//! themselves (`worker/signature.rs`).

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::registry::Registry;
use crate::task::{Task, TaskContext, TaskError};

/// Register `celery.map` and `celery.starmap` over the tasks `r` holds now.
pub fn register(r: &mut Registry) {
    let tasks = r.clone();
    r.register(
        "celery.map",
        EachItem {
            tasks: tasks.clone(),
            star: false,
        },
    );
    r.register("celery.starmap", EachItem { tasks, star: true });
}

struct EachItem {
    tasks: Registry,
    /// `starmap`: each item is the argument list; `map`: each item is the one argument.
    star: bool,
}

#[async_trait]
impl Task for EachItem {
    async fn run(
        &self,
        ctx: TaskContext,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, TaskError> {
        let get = |i: usize, k: &str| crate::debug::arg(&args, &kwargs, i, k).cloned();
        let sig = get(0, "task").unwrap_or(Value::Null);
        let Some(name) = sig.get("task").and_then(Value::as_str) else {
            return Err(TaskError::fail(
                "TypeError",
                "task must be a signature with a task name",
            ));
        };
        let Some(Value::Array(items)) = get(1, "it") else {
            return Err(TaskError::fail("TypeError", "it must be a list"));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if ctx.cancel.is_cancelled() {
                return Err(TaskError::fail(
                    "SoftTimeLimitExceeded",
                    "cancelled between items",
                ));
            }
            let args = match (self.star, item) {
                (true, Value::Array(a)) => a,
                (true, other) => {
                    return Err(TaskError::fail(
                        "TypeError",
                        format!("starmap item is not a list: {other}"),
                    ));
                }
                (false, v) => vec![v],
            };
            let v = crate::apply::apply(
                &self.tasks,
                name,
                args,
                Map::new(),
                None,
                ctx.cancel.clone(),
            )
            .await?;
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn arguments(&self) -> Option<&'static [&'static str]> {
        Some(&["task", "it"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    async fn call(name: &str, kwargs: Value) -> Result<Value, TaskError> {
        let mut r = Registry::with_debug_tasks();
        register(&mut r);
        let kwargs = kwargs.as_object().cloned().unwrap_or_default();
        crate::apply::apply(&r, name, vec![], kwargs, None, CancellationToken::new()).await
    }

    #[tokio::test]
    async fn map_and_starmap_run_the_task_per_item() {
        let echo = json!({"task": "hlbot.debug.echo", "args": [9], "kwargs": {"ignored": 1}});
        let v = call("celery.map", json!({"task": echo, "it": [1, [2]]})).await;
        assert_eq!(
            v.ok(),
            Some(json!([{"args": [1], "kwargs": {}}, {"args": [[2]], "kwargs": {}}]))
        );
        let v = call("celery.starmap", json!({"task": echo, "it": [[1, 2], []]})).await;
        assert_eq!(
            v.ok(),
            Some(json!([{"args": [1, 2], "kwargs": {}}, {"args": [], "kwargs": {}}]))
        );
        let fail = json!({"task": "hlbot.debug.fail"});
        let e = call("celery.map", json!({"task": fail, "it": ["boom"]})).await;
        assert!(matches!(e, Err(TaskError::Fail { exc, .. }) if exc.display().contains("boom")));
        let e = call("celery.starmap", json!({"task": echo, "it": [1]})).await;
        assert!(matches!(e, Err(TaskError::Fail { exc, .. }) if exc.exc_type == "TypeError"));
    }
}
