//! Tests on PDFs the suite writes itself (no ../shared needed): reading order, page
//! selection, images, OCR triage, cache, progress, typed errors, time and memory limits.

use std::time::Duration;

use hlbot_pdf::{
    OcrMode, PageSelection, PdfError, PdfRequest, Progress, Stage, TextSource, cleanup_cache,
    process_document,
};
use tokio_util::sync::CancellationToken;

use crate::common::{self, assert_has, need_pdfium, need_tesseract, run, squash};
use crate::fixtures;

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).expect("write fixture");
    p
}

#[tokio::test]
async fn two_column_page_reads_column_by_column() {
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "two-column.pdf", &fixtures::two_column_pdf());
    let mut req = PdfRequest::new(&path);
    req.ocr = OcrMode::Never;
    let doc = run(&env.opts, &req).await.expect("process");
    let text = squash(&doc.pages[0].text);
    let left = squash(&fixtures::LEFT.join(" ")).replace("exam- ple", "example");
    let right = squash(&fixtures::RIGHT.join(" "));
    let expected = format!("Market Structure: Two Columns {left} {right} Page 1");
    assert_eq!(text, expected);
    // Hyphenated line end rejoined, and no line of the right column inside the left one.
    assert!(text.contains("This is an example of a hyphenated word"));
    assert!(text.find("left column ends").unwrap() < text.find("Right column starts").unwrap());
    assert_eq!(doc.pages[0].source, TextSource::Text);
    assert_eq!(doc.metadata.title.as_deref(), Some("Two Columns"));
    assert_eq!(
        doc.metadata.creation_date.as_deref(),
        Some("2024-01-02T03:04:05Z")
    );
}

