//! `process_video_file`: a local video or audio file as a task. The file is opened once beneath
//! an input root; ffmpeg is given `/proc/<pid>/fd/<n>` of that descriptor (the same inode,
//! whatever the name points at later), never the name. Also which file names are media.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use hlbot_engine::{Isolation, Registry, TaskContext, TaskError, TaskOptions, Typed, TypedTask};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::settings::TaskSettings;

/// File extensions read as media (anything else is media only if its first bytes say so).
pub const EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mkv", "webm", "mov", "avi", "wmv", "flv", "mpg", "mpeg", "ts", "3gp", "ogv",
    "mp3", "m4a", "aac", "wav", "flac", "ogg", "oga", "opus", "wma",
];

/// Whether `path` names a media file: by extension, else by the container's magic bytes.
pub fn is_media(path: &Path, head: &[u8]) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if EXTENSIONS.contains(&ext.as_str()) {
        return true;
    }
    let at = |i: usize, m: &[u8]| head.get(i..i + m.len()) == Some(m);
    at(4, b"ftyp")
        || at(0, &[0x1A, 0x45, 0xDF, 0xA3])
        || (at(0, b"RIFF") && (at(8, b"WAVE") || at(8, b"AVI ")))
        || at(0, b"OggS")
        || at(0, b"fLaC")
        || at(0, b"ID3")
}

pub fn register(r: &mut Registry, s: &Arc<TaskSettings>) {
    r.register("process_video_file", Typed(VideoFile(s.clone())));
}

fn yes() -> bool {
    true
}

/// `process_video_file(path, extract_frames=True, force=False)`.
#[derive(Debug, Deserialize)]
pub struct MediaArgs {
    pub path: PathBuf,
    #[serde(default = "yes")]
    pub extract_frames: bool,
    /// Process again even if the library holds this file.
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

/// One media file, once across workers when a library is set: keyed by its SHA-256 and whether
/// frames were extracted (see [`crate::library::once`]).
pub async fn process(s: &TaskSettings, a: &MediaArgs, ctx: &TaskContext) -> crate::Result<Value> {
    let input = s.input_roots.open(&a.path)?;
    let sha = crate::library::file_sha256(&input.file)
        .map_err(|e| crate::Error::Other(format!("reading {}: {e}", a.path.display())))?;
    let sidecar = sidecar(s, &a.path);
    // A subtitle file added (or changed) next to the media later is a new source.
    let subs = sidecar.as_ref().map(|c| {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(&c.bytes));
        format!(",subs={}", &sha[..16])
    });
    let key = Some(hlbot_store::library::SourceKey::new(
        "media",
        &sha,
        &format!("frames={}{}", a.extract_frames, subs.unwrap_or_default()),
    ));
    crate::library::once(
        s.library.as_ref(),
        key,
        a.force,
        || run(s, a, &input, &sha, sidecar.as_ref(), ctx),
        crate::library::video_content,
    )
    .await
}

/// The first subtitle file next to the media (`lesson.en.vtt`, `lesson.srt`, …) that opens beneath
/// an input root (the same rules as the media itself) and is not over the text-size cap.
fn sidecar(s: &TaskSettings, media: &Path) -> Option<hlbot_youtube::Sidecar> {
    hlbot_youtube::sidecar_names(media, &s.youtube.caption_languages)
        .into_iter()
        .find_map(|path| {
            let bytes = crate::ingest::read_text_file(s, &path).ok()?;
            Some(hlbot_youtube::Sidecar { path, bytes })
        })
}

async fn run(
    s: &TaskSettings,
    a: &MediaArgs,
    input: &crate::inputs::InputFile,
    sha: &str,
    sidecar: Option<&hlbot_youtube::Sidecar>,
    ctx: &TaskContext,
) -> crate::Result<Value> {
    // The open descriptor, reachable by ffmpeg (same user) without being inherited.
    let fd_path = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        input.file.as_raw_fd()
    ));
    let progress = |p: &hlbot_youtube::Progress| report(ctx, p);
    let r = hlbot_youtube::process_media_file(
        &s.youtube,
        &fd_path,
        &a.path,
        sha,
        a.extract_frames,
        sidecar,
        &progress,
        &ctx.cancel,
    )
    .await?;
    Ok(serde_json::to_value(r).unwrap_or(Value::Null))
}

struct VideoFile(Arc<TaskSettings>);

#[async_trait]
impl TypedTask for VideoFile {
    type Input = MediaArgs;

    async fn run(&self, ctx: TaskContext, a: MediaArgs) -> Result<Value, TaskError> {
        Ok(process(&self.0, &a, &ctx).await?)
    }

    fn options(&self) -> TaskOptions {
        TaskOptions {
            queue: Some("youtube".into()),
            // Whisper and frame decoding are blocking native work, as for YouTube videos.
            isolation: Isolation::Process,
            acks_late: Some(true),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_by_extension_or_magic() {
        assert!(is_media(Path::new("a/Lesson.MP4"), b""));
        assert!(is_media(Path::new("talk.m4a"), b""));
        assert!(is_media(Path::new("clip.bin"), b"\0\0\0\x20ftypisom"));
        assert!(is_media(Path::new("noext"), b"RIFF\0\0\0\0WAVEfmt "));
        assert!(!is_media(Path::new("notes.bin"), b"hello world"));
    }
}
