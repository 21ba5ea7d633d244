//! OCR with warm tesseract processes: a few processes read many pages, a page whose OCR fails
//! costs only that page, timeouts and cancels kill the warm processes, and the scanned corpus
//! reads as well as one tesseract run per page did. tesseract is wrapped by small shell
//! scripts that record their process ids (and, for one test, make one page unreadable).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hlbot_pdf::{OcrMode, PdfError, PdfRequest, Progress, TextSource, process_document};
use tokio_util::sync::CancellationToken;

use crate::common::{self, need_corpus, need_pdfium, need_tesseract, run, squash};
use crate::fixtures::{self, Page};

/// Words the vector "scan" font can draw, one per page.
const WORDS: [&str; 6] = ["TIGER", "ROPE", "WIRE", "PIPE", "TRUE", "BUSH"];

/// A scan-like document (text drawn as squares, no text layer) of `n` pages.
fn scan_pages(dir: &Path, n: usize) -> PathBuf {
    let pages = (0..n)
        .map(|i| Page {
            content: fixtures::vector_scan_content(&["BUY SUPPORT", WORDS[i % WORDS.len()]]),
            images: vec![],
            size: (612.0, 792.0),
        })
        .collect();
    let path = dir.join(format!("scan-{n}.pdf"));
    std::fs::write(&path, fixtures::document(Default::default(), pages, None)).unwrap();
    path
}

