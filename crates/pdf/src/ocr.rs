//! OCR of one rendered page with the `tesseract` CLI (one thread per process:
//! `OMP_THREAD_LIMIT=1`; the parallelism comes from running pages side by side), returning the
//! text and the mean word confidence parsed from tesseract's TSV output.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::{PdfError, Result};
use crate::subprocess::{self, Spec};

/// Text and mean word confidence (0–100) of one OCR'd page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OcrText {
    pub text: String,
    pub confidence: Option<f32>,
}

pub(crate) struct OcrJob<'a> {
    pub tesseract: &'a Path,
    pub image: &'a Path,
    pub languages: &'a str,
    pub dpi: u32,
    pub page: u32,
    pub timeout: Duration,
}

/// Runs tesseract on `job.image`, writing `<image>.txt` and `<image>.tsv` next to it.
pub(crate) async fn recognise(job: OcrJob<'_>, cancel: &CancellationToken) -> Result<OcrText> {
    let base = job.image.with_extension("ocr");
    let spec = Spec {
        program: job.tesseract.to_path_buf(),
        args: vec![
            job.image.as_os_str().to_owned(),
            base.as_os_str().to_owned(),
            "-l".into(),
            job.languages.into(),
            "--dpi".into(),
            job.dpi.to_string().into(),
            "--psm".into(),
            "3".into(),
            "txt".into(),
            "tsv".into(),
        ],
        env: vec![("OMP_THREAD_LIMIT".into(), "1".into())],
        stdin: None,
        timeout: job.timeout,
        what: format!("OCR of page {}", job.page),
    };
    let done = subprocess::run(spec, cancel, None).await?;
    if !done.status.success() {
        return Err(PdfError::Ocr {
            page: job.page,
            detail: format!("tesseract exited with {}: {}", done.status, done.stderr),
        });
    }
    let read = |ext: &str| {
        let mut p = base.clone().into_os_string();
        p.push(".");
        p.push(ext);
        let p = std::path::PathBuf::from(p);
        std::fs::read_to_string(&p).map_err(|e| PdfError::Ocr {
            page: job.page,
            detail: format!(
                "tesseract wrote no {}: {e}; stderr: {}",
                p.display(),
                done.stderr
            ),
        })
    };
    let text = read("txt")?;
    let tsv = read("tsv")?;
    Ok(OcrText {
        text: clean(&text),
        confidence: mean_confidence(&tsv),
    })
}

/// Tesseract ends pages with a form feed and pads blocks with blank lines; keep paragraphs.
fn clean(text: &str) -> String {
    let text = text.replace('\u{c}', "");
    let mut out = String::new();
    let mut blank = false;
    for line in text.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        out.push_str(line);
    }
    out
}

/// Mean confidence of recognised words (TSV level 5 rows with text and conf ≥ 0).
fn mean_confidence(tsv: &str) -> Option<f32> {
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < 12 || cols[0] != "5" || cols[11].trim().is_empty() {
            continue;
        }
        if let Ok(conf) = cols[10].parse::<f64>()
            && conf >= 0.0
        {
            sum += conf;
            n += 1;
        }
    }
    (n > 0).then(|| (sum / n as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_confidence() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
                   1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n\
                   5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t90.5\tHello\n\
                   5\t1\t1\t1\t1\t2\t0\t0\t10\t10\t70.5\tworld\n\
                   5\t1\t1\t1\t1\t3\t0\t0\t10\t10\t95\t \n";
        assert_eq!(mean_confidence(tsv), Some(80.5));
        assert_eq!(mean_confidence("header\n"), None);
    }

    #[test]
    fn cleans_tesseract_text() {
        assert_eq!(clean("a\nb\n\n\nc\n\u{c}"), "a\nb\n\nc");
        assert_eq!(clean("\n\n \u{c}"), "");
    }
}
