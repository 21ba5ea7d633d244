//! kombu's body compression (`task_compression`) and Celery's compressed result payloads
//! (`result_compression`): decoding only, bounded, for every codec kombu registers.

use std::borrow::Cow;
use std::io::Read;

/// The most bytes a compressed body or result may inflate to (a decompression bomb stops here).
pub const MAX_INFLATED: u64 = 64 << 20;

/// Celery's in-band marker of a compressed result: `MAGIC + content type + NUL + body`
/// (`celery/backends/base.py`, `COMPRESSED_PAYLOAD_MAGIC`).
const RESULT_MAGIC: &[u8] = b"\x00celery-compressed\x00";

/// Decompress `data` compressed with kombu's codec `kind` (a content type such as
/// `application/x-gzip`, or an alias such as `gzip`, `bzip2`, `zstd`). Errors say what was wrong.
pub fn decompress(kind: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let read = match kind.to_ascii_lowercase().as_str() {
        // kombu's "gzip" is zlib.compress: a zlib stream, not a gzip file.
        "application/x-gzip" | "gzip" | "zlib" => {
            bounded(flate2::read::ZlibDecoder::new(data), &mut out)
        }
        "application/x-bz2" | "bzip2" | "bzip" => {
            bounded(bzip2::read::BzDecoder::new(data), &mut out)
        }
        "application/x-brotli" | "brotli" => {
            bounded(brotli_decompressor::Decompressor::new(data, 4096), &mut out)
        }
        "application/zstd" | "application/x-zstd" | "zstd" | "zstandard" => {
            let d = ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| e.to_string())?;
            bounded(d, &mut out)
        }
        // Python's lzma.compress writes the .xz container by default; a bare .lzma stream too.
        "application/x-lzma" | "lzma" | "xz" => {
            let mut sink = Capped(Vec::new());
            let mut input = std::io::Cursor::new(data);
            let done = if data.starts_with(b"\xfd7zXZ\x00") {
                lzma_rs::xz_decompress(&mut input, &mut sink)
            } else {
                lzma_rs::lzma_decompress(&mut input, &mut sink)
            };
            done.map_err(|e| match sink.0.len() as u64 > MAX_INFLATED {
                true => too_big(),
                false => e.to_string(),
            })?;
            return Ok(sink.0);
        }
        other => return Err(format!("unknown codec {other:?}")),
    };
    read.map(|_| out)
}

/// A stored result as its serialized bytes: Celery's compressed form (marker, codec, body) is
/// decompressed; anything else is returned as it is.
pub fn result_payload(raw: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    let Some(rest) = raw.strip_prefix(RESULT_MAGIC) else {
        return Ok(Cow::Borrowed(raw));
    };
    let nul = rest
        .iter()
        .position(|b| *b == 0)
        .ok_or("compressed result without its codec name")?;
    let kind = std::str::from_utf8(&rest[..nul]).map_err(|e| e.to_string())?;
    decompress(kind, &rest[nul + 1..])
        .map(Cow::Owned)
        .map_err(|e| format!("compressed result ({kind}): {e}"))
}

/// A value Celery's Redis backend stored (a result meta, a chord entry, a saved group), read from
/// its bytes — decompressed first when `result_compression` wrote them, and in whichever
/// serializer (`result_serializer`) wrote them.
pub fn read_stored<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, String> {
    let payload = result_payload(raw)?;
    match crate::Serializer::sniff(&payload) {
        crate::Serializer::Json => serde_json::from_slice(&payload).map_err(|e| e.to_string()),
        _ => serde_json::from_value(crate::Serializer::read_any(&payload)?)
            .map_err(|e| e.to_string()),
    }
}

fn bounded(r: impl Read, out: &mut Vec<u8>) -> Result<(), String> {
    let n = r
        .take(MAX_INFLATED + 1)
        .read_to_end(out)
        .map_err(|e| e.to_string())?;
    if n as u64 > MAX_INFLATED {
        return Err(too_big());
    }
    Ok(())
}

/// A writer that refuses to grow past [`MAX_INFLATED`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.0.len() + buf.len()) as u64 > MAX_INFLATED {
            self.0.resize(MAX_INFLATED as usize + 1, 0);
            return Err(std::io::Error::other(too_big()));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn too_big() -> String {
    format!("inflates past {} MiB", MAX_INFLATED >> 20)
}
