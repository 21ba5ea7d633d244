//! The response cache: a trait the glue can back with Redis, a disk implementation, a no-op,
//! and the cache key (provider, model, prompt, schema version, content hash). A hit means the
//! validated answer is reused and nothing is billed again.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Stores validated model answers (JSON text) by key. Failures are logged by callers and never
/// fail an extraction.
#[async_trait]
pub trait ResponseCache: Send + Sync {
    /// The stored value, if any.
    async fn get(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` under `key`, replacing any older value.
    async fn put(&self, key: &str, value: &str) -> Result<()>;
}

/// Caches nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

#[async_trait]
impl ResponseCache for NoCache {
    async fn get(&self, _key: &str) -> Result<Option<String>> {
        Ok(None)
    }
    async fn put(&self, _key: &str, _value: &str) -> Result<()> {
        Ok(())
    }
}

/// One file per key under `dir/<first two hex chars>/<key>.json`, written atomically.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskCache { dir: dir.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        if key.len() < 8 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Cache(format!("bad cache key {key:?}")));
        }
        Ok(self.dir.join(&key[..2]).join(format!("{key}.json")))
    }

    /// The directory holding the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl ResponseCache for DiskCache {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let path = self.path(key)?;
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Cache(format!("read {}: {e}", path.display()))),
        }
    }

    async fn put(&self, key: &str, value: &str) -> Result<()> {
        let path = self.path(key)?;
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| Error::Cache(format!("mkdir {}: {e}", parent.display())))?;
        // Write-then-rename so a reader never sees half a file.
        let tmp = parent.join(format!(".{key}.{}.tmp", std::process::id()));
        tokio::fs::write(&tmp, value)
            .await
            .map_err(|e| Error::Cache(format!("write {}: {e}", tmp.display())))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| Error::Cache(format!("rename {}: {e}", path.display())))
    }
}

/// The cache key: SHA-256 over provider, model id, prompt text, schema version and the SHA-256
/// of the content (text, or image bytes plus size), as lowercase hex.
pub fn cache_key(
    provider: &str,
    model: &str,
    prompt: &str,
    schema_version: &str,
    content: &[u8],
) -> String {
    let content_hash = Sha256::digest(content);
    let mut h = Sha256::new();
    for part in [
        provider.as_bytes(),
        model.as_bytes(),
        prompt.as_bytes(),
        schema_version.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(content_hash);
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_every_part() {
        let base = cache_key("anthropic", "m", "p", "strategy.v1", b"text");
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            cache_key("anthropic", "m", "p", "strategy.v1", b"text")
        );
        assert_ne!(base, cache_key("openai", "m", "p", "strategy.v1", b"text"));
        assert_ne!(
            base,
            cache_key("anthropic", "m2", "p", "strategy.v1", b"text")
        );
        assert_ne!(
            base,
            cache_key("anthropic", "m", "p2", "strategy.v1", b"text")
        );
        assert_ne!(
            base,
            cache_key("anthropic", "m", "p", "strategy.v2", b"text")
        );
        assert_ne!(
            base,
            cache_key("anthropic", "m", "p", "strategy.v1", b"text2")
        );
    }

    #[tokio::test]
    async fn disk_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().join("c"));
        let key = cache_key("a", "b", "c", "d", b"e");
        assert_eq!(cache.get(&key).await.unwrap(), None);
        cache.put(&key, "{\"x\":1}").await.unwrap();
        assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some("{\"x\":1}"));
        assert!(cache.get("../../etc/passwd").await.is_err());
    }
}
