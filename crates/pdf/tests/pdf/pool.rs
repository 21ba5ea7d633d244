//! Long-lived PDFium workers: one process serves document after document, also after refusing
//! a document cleanly (damaged, over a cap, no such page); a worker that crashed, timed out or
//! was killed is never reused; workers are recycled after a count and above a
//! memory cap. `Stats::workers` says which process read a document and how many it had read.

use std::time::Duration;

use hlbot_pdf::{PdfDocument, PdfError, PdfOptions, PdfRequest};

use crate::common::{self, need_pdfium, run};
use crate::fixtures;

/// Options whose workers no other test shares (the pool is per configuration and the
/// recycle count is part of it): one worker per document, no pre-started spares, no cache.
fn private(env: &mut common::Env, max_documents: u32) -> &PdfOptions {
    env.opts.worker_max_documents = max_documents;
    env.opts.worker_processes = 1;
    env.opts.prestart_workers = false;
    env.opts.use_cache = false;
    &env.opts
}

fn worker(doc: &PdfDocument) -> (u32, u32) {
    assert_eq!(doc.stats.workers.len(), 1, "{:?}", doc.stats.workers);
    let w = &doc.stats.workers[0];
    (w.pid, w.documents)
}

fn three_pages(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let p = dir.path().join("three.pdf");
    std::fs::write(&p, fixtures::three_page_pdf()).unwrap();
    p
}

#[tokio::test]
async fn one_worker_serves_consecutive_documents() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    let opts = private(&mut env, 1_001).clone();
    let dir = tempfile::tempdir().unwrap();
    let path = three_pages(&dir);
    let mut pids = Vec::new();
    for n in 1..=5 {
        let doc = run(&opts, &PdfRequest::new(&path)).await.expect("process");
        assert!(doc.text.contains("page number 3"), "{}", doc.text);
        let (pid, documents) = worker(&doc);
        assert_eq!(documents, n, "document {n} of this worker");
        pids.push(pid);
    }
    assert!(pids.iter().all(|p| *p == pids[0]), "{pids:?}");
}

#[tokio::test]
async fn a_failed_or_killed_worker_is_replaced_by_a_fresh_one() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    let opts = private(&mut env, 1_002).clone();
    let dir = tempfile::tempdir().unwrap();
    let path = three_pages(&dir);
    let (first, _) = worker(&run(&opts, &PdfRequest::new(&path)).await.unwrap());

    // A damaged file: PDFium refuses it cleanly, the worker closes it and stays warm (a new
    // process per bad upload would cost ~2 ms of CPU each).
    let junk = dir.path().join("junk.pdf");
    std::fs::write(&junk, b"%PDF-1.7\n\x00\x01garbage garbage\n%%EOF\n").unwrap();
    let e = run(&opts, &PdfRequest::new(&junk)).await.unwrap_err();
    assert!(matches!(e, PdfError::Damaged { .. }), "{e}");
    let (second, n) = worker(&run(&opts, &PdfRequest::new(&path)).await.unwrap());
    assert_eq!(second, first, "a clean refusal cost the worker");
    assert_eq!(n, 3, "three documents: good, damaged, good");

    // A document that runs out of time: its worker is killed mid-document, not reused.
    // (A warm worker reads the three-page file in well under a millisecond: use a long one.)
    let long = dir.path().join("long.pdf");
    std::fs::write(&long, crate::caps::many_pages_pdf(3_000)).unwrap();
    let mut hurried = opts.clone();
    hurried.timeout = Duration::from_millis(1);
    let e = run(&hurried, &PdfRequest::new(&long)).await.unwrap_err();
    assert!(matches!(e, PdfError::Timeout { .. }), "{e}");
    let (third, n) = worker(&run(&opts, &PdfRequest::new(&path)).await.unwrap());
    assert_ne!(third, second, "the worker that timed out was reused");
    assert_eq!(n, 1);
    // It is gone: its process group was killed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !std::path::Path::new(&format!("/proc/{second}/cmdline")).exists() || {
            // Reaped and the pid reused by an unrelated process: not our worker any more.
            let cmd =
                std::fs::read_to_string(format!("/proc/{second}/cmdline")).unwrap_or_default();
            !cmd.contains("hlbot-pdf-child")
        }
    );

    // A worker that dies while idle (a crash between documents) is noticed and replaced.
    let _ = std::process::Command::new("kill")
        .args(["-9", &third.to_string()])
        .status();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (fourth, n) = worker(&run(&opts, &PdfRequest::new(&path)).await.unwrap());
    assert_ne!(fourth, third);
    assert_eq!(n, 1);
}

