//! The external tools, probed as the tasks use them: PDFium (located, then loaded for real by
//! reading a one-page PDF in the PDFium child process), tesseract and each configured language,
//! yt-dlp and its age (YouTube changes its player often; an old yt-dlp breaks), ffmpeg and
//! ffprobe. The probes are the worker's start-up checks (`checks.rs`); `doctor -Q` limits them
//! to the tools the queues' tasks need, as a worker does.

use std::collections::BTreeSet;
use std::time::Duration;

use hlbot_tasks::TaskSettings;
use hlbot_tasks::needs::Tool;

use super::Finding;
use crate::checks::{self, Report};

/// A yt-dlp older than this gets a warning.
const YTDLP_MAX_AGE_DAYS: i64 = 90;

/// Probe `tools` (ffmpeg and ffprobe go with yt-dlp: the YouTube tasks use all three; local
/// media files need only ffmpeg and ffprobe).
pub async fn check(ts: &TaskSettings, tools: &BTreeSet<Tool>, out: &mut Vec<Finding>) {
    if tools.contains(&Tool::Pdfium) {
        pdfium(ts, out).await;
    }
    if tools.contains(&Tool::Tesseract) {
        let mut r = Report::default();
        checks::tesseract(&ts.pdf.tesseract, &ts.pdf.default_languages, &mut r);
        report("tesseract", &r, out);
    }
    if !tools.contains(&Tool::YtDlp) && !tools.contains(&Tool::Ffmpeg) {
        return;
    }
    if tools.contains(&Tool::YtDlp) {
        let mut r = Report::default();
        checks::ytdlp(&ts.youtube.ytdlp, &mut r);
        match r.found.first().and_then(|f| f.strip_prefix("yt-dlp ")) {
            Some(v) => out.push(ytdlp_age(v, chrono::Utc::now().date_naive())),
            None => report("yt-dlp", &r, out),
        }
    }
    for (name, prog) in [
        ("ffmpeg", &ts.youtube.ffmpeg),
        ("ffprobe", &ts.youtube.ffprobe),
    ] {
        out.push(match checks::output(prog, &["-version"]) {
            Some(v) => Finding::ok(name, v.lines().next().unwrap_or_default().to_string()),
            None => Finding::fail(
                name,
                format!(
                    "{} does not run: video frames and audio cannot be extracted",
                    prog.display()
                ),
                format!(
                    "install ffmpeg (Debian: apt-get install ffmpeg) or set `youtube.{name}` to \
                     its path"
                ),
            ),
        });
    }
}

/// A probe's report as lines: each problem a FAIL, else one ok with what was found.
fn report(check: &str, r: &Report, out: &mut Vec<Finding>) {
    if r.problems.is_empty() {
        out.push(Finding::ok(check, r.found.join("; ")));
    }
    for p in &r.problems {
        out.push(Finding::fail(check, p.what.clone(), p.fix.clone()));
    }
}

/// yt-dlp versions are release dates (`2025.10.22`, nightly `2025.10.22.232815`).
fn ytdlp_age(version: &str, today: chrono::NaiveDate) -> Finding {
    let date = chrono::NaiveDate::parse_from_str(
        &version.split('.').take(3).collect::<Vec<_>>().join("."),
        "%Y.%m.%d",
    );
    match date {
        Ok(d) if (today - d).num_days() > YTDLP_MAX_AGE_DAYS => Finding::warn(
            "yt-dlp",
            format!(
                "{version} is {} days old: YouTube changes its player often and an old yt-dlp \
                 stops finding formats",
                (today - d).num_days()
            ),
            "update it (scripts/install.sh, or pip install -U yt-dlp in its venv)",
        ),
        Ok(d) => Finding::ok(
            "yt-dlp",
            format!("{version} ({} days old)", (today - d).num_days()),
        ),
        Err(_) => Finding::ok("yt-dlp", format!("{version} (release date unknown)")),
    }
}

/// Located as the worker would, then loaded: a one-page PDF read in the PDFium child process.
async fn pdfium(ts: &TaskSettings, out: &mut Vec<Finding>) {
    let mut r = Report::default();
    checks::pdfium(&ts.pdf.pdfium_lib, &mut r);
    if !r.problems.is_empty() {
        return report("pdfium", &r, out);
    }
    let Ok(dir) = tempfile_dir() else {
        return report("pdfium", &r, out);
    };
    let file = dir.join("doctor.pdf");
    let mut opts = ts.pdf.clone();
    opts.use_cache = false;
    opts.prestart_workers = false;
    opts.worker_processes = 1;
    opts.timeout = Duration::from_secs(30);
    opts.cache_dir = dir.join("cache");
    let mut req = hlbot_pdf::PdfRequest::new(&file);
    req.extract_images = false;
    req.ocr = hlbot_pdf::OcrMode::Never;
    let cancel = tokio_util::sync::CancellationToken::new();
    let result = match std::fs::write(&file, tiny_pdf("hlbot doctor")) {
        Ok(()) => hlbot_pdf::process_document(&opts, &req, |_| {}, cancel)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(doc) if doc.pages.iter().any(|p| p.text.contains("hlbot doctor")) => {
            out.push(Finding::ok(
                "pdfium",
                format!("{} loads and reads a PDF", r.found.join("; ")),
            ))
        }
        Ok(_) => out.push(Finding::fail(
            "pdfium",
            format!(
                "{} loads but read no text from a one-page PDF",
                r.found.join("; ")
            ),
            "use the libpdfium.so scripts/setup.sh pins",
        )),
        Err(e) => out.push(Finding::fail(
            "pdfium",
            format!("does not load: {e}"),
            "point HLBOT_PDFIUM_LIB / pdf.pdfium_lib at a working libpdfium.so (scripts/setup.sh \
             pins one)",
        )),
    }
}

/// A private temporary folder (removed by the caller).
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "hlbot-doctor-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// A valid one-page PDF showing `text` in Helvetica (byte offsets computed, so no repair).
fn tiny_pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 24 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R \
         >> >> /Contents 5 0 R >>"
            .to_string(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        pdf.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::doctor::Level;

    #[test]
    fn ytdlp_age_from_its_version() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        assert_eq!(ytdlp_age("2026.11.20", today).level, Level::Ok);
        assert_eq!(ytdlp_age("2025.10.22", today).level, Level::Warn);
        assert_eq!(ytdlp_age("2026.11.20.232815", today).level, Level::Ok);
        assert_eq!(ytdlp_age("unknown", today).level, Level::Ok);
    }

    #[test]
    fn tiny_pdf_is_well_formed() {
        let pdf = String::from_utf8(tiny_pdf("x")).unwrap();
        let xref: usize = pdf.lines().rev().nth(1).unwrap().parse().unwrap();
        assert!(pdf[xref..].starts_with("xref"));
    }
}
