//! Reads a chart image (PNG, JPEG, WebP, GIF — detected from the bytes), downscales it to the
//! provider's limits and encodes it as base64 for an image block. Decoding runs off the
//! async threads. Caps (`max_image_bytes`, `max_image_pixels`) are checked before anything is
//! decoded: the pixel count comes from the header, so a decompression bomb costs nothing.

use std::io::Cursor;
use std::path::Path;

use base64::Engine;
use image::{DynamicImage, ImageFormat, imageops::FilterType};

use crate::chart::ImageInfo;
use crate::error::{Error, Result};

/// Anthropic's per-image byte limit for base64 sources (the stricter of the two APIs).
const MAX_BYTES: usize = 5 * 1024 * 1024;
/// Anthropic recommends at most ~1.15 megapixels; larger images are scaled down server side.
const MAX_PIXELS: f64 = 1_150_000.0;

/// An image ready to send.
#[derive(Debug, Clone)]
pub struct EncodedImage {
    pub media_type: &'static str,
    pub base64: String,
    pub info: ImageInfo,
    /// The bytes sent (base64-decoded); hashed into the cache key.
    pub(crate) sent: Vec<u8>,
}

/// The decoded image plus its format name, for the offline reader.
pub(crate) struct Decoded {
    pub image: DynamicImage,
    pub format: &'static str,
}

fn format_name(f: ImageFormat) -> Option<(&'static str, &'static str)> {
    match f {
        ImageFormat::Png => Some(("png", "image/png")),
        ImageFormat::Jpeg => Some(("jpeg", "image/jpeg")),
        ImageFormat::WebP => Some(("webp", "image/webp")),
        ImageFormat::Gif => Some(("gif", "image/gif")),
        _ => None,
    }
}

pub(crate) fn too_big(path: &Path, len: u64, limit: u64) -> Error {
    Error::TooLarge(format!(
        "image {} is {len} bytes; the limit is {limit} (llm.max_image_bytes)",
        path.display()
    ))
}

/// Reads a regular file of at most `limit` bytes (0 = no limit); never reads past the limit
/// (`/dev/zero` and FIFOs are refused before reading).
pub(crate) async fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let err = |message: String| Error::Image {
        path: path.display().to_string(),
        message,
    };
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| err(format!("cannot read: {e}")))?;
    let meta = f
        .metadata()
        .await
        .map_err(|e| err(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if limit > 0 && meta.len() > limit {
        return Err(too_big(path, meta.len(), limit));
    }
    let cap = if limit > 0 { limit + 1 } else { u64::MAX };
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(cap)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| err(format!("cannot read: {e}")))?;
    if limit > 0 && bytes.len() as u64 > limit {
        return Err(too_big(path, bytes.len() as u64, limit));
    }
    Ok(bytes)
}

fn decode(path: &Path, bytes: &[u8], max_pixels: u64) -> Result<(DynamicImage, ImageFormat)> {
    let err = |message: String| Error::Image {
        path: path.display().to_string(),
        message,
    };
    if bytes.is_empty() {
        return Err(err("empty file".into()));
    }
    let format =
        image::guess_format(bytes).map_err(|_| err("not a PNG, JPEG, WebP or GIF image".into()))?;
    if format_name(format).is_none() {
        return Err(err(format!(
            "{format:?} is not supported (PNG, JPEG, WebP, GIF)"
        )));
    }
    let reader = || image::ImageReader::with_format(Cursor::new(bytes), format);
    let (w, h) = reader()
        .into_dimensions()
        .map_err(|e| err(format!("cannot decode {format:?}: {e}")))?;
    let pixels = u64::from(w) * u64::from(h);
    if max_pixels > 0 && pixels > max_pixels {
        return Err(Error::TooLarge(format!(
            "image {} is {w}x{h} ({pixels} pixels); the limit is {max_pixels} (llm.max_image_pixels)",
            path.display()
        )));
    }
    // The decoder's own allocation limit backs the header check (a lying header).
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(pixels.saturating_mul(16).max(1 << 20));
    let mut r = reader();
    r.limits(limits);
    let img = r
        .decode()
        .map_err(|e| err(format!("cannot decode {format:?}: {e}")))?;
    Ok((img, format))
}

/// Decodes an image for local reading.
pub(crate) async fn load_decoded(path: &Path, bytes: Vec<u8>, max_pixels: u64) -> Result<Decoded> {
    let p = path.to_path_buf();
    let (image, format) = tokio::task::spawn_blocking(move || decode(&p, &bytes, max_pixels))
        .await
        .map_err(|e| Error::Image {
            path: path.display().to_string(),
            message: e.to_string(),
        })??;
    let format = format_name(format).map(|f| f.0).unwrap_or("unknown");
    Ok(Decoded { image, format })
}

/// Loads, downscales if needed (longest edge ≤ `max_edge`, ≤ 1.15 MP, ≤ 5 MB) and encodes.
/// Small images are sent byte for byte.
pub async fn load_for_provider(
    path: &Path,
    bytes: Vec<u8>,
    opts: &crate::LlmOptions,
) -> Result<EncodedImage> {
    let p = path.to_path_buf();
    let (max_edge, max_pixels) = (opts.max_image_edge.max(16), opts.max_image_pixels);
    tokio::task::spawn_blocking(move || encode(&p, bytes, max_edge, max_pixels))
        .await
        .map_err(|e| Error::Image {
            path: path.display().to_string(),
            message: e.to_string(),
        })?
}

