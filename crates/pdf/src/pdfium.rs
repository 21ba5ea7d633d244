//! PDFium work inside the worker process: open the document (passwords, damage), read metadata,
//! and per page collect positioned glyphs for `layout`, the signals for `triage`, embedded
//! images (`images`) and an OCR render (`render`). Runs only in the child; never in the parent.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

use pdfium_render::prelude::*;

use crate::document::Metadata;
use crate::error::{PdfError, Result};
use crate::layout::{self, Glyph};
use crate::options::{OcrMode, PageSelection};
use crate::protocol::{ChildEvent, ChildPage, ChildRequest, Opened};
use crate::triage::{self, PageSignals};
use crate::{images, render};

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// Loads and initialises libpdfium (once per worker process, before the request arrives).
pub(crate) fn bind(lib: &Path) -> Result<Pdfium> {
    let bindings = Pdfium::bind_to_library(lib).map_err(|e| PdfError::EngineMissing {
        path: lib.to_path_buf(),
        // The loader's own sentence ("…: cannot open shared object file"), not a debug dump.
        detail: match e {
            PdfiumError::LoadLibraryError(l) => l.to_string(),
            other => other.to_string(),
        },
    })?;
    Ok(Pdfium::new(bindings))
}

/// Opens the document and streams one `Page` event per selected page through `emit`, then
/// closes it: the worker process serves many documents, so nothing may be kept or leaked.
pub(crate) fn run(
    pdfium: &Pdfium,
    req: &ChildRequest,
    emit: &mut dyn FnMut(ChildEvent),
) -> Result<()> {
    let t_open = Instant::now();
    let doc = open(pdfium, req)?;
    let page_count = doc.pages().len() as u32;
    if page_count == 0 {
        return Err(PdfError::Damaged {
            path: req.pdf_path.clone(),
            detail: "no pages could be recovered".into(),
        });
    }
    if req.max_pages > 0 && page_count > req.max_pages {
        return Err(PdfError::TooLarge(format!(
            "the document has {page_count} pages; the limit is {} (pdf.max_pages)",
            req.max_pages
        )));
    }
    let selection = req
        .pages
        .clone()
        .unwrap_or(PageSelection::Spec("1-".into()));
    let (pages, missing) = selection.resolve(page_count)?;
    let mut warnings = Vec::new();
    if !missing.is_empty() {
        warnings.push(format!(
            "requested pages {missing:?} do not exist (document has {page_count})"
        ));
    }
    if pages.is_empty() {
        return Err(PdfError::InvalidRequest(format!(
            "no requested page exists (document has {page_count} pages)"
        )));
    }
    // Worker k of n takes every n-th selected page; only worker 0 reports document warnings.
    // A lone worker splits a document with enough pages itself: the parent only learns the
    // page count from `Opened` and then starts the other shards.
    let (k, mut n) = (req.shard.0 as usize, req.shard.1.max(1) as usize);
    let split_min = req.split_min_pages as usize;
    if n == 1 && req.split_into > 1 && split_min > 0 && pages.len() >= split_min {
        n = (req.split_into as usize).min(pages.len());
    }
    let selected = pages.len() as u32;
    let pages: Vec<u32> = pages.into_iter().skip(k).step_by(n).collect();
    if k > 0 {
        warnings.clear();
    }
    emit(ChildEvent::Opened(Box::new(Opened {
        page_count,
        selected,
        shards: n as u32,
        pages: pages.clone(),
        metadata: metadata(&doc),
        open_ms: ms(t_open),
        warnings,
    })));
    let mut saver = images::Saver::new(&req.image_dir, req.min_image_side);
    for number in pages {
        let result = catch_unwind(AssertUnwindSafe(|| page(&doc, number, req, &mut saver)));
        let page = match result {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => failed_page(number, format!("page {number} could not be read: {e}")),
            Err(_) => failed_page(number, format!("page {number}: PDF engine panicked")),
        };
        emit(ChildEvent::Page(Box::new(page)));
    }
    drop(saver);
    drop(doc);
    Ok(())
}

/// Files up to this size are read into memory with one read; PDFium reads bigger ones on
/// demand (through many small seek + read calls, which cost more than the parsing of a small
/// file).
const READ_WHOLE_MAX: u64 = 64 << 20;

fn open<'a>(pdfium: &'a Pdfium, req: &ChildRequest) -> Result<PdfDocument<'a>> {
    let path = &req.pdf_path;
    let password = req.password.as_deref();
    let small = std::fs::metadata(path).is_ok_and(|m| m.len() <= READ_WHOLE_MAX);
    let doc = if small {
        std::fs::read(path)
            .map_err(PdfiumError::IoError)
            .and_then(|bytes| pdfium.load_pdf_from_byte_vec(bytes, password))
    } else {
        pdfium.load_pdf_from_file(path, password)
    };
    doc.map_err(|e| open_error(path, password.is_some(), e))
}

