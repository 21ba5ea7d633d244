//! Page rendering for OCR (worker side): picks a DPI from the page size under pixel caps so
//! poster pages cannot explode, renders with PDFium (honouring /Rotate) in grayscale, and
//! writes a PNG into the request's render folder.

use std::fs::File;
use std::io::BufWriter;

use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use pdfium_render::prelude::*;

use crate::protocol::{ChildRequest, Rendered};

/// The DPI used for a page of `w`×`h` points: `target`, lowered until the bitmap fits
/// `max_pixels` and `max_side` (fractional: huge pages may get well below 72).
pub(crate) fn choose_dpi(w_pt: f32, h_pt: f32, target: u32, max_pixels: u64, max_side: u32) -> f32 {
    let w_in = (w_pt / 72.0).max(0.01) as f64;
    let h_in = (h_pt / 72.0).max(0.01) as f64;
    let by_pixels = (max_pixels.max(1) as f64 / (w_in * h_in)).sqrt();
    let by_side = max_side.max(1) as f64 / w_in.max(h_in);
    (target.max(1) as f64).min(by_pixels).min(by_side) as f32
}

pub(crate) fn render_page(
    page: &PdfPage,
    number: u32,
    req: &ChildRequest,
) -> Result<Rendered, String> {
    let (w_pt, h_pt) = (page.width().value, page.height().value);
    let dpi = choose_dpi(
        w_pt,
        h_pt,
        req.ocr_dpi,
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
    let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let enc =
        PngEncoder::new_with_quality(BufWriter::new(file), CompressionType::Fast, FilterType::Sub);
    enc.write_image(
        gray.as_raw(),
        gray.width(),
        gray.height(),
        image::ExtendedColorType::L8,
    )
    .map_err(|e| e.to_string())?;
    Ok(Rendered {
        path,
        dpi: dpi.round().max(1.0) as u32,
        width: gray.width(),
        height: gray.height(),
    })
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
}
