//! The result cache: one folder per document hash (`<cache_dir>/<sha256>/`) holding
//! `result-<request key>.json` and `images/`; reuse for the same bytes and request; and
//! `cleanup_cache`, which deletes least-recently-used documents first.
//!
//! Layout: `<cache_dir>/<64 hex>/{result-<key>.json, images/, .last_used}` and
//! `<cache_dir>/.tmp/` for in-flight page renders. Nothing else under `cache_dir` is touched.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::document::PdfDocument;
use crate::error::{PdfError, Result};
use crate::options::{PdfOptions, PdfRequest};

/// Bump when the result format or extraction logic changes so old results are not reused.
const FORMAT_VERSION: u32 = 2; // 2: form field values and FreeText comments in the text
const LAST_USED: &str = ".last_used";

pub(crate) fn doc_dir(cache_dir: &Path, document_id: &str) -> PathBuf {
    cache_dir.join(document_id)
}

pub(crate) fn tmp_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join(".tmp")
}

/// Key of everything besides the bytes that changes the result. The password is included
/// only as a salted hash, so a cached result is not served to a caller with a wrong password.
pub(crate) fn request_key(
    opts: &PdfOptions,
    req: &PdfRequest,
    languages: &str,
    doc_id: &str,
) -> String {
    let password = req.password.as_ref().map(|p| {
        let mut h = Sha256::new();
        h.update(doc_id.as_bytes());
        h.update(b"\0");
        h.update(p.as_bytes());
        hex::encode(h.finalize())
    });
    let material = serde_json::json!({
        "v": FORMAT_VERSION,
        "images": req.extract_images,
        "ocr": req.ocr,
        "languages": languages,
        "pages": req.pages,
        "password": password,
        "min_image_side": opts.min_image_side,
        "dpi": opts.ocr_dpi,
        "max_render_pixels": opts.max_render_pixels,
        "max_render_side": opts.max_render_side,
    });
    hex::encode(Sha256::digest(material.to_string().as_bytes()))[..32].to_string()
}

pub(crate) fn load(path: &Path) -> Option<PdfDocument> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub(crate) fn store(path: &Path, doc: &PdfDocument) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(doc)?;
    std::fs::write(&tmp, bytes).map_err(|e| PdfError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| PdfError::io(path, e))?;
    Ok(())
}

/// Records that a document folder was just used (its age for `cleanup_cache`).
pub(crate) fn touch(dir: &Path) {
    let p = dir.join(LAST_USED);
    let now = SystemTime::now();
    let ok = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&p)
        .and_then(|f| f.set_modified(now));
    if let Err(e) = ok {
        tracing::debug!(path = %p.display(), error = %e, "cannot touch cache entry");
    }
}

/// What `cleanup_cache` removed and what is left.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CleanupReport {
    /// Document ids (folder names) removed, oldest first.
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    pub kept: u64,
    pub kept_bytes: u64,
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

fn last_used(dir: &Path) -> SystemTime {
    std::fs::metadata(dir.join(LAST_USED))
        .or_else(|_| std::fs::metadata(dir))
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn is_document_dir(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Deletes cached documents not used for `max_age_days`, then, while the cache is larger than
/// `max_total_bytes`, the least recently used ones. A missing cache folder is an empty cache.
pub fn cleanup_cache(
    cache_dir: &Path,
    max_age_days: f64,
    max_total_bytes: Option<u64>,
) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    let entries = match std::fs::read_dir(cache_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(PdfError::io(cache_dir, e)),
    };
    let now = SystemTime::now();
    let max_age = Duration::from_secs_f64((max_age_days.max(0.0) * 86_400.0).min(1e15));
    let mut docs: Vec<(SystemTime, String, PathBuf, u64)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            is_document_dir(&name).then(|| {
                let p = e.path();
                (last_used(&p), name, p.clone(), dir_size(&p))
            })
        })
        .collect();
    docs.sort();
    let mut total: u64 = docs.iter().map(|d| d.3).sum();
    for (used, name, path, size) in docs {
        let too_old = now.duration_since(used).unwrap_or_default() > max_age;
        let over_budget = max_total_bytes.is_some_and(|max| total > max);
        if too_old || over_budget {
            std::fs::remove_dir_all(&path).map_err(|e| PdfError::io(&path, e))?;
            total -= size;
            report.freed_bytes += size;
            report.removed.push(name);
        } else {
            report.kept += 1;
        }
    }
    report.kept_bytes = total;
    // Render folders of crashed runs.
    if let Ok(tmp) = std::fs::read_dir(tmp_dir(cache_dir)) {
        for e in tmp.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .map(|m| now.duration_since(m).unwrap_or_default() > Duration::from_secs(86_400))
                .unwrap_or(false);
            if old {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_doc(root: &Path, id_char: char, bytes: usize, age_days: u64) -> String {
        let id: String = std::iter::repeat_n(id_char, 64).collect();
        let dir = root.join(&id);
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::write(dir.join("images/a.png"), vec![0u8; bytes]).unwrap();
        touch(&dir);
        let when = SystemTime::now() - Duration::from_secs(age_days * 86_400);
        std::fs::File::options()
            .append(true)
            .open(dir.join(LAST_USED))
            .unwrap()
            .set_modified(when)
            .unwrap();
        id
    }

    #[test]
    fn cleanup_by_age_then_size_oldest_first() {
        let root = tempfile::tempdir().unwrap();
        let old = make_doc(root.path(), 'a', 1000, 30);
        let mid = make_doc(root.path(), 'b', 1000, 3);
        let new = make_doc(root.path(), 'c', 1000, 0);
        std::fs::create_dir_all(root.path().join("not-a-doc")).unwrap();

        let r = cleanup_cache(root.path(), 7.0, None).unwrap();
        assert_eq!(r.removed, vec![old]);
        assert_eq!(r.freed_bytes, 1000);
        assert_eq!(r.kept, 2);

        let r = cleanup_cache(root.path(), 7.0, Some(1500)).unwrap();
        assert_eq!(r.removed, vec![mid]);
        assert_eq!(r.kept_bytes, 1000);
        assert!(root.path().join(&new).exists());
        assert!(root.path().join("not-a-doc").exists());

        let missing = root.path().join("nope");
        assert_eq!(
            cleanup_cache(&missing, 7.0, None).unwrap(),
            CleanupReport::default()
        );
    }
}
