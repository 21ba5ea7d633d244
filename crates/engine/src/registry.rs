//! Task registry: name → implementation. Names are matched exactly, then by their short form
//! (the seed's `app.workers.tasks.` prefix stripped), so both spellings reach the same task.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::route::SEED_MODULE;
use crate::task::Task;

#[derive(Clone, Default)]
pub struct Registry {
    tasks: BTreeMap<String, Arc<dyn Task>>,
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
        name.strip_prefix(SEED_MODULE)
            .and_then(|short| self.tasks.get(short).cloned())
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }
}
