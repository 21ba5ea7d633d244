//! The glue between the domain results and the research library (`hlbot-store`): what a
//! processed video, PDF, strategy extraction or chart reading leaves in it, and dedup — a
//! source already processed with the same options is reused, and two workers given the same
//! one at once process it once (`force=True` re-processes). The store never decides a task's
//! outcome: when it is unreachable the work runs as if there were none.

use std::future::Future;
use std::time::Duration;

use hlbot_store::Store;
use hlbot_store::claim::Claim;
use hlbot_store::library::{
    Content, MediaRow, PageRow, SegmentRow, SourceKey, StrategySet, UsageRow,
};
use serde_json::Value;

/// How long a claim is held before another worker may take the source over (a worker that
/// died mid-way); above the default hard time limit.
pub const LEASE: Duration = Duration::from_secs(45 * 60);

/// Who holds a claim: host and process.
fn owner() -> String {
    format!(
        "{}:{}",
        hlbot_engine::client::hostname(),
        std::process::id()
    )
}

/// Run `work` for the source `key` at most once across workers: a stored result is returned
/// (unless `force`), a claim held by another worker is waited for, and a fresh result is
/// recorded by `record` and stored. Store errors only log: the work then runs unrecorded.
pub async fn once<W, F>(
    store: Option<&Store>,
    key: Option<SourceKey>,
    force: bool,
    work: W,
    record: fn(&Value) -> Content,
) -> crate::Result<Value>
where
    W: FnOnce() -> F,
    F: Future<Output = crate::Result<Value>>,
{
    let (Some(store), Some(key)) = (store, key) else {
        return work().await;
    };
    let id = match store.claim(&key, &owner(), LEASE, LEASE, force).await {
        Ok(Claim::Done { result, .. }) => {
            tracing::info!(
                "{} {}: reusing the stored result",
                key.kind,
                key.content_key
            );
            return Ok(result);
        }
        Ok(Claim::Mine { id }) => id,
        Err(e) => {
            tracing::warn!("library: {e}; processing {} without it", key.content_key);
            return work().await;
        }
    };
    match work().await {
        Ok(v) => {
            let saved = async {
                store.save_content(id, &record(&v)).await?;
                store.complete(id, &v).await
            };
            if let Err(e) = saved.await {
                tracing::warn!("library: could not store {}: {e}", key.content_key);
                let _ = store.release(id, &e.to_string()).await;
            }
            Ok(v)
        }
        Err(e) => {
            let _ = store.release(id, &e.to_string()).await;
            Err(e)
        }
    }
}

/// The library key of a video with these options.
pub fn video_key(url: &str, frames: bool, captions: bool) -> Option<SourceKey> {
    let id = hlbot_youtube::video_id(url)?;
    Some(SourceKey::new(
        "youtube",
        &id,
        &format!("frames={frames};captions={captions}"),
    ))
}

/// What a `process_youtube_video` result leaves: transcript segments, frames, metadata.
pub fn video_content(v: &Value) -> Content {
    let f = |x: &Value, k: &str| x.get(k).and_then(Value::as_f64);
    let segments = arr(v, "transcript_segments")
        .iter()
        .map(|s| SegmentRow {
            start: f(s, "start"),
            end: f(s, "end"),
            text: str_of(s, "text").unwrap_or_default(),
        })
        .collect();
    let media = arr(v, "frames")
        .iter()
        .map(|fr| media("frame", fr, f(fr, "timestamp")))
        .collect();
    let mut meta = serde_json::Map::new();
    for k in [
        "channel",
        "duration",
        "upload_date",
        "transcript_source",
        "video_id",
    ] {
        if let Some(x) = v.get(k) {
            meta.insert(k.into(), x.clone());
        }
    }
    Content {
        uri: str_of(v, "url"),
        title: str_of(v, "title"),
        metadata: Some(Value::Object(meta)),
        segments,
        pages: Vec::new(),
        media,
    }
}

/// What a `process_pdf_document` result leaves: pages (text, OCR flag), images, metadata.
pub fn pdf_content(v: &Value) -> Content {
    let mut pages = Vec::new();
    let mut images = Vec::new();
    for p in arr(v, "pages") {
        pages.push(PageRow {
            page: p.get("number").and_then(Value::as_i64).unwrap_or(0),
            text: str_of(p, "text").unwrap_or_default(),
            ocr: str_of(p, "source").is_some_and(|s| s != "text"),
        });
        images.extend(arr(p, "images").iter().map(|i| media("image", i, None)));
    }
    Content {
        uri: str_of(v, "path"),
        title: v.get("metadata").and_then(|m| str_of(m, "title")),
        metadata: v.get("metadata").cloned(),
        segments: Vec::new(),
        pages,
        media: images,
    }
}

/// Strategies (and their usage and cost) of an extraction result, tied to `source`.
pub async fn record_strategies(store: &Store, source: Option<i64>, task_id: &str, r: &Value) {
    let set = StrategySet {
        provider: str_of(r, "provider"),
        model: str_of(r, "model"),
        strategies: arr(r, "strategies").to_vec(),
    };
    if let Err(e) = store.save_strategies(source, &set).await {
        tracing::warn!("library: could not store strategies: {e}");
    }
    record_usage(store, source, task_id, "strategy", r).await;
}

/// A chart reading (and its usage and cost).
pub async fn record_analysis(
    store: &Store,
    source: Option<i64>,
    path: &str,
    task_id: &str,
    r: &Value,
) {
    let (p, m) = (str_of(r, "provider"), str_of(r, "model"));
    if let Err(e) = store
        .save_analysis(source, Some(path), p.as_deref(), m.as_deref(), r)
        .await
    {
        tracing::warn!("library: could not store the chart analysis: {e}");
    }
    record_usage(store, source, task_id, "chart", r).await;
}

async fn record_usage(store: &Store, source: Option<i64>, task_id: &str, purpose: &str, r: &Value) {
    let u = r.get("usage").cloned().unwrap_or(Value::Null);
    let n = |k: &str| u.get(k).and_then(Value::as_i64).unwrap_or(0);
    let row = UsageRow {
        task_id: Some(task_id.to_string()),
        purpose: Some(purpose.into()),
        provider: str_of(r, "provider").unwrap_or_else(|| "unknown".into()),
        model: str_of(r, "model").unwrap_or_else(|| "unknown".into()),
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        calls: n("calls"),
        cache_hits: n("cache_hits"),
        cost_usd: r.get("cost_usd").and_then(Value::as_f64),
    };
    if let Err(e) = store.save_usage(source, &row).await {
        tracing::warn!("library: could not store LLM usage: {e}");
    }
}

/// The source a `process_*` result (passed to extraction as content) came from, if stored.
pub async fn source_of(store: &Store, content: &Value) -> Option<i64> {
    let key = str_of(content, "video_id").or_else(|| str_of(content, "document_id"))?;
    store.find_source(&key).await.ok().flatten()
}

/// Hex SHA-256 of an open file, read positionally (the descriptor's offset is untouched).
pub fn file_sha256(file: &std::fs::File) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0u64;
    loop {
        let n = file.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(hex::encode(h.finalize()))
}

fn media(kind: &str, x: &Value, at: Option<f64>) -> MediaRow {
    let path = str_of(x, "path").unwrap_or_default();
    MediaRow {
        kind: kind.into(),
        bytes: std::fs::metadata(&path).ok().map(|m| m.len() as i64),
        path,
        width: x.get("width").and_then(Value::as_i64),
        height: x.get("height").and_then(Value::as_i64),
        at_s: at,
    }
}

fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}