#[tokio::test]
async fn page_selection_and_document_fields() {
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let bytes = fixtures::three_page_pdf();
    let path = write(&dir, "three.pdf", &bytes);
    let mut req = PdfRequest::new(&path);
    req.pages = Some(PageSelection::Spec("2-3,9".into()));
    let doc = run(&env.opts, &req).await.expect("process");
    assert_eq!(doc.page_count, 3);
    assert_eq!(
        doc.pages.iter().map(|p| p.number).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_has(&doc.text, "This is page number 2 of the generated report.");
    assert!(!doc.text.contains("page number 1"));
    assert!(
        doc.warnings.iter().any(|w| w.contains("[9]")),
        "{:?}",
        doc.warnings
    );
    use sha2::Digest;
    assert_eq!(doc.document_id, hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(doc.pages[0].width, 612.0);
    let json = serde_json::to_value(&doc).unwrap();
    for key in [
        "document_id",
        "path",
        "page_count",
        "metadata",
        "text",
        "pages",
        "warnings",
        "stats",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    for key in ["number", "text", "source", "ocr_confidence", "images"] {
        assert!(json["pages"][0].get(key).is_some(), "missing page.{key}");
    }
    let mut req = PdfRequest::new(&path);
    req.pages = Some(PageSelection::List(vec![7]));
    let err = run(&env.opts, &req).await.unwrap_err();
    assert!(matches!(err, PdfError::InvalidRequest(_)), "{err}");
}

#[tokio::test]
async fn images_saved_once_converted_and_tiny_ones_skipped() {
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let (bytes, jpeg) = fixtures::images_pdf();
    let path = write(&dir, "images.pdf", &bytes);
    let doc = run(&env.opts, &PdfRequest::new(&path))
        .await
        .expect("process");
    let p1 = &doc.pages[0].images;
    let p2 = &doc.pages[1].images;
    assert_eq!(p1.len(), 2, "tiny 8x8 icon must be skipped: {p1:?}");
    assert_eq!(p2.len(), 2);
    // The JPEG is kept byte for byte and saved once for both pages.
    let j1 = p1.iter().find(|i| i.format == "jpeg").expect("jpeg on p1");
    let j2 = p2.iter().find(|i| i.format == "jpeg").expect("jpeg on p2");
    assert_eq!(j1.path, j2.path);
    assert_eq!(std::fs::read(&j1.path).unwrap(), jpeg);
    assert_eq!((j1.width, j1.height), (120, 80));
    assert_eq!(j1.bbox, [72.0, 500.0, 312.0, 660.0]);
    // Raw RGB → PNG of the same size.
    let rgb = p1.iter().find(|i| i.format == "png").expect("png on p1");
    let img = image::open(&rgb.path).unwrap();
    assert_eq!((img.width(), img.height()), (64, 48));
    // CMYK → RGB PNG: pure cyan comes out with no red and strong green/blue.
    let cmyk = p2.iter().find(|i| i.format == "png").expect("cmyk png");
    let px = image::open(&cmyk.path)
        .unwrap()
        .to_rgb8()
        .get_pixel(20, 20)
        .0;
    assert!(
        px[0] < 80 && px[1] > 120 && px[2] > 180,
        "cyan came out as {px:?}"
    );
    assert_eq!(doc.stats.images_saved, 3);
    // Images off: none listed, none saved.
    let env2 = common::env(&lib);
    let mut req = PdfRequest::new(&path);
    req.extract_images = false;
    let doc = run(&env2.opts, &req).await.expect("process");
    assert!(doc.pages.iter().all(|p| p.images.is_empty()));
}

#[tokio::test]
async fn page_without_text_layer_is_ocred() {
    let lib = need_pdfium!();
    need_tesseract!();
    let env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "scan.pdf",
        &fixtures::vector_scan_pdf(&["BUY SUPPORT", "SELL HIGHS"]),
    );
    let doc = run(&env.opts, &PdfRequest::new(&path))
        .await
        .expect("process");
    let page = &doc.pages[0];
    assert_eq!(page.source, TextSource::Ocr);
    assert_eq!(page.ocr_reason.as_deref(), Some("no text layer"));
    assert!(page.ocr_confidence.is_some());
    assert_has(&page.text, "BUY SUPPORT");
    assert_has(&page.text, "SELL HIGHS");
    assert_eq!(doc.stats.pages_ocr, 1);

    // ocr="never": empty page plus a warning saying why.
    let mut req = PdfRequest::new(&path);
    req.ocr = OcrMode::Never;
    let doc = run(&env.opts, &req).await.expect("process");
    assert_eq!(doc.pages[0].text, "");
    assert!(
        doc.warnings.iter().any(|w| w.contains("no text layer")),
        "{:?}",
        doc.warnings
    );

    // ocr="always" on a digital page: OCR runs, the layer is good, source is mixed.
    let path = write(&dir, "three.pdf", &fixtures::three_page_pdf());
    let mut req = PdfRequest::new(&path);
    req.ocr = OcrMode::Always;
    req.pages = Some(PageSelection::Spec("1".into()));
    let doc = run(&env.opts, &req).await.expect("process");
    assert_eq!(doc.pages[0].source, TextSource::Mixed);
    assert_has(&doc.pages[0].text, "page number 1");
}

#[tokio::test]
async fn missing_ocr_tool_and_bad_language_are_typed_errors() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "scan.pdf", &fixtures::vector_scan_pdf(&["HI"]));
    env.opts.tesseract = "/nonexistent/tesseract".into();
    let err = run(&env.opts, &PdfRequest::new(&path)).await.unwrap_err();
    assert!(matches!(err, PdfError::ToolMissing { .. }), "{err}");
    let mut req = PdfRequest::new(&path);
    req.languages = Some("eng; rm -rf /".into());
    let err = run(&env.opts, &req).await.unwrap_err();
    assert!(matches!(err, PdfError::InvalidRequest(_)), "{err}");
}

