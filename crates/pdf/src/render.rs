//! Page rendering for OCR (worker side): picks a DPI from the page's text size (`dpi_for_text`:
//! small print gets more pixels, headlines fewer) and then from the page size under pixel caps
//! so poster pages cannot explode, renders with PDFium (honouring /Rotate) in grayscale, and
//! writes a PNG carrying that DPI (`pHYs`, which tesseract reads) into the request's render
//! folder.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use pdfium_render::prelude::*;

use crate::protocol::{ChildRequest, Rendered};

/// Text size (points) the configured `ocr_dpi` is meant for: 10 pt at 300 dpi is an em of
/// ~42 px, where tesseract reads well; bigger text needs fewer pixels for the same em.
const REFERENCE_PT: f32 = 10.0;

/// The typical text size of a page (points): the median of its glyphs' font sizes, ignoring
/// implausible ones (zero-size or giant glyphs of broken text layers); `None` without text.
pub(crate) fn text_size(sizes: impl Iterator<Item = f32>) -> Option<f32> {
    let mut v: Vec<f32> = sizes
        .filter(|s| s.is_finite() && (2.0..=300.0).contains(s))
        .collect();
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
    Some(*m)
}

/// The DPI a page should be rendered at for OCR: `target` (the configured `ocr_dpi`) for text of
/// 10 pt and up and for pages without a text layer (scans: their text size is unknown), raised
/// for smaller text up to `target`·4/3 (400 dpi for the default 300): 8 pt → 375. Never below
/// `target`: a page is OCR'd because its text layer is wrong, and the sizes of a wrong layer
/// (invisible text under a scan, say) may not be those of the text in the image — lowering the
/// DPI on their word lost letters ("BUY" read as "BU" at 150 dpi).
pub(crate) fn dpi_for_text(target: u32, text_pt: Option<f32>) -> u32 {
    let target = target.max(1);
    let Some(pt) = text_pt.filter(|p| p.is_finite() && *p > 0.0) else {
        return target;
    };
    let (lo, hi) = (target, target * 4 / 3);
    let dpi = (target as f32 * REFERENCE_PT / pt).round() as u32;
    dpi.clamp(lo, hi)
}

/// The DPI used for a page of `w`×`h` points: `target`, lowered until the bitmap fits
/// `max_pixels` and `max_side` (fractional: huge pages may get well below 72).
pub(crate) fn choose_dpi(w_pt: f32, h_pt: f32, target: u32, max_pixels: u64, max_side: u32) -> f32 {
    let w_in = (w_pt / 72.0).max(0.01) as f64;
    let h_in = (h_pt / 72.0).max(0.01) as f64;
    let by_pixels = (max_pixels.max(1) as f64 / (w_in * h_in)).sqrt();
    let by_side = max_side.max(1) as f64 / w_in.max(h_in);
    (target.max(1) as f64).min(by_pixels).min(by_side) as f32
}

/// Renders page `number` for OCR at the DPI its text size (`text_pt`, see [`text_size`]) asks
/// for, within the request's pixel caps.
pub(crate) fn render_page(
    page: &PdfPage,
    number: u32,
    req: &ChildRequest,
    text_pt: Option<f32>,
) -> Result<Rendered, String> {
    let (w_pt, h_pt) = (page.width().value, page.height().value);
    let dpi = choose_dpi(
        w_pt,
        h_pt,
        dpi_for_text(req.ocr_dpi, text_pt),
        req.max_render_pixels,
        req.max_render_side,
    );
    let w_px = ((w_pt / 72.0) * dpi).floor().max(1.0) as i32;
    let h_px = ((h_pt / 72.0) * dpi).floor().max(1.0) as i32;
    let config = PdfRenderConfig::new()
        .set_target_width(w_px)
        .set_maximum_height(h_px + 1)
        .render_form_data(true)
        .render_annotations(true)
        .use_grayscale_rendering(true);
    let bitmap = page
        .render_with_config(&config)
        .map_err(|e| format!("PDFium could not render {w_px}x{h_px} px ({e:?})"))?;
    let gray = bitmap
        .as_image()
        .map_err(|e| format!("{e:?}"))?
        .into_luma8();
    let path = req.render_dir.join(format!("page-{number:05}.png"));
    let dpi = dpi.round().max(1.0) as u32;
    write_png(&path, gray.as_raw(), gray.width(), gray.height(), dpi)?;
    Ok(Rendered {
        path,
        dpi,
        width: gray.width(),
        height: gray.height(),
    })
}

