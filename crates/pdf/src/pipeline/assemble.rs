//! Merging what the workers and OCR produced into the `PdfDocument` (per page: text layer, OCR
//! or both, in page order), and mapping a worker's reported error kind to a typed `PdfError`.

use std::path::Path;
use std::time::Instant;

use super::ms;
use super::ocr_pages::OcrRead;
use super::workers::Collected;
use crate::document::{PdfDocument, PdfPage, Stats, TextSource};
use crate::error::PdfError;
use crate::options::{OcrMode, PdfOptions};

pub(super) fn child_error(
    kind: &str,
    message: String,
    path: &Path,
    opts: &PdfOptions,
    stderr: String,
) -> PdfError {
    let path = path.to_path_buf();
    match kind {
        "password_required" => PdfError::PasswordRequired(path),
        "wrong_password" => PdfError::WrongPassword(path),
        "damaged" => PdfError::Damaged {
            path,
            detail: message,
        },
        "engine_missing" => PdfError::EngineMissing {
            path: opts.pdfium_lib.clone(),
            detail: message,
        },
        "invalid_request" => PdfError::InvalidRequest(message),
        "not_found" => PdfError::NotFound(path),
        "too_large" => PdfError::TooLarge(message),
        _ => PdfError::Child {
            detail: message,
            stderr,
        },
    }
}

fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

pub(super) fn assemble(
    doc_id: &str,
    path: &Path,
    mode: OcrMode,
    c: Collected,
    read: OcrRead,
    hash_ms: u64,
    t0: Instant,
) -> PdfDocument {
    let mut warnings = c.warnings;
    warnings.extend(
        read.errors
            .iter()
            .map(|e| format!("{e}; page keeps its text layer")),
    );
    let mut ocr = read.texts;
    let mut stats = Stats {
        hash_ms,
        open_ms: c.open_ms,
        ocr_ms: read.ms,
        workers: c.workers,
        ..Stats::default()
    };
    let mut images_seen = std::collections::HashSet::new();
    let mut pages = Vec::with_capacity(c.pages.len());
    let mut ordered = c.pages;
    ordered.sort_by_key(|p| p.number);
    for p in ordered {
        stats.text_ms += p.text_ms;
        stats.images_ms += p.images_ms;
        stats.render_ms += p.render_ms;
        stats.pages_processed += 1;
        warnings.extend(p.warnings);
        for img in &p.images {
            images_seen.insert(img.path.clone());
        }
        let mut text = p.text;
        let mut source = TextSource::Text;
        let mut confidence = None;
        if let Some(o) = ocr.remove(&p.number) {
            stats.pages_ocr += 1;
            confidence = o.confidence;
            let layer_unusable = word_count(&text) == 0
                || p.ocr_reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("garbage"));
            if layer_unusable {
                text = o.text;
                source = TextSource::Ocr;
            } else {
                source = TextSource::Mixed;
                if word_count(&o.text) > word_count(&text) {
                    text = o.text;
                }
            }
        } else if let Some(reason) = &p.ocr_reason
            && mode == OcrMode::Never
        {
            warnings.push(format!(
                "page {}: {reason}; OCR is off (ocr=\"never\")",
                p.number
            ));
        }
        pages.push(PdfPage {
            number: p.number,
            text,
            source,
            ocr_confidence: confidence,
            ocr_reason: p.ocr_reason,
            width: p.width,
            height: p.height,
            rotation: p.rotation,
            images: p.images,
        });
    }
    stats.images_saved = images_seen.len() as u32;
    let text = pages
        .iter()
        .map(|p| p.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    stats.total_ms = ms(t0.elapsed());
    PdfDocument {
        document_id: doc_id.to_string(),
        path: path.to_path_buf(),
        page_count: c.page_count,
        metadata: c.metadata,
        text,
        pages,
        warnings,
        stats,
    }
}
