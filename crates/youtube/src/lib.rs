//! YouTube ingestion as a plain async library: yt-dlp + ffmpeg + caption parsing + ASR. Knows
//! nothing about queues; the `tasks` crate wraps these functions as tasks.
//!
//! Entry points: [`process_video`], [`list_playlist`], [`process_playlist`], [`cleanup_cache`],
//! [`parse_captions`] + [`transcript_text`], [`video_id`], [`check_url`], [`transcribe_file`],
//! [`process_media_file`] (a local video or audio file).

mod asr;
mod cache;
mod caption;
mod classify;
mod encoding;
mod error;
mod frames;
mod guard;
mod info;
mod link;
mod media;
#[cfg(feature = "whisper")]
mod mel;
mod options;
mod playlist;
mod process;
mod progress;
mod sbv;
mod segment;
mod sidecar;
mod slides;
mod ssa;
mod timedtext;
mod video;
#[cfg(feature = "whisper")]
mod whisper;
mod ytdlp;

pub use asr::transcribe_file;
pub use cache::{CleanupReport, RemovedEntry, cleanup_cache};
pub use classify::classify_ytdlp;
pub use encoding::{Detection, Encoding, decode as decode_text, lang_from_path};
pub use error::{Error, Result};
pub use frames::Frame;
pub use info::Chapter;
pub use link::{check_url, is_playlist_url, video_id};
pub use media::{MediaStreams, probe_media, process_media_file};
pub use options::{ApiKey, AsrProvider, DEFAULT_ALLOWED_HOSTS, Timeouts, YoutubeOptions};
pub use playlist::{
    ItemError, PlaylistEntry, PlaylistItem, PlaylistResult, list_playlist, process_playlist,
};
pub use progress::{Progress, ProgressFn, Stage, no_progress};
pub use segment::{Captions, Segment, parse_captions, read_captions, transcript_text};
pub use sidecar::{Sidecar, sidecar_names};
pub use slides::ON_SCREEN;
pub use video::{VideoResult, process_video};
