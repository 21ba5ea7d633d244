//! `process_youtube_video`, `process_youtube_playlist` (fanned out into per-video tasks under a
//! worker) and `cleanup_youtube_cache` as tasks.

use std::sync::Arc;

use async_trait::async_trait;
use hlbot_engine::{
    ChordSpec, Isolation, Registry, TaskContext, TaskError, TaskOptions, Typed, TypedTask,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::pdf::CleanupArgs;
use crate::settings::TaskSettings;

pub fn register(r: &mut Registry, s: &Arc<TaskSettings>) {
    r.register("process_youtube_video", Typed(Video(s.clone())));
    r.register("process_youtube_playlist", Typed(Playlist(s.clone())));
    r.register("cleanup_youtube_cache", Typed(Cleanup(s.clone())));
    r.register(COLLECT, Typed(Collect));
}

/// The playlist chord's body.
pub const COLLECT: &str = "hlbot.youtube.playlist_collect";

/// The playlist result from the chord's parts (`{"id", "state", "result"}`, in playlist order)
/// and the listing: each item its entry, task id and either the video result or its typed error.
pub fn collect(parts: &[Value], entries: &[Value], url: &str) -> Value {
    let mut items = Vec::with_capacity(entries.len());
    let mut failed = 0;
    for (i, entry) in entries.iter().enumerate() {
        let part = parts.get(i).cloned().unwrap_or(Value::Null);
        let mut item = json!({"entry": entry, "task_id": part.get("id")});
        let ok = part.get("state").and_then(Value::as_str) == Some("SUCCESS");
        let result = part.get("result").cloned().unwrap_or(Value::Null);
        if ok {
            item["result"] = result;
            item["error"] = Value::Null;
        } else {
            failed += 1;
            let exc = hlbot_proto::ExceptionInfo::from_value(&result);
            item["result"] = Value::Null;
            item["error"] = json!({
                "kind": exc.as_ref().map_or("Unknown".to_string(), |e| e.exc_type.clone()),
                "message": exc.as_ref().map_or_else(|| result.to_string(), |e| e.display()),
                "state": part.get("state"),
            });
        }
        items.push(item);
    }
    json!({
        "url": url,
        "count": entries.len(),
        "succeeded": entries.len() - failed,
        "failed": failed,
        "items": items,
    })
}

/// `playlist_collect(parts, entries, url)`.
#[derive(Debug, Deserialize)]
pub struct CollectArgs {
    pub parts: Vec<Value>,
    pub entries: Vec<Value>,
    pub url: String,
}

struct Collect;

#[async_trait]
impl TypedTask for Collect {
    type Input = CollectArgs;

    async fn run(&self, _: TaskContext, a: CollectArgs) -> Result<Value, TaskError> {
        Ok(collect(&a.parts, &a.entries, &a.url))
    }

    fn options(&self) -> TaskOptions {
        TaskOptions {
            queue: Some("youtube".into()),
            ..Default::default()
        }
    }
}

fn yes() -> bool {
    true
}

/// `process_youtube_video(url, extract_frames=True, prefer_captions=True, force=False)`.
#[derive(Debug, Deserialize)]
pub struct VideoArgs {
    pub url: String,
    #[serde(default = "yes")]
    pub extract_frames: bool,
    #[serde(default = "yes")]
    pub prefer_captions: bool,
    /// Process again even if the library holds this video (hlbot's addition).
    #[serde(default)]
    pub force: bool,
}

fn report(ctx: &TaskContext, p: &hlbot_youtube::Progress) {
    ctx.progress(json!({
        "stage": format!("{:?}", p.stage).to_lowercase(),
        "done": p.done,
        "total": p.total,
        "message": p.message,
    }));
}

/// One video, once across workers when a library is set (see [`crate::library::once`]).
pub async fn process(s: &TaskSettings, a: &VideoArgs, ctx: &TaskContext) -> crate::Result<Value> {
    let key = crate::library::video_key(&a.url, a.extract_frames, a.prefer_captions);
    crate::library::once(
        s.library.as_ref(),
        key,
        a.force,
        || process_video(s, a, ctx),
        crate::library::video_content,
    )
    .await
}

/// One video, in-process.
async fn process_video(s: &TaskSettings, a: &VideoArgs, ctx: &TaskContext) -> crate::Result<Value> {
    let progress = |p: &hlbot_youtube::Progress| report(ctx, p);
    let r = hlbot_youtube::process_video(
        &s.youtube,
        &a.url,
        a.extract_frames,
        a.prefer_captions,
        &progress,
        &ctx.cancel,
    )
    .await?;
    Ok(serde_json::to_value(r).unwrap_or(Value::Null))
}

struct Video(Arc<TaskSettings>);

#[async_trait]
impl TypedTask for Video {
    type Input = VideoArgs;

    async fn run(&self, ctx: TaskContext, a: VideoArgs) -> Result<Value, TaskError> {
        Ok(process(&self.0, &a, &ctx).await?)
    }

    fn options(&self) -> TaskOptions {
        TaskOptions {
            queue: Some("youtube".into()),
            // Whisper and frame decoding are blocking native work: in a child process a hard
            // limit or a terminate stops them for sure. Acked after the run: a worker death
            // re-runs the video instead of losing it (held messages are refreshed meanwhile).
            isolation: Isolation::Process,
            acks_late: Some(true),
            ..Default::default()
        }
    }
}

/// `process_youtube_playlist(url, extract_frames=True, prefer_captions=True, max_videos=None)`.
#[derive(Debug, Deserialize)]
pub struct PlaylistArgs {
    pub url: String,
    #[serde(default = "yes")]
    pub extract_frames: bool,
    #[serde(default = "yes")]
    pub prefer_captions: bool,
    #[serde(default)]
    pub max_videos: Option<usize>,
}

struct Playlist(Arc<TaskSettings>);

#[async_trait]
impl TypedTask for Playlist {
    type Input = PlaylistArgs;

    async fn run(&self, ctx: TaskContext, a: PlaylistArgs) -> Result<Value, TaskError> {
        let s = &self.0;
        let Some(services) = ctx.services().cloned() else {
            // No broker (hlbot call / ingest): one process, video after video.
            let progress = |p: &hlbot_youtube::Progress| report(&ctx, p);
            let r = hlbot_youtube::process_playlist(
                &s.youtube,
                &a.url,
                a.extract_frames,
                a.prefer_captions,
                a.max_videos,
                &progress,
                &ctx.cancel,
            )
            .await
            .map_err(crate::Error::from)?;
            return Ok(serde_json::to_value(r).unwrap_or(Value::Null));
        };
        // Under a worker: each video is its own `process_youtube_video` task (a chord header,
        // run by every worker serving `youtube`); `playlist_collect`, the chord body, assembles
        // the result under this task's own id (Celery's `replace`), and each finished video
        // stores PROGRESS done/total there.
        let entries = hlbot_youtube::list_playlist(&s.youtube, &a.url, a.max_videos, &ctx.cancel)
            .await
            .map_err(crate::Error::from)?;
        if entries.is_empty() {
            return Ok(collect(&[], &[], &a.url));
        }
        let header = entries
            .iter()
            .map(|e| {
                let kw: Map<String, Value> = [
                    ("url".to_string(), json!(e.url)),
                    ("extract_frames".to_string(), json!(a.extract_frames)),
                    ("prefer_captions".to_string(), json!(a.prefer_captions)),
                ]
                .into_iter()
                .collect();
                ("process_youtube_video".to_string(), kw)
            })
            .collect();
        let total = entries.len();
        ctx.progress(json!({"stage": "videos", "done": 0, "total": total}));
        services
            .send_chord(ChordSpec {
                header,
                body: COLLECT.into(),
                body_args: vec![json!(entries), json!(a.url)],
                body_id: ctx.id.clone(),
                partial: true,
                progress: true,
            })
            .await
            .map_err(|e| TaskError::retry("ConnectionError", e))?;
        Err(TaskError::ignore(&format!(
            "replaced by a chord of {total} process_youtube_video tasks"
        )))
    }

    fn options(&self) -> TaskOptions {
        TaskOptions {
            queue: Some("youtube".into()),
            // In-process (it lists the playlist and sends the chord); acked after the run so a
            // worker death re-runs the playlist instead of losing it.
            acks_late: Some(true),
            ..Default::default()
        }
    }
}

struct Cleanup(Arc<TaskSettings>);

#[async_trait]
impl TypedTask for Cleanup {
    type Input = CleanupArgs;

    async fn run(&self, _: TaskContext, a: CleanupArgs) -> Result<Value, TaskError> {
        let report = hlbot_youtube::cleanup_cache(
            &self.0.youtube.cache_dir,
            a.max_age_days,
            a.max_total_bytes,
        )
        .map_err(crate::Error::from)?;
        Ok(serde_json::to_value(report).unwrap_or(Value::Null))
    }
}
