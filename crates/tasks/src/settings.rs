//! Everything the domain tasks need, built once by the CLI and shared by every task.

use std::path::PathBuf;

use crate::inputs::InputRoots;

/// Settings for the domain tasks.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// Files a queued task may read must resolve inside one of these (after symlinks).
    pub input_roots: InputRoots,
    pub pdf: hlbot_pdf::PdfOptions,
    pub youtube: hlbot_youtube::YoutubeOptions,
    pub llm: hlbot_llm::LlmOptions,
    /// Model used when a task names none (`claude-sonnet-4`, or `rules` when no key is set).
    pub default_model: String,
    /// Root of the caches (`pdf/`, `youtube/`, `llm/` below it).
    pub cache_dir: PathBuf,
    /// The research library (None: nothing is stored, nothing deduplicated).
    pub library: Option<hlbot_store::Store>,
}