/// Writes 8-bit grayscale `pixels` as a PNG whose `pHYs` chunk says `dpi` (tesseract takes the
/// page's resolution from it; each page may have its own).
pub(crate) fn write_png(
    path: &Path,
    pixels: &[u8],
    width: u32,
    height: u32,
    dpi: u32,
) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    // Pixels per metre, as PNG stores resolution.
    let ppm = (f64::from(dpi) / 0.0254).round() as u32;
    enc.set_pixel_dims(Some(png::PixelDimensions {
        xppu: ppm,
        yppu: ppm,
        unit: png::Unit::Meter,
    }));
    let mut w = enc.write_header().map_err(|e| e.to_string())?;
    w.write_image_data(pixels).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())
}

/// Writes `path` turned `degrees` (90, 180, 270) clockwise as `<path>.upright.png`, same DPI:
/// a page scanned sideways or upside down, for a second OCR pass.
pub(crate) fn rotate_png(path: &Path, degrees: u32) -> Result<std::path::PathBuf, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .map_err(|e| e.to_string())?;
    // One decode: the DPI and the pixels of what `write_png` wrote (8-bit grayscale).
    let dpi = reader.info().pixel_dims.map_or(300, |d| {
        (f64::from(d.xppu) * 0.0254).round().max(1.0) as u32
    });
    if reader.output_color_type() != (png::ColorType::Grayscale, png::BitDepth::Eight) {
        return Err(format!(
            "{} is not an 8-bit grayscale render",
            path.display()
        ));
    }
    let mut pixels = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let frame = reader.next_frame(&mut pixels).map_err(|e| e.to_string())?;
    pixels.truncate(frame.buffer_size());
    let gray = image::GrayImage::from_raw(frame.width, frame.height, pixels)
        .ok_or_else(|| format!("{}: short pixel data", path.display()))?;
    let turned = match degrees {
        90 => image::imageops::rotate90(&gray),
        180 => image::imageops::rotate180(&gray),
        270 => image::imageops::rotate270(&gray),
        _ => return Err(format!("cannot turn a page by {degrees} degrees")),
    };
    let out = path.with_extension("upright.png");
    write_png(&out, turned.as_raw(), turned.width(), turned.height(), dpi)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpi_caps() {
        // Letter at 300 dpi fits the default caps.
        assert_eq!(choose_dpi(612.0, 792.0, 300, 25_000_000, 8000), 300.0);
        // A 2 m poster and an absurd page are scaled down to fit both caps.
        for (w_pt, h_pt) in [(5669.0, 4000.0), (1e6, 1e6)] {
            let dpi = choose_dpi(w_pt, h_pt, 300, 25_000_000, 8000);
            let (w, h) = (w_pt / 72.0 * dpi, h_pt / 72.0 * dpi);
            assert!(w * h <= 25_000_001.0 && w <= 8000.01, "{dpi}");
        }
    }

    #[test]
    fn dpi_follows_text_size() {
        // No text layer (a scan): the configured DPI.
        assert_eq!(dpi_for_text(300, None), 300);
        assert_eq!(dpi_for_text(300, Some(10.0)), 300);
        assert_eq!(dpi_for_text(300, Some(12.0)), 300);
        assert_eq!(dpi_for_text(300, Some(8.0)), 375);
        // Clamped to 300..=400 for the default 300: large text never lowers it.
        assert_eq!(dpi_for_text(300, Some(24.0)), 300);
        assert_eq!(dpi_for_text(300, Some(72.0)), 300);
        assert_eq!(dpi_for_text(300, Some(4.0)), 400);
        // The bounds follow the configured DPI.
        assert_eq!(dpi_for_text(200, Some(40.0)), 200);
        assert_eq!(dpi_for_text(200, Some(5.0)), 266);
        assert_eq!(dpi_for_text(200, Some(10.0)), 200);
        assert_eq!(dpi_for_text(300, Some(f32::NAN)), 300);
    }

    #[test]
    fn text_size_is_the_median_of_plausible_sizes() {
        assert_eq!(text_size([].into_iter()), None);
        assert_eq!(text_size([0.0, 1000.0, f32::NAN].into_iter()), None);
        // Body text outweighs a title and footnotes; zero-size glyphs are ignored.
        let sizes = [10.0, 10.0, 10.0, 24.0, 7.0, 0.0, 0.0, 0.0, 10.0];
        assert_eq!(text_size(sizes.into_iter()), Some(10.0));
    }

    #[test]
    fn png_carries_the_dpi() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        write_png(&path, &[255u8; 12], 4, 3, 250).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(File::open(&path).unwrap()));
        let reader = dec.read_info().unwrap();
        let dims = reader.info().pixel_dims.unwrap();
        assert_eq!(dims.unit, png::Unit::Meter);
        assert_eq!((f64::from(dims.xppu) * 0.0254).round(), 250.0);
        assert_eq!((reader.info().width, reader.info().height), (4, 3));
    }
}
