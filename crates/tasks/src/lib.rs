//! The glue: wraps youtube/pdf/llm as engine tasks under the seed's names, opens every file a
//! queued task names beneath the input roots (fail-closed), maps domain errors to retry or fail, and runs
//! the `hlbot ingest` pipeline in-process.

pub mod content;
pub mod error;
pub mod ingest;
pub mod inputs;
pub mod llm;
pub mod params;
pub mod pdf;
pub mod rcache;
pub mod rspend;
pub mod settings;
pub mod youtube;

use std::sync::Arc;

use hlbot_engine::Registry;

pub use error::{Error, Result};
pub use ingest::{IngestOptions, IngestReport, SourceKind, ingest};
pub use inputs::InputRoots;
pub use settings::TaskSettings;

/// The seed's task names (also reachable as `app.workers.tasks.<name>`).
pub const TASK_NAMES: [&str; 7] = [
    "process_youtube_video",
    "process_youtube_playlist",
    "cleanup_youtube_cache",
    "process_pdf_document",
    "cleanup_pdf_cache",
    "extract_trading_strategy",
    "analyze_chart_image",
];

/// Register every domain task into `registry`.
pub fn register(registry: &mut Registry, settings: Arc<TaskSettings>) {
    registry.add_module_prefix(MODULE);
    youtube::register(registry, &settings);
    pdf::register(registry, &settings);
    llm::register(registry, &settings);
}

/// The Python app's module of these tasks: `app.workers.tasks.process_pdf_document` is
/// `process_pdf_document` here.
pub const MODULE: &str = "app.workers.tasks.";

/// The app's periodic tasks (beat's entries when the config names none): both cache cleanups,
/// daily at 03:00 UTC.
pub fn beat_entries() -> Vec<hlbot_engine::beat::EntryConfig> {
    ["cleanup_youtube_cache", "cleanup_pdf_cache"]
        .iter()
        .map(|n| hlbot_engine::beat::EntryConfig {
            name: n.to_string(),
            task: format!("{MODULE}{n}"),
            interval: None,
            crontab: Some("0 3 * * *".into()),
            timezone: Some("UTC".into()),
            args: Vec::new(),
            kwargs: serde_json::Map::new(),
            queue: None,
            options: serde_json::Map::new(),
        })
        .collect()
}

/// Entry point of the PDFium child process (the hidden `hlbot pdf-child`).
pub fn pdf_child_main() -> std::process::ExitCode {
    hlbot_pdf::child::serve_stdio()
}
