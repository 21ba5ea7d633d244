//! The on-disk cache: one folder per video (`info.json`, `subs.*`, `transcript.*.json`, `audio/`,
//! `frames/` + `frames.json`), a `.last_used` stamp refreshed on every use, and
//! `cleanup_cache`, which deletes whole video folders, oldest first.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::{Error, Result};

const STAMP: &str = ".last_used";
const LOCK: &str = ".lock";

/// Holds a video folder for one `process_video` call; two workers on the same video take turns,
/// and `cleanup_cache` skips a held folder. Released on drop.
#[derive(Debug)]
pub(crate) struct FolderLock {
    _file: std::fs::File,
}

/// Waits (cancellably) for the folder's lock.
pub(crate) async fn lock_folder(
    dir: &Path,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<FolderLock> {
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(FolderLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", path.display()), e));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = cancel.cancelled() => return Err(Error::Cancelled),
        }
    }
}

/// True when another call holds the folder right now.
fn in_use(dir: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(dir.join(LOCK)) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// The cache key of a URL: the YouTube video id, or `url-<hash>` for other allowed hosts.
pub(crate) fn key_for(url: &Url) -> String {
    match crate::link::video_id(url.as_str()).filter(|_| crate::link::is_youtube_host(url)) {
        Some(id) => id,
        None => {
            let digest = Sha256::digest(url.as_str().as_bytes());
            format!("url-{}", &hex::encode(digest)[..20])
        }
    }
}

/// Creates (if needed) and stamps the folder of `key`.
pub(crate) fn video_dir(cache_dir: &Path, key: &str) -> Result<PathBuf> {
    let safe: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let dir = cache_dir.join(safe);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating cache folder {}", dir.display()), e))?;
    touch(&dir);
    Ok(dir)
}

/// Marks a video folder as used now (cleanup age is measured from this).
pub(crate) fn touch(dir: &Path) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let _ = std::fs::write(dir.join(STAMP), now.to_string());
}

/// Writes `value` as JSON atomically (temp file + rename), so readers never see half a file.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec_pretty(value).map_err(|e| Error::Output(e.to_string()))?;
    std::fs::write(&tmp, data).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))
}

/// Reads a cached JSON file; a missing or unreadable file is simply a cache miss.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A video folder deleted by [`cleanup_cache`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemovedEntry {
    pub key: String,
    pub bytes: u64,
    /// Last use, seconds since the Unix epoch.
    pub last_used: u64,
}

/// What [`cleanup_cache`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CleanupReport {
    pub removed: Vec<RemovedEntry>,
    pub freed_bytes: u64,
    pub kept_entries: usize,
    pub kept_bytes: u64,
}

struct Entry {
    key: String,
    path: PathBuf,
    bytes: u64,
    last_used: SystemTime,
}

/// Deletes video folders unused for more than `max_age_days`, then, while the cache is larger than
/// `max_total_bytes`, the least recently used ones. A missing cache dir is an empty report.
pub fn cleanup_cache(
    cache_dir: &Path,
    max_age_days: f64,
    max_total_bytes: Option<u64>,
) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    let rd = match std::fs::read_dir(cache_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => {
            return Err(Error::io(
                format!("reading cache {}", cache_dir.display()),
                e,
            ));
        }
    };
    let mut entries: Vec<Entry> = Vec::new();
    for de in rd.flatten() {
        let path = de.path();
        if !path.is_dir() {
            continue;
        }
        let mut bytes = 0;
        let mut newest = SystemTime::UNIX_EPOCH;
        for f in walkdir::WalkDir::new(&path).into_iter().flatten() {
            if let Ok(md) = f.metadata() {
                if md.is_file() {
                    bytes += md.len();
                }
                if let Ok(m) = md.modified() {
                    newest = newest.max(m);
                }
            }
        }
        let key = de.file_name().to_string_lossy().into_owned();
        entries.push(Entry {
            key,
            path,
            bytes,
            last_used: newest,
        });
    }
    entries.sort_by_key(|e| e.last_used);
    let max_age = Duration::from_secs_f64((max_age_days.max(0.0)) * 86_400.0);
    let now = SystemTime::now();
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    for e in entries {
        let too_old = now.duration_since(e.last_used).unwrap_or_default() > max_age;
        let too_big = max_total_bytes.is_some_and(|max| total > max);
        if (too_old || too_big) && !in_use(&e.path) {
            std::fs::remove_dir_all(&e.path)
                .map_err(|err| Error::io(format!("removing {}", e.path.display()), err))?;
            total -= e.bytes;
            report.freed_bytes += e.bytes;
            report.removed.push(RemovedEntry {
                key: e.key,
                bytes: e.bytes,
                last_used: e
                    .last_used
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            });
        } else {
            report.kept_entries += 1;
            report.kept_bytes += e.bytes;
        }
    }
    Ok(report)
}
