//! Runs `process_document` on each PDF given and prints the JSON (or the error).
//! `cargo run -p hlbot-pdf --example pdf-dump -- FILE.pdf...`; env HLBOT_PDFIUM_LIB,
//! PDF_CACHE (default: a temp dir), PDF_OCR (auto|always|never), PDF_IMAGES (0/1), PDF_PASSWORD.

use std::time::Instant;

use hlbot_pdf::{OcrMode, PdfOptions, PdfRequest, process_document};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let lib =
        std::env::var("HLBOT_PDFIUM_LIB").unwrap_or_else(|_| ".hlbot/pdfium/libpdfium.so".into());
    let tmp = tempfile::tempdir().expect("temp dir");
    let cache = std::env::var("PDF_CACHE")
        .map(Into::into)
        .unwrap_or_else(|_| tmp.path().to_path_buf());
    let child = std::env::current_exe()
        .expect("exe")
        .parent()
        .expect("dir")
        .parent()
        .expect("dir")
        .join("hlbot-pdf-child");
    let mut opts = PdfOptions::new(lib, cache, child, vec![]);
    opts.use_cache = std::env::var("PDF_USE_CACHE").is_ok_and(|v| v == "1");
    let ocr = match std::env::var("PDF_OCR").as_deref() {
        Ok("always") => OcrMode::Always,
        Ok("never") => OcrMode::Never,
        _ => OcrMode::Auto,
    };
    let quiet = std::env::var("PDF_QUIET").is_ok_and(|v| v == "1");
    let mut failed = 0;
    let t0 = Instant::now();
    for path in std::env::args().skip(1) {
        let mut req = PdfRequest::new(&path);
        req.ocr = ocr;
        req.extract_images = std::env::var("PDF_IMAGES")
            .map(|v| v != "0")
            .unwrap_or(true);
        req.password = std::env::var("PDF_PASSWORD").ok();
        match process_document(&opts, &req, |_| {}, CancellationToken::new()).await {
            Ok(doc) if quiet => println!(
                "{path}\t{} pages\t{} chars",
                doc.page_count,
                doc.text.chars().count()
            ),
            Ok(doc) => println!("{}", serde_json::to_string_pretty(&doc).expect("json")),
            Err(e) => {
                failed += 1;
                println!("{path}\tERROR {}: {e}", e.kind());
            }
        }
    }
    eprintln!("total {:.3} s", t0.elapsed().as_secs_f64());
    std::process::ExitCode::from(if failed > 0 { 1 } else { 0 })
}