/// A `tesseract` stand-in that records its pid in `<dir>/pids` and runs the real tesseract,
/// itself (`filter` empty) or behind `filter`, a shell stage its stdin goes through. The
/// pipeline runs in the background so the script holds none of the caller's pipes (tesseract's
/// exit must still close stdout).
fn wrapper(dir: &Path, filter: &str) -> PathBuf {
    let path = dir.join("tesseract-wrapper");
    let pids = dir.join("pids");
    let run = if filter.is_empty() {
        "exec tesseract \"$@\"".to_string()
    } else {
        format!("exec 3<&0\n{filter} <&3 3<&- | tesseract \"$@\" 3<&- &\nexec 0<&- 1>&- 3<&-\nwait")
    };
    let script = format!("#!/bin/sh\necho $$ >> '{}'\n{run}\n", pids.display());
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn pids(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits until none of `pids` is alive (a zombie counts as gone: it was killed).
async fn assert_gone(pids: &[u32]) {
    let alive = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    let t = Instant::now();
    while pids.iter().any(alive) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "tesseract still running: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn few_warm_processes_read_many_pages() {
    let lib = need_pdfium!();
    need_tesseract!();
    let mut env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let path = scan_pages(dir.path(), 6);
    env.opts.tesseract = wrapper(dir.path(), "");
    env.opts.ocr_workers = 2;
    let doc = run(&env.opts, &PdfRequest::new(&path))
        .await
        .expect("process");
    assert_eq!(doc.stats.pages_ocr, 6, "{:?}", doc.warnings);
    for (i, page) in doc.pages.iter().enumerate() {
        assert_eq!(page.source, TextSource::Ocr);
        let text = squash(&page.text);
        assert!(
            text.contains("BUY SUPPORT") && text.contains(WORDS[i]),
            "page {}: {text:?}",
            i + 1
        );
    }
    // One process per recogniser, each fed several pages (not one per page).
    let started = pids(dir.path());
    assert!(
        (1..=2).contains(&started.len()),
        "{} tesseract processes for 6 pages",
        started.len()
    );
    // The document is done: its processes are gone.
    assert_gone(&started).await;
}

#[tokio::test]
async fn a_page_whose_ocr_fails_does_not_lose_the_others() {
    let lib = need_pdfium!();
    need_tesseract!();
    let mut env = common::env(&lib);
    env.opts.use_cache = true;
    let dir = tempfile::tempdir().unwrap();
    let path = scan_pages(dir.path(), 4);
    // Page 2's render path is swapped for a missing file: tesseract stops at it.
    env.opts.tesseract = wrapper(
        dir.path(),
        r"sed -u 's#^.*page-00002\.png$#/nonexistent/page-00002.png#'",
    );
    env.opts.ocr_workers = 1;
    let doc = run(&env.opts, &PdfRequest::new(&path))
        .await
        .expect("process");
    let sources: Vec<_> = doc.pages.iter().map(|p| p.source).collect();
    assert_eq!(
        sources,
        [
            TextSource::Ocr,
            TextSource::Text,
            TextSource::Ocr,
            TextSource::Ocr
        ],
        "{:?}",
        doc.warnings
    );
    for i in [0, 2, 3] {
        assert!(squash(&doc.pages[i].text).contains(WORDS[i]), "page {i}");
    }
    let warning = doc
        .warnings
        .iter()
        .find(|w| w.contains("page 2"))
        .unwrap_or_else(|| panic!("no warning for page 2: {:?}", doc.warnings));
    assert!(warning.contains("cannot be read"), "{warning}");
    // The failed process was replaced for page 3, and that one read pages 3 and 4.
    assert_eq!(pids(dir.path()).len(), 2);
    // A partial result is not cached: the same request runs again.
    let again = run(&env.opts, &PdfRequest::new(&path)).await.unwrap();
    assert!(!again.stats.cached);
}

#[tokio::test]
async fn page_timeout_and_cancel_kill_the_warm_tesseract() {
    let lib = need_pdfium!();
    need_tesseract!();
    let mut env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let path = scan_pages(dir.path(), 3);
    env.opts.tesseract = wrapper(dir.path(), "");
    env.opts.ocr_workers = 1;

    // A page limit tesseract cannot meet (loading its model alone takes longer): every page
    // fails with a timeout, each process is killed, the document still comes back.
    env.opts.ocr_page_timeout = Duration::from_millis(20);
    let doc = run(&env.opts, &PdfRequest::new(&path))
        .await
        .expect("process");
    assert_eq!(doc.stats.pages_ocr, 0);
    let timeouts = doc
        .warnings
        .iter()
        .filter(|w| w.contains("timed out"))
        .count();
    assert_eq!(timeouts, 3, "{:?}", doc.warnings);
    assert_gone(&pids(dir.path())).await;

    // Cancel while tesseract works: the call ends at once and the process is gone.
    std::fs::remove_file(dir.path().join("pids")).unwrap();
    env.opts.ocr_page_timeout = Duration::from_secs(60);
    let cancel = CancellationToken::new();
    let (c2, pid_dir) = (cancel.clone(), dir.path().to_path_buf());
    tokio::spawn(async move {
        while pids(&pid_dir).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.cancel();
    });
    let mut req = PdfRequest::new(&path);
    req.ocr = OcrMode::Always;
    let t = Instant::now();
    let err = process_document(&env.opts, &req, |_: Progress| {}, cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, PdfError::Cancelled), "{err}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let started = pids(dir.path());
    assert_eq!(started.len(), 1);
    assert_gone(&started).await;
}

/// Share of `truth`'s words found in `got` (whitespace-insensitive).
fn overlap(truth: &str, got: &str) -> f64 {
    let got = squash(got);
    let words: Vec<&str> = truth.split_whitespace().collect();
    let found = words.iter().filter(|w| got.contains(*w)).count();
    found as f64 / words.len().max(1) as f64
}

#[tokio::test]
async fn scanned_corpus_reads_as_well_as_before() {
    let corpus = need_corpus!();
    let lib = need_pdfium!();
    need_tesseract!();
    let env = common::env(&lib);
    // Word overlap with the corpus's companion texts. The floors (0.98 for the two pages of the
    // notes, 0.95 for linn) are chosen, not measured against the per-page tesseract runs before.
    let notes = run(
        &env.opts,
        &PdfRequest::new(corpus.join("gen_scanned_trading_notes.pdf")),
    )
    .await
    .expect("notes");
    let linn = run(
        &env.opts,
        &PdfRequest::new(corpus.join("ocrmypdf__linn.pdf")),
    )
    .await
    .expect("linn");
    for (got, truth, at_least) in [
        (
            &notes.pages[0].text,
            "gen_scanned_trading_notes.p1.txt",
            0.98,
        ),
        (
            &notes.pages[1].text,
            "gen_scanned_trading_notes.p2.txt",
            0.98,
        ),
        (&linn.pages[0].text, "ocrmypdf__linn.txt", 0.95),
    ] {
        let truth = std::fs::read_to_string(corpus.join(truth)).unwrap();
        let share = overlap(&truth, got);
        assert!(share >= at_least, "{share:.3} of the words of {truth:.60}…");
    }
    assert!(
        notes
            .pages
            .iter()
            .chain(&linn.pages)
            .all(|p| { p.source == TextSource::Ocr && p.ocr_confidence.is_some_and(|c| c > 70.0) })
    );
}

/// A `tesseract` stand-in speaking the `stream_filelist` TSV protocol: every image that is not
/// the marker "takes" 0.3 s and reads as `WORD`; it appends `start`/`end` with the monotonic
/// clock (shared by all processes) to `<dir>/spans`, so a test can count overlapping pages.
fn slow_fake(dir: &Path) -> PathBuf {
    let path = dir.join("fake-tesseract");
    let spans = dir.join("spans");
    let script = format!(
        r#"#!/usr/bin/env python3
import sys, time
n = 0
print("level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext", flush=True)
for line in sys.stdin:
    n += 1
    row = f"1\t{{n}}\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t"
    if not line.strip().endswith("marker.png"):
        with open({spans:?}, "a") as f:
            f.write(f"start {{time.monotonic()}}\n")
        time.sleep(0.3)
        with open({spans:?}, "a") as f:
            f.write(f"end {{time.monotonic()}}\n")
        row += f"\n5\t{{n}}\t1\t1\t1\t1\t0\t0\t9\t9\t90\tWORD"
    print(row, flush=True)
"#,
        spans = spans.display().to_string()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Concurrent documents (a worker running several PDF tasks) share `ocr_workers` OCR slots:
/// two documents of four pages, each allowed three recognisers, never have more than three pages
/// in tesseract at once — and do use more than one.
#[tokio::test]
async fn concurrent_documents_share_the_ocr_slots() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    env.opts.tesseract = slow_fake(dir.path());
    // A setting no other test uses: the slots are per process and per setting.
    env.opts.ocr_workers = 3;
    let docs: Vec<PathBuf> = (0..2)
        .map(|i| {
            let sub = dir.path().join(format!("doc{i}"));
            std::fs::create_dir(&sub).unwrap();
            scan_pages(&sub, 4)
        })
        .collect();
    let read = |path: PathBuf| {
        let opts = env.opts.clone();
        async move {
            let mut req = PdfRequest::new(&path);
            req.ocr = OcrMode::Always;
            run(&opts, &req).await.expect("process")
        }
    };
    let (a, b) = tokio::join!(read(docs[0].clone()), read(docs[1].clone()));
    for doc in [&a, &b] {
        assert_eq!(doc.stats.pages_ocr, 4, "{:?}", doc.warnings);
        assert!(doc.pages.iter().all(|p| p.text.contains("WORD")));
    }
    let spans = std::fs::read_to_string(dir.path().join("spans")).unwrap();
    let mut events: Vec<(f64, i32)> = spans
        .lines()
        .filter_map(|l| {
            let (what, t) = l.split_once(' ')?;
            Some((t.parse().ok()?, if what == "start" { 1 } else { -1 }))
        })
        .collect();
    assert_eq!(events.len(), 16, "{spans}");
    // Ends before starts at the same instant.
    events.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut now, mut most) = (0, 0);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    assert!(most <= 3, "{most} pages in tesseract at once, 3 slots");
    assert!(most >= 2, "the slots were not used in parallel");
}

/// A page scanned upside down reads as garbage at low confidence (OCRmyPDF's `cardinal.pdf`:
/// 35 % at 180° and 270°); tesseract's orientation detection turns it upright and it is read
/// again. Page 1 upright, page 2 the same lines drawn turned 180°.
#[tokio::test]
async fn a_page_scanned_upside_down_is_turned_and_read() {
    let lib = need_pdfium!();
    need_tesseract!();
    let osd = std::process::Command::new("tesseract")
        .arg("--list-langs")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "osd")
        });
    if !osd {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tesseract's osd model is missing under CI=true (tesseract-ocr-osd)"
        );
        eprintln!("SKIP: tesseract has no osd model");
        return;
    }
    let env = common::env(&lib);
    // Only letters the dot-matrix fixture font draws.
    let lines = [
        "BUY SUPPORT",
        "SELL THE HIGH",
        "STOP BELOW THE LOW",
        "TIGER ROPE WIRE PIPE",
        "BUY THE RETEST",
    ];
    let upright = fixtures::vector_scan_content(&lines);
    let pages = vec![
        Page {
            content: upright.clone(),
            images: vec![],
            size: (612.0, 792.0),
        },
        Page {
            content: format!("q -1 0 0 -1 612 792 cm\n{upright}Q\n"),
            images: vec![],
            size: (612.0, 792.0),
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turned.pdf");
    std::fs::write(&path, fixtures::document(Default::default(), pages, None)).unwrap();
    let doc = run(&env.opts, &PdfRequest::new(&path))
        .await
        .expect("process");
    for page in &doc.pages {
        let text = squash(&page.text);
        assert!(
            text.contains("SELL THE HIGH") && text.contains("BUY THE RETEST"),
            "page {}: {text:?} ({:?})",
            page.number,
            page.ocr_confidence
        );
    }
    assert!(doc.pages[1].ocr_confidence.is_some_and(|c| c >= 40.0));
}
