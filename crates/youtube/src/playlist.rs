//! Playlists and channels: a flat listing first (`--flat-playlist`, nested channel tabs flattened,
//! ids derived from URLs when yt-dlp gives none), then the in-process sequential version of
//! `process_youtube_playlist` where one failed video is recorded and never fails the playlist.

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::error::{Error, Result};
use crate::options::YoutubeOptions;
use crate::progress::{Progress, ProgressFn, Stage};
use crate::video::{VideoResult, process_video};

/// Nesting depth of tab listings followed (channel → tab → playlist).
const MAX_DEPTH: usize = 2;

/// One video of a flat playlist listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaylistEntry {
    /// 1-based position in the flattened listing.
    pub index: usize,
    pub video_id: Option<String>,
    pub url: String,
    pub title: Option<String>,
    pub duration: Option<f64>,
    pub channel: Option<String>,
    pub live_status: Option<String>,
    pub availability: Option<String>,
}

/// Why one video of a playlist failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemError {
    pub kind: String,
    pub message: String,
    pub retryable: bool,
}

impl From<&Error> for ItemError {
    fn from(e: &Error) -> Self {
        ItemError {
            kind: e.kind().to_string(),
            message: e.to_string(),
            retryable: e.retryable(),
        }
    }
}

/// One video of a processed playlist: its listing entry and either a result or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaylistItem {
    pub entry: PlaylistEntry,
    pub result: Option<VideoResult>,
    pub error: Option<ItemError>,
}

/// `process_playlist`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaylistResult {
    pub url: String,
    pub items: Vec<PlaylistItem>,
    pub succeeded: usize,
    pub failed: usize,
}

/// Lists the videos of a playlist, channel or channel tab without visiting each video.
pub async fn list_playlist(
    opts: &YoutubeOptions,
    url: &str,
    max_videos: Option<usize>,
    cancel: &CancellationToken,
) -> Result<Vec<PlaylistEntry>> {
    let parsed = crate::link::check_url(opts, url)?;
    let (guarded, guard) = crate::guard::guarded(opts, &parsed).await?;
    let mut out = Vec::new();
    let listed = list_into(&guarded, &parsed, max_videos, 0, &mut out, cancel).await;
    crate::guard::explain(listed, guard.as_ref())?;
    for (i, e) in out.iter_mut().enumerate() {
        e.index = i + 1;
    }
    Ok(out)
}

async fn list_into(
    opts: &YoutubeOptions,
    url: &Url,
    max: Option<usize>,
    depth: usize,
    out: &mut Vec<PlaylistEntry>,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut extra: Vec<String> = vec!["--flat-playlist".into(), "--yes-playlist".into()];
    if let Some(m) = max {
        extra.push("--playlist-end".into());
        extra.push(m.saturating_sub(out.len()).max(1).to_string());
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (json, _warnings) = crate::ytdlp::dump_json(opts, url, &extra, cancel).await?;
    let mut nested = Vec::new();
    flatten(&json, max, out, &mut nested);
    if depth < MAX_DEPTH {
        for tab in nested {
            if max.is_some_and(|m| out.len() >= m) {
                break;
            }
            // Tab URLs come from yt-dlp's output: they pass the same host check as user input.
            let Ok(tab_url) = crate::link::check_url(opts, &tab) else {
                continue;
            };
            Box::pin(list_into(opts, &tab_url, max, depth + 1, out, cancel)).await?;
        }
    }
    Ok(())
}

/// Collects video entries of a flat listing; nested playlists with inline entries are walked,
/// those given only as a URL (channel tabs) are returned in `nested` for a further listing.
pub(crate) fn flatten(
    v: &serde_json::Value,
    max: Option<usize>,
    out: &mut Vec<PlaylistEntry>,
    nested: &mut Vec<String>,
) {
    let full = |out: &Vec<PlaylistEntry>| max.is_some_and(|m| out.len() >= m);
    let Some(entries) = v.get("entries").and_then(|e| e.as_array()) else {
        // A single video given to the playlist call.
        if let Some(e) = entry_of(v) {
            out.push(e);
        }
        return;
    };
    for e in entries {
        if full(out) {
            return;
        }
        if e.get("entries").is_some_and(|x| x.is_array()) {
            flatten(e, max, out, nested);
            continue;
        }
        let kind = e.get("_type").and_then(|t| t.as_str()).unwrap_or("url");
        let ie = e.get("ie_key").and_then(|t| t.as_str()).unwrap_or("");
        let url = e.get("url").and_then(|u| u.as_str()).unwrap_or("");
        let has_video_id = crate::link::video_id(url).is_some()
            || e.get("id")
                .and_then(|i| i.as_str())
                .is_some_and(|i| crate::link::video_id(i).is_some());
        if kind == "playlist"
            || ie == "YoutubeTab"
            || (!has_video_id && ie != "Youtube" && url.contains("/@"))
        {
            if !url.is_empty() {
                nested.push(url.to_string());
            }
            continue;
        }
        if let Some(entry) = entry_of(e) {
            out.push(entry);
        }
    }
}

fn entry_of(e: &serde_json::Value) -> Option<PlaylistEntry> {
    let s = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let url_field = s("url").or_else(|| s("webpage_url"));
    let id = s("id")
        .filter(|i| crate::link::video_id(i).is_some())
        .or_else(|| url_field.as_deref().and_then(crate::link::video_id));
    let url = match (&url_field, &id) {
        (Some(u), _) if u.starts_with("http") => u.clone(),
        (_, Some(id)) => format!("https://www.youtube.com/watch?v={id}"),
        (Some(u), None) => u.clone(),
        (None, None) => return None,
    };
    Some(PlaylistEntry {
        index: 0,
        video_id: id.or_else(|| s("id")),
        url,
        title: s("title"),
        duration: e.get("duration").and_then(|d| d.as_f64()),
        channel: s("channel").or_else(|| s("uploader")),
        live_status: s("live_status"),
        availability: s("availability"),
    })
}

/// Lists the playlist, then processes each video in turn. A failing video is recorded in its
/// item; only listing failures and cancellation fail the whole call.
#[allow(clippy::too_many_arguments)]
pub async fn process_playlist(
    opts: &YoutubeOptions,
    url: &str,
    extract_frames: bool,
    prefer_captions: bool,
    max_videos: Option<usize>,
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> Result<PlaylistResult> {
    let entries = list_playlist(opts, url, max_videos, cancel).await?;
    let total = entries.len() as u64;
    let mut items = Vec::with_capacity(entries.len());
    let (mut ok, mut failed) = (0, 0);
    for (i, entry) in entries.into_iter().enumerate() {
        progress(
            &Progress::new(Stage::Playlist, format!("video {} of {total}", i + 1))
                .counts(i as u64, Some(total)),
        );
        let res = process_video(
            opts,
            &entry.url,
            extract_frames,
            prefer_captions,
            progress,
            cancel,
        )
        .await;
        match res {
            Ok(r) => {
                ok += 1;
                items.push(PlaylistItem {
                    entry,
                    result: Some(r),
                    error: None,
                });
            }
            Err(Error::Cancelled) => return Err(Error::Cancelled),
            Err(e) => {
                failed += 1;
                tracing::warn!(url = %entry.url, error = %e, "playlist video failed");
                items.push(PlaylistItem {
                    entry,
                    result: None,
                    error: Some(ItemError::from(&e)),
                });
            }
        }
    }
    progress(&Progress::new(Stage::Playlist, "playlist done").counts(total, Some(total)));
    Ok(PlaylistResult {
        url: url.to_string(),
        items,
        succeeded: ok,
        failed,
    })
}
