//! Reads a chart image (PNG, JPEG, WebP, GIF — detected from the bytes), downscales it to the
//! provider's limits and encodes it as base64 for an image block. Decoding runs off the
//! async threads.

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

async fn read(path: &Path) -> Result<Vec<u8>> {
    tokio::fs::read(path).await.map_err(|e| Error::Image {
        path: path.display().to_string(),
        message: format!("cannot read: {e}"),
    })
}

fn decode(path: &Path, bytes: &[u8]) -> Result<(DynamicImage, ImageFormat)> {
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
    let img = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| err(format!("cannot decode {format:?}: {e}")))?;
    Ok((img, format))
}

/// Loads and decodes an image for local reading.
pub(crate) async fn load_decoded(path: &Path) -> Result<Decoded> {
    let bytes = read(path).await?;
    let p = path.to_path_buf();
    let (image, format) = tokio::task::spawn_blocking(move || decode(&p, &bytes))
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
pub async fn load_for_provider(path: &Path, max_edge: u32) -> Result<EncodedImage> {
    let bytes = read(path).await?;
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || encode(&p, bytes, max_edge.max(16)))
        .await
        .map_err(|e| Error::Image {
            path: path.display().to_string(),
            message: e.to_string(),
        })?
}

fn encode(path: &Path, bytes: Vec<u8>, max_edge: u32) -> Result<EncodedImage> {
    let (img, format) = decode(path, &bytes)?;
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
            let e = load_for_provider(&p, 1568).await.unwrap();
            assert_eq!(e.media_type, media, "{name}");
            assert_eq!((e.info.sent_width, e.info.sent_height), (64, 32));
        }
        let big = write(dir.path(), "big.png", 3000, 1000, ImageFormat::Png);
        let e = load_for_provider(&big, 1568).await.unwrap();
        assert_eq!((e.info.width, e.info.height), (3000, 1000));
        assert!(e.info.sent_width <= 1568 && e.info.sent_width >= 1500);
        let back = image::load_from_memory(&e.sent).unwrap();
        assert_eq!(back.width(), e.info.sent_width);
        let bad = dir.path().join("x.png");
        std::fs::write(&bad, b"not an image").unwrap();
        assert!(matches!(
            load_for_provider(&bad, 1568).await,
            Err(Error::Image { .. })
        ));
        assert!(
            load_for_provider(&dir.path().join("missing.png"), 1568)
                .await
                .is_err()
        );
    }
}
