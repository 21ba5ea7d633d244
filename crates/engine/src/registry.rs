//! Task registry: name → implementation. Names are matched exactly, then without one of the
//! module prefixes the app registered (`add_module_prefix`), so both spellings reach the same task.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::task::Task;

#[derive(Clone, Default)]
pub struct Registry {
    tasks: BTreeMap<String, Arc<dyn Task>>,
    prefixes: Vec<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tasks.keys()).finish()
    }
}

impl Registry {
    /// A registry holding the always-present diagnostic tasks (`hlbot.debug.*`).
    pub fn with_debug_tasks() -> Self {
        let mut r = Self::default();
        crate::debug::register(&mut r);
        r
    }

    pub fn register(&mut self, name: &str, task: impl Task) {
        self.tasks.insert(name.to_string(), Arc::new(task));
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Task>> {
        if let Some(t) = self.tasks.get(name) {
            return Some(t.clone());
        }
        self.prefixes
            .iter()
            .filter_map(|p| name.strip_prefix(p.as_str()))
            .find_map(|short| self.tasks.get(short).cloned())
    }

    /// Also find tasks by their name with this module prefix (a Python app's
    /// `app.workers.tasks.process_pdf_document` is `process_pdf_document` here).
    pub fn add_module_prefix(&mut self, prefix: &str) {
        if !self.prefixes.iter().any(|p| p == prefix) {
            self.prefixes.push(prefix.to_string());
        }
    }

    pub fn module_prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// `(task, queue)` for every task that names its own queue (`TaskOptions.queue`).
    pub fn routes(&self) -> Vec<(String, String)> {
        self.tasks
            .iter()
            .filter_map(|(n, t)| t.options().queue.map(|q| (n.clone(), q)))
            .collect()
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }
}
