//! `process_youtube_video`, `process_youtube_playlist` (fanned out into per-video tasks under a
//! worker) and `cleanup_youtube_cache` as tasks.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hlbot_engine::{Isolation, Registry, TaskContext, TaskError, TaskOptions, Typed, TypedTask};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::pdf::CleanupArgs;
use crate::settings::TaskSettings;

pub fn register(r: &mut Registry, s: &Arc<TaskSettings>) {
    r.register("process_youtube_video", Typed(Video(s.clone())));
    r.register("process_youtube_playlist", Typed(Playlist(s.clone())));
    r.register("cleanup_youtube_cache", Typed(Cleanup(s.clone())));
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
        // Under a worker: each video is its own task; the playlist collects them.
        let entries = hlbot_youtube::list_playlist(&s.youtube, &a.url, a.max_videos, &ctx.cancel)
            .await
            .map_err(crate::Error::from)?;
        let mut sent = Vec::new();
        for e in &entries {
            let kw: Map<String, Value> = [
                ("url".to_string(), json!(e.url)),
                ("extract_frames".to_string(), json!(a.extract_frames)),
                ("prefer_captions".to_string(), json!(a.prefer_captions)),
            ]
            .into_iter()
            .collect();
            let id = services
                .send("process_youtube_video", vec![], kw)
                .await
                .map_err(|e| TaskError::retry("ConnectionError", e))?;
            sent.push((e, id));
        }
        let total = sent.len();
        let mut items = Vec::new();
        for (i, (entry, id)) in sent.into_iter().enumerate() {
            ctx.progress(json!({"stage": "videos", "done": i, "total": total}));
            let item = match services.wait(&id, Duration::from_secs(6 * 3600)).await {
                Ok(v) => json!({"entry": entry, "task_id": id, "result": v}),
                Err(err) => json!({"entry": entry, "task_id": id, "error": err}),
            };
            items.push(item);
        }
        let failed = items.iter().filter(|i| i.get("error").is_some()).count();
        Ok(json!({"url": a.url, "count": total, "failed": failed, "items": items}))
    }

    fn options(&self) -> TaskOptions {
        TaskOptions {
            queue: Some("youtube".into()),
            // In-process (it sends and waits for the video tasks); acked after the run so a
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