#[tokio::test]
async fn cache_reuses_results_and_cleanup_frees_them() {
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let bytes = fixtures::three_page_pdf();
    let a = write(&dir, "a.pdf", &bytes);
    let b = write(&dir, "b.pdf", &bytes);
    let first = run(&env.opts, &PdfRequest::new(&a)).await.expect("first");
    assert!(!first.stats.cached);
    let second = run(&env.opts, &PdfRequest::new(&b)).await.expect("second");
    assert!(second.stats.cached);
    assert_eq!(second.path, b);
    assert_eq!(second.text, first.text);
    assert_eq!(second.document_id, first.document_id);
    // A different request is a different cache entry.
    let mut req = PdfRequest::new(&a);
    req.pages = Some(PageSelection::Spec("1".into()));
    assert!(!run(&env.opts, &req).await.unwrap().stats.cached);

    let report = cleanup_cache(&env.opts.cache_dir, 7.0, Some(0)).expect("cleanup");
    assert_eq!(report.removed, vec![first.document_id.clone()]);
    assert!(report.freed_bytes > 0);
    assert!(!env.opts.cache_dir.join(&first.document_id).exists());
    let third = run(&env.opts, &PdfRequest::new(&a)).await.expect("third");
    assert!(!third.stats.cached);
}

#[tokio::test]
async fn progress_is_reported_in_order() {
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "three.pdf", &fixtures::three_page_pdf());
    let events = std::sync::Mutex::new(Vec::<Progress>::new());
    process_document(
        &env.opts,
        &PdfRequest::new(&path),
        |p| events.lock().unwrap().push(p),
        CancellationToken::new(),
    )
    .await
    .expect("process");
    let events = events.into_inner().unwrap();
    assert_eq!(events.first().unwrap().stage, Stage::Hashing);
    assert_eq!(events.last().unwrap().stage, Stage::Done);
    let pages: Vec<u32> = events
        .iter()
        .filter(|p| p.stage == Stage::Pages)
        .map(|p| p.done)
        .collect();
    assert_eq!(pages, vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn bad_inputs_are_typed_errors() {
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let check = |r: hlbot_pdf::Result<hlbot_pdf::PdfDocument>| r.unwrap_err();
    let missing = dir.path().join("nope.pdf");
    let e = check(run(&env.opts, &PdfRequest::new(&missing)).await);
    assert!(matches!(e, PdfError::NotFound(_)), "{e}");
    let e = check(run(&env.opts, &PdfRequest::new(dir.path())).await);
    assert!(matches!(e, PdfError::NotAFile(_)), "{e}");
    let empty = write(&dir, "empty.pdf", b"");
    let e = check(run(&env.opts, &PdfRequest::new(&empty)).await);
    assert!(matches!(e, PdfError::EmptyFile(_)), "{e}");
    let text = write(&dir, "notes.pdf", b"just some notes, not a PDF at all\n");
    let e = check(run(&env.opts, &PdfRequest::new(&text)).await);
    assert!(matches!(e, PdfError::NotPdf(_)), "{e}");
    let junk = write(
        &dir,
        "junk.pdf",
        b"%PDF-1.7\n\x00\x01garbage garbage\n%%EOF\n",
    );
    let e = check(run(&env.opts, &PdfRequest::new(&junk)).await);
    assert!(matches!(e, PdfError::Damaged { .. }), "{e}");
    assert!(!e.retryable());
    // A truncated file: an error or a partial result with warnings, never a hang or panic.
    let full = fixtures::three_page_pdf();
    let cut = write(&dir, "cut.pdf", &full[..full.len() * 6 / 10]);
    match run(&env.opts, &PdfRequest::new(&cut)).await {
        Ok(doc) => assert!(doc.page_count <= 3),
        Err(e) => assert!(matches!(e, PdfError::Damaged { .. }), "{e}"),
    }
    let mut bad = env.opts.clone();
    bad.pdfium_lib = dir.path().join("libpdfium-missing.so");
    let ok = write(&dir, "ok.pdf", &full);
    let e = check(run(&bad, &PdfRequest::new(&ok)).await);
    assert!(matches!(e, PdfError::EngineMissing { .. }), "{e}");
}

#[tokio::test]
async fn hung_worker_is_killed_on_timeout_and_cancel() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "three.pdf", &fixtures::three_page_pdf());
    // A "worker" that never answers stands in for PDFium stuck on a hostile file.
    env.opts.child_program = "sleep".into();
    env.opts.child_args = vec!["600".into()];
    env.opts.prestart_workers = false;
    env.opts.timeout = Duration::from_millis(500);
    let err = run(&env.opts, &PdfRequest::new(&path)).await.unwrap_err();
    assert!(matches!(err, PdfError::Timeout { .. }), "{err}");
    assert!(err.retryable());

    env.opts.timeout = Duration::from_secs(600);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.cancel();
    });
    let err = process_document(&env.opts, &PdfRequest::new(&path), |_| {}, cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, PdfError::Cancelled), "{err}");
}

