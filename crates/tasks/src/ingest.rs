//! `hlbot ingest`: one source (PDF, YouTube URL, local video or audio file, chart image, caption
//! or text file) through the
//! right `process_*` step and then strategy extraction (or chart reading), in this process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hlbot_engine::TaskContext;
use hlbot_engine::task::ProgressSink;
use hlbot_llm::ContentType;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::facts::ReadFacts;
use crate::settings::TaskSettings;
use crate::{content, llm, pdf, youtube};

/// What a source is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "source", rename_all = "snake_case")]
pub enum SourceKind {
    Pdf(PathBuf),
    Youtube(String),
    /// A YouTube playlist or channel: each listed video is a `Youtube` source
    /// ([`crate::playlist::ingest_playlist`]).
    Playlist(String),
    /// A local video or audio file.
    Media(PathBuf),
    Image(PathBuf),
    Captions(PathBuf),
    Text(PathBuf),
}

impl SourceKind {
    /// The task names the pipeline runs for this kind, in order (for `--queue` chains).
    pub fn tasks(&self) -> (&'static str, &'static str) {
        match self {
            SourceKind::Pdf(_) => ("process_pdf_document", "extract_trading_strategy"),
            SourceKind::Youtube(_) | SourceKind::Playlist(_) => {
                ("process_youtube_video", "extract_trading_strategy")
            }
            SourceKind::Media(_) => ("process_video_file", "extract_trading_strategy"),
            SourceKind::Image(_) => ("", "analyze_chart_image"),
            SourceKind::Captions(_) | SourceKind::Text(_) => ("", "extract_trading_strategy"),
        }
    }
}

/// Decide what `source` is, from its form and (for files) its extension and first bytes.
pub fn detect(source: &str) -> Result<SourceKind> {
    if source.starts_with("http://") || source.starts_with("https://") {
        return Ok(web(source.to_string()));
    }
    let path = Path::new(source);
    if !path.exists() {
        return not_a_file(source);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let head = std::fs::read(path)
        .map(|b| b.into_iter().take(16).collect::<Vec<u8>>())
        .unwrap_or_default();
    Ok(match ext.as_str() {
        _ if head.starts_with(b"%PDF-") => SourceKind::Pdf(path.to_path_buf()),
        "pdf" => SourceKind::Pdf(path.to_path_buf()),
        "png" | "jpg" | "jpeg" | "webp" | "gif" => SourceKind::Image(path.to_path_buf()),
        "vtt" | "srt" | "json3" | "sbv" | "ttml" | "dfxp" | "srv1" | "srv2" | "srv3" | "ass"
        | "ssa" => SourceKind::Captions(path.to_path_buf()),
        "txt" | "md" | "text" => SourceKind::Text(path.to_path_buf()),
        _ if crate::media::is_media(path, &head) => SourceKind::Media(path.to_path_buf()),
        _ => return Err(Error::UnknownSource(source.to_string())),
    })
}

/// A URL: a playlist or channel, else a video.
fn web(url: String) -> SourceKind {
    if hlbot_youtube::is_playlist_url(&url) {
        SourceKind::Playlist(url)
    } else {
        SourceKind::Youtube(url)
    }
}

/// A caption file as the strategy step reads it: one `[hh:mm:ss] text` line per segment (the
/// same in-process and through `--queue`, whatever the file's format).
pub fn caption_lines(captions: &hlbot_youtube::Captions) -> String {
    captions
        .segments
        .iter()
        .map(|g| format!("[{}] {}\n", content::hms(g.start), g.text.trim()))
        .collect()
}

/// A source that names no file: a YouTube address without its scheme (`youtube.com/watch?v=…`,
/// `youtu.be/…`, as a browser's address bar shows it) is that URL; another scheme is refused by
/// name; a bare video id gets a hint; anything else is a missing file.
fn not_a_file(source: &str) -> Result<SourceKind> {
    let host = source.split(['/', '?']).next().unwrap_or_default();
    if source.len() > host.len()
        && hlbot_youtube::DEFAULT_ALLOWED_HOSTS.contains(&host.to_ascii_lowercase().as_str())
    {
        return Ok(web(format!("https://{source}")));
    }
    if let Some((scheme, _)) = source.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(Error::Other(format!(
            "unsupported URL scheme {scheme}:// in {source}: only http(s) YouTube URLs are read"
        )));
    }
    // `video_id` also finds ids inside URLs; only a source that is the id itself gets the hint.
    let bare_id = hlbot_youtube::video_id(source).is_some_and(|id| id == source);
    Err(Error::InputMissing {
        path: PathBuf::from(source),
        hint: if bare_id {
            format!(" (a YouTube video id? give its URL: https://youtu.be/{source})")
        } else {
            String::new()
        },
    })
}

