//! Embedded images of a page (worker side): walks page objects (into form XObjects), measures
//! how much of the page the largest image covers (for triage), and saves each distinct image
//! once under the document's cache folder — original JPEG bytes when the stream is plain DCT
//! in RGB/gray, otherwise PDFium's decoded bitmap (JBIG2, CCITT, JPX, Flate, CMYK→RGB) as PNG.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat};
use pdfium_render::prelude::*;
use sha2::{Digest, Sha256};

use crate::document::PdfImage;

/// Saves images once per document, keyed by the hash of the saved bytes.
pub(crate) struct Saver {
    dir: PathBuf,
    min_side: u32,
    saved: HashMap<String, PathBuf>,
}

impl Saver {
    pub(crate) fn new(dir: &Path, min_side: u32) -> Self {
        Saver {
            dir: dir.to_path_buf(),
            min_side,
            saved: HashMap::new(),
        }
    }

    fn save(&mut self, bytes: &[u8], ext: &str) -> std::io::Result<(PathBuf, String)> {
        let sha = hex::encode(Sha256::digest(bytes));
        if let Some(p) = self.saved.get(&sha) {
            return Ok((p.clone(), sha));
        }
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{}.{ext}", &sha[..24]));
        if !path.exists() {
            // Several workers may save the same image at once: private temp name, atomic rename.
            let tmp = self
                .dir
                .join(format!(".{}.{}.tmp", &sha[..24], std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
        self.saved.insert(sha.clone(), path.clone());
        Ok((path, sha))
    }
}

/// What one page's objects showed.
#[derive(Default)]
pub(crate) struct PageScan {
    pub images: Vec<PdfImage>,
    pub objects: usize,
    pub text_objects: usize,
    pub largest_cover: f32,
    pub warnings: Vec<String>,
}

pub(crate) fn scan_page(
    doc: &PdfDocument,
    page: &PdfPage,
    page_area: f32,
    extract: bool,
    saver: &mut Saver,
) -> PageScan {
    let mut scan = PageScan::default();
    let mut ctx = Ctx {
        doc,
        page_area: page_area.max(1.0),
        extract,
        saver,
        scan: &mut scan,
        depth: 0,
        visits: 0,
    };
    for obj in page.objects().iter() {
        ctx.visit(&obj);
    }
    scan
}

struct Ctx<'s, 'd> {
    doc: &'s PdfDocument<'d>,
    page_area: f32,
    extract: bool,
    saver: &'s mut Saver,
    scan: &'s mut PageScan,
    depth: usize,
    /// Objects visited, forms included (the work cap).
    visits: usize,
}

impl Ctx<'_, '_> {
    fn visit(&mut self, obj: &PdfPageObject) {
        self.visits += 1;
        // Cap work on pathological pages (millions of objects) and nesting.
        if self.visits > 200_000 || self.depth > 8 {
            return;
        }
        if let Some(form) = obj.as_x_object_form_object() {
            self.depth += 1;
            for child in form.iter() {
                self.visit(&child);
            }
            self.depth -= 1;
            return;
        }
        // A form is only a container: an empty one (an unfilled form field's appearance,
        // flattened in) draws nothing and must not make a blank page look like a scan.
        self.scan.objects += 1;
        let Some(img) = obj.as_image_object() else {
            self.scan.text_objects += usize::from(obj.object_type() == PdfPageObjectType::Text);
            return;
        };
        let bbox = obj
            .bounds()
            .map(|q| {
                let r = q.to_rect();
                [
                    r.left().value,
                    r.bottom().value,
                    r.right().value,
                    r.top().value,
                ]
            })
            .unwrap_or([0.0; 4]);
        let area = ((bbox[2] - bbox[0]) * (bbox[3] - bbox[1])).abs();
        self.scan.largest_cover = self
            .scan
            .largest_cover
            .max((area / self.page_area).min(1.0));
        if !self.extract {
            return;
        }
        let (w, h) = match (img.width(), img.height()) {
            (Ok(w), Ok(h)) => (w.max(0) as u32, h.max(0) as u32),
            _ => (0, 0),
        };
        if w < self.saver.min_side || h < self.saver.min_side {
            return;
        }
        match self.save(img, w, h) {
            Ok((path, format, sha256)) => self.scan.images.push(PdfImage {
                path,
                width: w,
                height: h,
                format,
                bbox,
                sha256,
            }),
            Err(e) => self
                .scan
                .warnings
                .push(format!("image {w}x{h} could not be extracted: {e}")),
        }
    }

    fn save(
        &mut self,
        img: &PdfPageImageObject,
        w: u32,
        h: u32,
    ) -> Result<(PathBuf, String, String), String> {
        let filters: Vec<String> = img.filters().iter().map(|f| f.name().to_string()).collect();
        let cmyk = matches!(img.color_space(), Ok(PdfColorSpace::DeviceCMYK))
            || img.bits_per_pixel().is_ok_and(|b| b == 32);
        let is_dct = |f: &str| f == "DCTDecode" || f == "DCT";
        if filters.last().is_some_and(|f| is_dct(f)) && !cmyk {
            let raw = img.get_raw_image_data().map_err(|e| format!("{e:?}"))?;
            // Text encodings in front of DCT are undone here; anything else (Flate) is left
            // to PDFium's decoder below.
            let data = filters[..filters.len() - 1]
                .iter()
                .try_fold(raw, |data, f| match f.as_str() {
                    "ASCII85Decode" | "A85" => ascii85(&data),
                    "ASCIIHexDecode" | "AHx" => ascii_hex(&data),
                    _ => None,
                })
                .unwrap_or_default();
            if data.starts_with(&[0xFF, 0xD8]) {
                let (p, sha) = self.saver.save(&data, "jpg").map_err(|e| e.to_string())?;
                return Ok((p, "jpeg".into(), sha));
            }
        }
        let mut decoded = normalise(img.get_raw_image().map_err(|e| format!("{e:?}"))?);
        // A soft mask (alpha) is only applied by PDFium's rendered variant: use it when it has
        // the stored size and really carries transparency.
        if let Ok(rendered) = img.get_processed_image(self.doc) {
            let rendered = normalise(rendered);
            if rendered.color().has_alpha()
                && (rendered.width(), rendered.height()) == (decoded.width(), decoded.height())
            {
                decoded = rendered;
            }
        }
        if decoded.width() != w || decoded.height() != h {
            tracing::debug!(w, h, got_w = decoded.width(), "decoded size differs");
        }
        let mut png = Vec::new();
        decoded
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .map_err(|e| e.to_string())?;
        let (p, sha) = self.saver.save(&png, "png").map_err(|e| e.to_string())?;
        Ok((p, "png".into(), sha))
    }
}

/// ASCII85 (PDF flavour: optional `<~`, `z` for four zero bytes, `~>` end).
fn ascii85(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 4 / 5);
    let mut group = [0u8; 5];
    let mut n = 0;
    let body = data.strip_prefix(b"<~").unwrap_or(data);
    for &c in body {
        match c {
            b'~' => break,
            b'z' if n == 0 => out.extend_from_slice(&[0; 4]),
            b'!'..=b'u' => {
                group[n] = c - b'!';
                n += 1;
                if n == 5 {
                    let v = group.iter().fold(0u64, |acc, &d| acc * 85 + d as u64);
                    out.extend_from_slice(&(u32::try_from(v).ok()?).to_be_bytes());
                    n = 0;
                }
            }
            c if c.is_ascii_whitespace() => {}
            _ => return None,
        }
    }
    if n == 1 {
        return None;
    }
    if n > 0 {
        for d in group.iter_mut().skip(n) {
            *d = 84;
        }
        let v = group.iter().fold(0u64, |acc, &d| acc * 85 + d as u64);
        let bytes = (u32::try_from(v).ok()?).to_be_bytes();
        out.extend_from_slice(&bytes[..n - 1]);
    }
    Some(out)
}

/// ASCIIHex (`>` ends the data; an odd final digit is padded with 0).
fn ascii_hex(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut hi: Option<u8> = None;
    for &c in data {
        if c == b'>' {
            break;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        let v = (c as char).to_digit(16)? as u8;
        match hi.take() {
            None => hi = Some(v),
            Some(h) => out.push(h << 4 | v),
        }
    }
    if let Some(h) = hi {
        out.push(h << 4);
    }
    Some(out)
}

/// Drops an alpha channel that is fully opaque (PDFium hands out BGRx as RGBA).
fn normalise(img: DynamicImage) -> DynamicImage {
    match img {
        DynamicImage::ImageRgba8(rgba) => {
            if rgba.pixels().all(|p| p.0[3] == 255) {
                DynamicImage::ImageRgba8(rgba).into_rgb8().into()
            } else {
                DynamicImage::ImageRgba8(rgba)
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_decoders() {
        assert_eq!(ascii85(b"87cURD]i,\"Ebo80~>").unwrap(), b"Hello World!");
        assert_eq!(ascii85(b"<~z~>").unwrap(), vec![0; 4]);
        assert!(ascii85(b"\x7f").is_none());
        assert_eq!(ascii_hex(b"48 65 6C6c 6>").unwrap(), b"Hell`");
        assert!(ascii_hex(b"zz").is_none());
    }
}