fn encode(path: &Path, bytes: Vec<u8>, max_edge: u32, max_pixels: u64) -> Result<EncodedImage> {
    let (img, format) = decode(path, &bytes, max_pixels)?;
    let (name, media) = format_name(format).unwrap_or(("png", "image/png"));
    let (w, h) = (img.width(), img.height());
    let scale = (max_edge as f64 / w.max(h) as f64)
        .min((MAX_PIXELS / (w as f64 * h as f64)).sqrt())
        .min(1.0);
    let mut info = ImageInfo {
        format: name.into(),
        width: w,
        height: h,
        sent_width: w,
        sent_height: h,
    };
    if scale >= 1.0 && bytes.len() <= MAX_BYTES {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        return Ok(EncodedImage {
            media_type: media,
            base64: b64,
            info,
            sent: bytes,
        });
    }
    let nw = ((w as f64 * scale).round() as u32).max(1);
    let nh = ((h as f64 * scale).round() as u32).max(1);
    let small = if scale < 1.0 {
        img.resize_exact(nw, nh, FilterType::Triangle)
    } else {
        img
    };
    info.sent_width = small.width();
    info.sent_height = small.height();
    // PNG keeps sharp chart text; fall back to JPEG when PNG is still too large.
    let mut out = Vec::new();
    let err = |e: image::ImageError| Error::Image {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    small
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .map_err(err)?;
    let mut media_type = "image/png";
    if out.len() > MAX_BYTES {
        out.clear();
        DynamicImage::ImageRgb8(small.to_rgb8())
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
            .map_err(err)?;
        media_type = "image/jpeg";
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&out);
    Ok(EncodedImage {
        media_type,
        base64: b64,
        info,
        sent: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn write(dir: &Path, name: &str, w: u32, h: u32, f: ImageFormat) -> std::path::PathBuf {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x % 255) as u8, (y % 255) as u8, 90]));
        let p = dir.join(name);
        DynamicImage::ImageRgb8(img)
            .save_with_format(&p, f)
            .unwrap();
        p
    }

    #[tokio::test]
    async fn formats_and_downscale() {
        let dir = tempfile::tempdir().unwrap();
        for (name, f, media) in [
            ("a.png", ImageFormat::Png, "image/png"),
            ("a.jpg", ImageFormat::Jpeg, "image/jpeg"),
            ("a.webp", ImageFormat::WebP, "image/webp"),
            ("a.gif", ImageFormat::Gif, "image/gif"),
        ] {
            let p = write(dir.path(), name, 64, 32, f);
            let e = load(&p).await.unwrap();
            assert_eq!(e.media_type, media, "{name}");
            assert_eq!((e.info.sent_width, e.info.sent_height), (64, 32));
        }
        let big = write(dir.path(), "big.png", 3000, 1000, ImageFormat::Png);
        let e = load(&big).await.unwrap();
        assert_eq!((e.info.width, e.info.height), (3000, 1000));
        assert!(e.info.sent_width <= 1568 && e.info.sent_width >= 1500);
        let back = image::load_from_memory(&e.sent).unwrap();
        assert_eq!(back.width(), e.info.sent_width);
        let bad = dir.path().join("x.png");
        std::fs::write(&bad, b"not an image").unwrap();
        assert!(matches!(load(&bad).await, Err(Error::Image { .. })));
        assert!(load(&dir.path().join("missing.png")).await.is_err());
    }

    async fn load(p: &Path) -> Result<EncodedImage> {
        let opts = crate::LlmOptions::default();
        let bytes = read_capped(p, opts.max_image_bytes).await?;
        load_for_provider(p, bytes, &opts).await
    }

    #[tokio::test]
    async fn dev_zero_and_fifos_are_not_read() {
        let e = read_capped(Path::new("/dev/zero"), 1 << 20)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    /// A 30 000 × 30 000 PNG (900 megapixels, a few hundred KiB compressed) is refused from
    /// its header: nothing is allocated for the pixels.
    #[tokio::test]
    async fn a_png_bomb_is_refused_before_decoding() {
        let png = bomb_png(30_000, 30_000);
        assert!(
            png.len() < 2 << 20,
            "compressed bomb is small: {}",
            png.len()
        );
        let opts = crate::LlmOptions::default();
        let t = std::time::Instant::now();
        let e = load_for_provider(Path::new("bomb.png"), png.clone(), &opts)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("30000x30000"), "{e}");
        let e = load_decoded(Path::new("bomb.png"), png, opts.max_image_pixels)
            .await
            .err()
            .expect("refused");
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    /// An all-black greyscale PNG streamed row by row (never held decoded in memory).
    fn bomb_png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::One);
            enc.set_compression(png::Compression::Balanced);
            let mut writer = enc.write_header().unwrap();
            let mut stream = writer.stream_writer().unwrap();
            let row = vec![0u8; (w as usize).div_ceil(8)];
            for _ in 0..h {
                std::io::Write::write_all(&mut stream, &row).unwrap();
            }
            stream.finish().unwrap();
        }
        out
    }
}