#[tokio::test]
async fn memory_cap_stops_a_huge_render_without_taking_the_machine() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    // A 200-inch square page rendered at 300 dpi would need 3.6 GB; the worker may use 512 MB.
    let mut page = fixtures::Page::text(&[(72.0, 700.0, 12.0, "poster")]);
    page.size = (14_400.0, 14_400.0);
    let bytes = fixtures::document(fixtures::Pdf::default(), vec![page], None);
    let path = write(&dir, "poster.pdf", &bytes);
    env.opts.child_memory_limit = Some(512 << 20);
    env.opts.max_render_pixels = u64::MAX;
    env.opts.max_render_side = u32::MAX;
    let mut req = PdfRequest::new(&path);
    req.ocr = OcrMode::Always;
    let outcome = run(&env.opts, &req).await;
    eprintln!(
        "memory cap outcome: {:?}",
        outcome.as_ref().map(|d| &d.warnings)
    );
    match outcome {
        // PDFium reports the failed allocation: the page keeps its text, with a warning.
        Ok(doc) => {
            assert!(
                doc.warnings
                    .iter()
                    .any(|w| w.contains("render") || w.contains("exited")),
                "{:?}",
                doc.warnings
            );
            assert_eq!(doc.pages[0].source, TextSource::Text);
        }
        // Or the worker dies on the cap (twice: the second read is in a new worker): a typed
        // error naming the cap, not retried.
        Err(e) => assert!(
            matches!(e, PdfError::Damaged { ref detail, .. } if detail.contains("memory cap")),
            "{e}"
        ),
    }
}

#[tokio::test]
async fn pages_split_across_workers_give_the_same_result() {
    let lib = need_pdfium!();
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = fixtures::images_pdf();
    let a = write(&dir, "three.pdf", &fixtures::three_page_pdf());
    let b = write(&dir, "images.pdf", &bytes);
    for path in [a, b] {
        let mut one = common::env(&lib);
        one.opts.worker_processes = 1;
        let mut three = common::env(&lib);
        three.opts.worker_processes = 3;
        three.opts.shard_min_bytes = 0;
        let d1 = run(&one.opts, &PdfRequest::new(&path))
            .await
            .expect("one worker");
        let d3 = run(&three.opts, &PdfRequest::new(&path))
            .await
            .expect("three workers");
        // A small file split by its first worker once it has counted the pages.
        let mut split = common::env(&lib);
        split.opts.worker_processes = 3;
        split.opts.shard_min_bytes = u64::MAX;
        split.opts.split_min_pages = 2;
        let ds = run(&split.opts, &PdfRequest::new(&path))
            .await
            .expect("split by the first worker");
        assert_eq!(d1.text, ds.text);
        assert_eq!(d1.warnings, ds.warnings);
        assert_eq!(d1.pages.len(), ds.pages.len());
        assert_eq!(d1.text, d3.text);
        assert_eq!(d1.page_count, d3.page_count);
        assert_eq!(d1.warnings, d3.warnings);
        let imgs = |d: &hlbot_pdf::PdfDocument| -> Vec<(u32, String)> {
            d.pages
                .iter()
                .flat_map(|p| p.images.iter().map(move |i| (p.number, i.sha256.clone())))
                .collect()
        };
        assert_eq!(imgs(&d1), imgs(&d3));
        assert_eq!(d1.stats.images_saved, d3.stats.images_saved);
    }
}
