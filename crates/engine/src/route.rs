//! Task routing: which queue a task name goes to when the caller names none.

use std::collections::BTreeMap;

/// Celery module prefix of the seed app's tasks.
pub const SEED_MODULE: &str = "app.workers.tasks.";

/// Maps task names to queues. Names match exactly or by their short form (without the seed's
/// `app.workers.tasks.` prefix); everything else goes to the default queue.
#[derive(Debug, Clone)]
pub struct Router {
    routes: BTreeMap<String, String>,
    pub default_queue: String,
}

impl Default for Router {
    /// The seed's routes: YouTube tasks → `youtube`, PDF → `pdf`, LLM → `llm`, rest → `default`.
    fn default() -> Self {
        let mut r = Self {
            routes: BTreeMap::new(),
            default_queue: "default".into(),
        };
        for (t, q) in [
            ("process_youtube_video", "youtube"),
            ("process_youtube_playlist", "youtube"),
            ("process_pdf_document", "pdf"),
            ("extract_trading_strategy", "llm"),
            ("analyze_chart_image", "llm"),
        ] {
            r.routes.insert(t.into(), q.into());
        }
        r
    }
}

impl Router {
    /// Add or override a route (from configuration).
    pub fn set(&mut self, task: &str, queue: &str) {
        self.routes.insert(task.into(), queue.into());
    }

    pub fn queue_for(&self, task: &str) -> &str {
        if let Some(q) = self.routes.get(task) {
            return q;
        }
        let short = task.strip_prefix(SEED_MODULE).unwrap_or(task);
        self.routes
            .get(short)
            .map_or(self.default_queue.as_str(), String::as_str)
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

    #[test]
    fn seed_routes() {
        let mut r = Router::default();
        assert_eq!(r.queue_for("process_pdf_document"), "pdf");
        assert_eq!(
            r.queue_for("app.workers.tasks.process_youtube_playlist"),
            "youtube"
        );
        assert_eq!(r.queue_for("app.workers.tasks.analyze_chart_image"), "llm");
        assert_eq!(r.queue_for("cleanup_pdf_cache"), "default");
        r.set("cleanup_pdf_cache", "pdf");
        assert_eq!(r.queue_for("app.workers.tasks.cleanup_pdf_cache"), "pdf");
    }
}