/// Options of one ingest run.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Model for the LLM step (default: the settings' default model).
    pub model: Option<String>,
    /// Extract video frames (`--no-frames` turns this off).
    pub frames: bool,
    /// Process the source again even if the library holds it (`--force`).
    pub force: bool,
    /// Read the charts among a PDF's images and a video's frames (`--no-charts` turns this off).
    pub charts: bool,
    /// A playlist or channel: at most this many of its videos (`--max-videos`; all by default).
    pub max_videos: Option<usize>,
}

/// What `hlbot ingest` prints.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub source: SourceKind,
    /// What was read from the source (title, pages, duration, encoding, …), before strategies.
    pub read: ReadFacts,
    /// The `process_*` result (video or document), when there was one.
    pub document: Option<Value>,
    /// The strategy extraction (or chart reading) result.
    pub result: Value,
    /// Charts found among the document's images or the video's frames, each with its reading
    /// (`charts::read_charts`).
    pub charts: Vec<Value>,
}

/// Run the pipeline for `source`.
pub async fn ingest(
    s: &TaskSettings,
    source: &str,
    o: &IngestOptions,
    progress: Option<Arc<dyn ProgressSink>>,
    cancel: CancellationToken,
) -> Result<IngestReport> {
    let kind = detect(source)?;
    let mut ctx = TaskContext::new(&uuid(), "ingest", 0, "local", cancel);
    if let Some(p) = progress {
        ctx = ctx.with_progress(p);
    }
    let model = o.model.as_deref();
    let (document, read, result) = match &kind {
        SourceKind::Pdf(path) => {
            let doc = pdf::process_once(s, hlbot_pdf::PdfRequest::new(path), o.force, &ctx).await?;
            let r = llm::extract(s, &doc, ContentType::Document, model, &ctx).await?;
            (Some(doc.clone()), ReadFacts::from_document(&doc), r)
        }
        SourceKind::Youtube(url) => {
            let a = youtube::VideoArgs {
                url: url.clone(),
                extract_frames: o.frames,
                prefer_captions: true,
                force: o.force,
            };
            let video = youtube::process(s, &a, &ctx).await?;
            let r = llm::extract(s, &video, ContentType::Transcript, model, &ctx).await?;
            let read = ReadFacts::from_document(&video);
            (Some(video), read, r)
        }
        SourceKind::Playlist(url) => {
            return Err(Error::Other(format!(
                "{url} is a playlist or channel: each of its videos is ingested by ingest_playlist"
            )));
        }
        SourceKind::Media(path) => {
            let a = crate::media::MediaArgs {
                path: path.clone(),
                extract_frames: o.frames,
                force: o.force,
            };
            let video = crate::media::process(s, &a, &ctx).await?;
            let r = llm::extract(s, &video, ContentType::Transcript, model, &ctx).await?;
            let read = ReadFacts::from_document(&video);
            (Some(video), read, r)
        }
        SourceKind::Image(path) => (
            None,
            ReadFacts::image(path),
            llm::chart(s, path, model, &ctx).await?,
        ),
        SourceKind::Captions(path) => {
            let bytes = read_text_file(s, path)?;
            let lang = hlbot_youtube::lang_from_path(path);
            let captions = hlbot_youtube::read_captions(&bytes, lang.as_deref())?;
            let text = caption_lines(&captions);
            (
                None,
                ReadFacts::from_captions(path, &captions),
                llm::extract(s, &json!(text), ContentType::Transcript, model, &ctx).await?,
            )
        }
        SourceKind::Text(path) => {
            let (text, read) = read_text(s, path)?;
            (
                None,
                read,
                llm::extract(s, &json!(text), ContentType::Transcript, model, &ctx).await?,
            )
        }
    };
    let charts = match (&document, o.charts) {
        (Some(doc), true) => crate::charts::read_charts(s, doc, model, &ctx).await,
        _ => Vec::new(),
    };
    if let Some(store) = &s.library {
        record(s, store, &kind, document.as_ref(), &result, &ctx.id).await;
        if let Some(doc) = &document {
            let source = crate::library::source_of(store, doc).await;
            for c in &charts {
                if let (Some(path), Some(a)) = (c["image"].as_str(), c.get("analysis")) {
                    crate::library::record_analysis(store, source, path, &ctx.id, a).await;
                }
            }
        }
    }
    Ok(IngestReport {
        source: kind,
        read,
        document,
        result,
        charts,
    })
}

