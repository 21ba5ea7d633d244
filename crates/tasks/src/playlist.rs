//! `hlbot ingest` of a YouTube playlist or channel: the videos listed (flat, without visiting
//! each), then each through the single-video pipeline and into the library; one video that
//! fails (private, removed, members-only) is reported and the others go on.

use std::sync::Arc;

use hlbot_engine::task::ProgressSink;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::ingest::{IngestOptions, IngestReport, SourceKind, ingest};
use crate::settings::TaskSettings;

/// What `hlbot ingest` prints for a playlist or channel.
#[derive(Debug, Serialize)]
pub struct PlaylistReport {
    pub source: SourceKind,
    pub videos: Vec<VideoOutcome>,
    pub succeeded: usize,
    pub failed: usize,
}

/// One listed video: its report, or why it failed.
#[derive(Debug, Serialize)]
pub struct VideoOutcome {
    /// 1-based position in the listing.
    pub index: usize,
    pub url: String,
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<IngestReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Lists `url` (at most `o.max_videos`) and ingests each video in turn.
pub async fn ingest_playlist(
    s: &TaskSettings,
    url: &str,
    o: &IngestOptions,
    progress: Option<Arc<dyn ProgressSink>>,
    cancel: CancellationToken,
) -> Result<PlaylistReport> {
    let entries = hlbot_youtube::list_playlist(&s.youtube, url, o.max_videos, &cancel).await?;
    let mut videos = Vec::with_capacity(entries.len());
    for e in entries {
        let outcome = ingest(s, &e.url, o, progress.clone(), cancel.clone()).await;
        if cancel.is_cancelled() {
            return Err(Error::Youtube(hlbot_youtube::Error::Cancelled));
        }
        let (report, error) = match outcome {
            Ok(r) => (Some(r), None),
            Err(err) => {
                tracing::warn!("playlist video {} ({}) failed: {err}", e.index, e.url);
                (None, Some(err.to_string()))
            }
        };
        videos.push(VideoOutcome {
            index: e.index,
            url: e.url,
            title: e.title,
            report,
            error,
        });
    }
    let succeeded = videos.iter().filter(|v| v.report.is_some()).count();
    Ok(PlaylistReport {
        source: SourceKind::Playlist(url.to_string()),
        failed: videos.len() - succeeded,
        succeeded,
        videos,
    })
}
