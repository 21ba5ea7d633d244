//! A terminal progress bar fed by task PROGRESS updates (`ingest`, `call`); silent when stderr
//! is not a terminal.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hlbot_engine::task::ProgressSink;
use serde_json::Value;

/// A progress bar on stderr when it is a terminal; silent otherwise.
pub struct Bar(Mutex<Option<indicatif::ProgressBar>>);

impl Bar {
    pub fn new() -> Arc<Self> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Arc::new(Self(Mutex::new(bar)))
    }

    pub fn finish(&self) {
        if let Ok(Some(b)) = self.0.lock().map(|b| b.clone()) {
            b.finish_and_clear();
        }
    }
}

impl ProgressSink for Bar {
    fn progress(&self, _task_id: &str, _state: &str, meta: Value) {
        let Ok(guard) = self.0.lock() else { return };
        let Some(b) = guard.as_ref() else { return };
        if let Some(stage) = meta.get("stage").and_then(Value::as_str) {
            b.set_message(stage.to_string());
        }
        if let Some(t) = meta.get("total").and_then(Value::as_u64) {
            b.set_length(t);
        }
        if let Some(d) = meta.get("done").and_then(Value::as_u64) {
            b.set_position(d);
        }
    }
}
