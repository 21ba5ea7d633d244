//! Task routing: which queue a task name goes to when the caller names none.

use std::collections::BTreeMap;

/// Maps task names to queues: an exact route, else the route of the name without one of the
/// app's module prefixes (e.g. `app.workers.tasks.`), else the default queue. The routes come from
/// the registered tasks' own `TaskOptions.queue` ([`Router::from_registry`]) and configuration;
/// the engine itself knows no task names.
#[derive(Debug, Clone)]
pub struct Router {
    routes: BTreeMap<String, String>,
    prefixes: Vec<String>,
    pub default_queue: String,
    /// Whether `default_queue` is the app's own (Celery's `task_default_queue`, configured)
    /// rather than hlbot's built-in `default`.
    app_default: bool,
}

impl Default for Router {
    /// No routes: everything goes to `default`.
    fn default() -> Self {
        Self {
            routes: BTreeMap::new(),
            prefixes: Vec::new(),
            default_queue: "default".into(),
            app_default: false,
        }
    }
}

impl Router {
    /// Each registered task's own queue (`TaskOptions.queue`), and the registry's module prefixes.
    pub fn from_registry(registry: &crate::Registry) -> Self {
        let mut r = Self::default();
        for (task, queue) in registry.routes() {
            r.set(&task, &queue);
        }
        r.prefixes = registry.module_prefixes().to_vec();
        r
    }

    /// Add or override a route (from configuration).
    pub fn set(&mut self, task: &str, queue: &str) {
        self.routes.insert(task.into(), queue.into());
    }

    pub fn queue_for(&self, task: &str) -> &str {
        self.route(task).unwrap_or(self.default_queue.as_str())
    }

    /// Use the app's `task_default_queue` for tasks no route names.
    pub fn set_default(&mut self, queue: &str) {
        self.default_queue = queue.into();
        self.app_default = true;
    }

    /// Where a worker sends a follow-up without a queue: a route for `task`, else the app's
    /// configured default queue; `None` when neither is known (the sender's queue is kept).
    pub fn follow_up(&self, task: &str) -> Option<&str> {
        self.route(task)
            .or_else(|| self.app_default.then_some(self.default_queue.as_str()))
    }

    /// The queue a route names for `task` (exact, or without a module prefix); `None` when only
    /// the default queue would apply.
    pub fn route(&self, task: &str) -> Option<&str> {
        if let Some(q) = self.routes.get(task) {
            return Some(q);
        }
        self.prefixes
            .iter()
            .filter_map(|p| task.strip_prefix(p.as_str()))
            .find_map(|short| self.routes.get(short))
            .map(String::as_str)
    }

    /// Every queue some route names, plus the default.
    pub fn queues(&self) -> Vec<String> {
        let mut q: Vec<String> = self.routes.values().cloned().collect();
        q.push(self.default_queue.clone());
        q.sort();
        q.dedup();
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Task, TaskContext, TaskError, TaskOptions};
    use serde_json::{Map, Value};

    struct Pdf;

    #[async_trait::async_trait]
    impl Task for Pdf {
        async fn run(
            &self,
            _: TaskContext,
            _: Vec<Value>,
            _: Map<String, Value>,
        ) -> Result<Value, TaskError> {
            Ok(Value::Null)
        }
        fn options(&self) -> TaskOptions {
            TaskOptions {
                queue: Some("pdf".into()),
                ..Default::default()
            }
        }
    }

    #[test]
    fn routes_come_from_the_tasks_and_configuration() {
        let mut reg = crate::Registry::default();
        reg.register("process_pdf_document", Pdf);
        reg.add_module_prefix("app.workers.tasks.");
        let mut r = Router::from_registry(&reg);
        assert_eq!(r.queue_for("process_pdf_document"), "pdf");
        assert_eq!(r.queue_for("app.workers.tasks.process_pdf_document"), "pdf");
        assert_eq!(r.queue_for("cleanup_pdf_cache"), "default");
        r.set("cleanup_pdf_cache", "pdf");
        assert_eq!(r.queue_for("app.workers.tasks.cleanup_pdf_cache"), "pdf");
        assert_eq!(
            Router::default().queue_for("process_pdf_document"),
            "default"
        );
    }
}
