//! The document's bytes, read through one descriptor: opened once (or handed over by the caller,
//! e.g. opened beneath an input root), checked (regular file, size cap, `%PDF-` header), hashed
//! with `pread` and named for the PDFium worker as `/proc/<pid>/fd/<n>`, so every reader sees the
//! very file that was checked whatever happens to its name. Does not parse PDF.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::error::{PdfError, Result};
use crate::options::PdfRequest;

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

/// Opens the path (when the caller did not hand over an open file) and returns the file and
/// its size. Typed errors for missing, not-a-file, empty, over-size and not-a-PDF inputs.
pub(crate) fn check_file(req: &PdfRequest, max_bytes: u64) -> Result<(Arc<File>, u64)> {
    let path = req.pdf_path.as_path();
    let file = match &req.file {
        Some(f) => f.clone(),
        None => Arc::new(File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PdfError::NotFound(path.to_path_buf()),
            _ => PdfError::io(path, e),
        })?),
    };
    let meta = file.metadata().map_err(|e| PdfError::io(path, e))?;
    if !meta.is_file() {
        return Err(PdfError::NotAFile(path.to_path_buf()));
    }
    if meta.len() == 0 {
        return Err(PdfError::EmptyFile(path.to_path_buf()));
    }
    if max_bytes > 0 && meta.len() > max_bytes {
        return Err(PdfError::TooLarge(format!(
            "{} is {} bytes; the limit is {max_bytes} (pdf.max_bytes)",
            path.display(),
            meta.len()
        )));
    }
    // The header may follow some junk, but must be within the first KiB.
    let mut head = vec![0u8; 1024];
    let n = read_at(&file, &mut head, 0).map_err(|e| PdfError::io(path, e))?;
    if !head[..n].windows(5).any(|w| w == b"%PDF-") {
        return Err(PdfError::NotPdf(path.to_path_buf()));
    }
    Ok((file, meta.len()))
}

/// `pread` until `buf` is full or the file ends (the descriptor's offset is never moved, so
/// the hash and the checks can share it).
fn read_at(f: &File, buf: &mut [u8], mut at: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], at) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                at += k as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The document id: sha256 of the file's bytes, in hex.
fn hash_file(path: &Path, f: &File) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0u64;
    loop {
        let n = read_at(f, &mut buf, at).map_err(|e| PdfError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The name the PDFium worker opens: the parent's descriptor through `/proc`, which reaches
/// the very file the parent opened whatever happens to its name meanwhile.
pub(crate) fn child_path(file: &File) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        file.as_raw_fd()
    ))
}

/// Hashes the file on the blocking pool; yields (document id, hash ms).
pub(crate) fn spawn_hash(
    path: &Path,
    file: &Arc<File>,
) -> tokio::task::JoinHandle<Result<(String, u64)>> {
    let (path, file) = (path.to_path_buf(), file.clone());
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        hash_file(&path, &file).map(|id| (id, ms(t.elapsed())))
    })
}

pub(crate) async fn join_hash(
    h: tokio::task::JoinHandle<Result<(String, u64)>>,
) -> Result<(String, u64)> {
    h.await.map_err(|e| PdfError::Child {
        detail: format!("hashing task failed: {e}"),
        stderr: String::new(),
    })?
}
