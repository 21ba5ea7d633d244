//! Damaged documents: the suite's own PDFs and the corpus PDFs (when present) cut, bit-flipped,
//! with chunks deleted or repeated, numbers made huge, bytes zeroed and keywords broken — a
//! deterministic sample (`PROPTEST_CASES` of them, default 100; `scripts/fuzz.sh pdf-documents` runs
//! more; `MUTANT_OCR=auto|always` renders pages for OCR too). Each must come back as a document or as a typed input error (damaged, not a PDF,
//! password, empty, too large), never as a crashed or hung worker, and a good document must
//! still process afterwards on the same options.

use hlbot_pdf::{OcrMode, PdfOptions, PdfRequest};

use crate::common::{self, need_pdfium, run};
use crate::fixtures;

/// xorshift64*: the same mutants on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const KEYWORDS: [&[u8]; 10] = [
    b"obj",
    b"endobj",
    b"stream",
    b"endstream",
    b"/Length",
    b"xref",
    b"trailer",
    b"/Root",
    b"/Kids",
    b"/Filter",
];

/// One to three edits of `bytes`; returns what was done, for the failure message.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let mut done = Vec::new();
    for _ in 0..1 + rng.below(3) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        let len = 1 + rng.below(bytes.len().min(4096));
        let end = (at + len).min(bytes.len());
        match rng.below(7) {
            0 => {
                bytes.truncate(at);
                done.push(format!("cut at {at}"));
            }
            1 => {
                for _ in 0..1 + rng.below(16) {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
                done.push("bits flipped".into());
            }
            2 => {
                bytes.drain(at..end);
                done.push(format!("deleted {at}..{end}"));
            }
            3 => {
                let chunk = bytes[at..end].to_vec();
                let to = rng.below(bytes.len());
                bytes.splice(to..to, chunk);
                done.push(format!("repeated {at}..{end} at {to}"));
            }
            4 => {
                let digit = bytes[at..].iter().position(u8::is_ascii_digit);
                if let Some(d) = digit.map(|d| at + d) {
                    let huge: &[u8] =
                        [&b"99999999999999999999"[..], b"-1", b"2147483648", b"0"][rng.below(4)];
                    bytes.splice(d..d + 1, huge.iter().copied());
                    done.push(format!("number at {d}"));
                }
            }
            5 => {
                bytes[at..end].fill(0);
                done.push(format!("zeroed {at}..{end}"));
            }
            _ => {
                let kw = KEYWORDS[rng.below(KEYWORDS.len())];
                let hits: Vec<usize> = bytes
                    .windows(kw.len())
                    .enumerate()
                    .filter(|(_, w)| *w == kw)
                    .map(|(i, _)| i)
                    .collect();
                if !hits.is_empty() {
                    let i = hits[rng.below(hits.len())];
                    bytes[i + kw.len() - 1] = b'x';
                    done.push(format!("broke {} at {i}", String::from_utf8_lossy(kw)));
                }
            }
        }
    }
    done.join(", ")
}