/// Leave the run in the library: the source (a processed video or PDF is already there; an
/// image, caption or text file is keyed by its SHA-256) and its strategies or chart reading.
async fn record(
    s: &TaskSettings,
    store: &hlbot_store::Store,
    kind: &SourceKind,
    document: Option<&Value>,
    result: &Value,
    run_id: &str,
) {
    use crate::library;
    let source = match (kind, document) {
        (_, Some(doc)) => library::source_of(store, doc).await,
        (SourceKind::Image(p) | SourceKind::Captions(p) | SourceKind::Text(p), None) => {
            let k = match kind {
                SourceKind::Image(_) => "image",
                SourceKind::Captions(_) => "captions",
                _ => "text",
            };
            let sha = s
                .input_roots
                .open(p)
                .ok()
                .and_then(|f| library::file_sha256(&f.file).ok());
            match sha {
                Some(sha) => {
                    let key = hlbot_store::library::SourceKey::new(k, &sha, "");
                    let content = hlbot_store::library::Content {
                        uri: Some(p.display().to_string()),
                        title: p.file_name().map(|n| n.to_string_lossy().into_owned()),
                        ..Default::default()
                    };
                    let id = async {
                        let id = store.source_id(&key).await?;
                        store.save_content(id, &content).await?;
                        store.complete(id, result).await?;
                        Ok::<_, hlbot_store::Error>(id)
                    };
                    id.await
                        .inspect_err(|e| tracing::warn!("library: could not store {k}: {e}"))
                        .ok()
                }
                None => None,
            }
        }
        _ => None,
    };
    match kind {
        SourceKind::Image(p) => {
            let path = p.display().to_string();
            library::record_analysis(store, source, &path, run_id, result).await
        }
        _ => library::record_strategies(store, source, run_id, result).await,
    }
}

/// A caption or text file, opened beneath an input root; at most 4 bytes per allowed content
/// character are read (`llm.max_content_chars`).
pub(crate) fn read_text_file(s: &TaskSettings, path: &Path) -> Result<Vec<u8>> {
    let limit = (s.llm.max_content_chars as u64).saturating_mul(4);
    s.input_roots
        .open(path)?
        .read_capped(limit, "llm.max_content_chars")
}

/// A text file in whatever encoding it is in (BOM, UTF-16, legacy code page detected), with the
/// facts of what was read.
pub fn read_text(s: &TaskSettings, path: &Path) -> Result<(String, ReadFacts)> {
    let bytes = read_text_file(s, path)?;
    let lang = hlbot_youtube::lang_from_path(path);
    let (text, encoding) = hlbot_youtube::decode_text(&bytes, lang.as_deref());
    let read = ReadFacts::from_text(path, &text, &encoding);
    Ok((text, read))
}

/// A run id for progress reports (ingest has no task message to take one from).
fn uuid() -> String {
    format!(
        "ingest-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn youtube_addresses_without_a_scheme_other_schemes_and_bare_ids() {
        for s in [
            "youtube.com/watch?v=dQw4w9WgXcQ",
            "www.youtube.com/watch?v=dQw4w9WgXcQ",
            "M.YouTube.com/watch?v=dQw4w9WgXcQ",
            "youtu.be/dQw4w9WgXcQ",
        ] {
            match detect(s) {
                Ok(SourceKind::Youtube(u)) => assert_eq!(u, format!("https://{s}")),
                other => panic!("{s}: {other:?}"),
            }
        }
        let e = detect("ftp://youtube.com/watch?v=x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported URL scheme ftp://"), "{e}");
        let e = detect("dQw4w9WgXcQ").unwrap_err().to_string();
        assert!(e.contains("https://youtu.be/dQw4w9WgXcQ"), "{e}");
        // A missing file stays a missing file, even under a name like a host.
        let e = detect("notes/youtube.com").unwrap_err();
        assert!(
            matches!(&e, Error::InputMissing { hint, .. } if hint.is_empty()),
            "{e}"
        );
        assert!(matches!(
            detect("youtube.com"),
            Err(Error::InputMissing { .. })
        ));
    }
}
