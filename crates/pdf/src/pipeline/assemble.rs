//! Merging what the workers and OCR produced into the `PdfDocument` (per page: text layer, OCR
//! or both, in page order), and mapping a worker's reported error kind to a typed `PdfError`.

use std::path::Path;
use std::time::Instant;

use super::ms;
use super::ocr_pages::OcrRead;
use super::workers::Collected;
use crate::document::{PdfDocument, PdfPage, Stats, TextSource};
use crate::error::PdfError;
use crate::ocr::OcrText;
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

/// Mean word confidence (tesseract's, 0–100) below which OCR text is unreliable: the page is in
/// a language OCR was not given, or a picture. Measured on 137 OCR'd pages of other projects'
/// test PDFs: Chinese pages read as English 19–34, pictures 4–25, good scans 80–96 (median 87);
/// a map's place names 44.
const LOW_OCR_CONFIDENCE: f32 = 40.0;

/// A page's text from its layer and its OCR reading: the OCR text when the layer is unusable
/// (empty or garbage), else the one with more words — unless the OCR is unsure, which never
/// replaces a layer (Chinese read as English has more "words" than the Chinese it replaces) and
/// is said in a warning.
fn merge(
    page: u32,
    layer: String,
    reason: Option<&str>,
    ocr: OcrText,
) -> (String, TextSource, Option<String>) {
    let unsure = ocr
        .confidence
        .is_some_and(|c| c < LOW_OCR_CONFIDENCE && word_count(&ocr.text) >= 5);
    let layer_unusable =
        word_count(&layer) == 0 || reason.is_some_and(|r| r.starts_with("garbage"));
    let warning = unsure.then(|| {
        format!(
            "page {page}: OCR confidence {:.0} % is low: the page may be in a language OCR was \
             not given (the task's `languages`, `pdf.languages`) or hold no text; {}",
            ocr.confidence.unwrap_or_default(),
            if layer_unusable {
                "its OCR text is unreliable"
            } else {
                "its text layer is kept"
            }
        )
    });
    if layer_unusable {
        (ocr.text, TextSource::Ocr, warning)
    } else if !unsure && word_count(&ocr.text) > word_count(&layer) {
        (ocr.text, TextSource::Mixed, warning)
    } else {
        (layer, TextSource::Mixed, warning)
    }
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
            let warning;
            (text, source, warning) = merge(p.number, text, p.ocr_reason.as_deref(), o);
            warnings.extend(warning);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, confidence: f32) -> OcrText {
        OcrText {
            text: text.into(),
            confidence: Some(confidence),
        }
    }

    #[test]
    fn unsure_ocr_never_replaces_a_layer_and_says_so() {
        let layer = "关于浙江菲达环保科技股份有限公司 2015 年年度报告".to_string();
        let garbage = "ERAMNBHPRRAAR (RA) APRA) 2021 FRAAMAFMRLAL GER (AR A (ERAN";
        let (text, source, warning) = merge(3, layer.clone(), None, read(garbage, 30.3));
        assert_eq!((text.as_str(), source), (layer.as_str(), TextSource::Mixed));
        let w = warning.expect("a warning");
        assert!(
            w.starts_with("page 3: OCR confidence 30 % is low") && w.ends_with("kept"),
            "{w}"
        );
        // A sure reading with more words wins, without a warning.
        let good = "Support held at 4,200 twice this week and closed higher";
        assert_eq!(
            merge(1, "Support held".into(), None, read(good, 88.0)),
            (good.to_string(), TextSource::Mixed, None)
        );
        // No usable layer: the OCR text, however unsure, with the warning.
        let (text, source, warning) =
            merge(2, String::new(), Some("no text layer"), read(garbage, 19.0));
        assert_eq!((text.as_str(), source), (garbage, TextSource::Ocr));
        assert!(warning.is_some_and(|w| w.ends_with("unreliable")));
        // A picture OCR'd to a few marks is not worth a warning.
        assert_eq!(
            merge(4, String::new(), Some("no text layer"), read("~ ,", 4.0)).2,
            None
        );
    }
}