/// The documents to damage: the generated fixtures, and the corpus PDFs that are quick to read.
fn originals() -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("two-column".to_string(), fixtures::two_column_pdf()),
        ("three-page".to_string(), fixtures::three_page_pdf()),
        ("images".to_string(), fixtures::images_pdf().0),
        (
            "vector-scan".to_string(),
            fixtures::vector_scan_pdf(&["BUY", "LOW"]),
        ),
    ];
    if let Some(dir) = common::corpus() {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0 && m.len() < 1_000_000))
            .collect();
        files.sort();
        for p in files {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read(&p).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_documents_give_a_document_or_a_typed_error() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    env.opts.timeout = std::time::Duration::from_secs(60);
    let cases: usize = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // `MUTANT_OCR=auto` (or `always`) also renders pages for tesseract: slower, more of PDFium.
    let ocr = match std::env::var("MUTANT_OCR").as_deref() {
        Ok("auto") => OcrMode::Auto,
        Ok("always") => OcrMode::Always,
        _ => OcrMode::Never,
    };
    let docs = originals();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut refused, mut crashed) = (0, 0, 0);
    for case in 0..cases {
        let (name, original) = &docs[case % docs.len()];
        let mut bytes = original.clone();
        let how = mutate(&mut rng, &mut bytes);
        let path = dir.path().join(format!("mutant-{case}.pdf"));
        std::fs::write(&path, &bytes).unwrap();
        let mut req = PdfRequest::new(&path);
        req.ocr = ocr;
        req.extract_images = true;
        let bad = match run(&env.opts, &req).await {
            Ok(doc) if doc.pages.len() <= doc.page_count as usize => {
                ok += 1;
                crashed += usize::from(doc.warnings.iter().any(|w| w.contains("worker crashed")));
                None
            }
            Ok(doc) => Some(format!("{} pages of {}", doc.pages.len(), doc.page_count)),
            Err(e) => match e.kind() {
                "damaged" | "not_pdf" | "password_required" | "wrong_password" | "empty_file"
                | "too_large" => {
                    refused += 1;
                    None
                }
                kind => Some(format!("{kind} error: {e}")),
            },
        };
        if let Some(bad) = bad {
            // Kept for a closer look (`pdf-dump`) and a regression fixture.
            let keep = std::env::temp_dir().join(format!("hlbot-pdf-mutant-{case}.pdf"));
            std::fs::copy(&path, &keep).unwrap();
            panic!(
                "case {case} ({name}: {how}), kept as {}: {bad}",
                keep.display()
            );
        }
        let _ = std::fs::remove_file(&path);
    }
    println!(
        "{cases} damaged documents: {ok} read ({crashed} after a worker crash), {refused} refused \
         with a typed error"
    );
    // The workers that read them are still good for an undamaged document.
    let good = dir.path().join("good.pdf");
    std::fs::write(&good, fixtures::three_page_pdf()).unwrap();
    let mut req = PdfRequest::new(&good);
    req.ocr = OcrMode::Never;
    let doc = run(&env.opts, &req)
        .await
        .expect("a good document after the damaged ones");
    assert_eq!(doc.page_count, 3);
    common::assert_has(&doc.text, "This is page number 3 of the generated report.");
}

/// Found by the test above: one byte (`/Type /Page` → `/Type /Pagg` on page 2) made PDFium trap
/// (SIGTRAP) while extracting that page's images — inside pdfium-render's rewrite of the page
/// content, which no longer runs (pages load with content regeneration off). Page 2 is now a
/// page that cannot be loaded: a warning naming the user's file, page 1 read with its images.
#[tokio::test]
async fn a_page_that_is_no_page_is_a_warning_and_the_rest_reads() {
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let mut bytes = fixtures::images_pdf().0;
    let at = bytes
        .windows(19)
        .rposition(|w| w == b"/Type /Page /Parent")
        .expect("page 2's dictionary");
    bytes[at + 10] = b'g';
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pagg.pdf");
    std::fs::write(&path, &bytes).unwrap();
    let mut req = PdfRequest::new(&path);
    req.ocr = OcrMode::Never;
    let doc = run(&env.opts, &req).await.expect("page 1 reads");
    assert!(
        !doc.warnings.iter().any(|w| w.contains("crashed")),
        "{:?}",
        doc.warnings
    );
    assert_eq!(doc.page_count, 2);
    assert!(!doc.pages[0].images.is_empty(), "page 1's images kept");
    // Messages name the user's file, not the `/proc/<pid>/fd/<n>` the worker read it through.
    let page2 = doc
        .warnings
        .iter()
        .find(|w| w.contains("page 2 could not be read"));
    assert!(
        page2.is_some_and(|w| w.contains(&path.display().to_string()) && !w.contains("/proc/")),
        "{:?}",
        doc.warnings
    );
    common::assert_has(&doc.text, "Chart page with a JPEG and a bitmap.");
}