fn failed_page(number: u32, warning: String) -> ChildPage {
    ChildPage {
        number,
        text: String::new(),
        width: 0.0,
        height: 0.0,
        rotation: 0,
        ocr_reason: None,
        render: None,
        images: Vec::new(),
        warnings: vec![warning],
        text_ms: 0,
        images_ms: 0,
        render_ms: 0,
    }
}

fn open_error(path: &Path, had_password: bool, e: PdfiumError) -> PdfError {
    match e {
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::PasswordError) => {
            if had_password {
                PdfError::WrongPassword(path.to_path_buf())
            } else {
                PdfError::PasswordRequired(path.to_path_buf())
            }
        }
        PdfiumError::IoError(io) => PdfError::io(path, io),
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::SecurityError) => {
            PdfError::Damaged {
                path: path.to_path_buf(),
                detail: "unsupported security handler".into(),
            }
        }
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::FormatError) => {
            PdfError::Damaged {
                path: path.to_path_buf(),
                detail: "PDFium cannot parse or repair it (no usable trailer/xref)".into(),
            }
        }
        other => PdfError::Damaged {
            path: path.to_path_buf(),
            detail: format!("PDFium cannot open it ({other:?})"),
        },
    }
}

fn metadata(doc: &PdfDocument) -> Metadata {
    let meta = doc.metadata();
    let get = |t| {
        meta.get(t)
            .map(|tag| tag.value().trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Metadata {
        title: get(PdfDocumentMetadataTagType::Title),
        author: get(PdfDocumentMetadataTagType::Author),
        subject: get(PdfDocumentMetadataTagType::Subject),
        keywords: get(PdfDocumentMetadataTagType::Keywords),
        creator: get(PdfDocumentMetadataTagType::Creator),
        producer: get(PdfDocumentMetadataTagType::Producer),
        creation_date: get(PdfDocumentMetadataTagType::CreationDate).map(|d| pdf_date(&d)),
        modification_date: get(PdfDocumentMetadataTagType::ModificationDate).map(|d| pdf_date(&d)),
    }
}

/// `D:20200806083000-04'00'` → `2020-08-06T08:30:00-04:00`; anything unparseable is kept as is.
pub(crate) fn pdf_date(raw: &str) -> String {
    let s = raw.trim().trim_start_matches("D:");
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() < 4 {
        return raw.to_string();
    }
    let part = |a: usize, b: usize, dflt: &str| digits.get(a..b).unwrap_or(dflt).to_string();
    let mut out = format!(
        "{}-{}-{}T{}:{}:{}",
        part(0, 4, "0000"),
        part(4, 6, "01"),
        part(6, 8, "01"),
        part(8, 10, "00"),
        part(10, 12, "00"),
        part(12, 14, "00")
    );
    let rest = &s[digits.len()..];
    match rest.chars().next() {
        Some('Z') => out.push('Z'),
        Some(sign @ ('+' | '-')) => {
            let tz: String = rest[1..].chars().filter(|c| c.is_ascii_digit()).collect();
            if tz.len() >= 2 {
                let mm = tz.get(2..4).unwrap_or("00");
                out.push_str(&format!("{sign}{}:{mm}", &tz[..2]));
            }
        }
        _ => {}
    }
    out
}

/// Filled form fields, FreeText comments and stamps are drawn by annotation appearance streams,
/// not the page's content, so PDFium's text page never sees them: a filled form read as its empty
/// labels. A page with such annotations has them flattened into its content (in memory; nothing
/// is saved), so its text, images and OCR render hold what a viewer shows. Links, popups and
/// markup (highlights, notes) carry no page text and leave the page as it is.
fn flatten_annotations(page: &mut PdfPage) -> std::result::Result<(), PdfiumError> {
    let drawn_text = page.annotations().iter().any(|a| {
        matches!(
            a.annotation_type(),
            PdfPageAnnotationType::Widget
                | PdfPageAnnotationType::XfaWidget
                | PdfPageAnnotationType::FreeText
                | PdfPageAnnotationType::Stamp
                | PdfPageAnnotationType::Watermark
        )
    });
    if drawn_text { page.flatten() } else { Ok(()) }
}

fn rotation_degrees(page: &PdfPage) -> u32 {
    match page.rotation() {
        Ok(PdfPageRenderRotation::Degrees90) => 90,
        Ok(PdfPageRenderRotation::Degrees180) => 180,
        Ok(PdfPageRenderRotation::Degrees270) => 270,
        _ => 0,
    }
}

/// A glyph in PDF user space (y up) before the page rotation is applied.
struct RawGlyph {
    ch: char,
    l: f32,
    b: f32,
    r: f32,
    t: f32,
    size: f32,
    /// Direction bucket of the glyph (0, 90, 180, 270 degrees, counter-clockwise).
    dir: u32,
}

/// Maps a user-space box to display space (y down) for a page shown rotated by `rot` degrees
/// clockwise. Offsets do not matter to `layout`, only relative positions.
fn to_display(g: &RawGlyph, rot: u32) -> Glyph {
    let map = |x: f32, y: f32| match rot {
        90 => (y, x),
        180 => (-x, y),
        270 => (-y, -x),
        _ => (x, -y),
    };
    let (ax, ay) = map(g.l, g.b);
    let (bx, by) = map(g.r, g.t);
    Glyph {
        ch: g.ch,
        x0: ax.min(bx),
        y0: ay.min(by),
        x1: ax.max(bx),
        y1: ay.max(by),
        size: g.size,
    }
}

/// Share of consecutive glyph pairs that advance left-to-right on one line under `rot`.
fn horizontality(raw: &[RawGlyph], rot: u32) -> f32 {
    // Pairwise over the non-blank glyphs, without collecting them (this runs on every page).
    let mut prev: Option<Glyph> = None;
    let (mut pairs, mut good) = (0usize, 0usize);
    for g in raw.iter().filter(|g| !g.ch.is_whitespace()) {
        let cur = to_display(g, rot);
        if let Some(p) = &prev {
            let dx = (cur.x0 + cur.x1 - p.x0 - p.x1) / 2.0;
            let dy = (cur.y0 + cur.y1 - p.y0 - p.y1) / 2.0;
            pairs += 1;
            if dx > 0.0 && dy.abs() < 0.3 * p.size.max(1.0) {
                good += 1;
            }
        }
        prev = Some(cur);
    }
    if pairs == 0 {
        return 1.0;
    }
    good as f32 / pairs as f32
}

/// Lays out the glyphs of each writing direction separately: the main body first, then text
/// running another way (margin notes printed sideways) as its own blocks.
fn directional_text(raw: Vec<RawGlyph>, rotation: u32) -> String {
    let mut by_dir: Vec<(u32, Vec<RawGlyph>)> = Vec::new();
    for g in raw {
        match by_dir.iter_mut().find(|(d, _)| *d == g.dir) {
            Some((_, v)) => v.push(g),
            None => by_dir.push((g.dir, vec![g])),
        }
    }
    by_dir.sort_by_key(|(_, v)| {
        std::cmp::Reverse(v.iter().filter(|g| !g.ch.is_whitespace()).count())
    });
    let mut parts = Vec::new();
    for (k, (_, glyphs)) in by_dir.iter().enumerate() {
        // Honour /Rotate for the body, but trust the glyphs if they read better another way.
        let mut rot = if k == 0 { rotation } else { 0 };
        let mut best = horizontality(glyphs, rot);
        if best < 0.5 {
            for cand in [0, 90, 180, 270] {
                let h = horizontality(glyphs, cand);
                if h > best + 0.2 {
                    (rot, best) = (cand, h);
                }
            }
        }
        let display: Vec<Glyph> = glyphs.iter().map(|g| to_display(g, rot)).collect();
        let text = layout::page_text(&display);
        if !text.is_empty() {
            parts.push(text);
        }
    }
    parts.join("\n\n")
}

fn glyphs(text: &PdfPageText) -> (Vec<RawGlyph>, PageSignals) {
    let chars = text.chars();
    let mut out = Vec::with_capacity(chars.len());
    let mut signals = PageSignals::default();
    for c in chars.iter() {
        let code = c.unicode_value();
        let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
        if ch == '\r' || ch == '\n' {
            continue;
        }
        if !ch.is_whitespace() {
            signals.chars += 1;
            if code == 0 || triage::is_bad_char(ch) {
                signals.bad_chars += 1;
            }
        }
        let Ok(rect) = c.loose_bounds().or_else(|_| c.tight_bounds()) else {
            continue;
        };
        // One matrix read serves both the effective font size (`scaled_font_size` is the font
        // size times the matrix's vertical scale) and the direction (`angle_degrees` is
        // atan2(c, a) of the same matrix, in [0°, 360°)); each would fetch it again. Checked
        // equal on every glyph of the corpus.
        let m = c.matrix().ok();
        let size = c.unscaled_font_size().value * m.as_ref().map_or(0.0, |m| m.d());
        let angle = m.map_or(0.0, |m| {
            let r = m.c().atan2(m.a());
            if r < 0.0 {
                r + std::f32::consts::TAU
            } else {
                r
            }
            .to_degrees()
        });
        let dir = if angle.is_finite() {
            ((angle / 90.0).round() as i64).rem_euclid(4) as u32 * 90
        } else {
            0
        };
        out.push(RawGlyph {
            dir,
            ch,
            l: rect.left().value,
            b: rect.bottom().value,
            r: rect.right().value,
            t: rect.top().value,
            size,
        });
    }
    (out, signals)
}

fn page(
    doc: &PdfDocument,
    number: u32,
    req: &ChildRequest,
    saver: &mut images::Saver,
) -> Result<ChildPage> {
    let damaged = |e: PdfiumError| PdfError::Damaged {
        path: req.pdf_path.clone(),
        detail: format!("page {number}: {e:?}"),
    };
    let t_text = Instant::now();
    let mut page = doc
        .pages()
        .get((number - 1) as PdfPageIndex)
        .map_err(damaged)?;
    // Nothing is ever saved, so nothing needs the page's content stream rewritten. With
    // pdfium-render's default, every image read for its soft mask (`get_processed_image` moves
    // the object's matrix and back) regenerated the whole page's content, twice: quadratic in
    // the page's objects — a 65-page scan with a few hundred images took minutes.
    page.set_content_regeneration_strategy(PdfPageContentRegenerationStrategy::Manual);
    let mut warnings = Vec::new();
    if let Err(e) = flatten_annotations(&mut page) {
        warnings.push(format!(
            "page {number}: form fields and annotations could not be read ({e:?})"
        ));
    }
    let rotation = rotation_degrees(&page);
    let (width, height) = (page.width().value, page.height().value);
    let (raw, mut signals) = match page.text() {
        Ok(t) => glyphs(&t),
        Err(e) => {
            warnings.push(format!("page {number}: no text layer readable ({e:?})"));
            (Vec::new(), PageSignals::default())
        }
    };
    // The text size picks the OCR render's DPI (`render::dpi_for_text`).
    let text_pt = (req.ocr != OcrMode::Never)
        .then(|| render::text_size(raw.iter().map(|g| g.size)))
        .flatten();
    let text = directional_text(raw, rotation);
    let text_ms = ms(t_text);

    let t_images = Instant::now();
    // Without extraction the object walk only feeds triage, which uses it for thin pages only.
    let scan = if req.extract_images || triage::uses_page_objects(&signals) {
        images::scan_page(doc, &page, width * height, req.extract_images, saver)
    } else {
        images::PageScan::default()
    };
    warnings.extend(scan.warnings);
    signals.image_cover = scan.largest_cover;
    signals.objects = scan.objects;
    signals.text_objects = scan.text_objects;
    let images_ms = ms(t_images);

    let ocr_reason = triage::ocr_reason(req.ocr, &signals, &text);
    let t_render = Instant::now();
    let mut render = None;
    if ocr_reason.is_some() && req.ocr != OcrMode::Never {
        match render::render_page(&page, number, req, text_pt) {
            Ok(r) => render = Some(r),
            Err(e) => warnings.push(format!("page {number}: cannot render for OCR: {e}")),
        }
    }
    Ok(ChildPage {
        number,
        text,
        width,
        height,
        rotation,
        ocr_reason,
        render,
        images: scan.images,
        warnings,
        text_ms,
        images_ms,
        render_ms: ms(t_render),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_dates() {
        assert_eq!(
            pdf_date("D:20200806083000-04'00'"),
            "2020-08-06T08:30:00-04:00"
        );
        assert_eq!(pdf_date("D:20170224Z"), "2017-02-24T00:00:00Z");
        assert_eq!(pdf_date("garbage"), "garbage");
    }

    #[test]
    fn rotation_maps_reading_direction() {
        // Text running up the page in user space reads left-to-right on a page shown at 90°.
        let raw: Vec<RawGlyph> = (0..5)
            .map(|i| RawGlyph {
                ch: 'a',
                l: 100.0,
                b: 100.0 + i as f32 * 6.0,
                r: 110.0,
                t: 106.0 + i as f32 * 6.0,
                size: 10.0,
                dir: 90,
            })
            .collect();
        assert!(horizontality(&raw, 90) > 0.9);
        assert!(horizontality(&raw, 0) < 0.1);
    }
}