/// Each clean refusal, from a worker that has served documents before and from a fresh one:
/// the same typed error and message, and the warm worker then reads a good file correctly.
#[tokio::test]
async fn a_warm_worker_reports_document_errors_as_a_fresh_one_does() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    let warm = private(&mut env, 1_004).clone();
    let mut fresh = warm.clone();
    fresh.worker_max_documents = 1;
    let dir = tempfile::tempdir().unwrap();
    let path = three_pages(&dir);
    let (pid, _) = worker(&run(&warm, &PdfRequest::new(&path)).await.unwrap());

    let junk = dir.path().join("junk.pdf");
    std::fs::write(&junk, b"%PDF-1.7\n\x00\x01garbage garbage\n%%EOF\n").unwrap();
    let truncated = dir.path().join("truncated.pdf");
    let whole = fixtures::three_page_pdf();
    std::fs::write(&truncated, &whole[..40]).unwrap();
    let mut capped = PdfRequest::new(&path);
    let mut capped_opts = (warm.clone(), fresh.clone());
    capped_opts.0.max_pages = 2;
    capped_opts.1.max_pages = 2;
    capped.pages = None;
    let mut no_page = PdfRequest::new(&path);
    no_page.pages = Some(hlbot_pdf::PageSelection::Spec("9".into()));
    let mut bad_spec = PdfRequest::new(&path);
    bad_spec.pages = Some(hlbot_pdf::PageSelection::Spec("0".into()));
    let cases = [
        ("damaged", (&warm, &fresh), PdfRequest::new(&junk)),
        ("truncated", (&warm, &fresh), PdfRequest::new(&truncated)),
        (
            "over the page cap",
            (&capped_opts.0, &capped_opts.1),
            capped,
        ),
        ("no such page", (&warm, &fresh), no_page),
        ("bad page spec", (&warm, &fresh), bad_spec),
    ];
    for (what, (w, f), req) in &cases {
        let from_warm = run(w, req).await.expect_err(what);
        let from_fresh = run(f, req).await.expect_err(what);
        assert_eq!(from_warm.kind(), from_fresh.kind(), "{what}");
        assert_eq!(from_warm.to_string(), from_fresh.to_string(), "{what}");
        assert!(!from_warm.retryable(), "{what}: {from_warm}");
        assert_ne!(from_warm.kind(), "child", "{what}: {from_warm}");
    }
    let doc = run(&warm, &PdfRequest::new(&path)).await.unwrap();
    assert!(doc.text.contains("page number 3"), "{}", doc.text);
    assert_eq!(worker(&doc), (pid, 2 + cases.len() as u32));
}

#[tokio::test]
async fn workers_are_recycled_after_the_configured_count() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    let opts = private(&mut env, 2).clone();
    let dir = tempfile::tempdir().unwrap();
    let path = three_pages(&dir);
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(worker(&run(&opts, &PdfRequest::new(&path)).await.unwrap()));
    }
    let counts: Vec<u32> = seen.iter().map(|w| w.1).collect();
    assert_eq!(counts, [1, 2, 1, 2, 1]);
    assert_eq!(seen[0].0, seen[1].0);
    assert_ne!(seen[1].0, seen[2].0);
    assert_eq!(seen[2].0, seen[3].0);
    assert_ne!(seen[3].0, seen[4].0);
}

#[tokio::test]
async fn workers_above_the_memory_cap_are_recycled() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    env.opts.worker_max_rss = 1;
    let opts = private(&mut env, 1_003).clone();
    let dir = tempfile::tempdir().unwrap();
    let path = three_pages(&dir);
    let mut pids = Vec::new();
    for _ in 0..3 {
        let (pid, n) = worker(&run(&opts, &PdfRequest::new(&path)).await.unwrap());
        assert_eq!(n, 1, "a worker over the cap was reused");
        pids.push(pid);
    }
    pids.dedup();
    assert_eq!(pids.len(), 3, "{pids:?}");
}