/// PDF workers are `sh -c script` (a stand-in for the real one), started only when needed.
fn stand_in_worker(opts: &mut PdfOptions, script: String) {
    opts.child_program = "sh".into();
    opts.child_args = vec!["-c".into(), script];
    opts.prestart_workers = false;
}

/// A worker that dies while reading images (a stand-in that kills itself with SIGSEGV when the
/// request asks for images, else runs the real worker — as PDFium trapped on `/Pagg` above): the
/// document is read again in a new worker without images and comes back whole, saying so, and
/// the degraded read is not cached.
#[tokio::test]
async fn a_document_that_crashes_the_engine_on_images_is_read_again_without_them() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("three.pdf");
    std::fs::write(&path, fixtures::three_page_pdf()).unwrap();
    let mut real = vec![env.opts.child_program.display().to_string()];
    real.extend(env.opts.child_args.iter().cloned());
    let real: Vec<String> = real.iter().map(|a| format!("'{a}'")).collect();
    stand_in_worker(
        &mut env.opts,
        format!(
            "read -r init; read -r doc; case \"$doc\" in *'\"extract_images\":true'*) kill -SEGV $$;; esac; \
             {{ printf '%s\\n%s\\n' \"$init\" \"$doc\"; cat; }} | {}",
            real.join(" ")
        ),
    );
    // The stand-in checks only its first document: one document per worker.
    env.opts.worker_max_documents = 1;
    let mut req = PdfRequest::new(&path);
    req.ocr = OcrMode::Never;
    let doc = run(&env.opts, &req)
        .await
        .expect("read again without images");
    assert!(
        doc.warnings.iter().any(|w| w.contains("crashed (signal")
            && w.contains("read again in a new worker without images")),
        "{:?}",
        doc.warnings
    );
    assert_eq!(doc.page_count, 3);
    assert!(doc.pages.iter().all(|p| p.images.is_empty()));
    common::assert_has(&doc.text, "This is page number 3 of the generated report.");
    // Not cached: the same request reads (and crashes) again rather than reusing a degraded read.
    let again = run(&env.opts, &req).await.unwrap();
    assert!(again.warnings.iter().any(|w| w.contains("crashed")));
}

/// A worker that crashes on the document every time (a stand-in program killing itself with
/// SIGSEGV, as PDFium would) gives a typed, non-retryable `Damaged` once every re-read in a new
/// process crashed too — not a retryable worker error that would crash the same way on every
/// retry. With images and OCR asked for: three reads (as asked, without images, without images
/// and page renders); with neither: two (as asked, in a new worker).
#[tokio::test]
async fn a_document_that_crashes_the_engine_on_every_read_is_damaged_not_retried() {
    let lib = need_pdfium!();
    let mut env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("three.pdf");
    std::fs::write(&path, fixtures::three_page_pdf()).unwrap();
    let runs = dir.path().join("runs");
    stand_in_worker(
        &mut env.opts,
        format!(
            "read init; read doc; echo run >> '{}'; kill -SEGV $$",
            runs.display()
        ),
    );
    let reads = || {
        let n = std::fs::read_to_string(&runs).unwrap().lines().count();
        std::fs::remove_file(&runs).unwrap();
        n
    };

    let e = run(&env.opts, &PdfRequest::new(&path)).await.unwrap_err();
    assert_eq!(e.kind(), "damaged", "{e}");
    assert!(!e.retryable());
    let msg = e.to_string();
    assert!(
        msg.contains("SIGSEGV")
            && msg.contains(
                "again in a new worker without images, then in a new worker without images and \
                 without page renders for OCR"
            ),
        "{msg}"
    );
    assert!(msg.contains("worker memory cap (2.0 GiB)"), "{msg}");
    assert_eq!(reads(), 3);

    let mut req = PdfRequest::new(&path);
    req.ocr = OcrMode::Never;
    req.extract_images = false;
    let e = run(&env.opts, &req).await.unwrap_err();
    assert!(e.to_string().contains("and again in a new worker: "), "{e}");
    assert_eq!(reads(), 2);
}
