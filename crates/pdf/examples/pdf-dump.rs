//! Runs `process_document` on each PDF given and prints the JSON result (or one summary line
//! per file with `PDF_QUIET=1`, as `scripts/bench-pdf.sh` uses it).
//!
//! `cargo run -p hlbot-pdf --example pdf-dump -- FILE.pdf...`; environment: HLBOT_PDFIUM_LIB,
//! PDF_CACHE (default: a temp dir), PDF_USE_CACHE=1, PDF_OCR (auto|always|never),
//! PDF_IMAGES (0/1), PDF_PASSWORD, PDF_QUIET=1, PDF_WORKER_DOCS (documents per PDFium worker;
//! 1 = a new process per document), PDF_REPEAT (read the files this many times), PDF_JOBS
//! (documents processed at once, default 1, as `hlbot worker -Q pdf -c N` would).

use std::time::Instant;

use hlbot_pdf::{OcrMode, PdfOptions, PdfRequest, process_document};
use tokio_util::sync::CancellationToken;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let lib = var("HLBOT_PDFIUM_LIB").unwrap_or_else(|| ".hlbot/pdfium/libpdfium.so".into());
    let Ok(tmp) = tempfile::tempdir() else {
        eprintln!("cannot create a temp dir");
        return std::process::ExitCode::from(2);
    };
    let cache = var("PDF_CACHE")
        .map(Into::into)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    // The worker binary sits next to the examples folder: target/<profile>/hlbot-pdf-child.
    let child = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join("hlbot-pdf-child")))
        .unwrap_or_else(|| "hlbot-pdf-child".into());
    let mut opts = PdfOptions::new(lib, cache, child, vec![]);
    opts.use_cache = var("PDF_USE_CACHE").is_some_and(|v| v == "1");
    if let Some(n) = var("PDF_WORKER_DOCS").and_then(|v| v.parse().ok()) {
        opts.worker_max_documents = n;
    }
    let repeat: usize = var("PDF_REPEAT").and_then(|v| v.parse().ok()).unwrap_or(1);
    let ocr = match var("PDF_OCR").as_deref() {
        Some("always") => OcrMode::Always,
        Some("never") => OcrMode::Never,
        _ => OcrMode::Auto,
    };
    let quiet = var("PDF_QUIET").is_some_and(|v| v == "1");
    let jobs: usize = var("PDF_JOBS").and_then(|v| v.parse().ok()).unwrap_or(1);
    // As a long-running worker would at start-up (PyMuPDF's import is not timed either).
    hlbot_pdf::prestart_workers(&opts);
    let mut failed = 0;
    let t0 = Instant::now();
    let paths: Vec<String> = std::env::args().skip(1).collect();
    let mut running = tokio::task::JoinSet::new();
    for path in std::iter::repeat_n(paths, repeat).flatten() {
        while running.len() >= jobs.max(1) {
            failed += running.join_next().await.map_or(0, |r| r.unwrap_or(1));
        }
        let mut req = PdfRequest::new(&path);
        req.ocr = ocr;
        req.extract_images = var("PDF_IMAGES").is_none_or(|v| v != "0");
        req.password = var("PDF_PASSWORD");
        running.spawn(one(opts.clone(), req, path, quiet));
    }
    while let Some(r) = running.join_next().await {
        failed += r.unwrap_or(1);
    }
    eprintln!("total {:.3} s", t0.elapsed().as_secs_f64());
    // Wait for the PDFium workers, so that `time` counts their CPU too.
    hlbot_pdf::shutdown_workers();
    std::process::ExitCode::from(if failed > 0 { 1 } else { 0 })
}

/// Processes one document and prints its line (or JSON); 1 when it failed.
async fn one(opts: PdfOptions, req: PdfRequest, path: String, quiet: bool) -> u32 {
    let t = Instant::now();
    match process_document(&opts, &req, |_| {}, CancellationToken::new()).await {
        Ok(doc) if quiet => println!(
            "{path}\t{} pages\t{} chars\t{} ocr\t{:.1} ms",
            doc.pages.len(),
            doc.text.chars().count(),
            doc.stats.pages_ocr,
            t.elapsed().as_secs_f64() * 1000.0
        ),
        Ok(doc) => match serde_json::to_string_pretty(&doc) {
            Ok(json) => println!("{json}"),
            Err(e) => println!("{path}\tERROR json: {e}"),
        },
        Err(e) => {
            println!(
                "{path}\tERROR {}: {e}\t{:.1} ms",
                e.kind(),
                t.elapsed().as_secs_f64() * 1000.0
            );
            return 1;
        }
    }
    0
}
