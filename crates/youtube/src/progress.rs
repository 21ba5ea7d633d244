//! Progress reports handed to the caller's callback (the CLI draws bars, `tasks` publishes state).

use serde::Serialize;

/// Which step a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Metadata,
    Captions,
    DownloadAudio,
    DownloadVideo,
    Transcribe,
    Frames,
    /// Playlist level: `done` of `total` videos finished.
    Playlist,
    Done,
}

/// One progress report. Byte counts for downloads, item counts for playlists and ASR chunks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub stage: Stage,
    pub done: Option<u64>,
    pub total: Option<u64>,
    pub message: String,
}

impl Progress {
    pub(crate) fn new(stage: Stage, message: impl Into<String>) -> Self {
        Progress {
            stage,
            done: None,
            total: None,
            message: message.into(),
        }
    }
    pub(crate) fn counts(mut self, done: u64, total: Option<u64>) -> Self {
        self.done = Some(done);
        self.total = total;
        self
    }
}

/// The callback type taken by [`crate::process_video`] and friends.
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) + Send + Sync);

/// A callback that ignores every report.
pub fn no_progress(_: &Progress) {}
