//! The glue: wraps youtube/pdf/llm as engine tasks under the seed's names, opens every file a
//! queued task names beneath the input roots (fail-closed), maps domain errors to retry or fail, and runs
//! the `hlbot ingest` pipeline in-process.

pub mod charts;
pub mod content;
pub mod error;
pub mod facts;
pub mod ingest;
pub mod inputs;
pub mod library;
pub mod llm;
pub mod llm_cache;
pub mod llm_spend;
pub mod media;
pub mod needs;
pub mod pdf;
pub mod playlist;
pub mod settings;
pub mod youtube;

use std::sync::Arc;

use hlbot_engine::Registry;

pub use error::{Error, Result};
pub use facts::ReadFacts;
pub use ingest::{IngestOptions, IngestReport, SourceKind, ingest};
pub use inputs::InputRoots;
pub use playlist::{PlaylistReport, VideoOutcome, ingest_playlist};
pub use settings::TaskSettings;

/// The seed's task names (also reachable as `app.workers.tasks.<name>`).
pub const TASK_NAMES: [&str; 8] = [
    "process_youtube_video",
    "process_youtube_playlist",
    "cleanup_youtube_cache",
    "process_video_file",
    "process_pdf_document",
    "cleanup_pdf_cache",
    "extract_trading_strategy",
    "analyze_chart_image",
];

/// Register every domain task into `registry`.
pub fn register(registry: &mut Registry, settings: Arc<TaskSettings>) {
    registry.add_module_prefix(MODULE);
    youtube::register(registry, &settings);
    media::register(registry, &settings);
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
    hlbot_pdf::worker::serve_stdio()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every domain task is typed: its parameters are its input struct's fields, in the Python
    /// signature's order (what `hlbot tasks` shows and positional arguments bind to).
    #[test]
    fn every_task_declares_its_arguments() {
        let dir = std::env::temp_dir();
        let settings = Arc::new(TaskSettings {
            input_roots: InputRoots::default(),
            pdf: hlbot_pdf::PdfOptions::new("libpdfium.so", &dir, "hlbot", Vec::new()),
            youtube: hlbot_youtube::YoutubeOptions::default(),
            llm: hlbot_llm::LlmOptions::default(),
            default_model: "rules".into(),
            cache_dir: dir,
            library: None,
        });
        let mut r = Registry::default();
        register(&mut r, settings);
        let args = |n: &str| r.get(n).and_then(|t| t.arguments()).map(<[_]>::to_vec);
        let want: [(&str, &[&str]); 8] = [
            (
                "process_youtube_video",
                &["url", "extract_frames", "prefer_captions", "force"],
            ),
            (
                "process_youtube_playlist",
                &["url", "extract_frames", "prefer_captions", "max_videos"],
            ),
            (
                "cleanup_youtube_cache",
                &["max_age_days", "max_total_bytes"],
            ),
            ("process_video_file", &["path", "extract_frames", "force"]),
            (
                "process_pdf_document",
                &[
                    "pdf_path",
                    "extract_images",
                    "password",
                    "ocr",
                    "languages",
                    "pages",
                    "force",
                ],
            ),
            ("cleanup_pdf_cache", &["max_age_days", "max_total_bytes"]),
            (
                "extract_trading_strategy",
                &["content", "content_type", "model"],
            ),
            ("analyze_chart_image", &["image_path", "model"]),
        ];
        for (name, params) in want {
            assert!(TASK_NAMES.contains(&name));
            assert_eq!(args(name).as_deref(), Some(params), "{name}");
            // …and under the Python app's module name too.
            assert!(r.get(&format!("{MODULE}{name}")).is_some(), "{name}");
        }
    }
}
