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
    youtube::register(registry, &settings);
    pdf::register(registry, &settings);
    llm::register(registry, &settings);
}

/// Entry point of the PDFium child process (the hidden `hlbot pdf-child`).
pub fn pdf_child_main() -> std::process::ExitCode {
    hlbot_pdf::child::serve_stdio()
}
