//! The shared corpus (`../shared/corpus/pdf`) against its MANIFEST ground truth: page counts,
//! phrases, reading order, image counts and checksums, OCR'd scans, passwords, damaged files.
//! Every test skips with a printed reason when the corpus (or libpdfium/tesseract) is absent.

use std::path::Path;

use hlbot_pdf::{OcrMode, PdfDocument, PdfError, PdfOptions, PdfRequest, TextSource};

use crate::common::{self, assert_has, need_corpus, need_pdfium, need_tesseract, run, squash};

async fn doc(opts: &PdfOptions, dir: &Path, name: &str) -> PdfDocument {
    run(opts, &PdfRequest::new(dir.join(name)))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn image_count(d: &PdfDocument) -> usize {
    d.pages.iter().map(|p| p.images.len()).sum()
}

#[tokio::test]
async fn plain_text_documents() {
    let dir = need_corpus!();
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let d = doc(&env.opts, &dir, "py-pdf-sample-files__minimal-document.pdf").await;
    assert_eq!((d.page_count, image_count(&d)), (1, 0));
    assert!(squash(&d.text).starts_with("Lorem ipsum dolor sit amet, consetetur sadipscing elitr"));
    assert_eq!(d.pages[0].source, TextSource::Text);
    assert_eq!(d.stats.pages_ocr, 0);

    let d = doc(&env.opts, &dir, "py-pdf-sample-files__pdflatex-4-pages.pdf").await;
    assert_eq!((d.page_count, image_count(&d)), (4, 0));
    assert!(squash(&d.pages[0].text).starts_with("Hello, here is some text without a meaning."));
    // mupdf chars/page 3930, 3953, 3953, 2635: ours must be within 10 %.
    for (p, want) in d.pages.iter().zip([3930, 3953, 3953, 2635]) {
        let got = p.text.chars().count() as f64;
        assert!(
            (got - want as f64).abs() / (want as f64) < 0.1,
            "page {}: {got} chars vs {want}",
            p.number
        );
    }

    let d = doc(&env.opts, &dir, "pdfplumber__2023-06-20-PV.pdf").await;
    assert_eq!(d.page_count, 2);
    for phrase in [
        "COMITÉ DE DÉMOLITION",
        "PROCÈS-VERBAL",
        "Gaëtan Gagné",
        "IL EST RÉSOLU À L\u{2019}UNANIMITÉ",
    ] {
        assert_has(&d.text, phrase);
    }
    assert_eq!(d.pages[0].width, 612.0);
    assert_eq!(d.pages[0].height, 1008.0);
    let imgs = &d.pages[0].images;
    assert_eq!(imgs.len(), 1);
    assert_eq!(
        (imgs[0].format.as_str(), imgs[0].width, imgs[0].height),
        ("jpeg", 256, 183)
    );

    let d = doc(
        &env.opts,
        &dir,
        "pdfplumber__ag-energy-round-up-2017-02-24.pdf",
    )
    .await;
    for phrase in [
        "National Weekly Ag Energy Round-Up",
        "Iowa Ethanol",
        "Ethanol ($/gal)",
        "1.35 - 1.42",
    ] {
        assert_has(&d.text, phrase);
    }
}

#[tokio::test]
async fn multicolumn_reading_order_and_table() {
    let dir = need_corpus!();
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let d = doc(&env.opts, &dir, "py-pdf-sample-files__multicolumn.pdf").await;
    assert_eq!((d.page_count, image_count(&d)), (3, 0));
    let p1 = squash(&d.pages[0].text);
    assert!(
        p1.starts_with("Two-Column Document with Lorem Ipsum"),
        "{p1:.100}"
    );
    let left = p1
        .find("This is a sample document with two columns")
        .expect("left text");
    let right = p1
        .find("pellentesque ante. Phasellus adipiscing semper elit.")
        .expect("right text");
    assert!(left < right, "left column must come first");
    // Ligatures normalised, hyphenation rejoined.
    assert_has(&p1, "two columns filled with Lorem Ipsum text");
    assert_has(&p1, "metus rhoncus sem");
    assert_has(&d.pages[2].text, "Table 1: EU Countries Information");
    assert_has(&d.pages[2].text, "Austria 8.9 83,879 Vienna German");
    assert_has(&d.pages[2].text, "Official Language");
}

#[tokio::test]
async fn federal_register_three_columns_headers_and_ccitt_images() {
    let dir = need_corpus!();
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let d = doc(
        &env.opts,
        &dir,
        "pdfplumber__federal-register-2020-17221.pdf",
    )
    .await;
    assert_eq!(d.page_count, 15);
    assert_has(
        &d.text,
        "Airworthiness Directives; The Boeing Company Airplanes",
    );
    assert_has(&d.text, "Docket No. FAA\u{2013}2020\u{2013}0686");
    assert_has(
        &d.pages[1].text,
        "Federal Register / Vol. 85, No. 152 / Thursday, August 6, 2020 / Proposed Rules",
    );
    assert_has(&d.pages[0].text, "47698");
    assert_has(&d.pages[14].text, "47712");
    // Column text is not interleaved: a sentence that wraps inside the first column.
    assert_has(
        &d.pages[0].text,
        "The FAA proposes to supersede Airworthiness Directive (AD) 2018\u{2013}23\u{2013}51",
    );
    // Sideways margin note comes out readable, not letter by letter.
    assert_has(&d.pages[0].text, "with PROPOSALS");
    let per_page: Vec<usize> = d.pages.iter().map(|p| p.images.len()).collect();
    assert_eq!(per_page.iter().sum::<usize>(), 11, "{per_page:?}");
    assert!(
        per_page[..6].iter().chain(&per_page[14..]).all(|&n| n == 0),
        "{per_page:?}"
    );
    // mupdf counts 60,129 characters in total; ours must be within 10 %.
    let chars: usize = d.pages.iter().map(|p| p.text.chars().count()).sum();
    assert!((54_000..66_000).contains(&chars), "{chars}");
    assert_eq!(d.stats.pages_ocr, 0);
}

#[tokio::test]
async fn embedded_images() {
    let dir = need_corpus!();
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let d = doc(&env.opts, &dir, "py-pdf-sample-files__pdflatex-image.pdf").await;
    let img = &d.pages[0].images;
    assert_eq!(img.len(), 1);
    assert_eq!(
        (img[0].format.as_str(), img[0].width, img[0].height),
        ("jpeg", 300, 200)
    );
    let md5 = std::process::Command::new("md5sum")
        .arg(&img[0].path)
        .output()
        .expect("md5sum");
    assert!(String::from_utf8_lossy(&md5.stdout).starts_with("5b89fdb7497521c8ef90bc3656e54515"));
    assert!(squash(&d.text).starts_with("1 Your Chapter"));

    let d = doc(
        &env.opts,
        &dir,
        "py-pdf-sample-files__google-doc-document.pdf",
    )
    .await;
    let img = &d.pages[0].images;
    assert_eq!(img.len(), 1, "the SMask is not a separate picture");
    assert_eq!((img[0].width, img[0].height), (128, 128));
    // Its soft mask becomes the PNG's alpha channel; the corners are transparent.
    let png = image::open(&img[0].path).expect("png").to_rgba8();
    assert_eq!(png.get_pixel(0, 0).0[3], 0);
    assert_eq!(png.get_pixel(64, 64).0[3], 255);
    assert!(squash(&d.text).starts_with("Example document"));
    assert_has(&d.text, "Beautiful is better than ugly.");

    let d = doc(&env.opts, &dir, "gen_trading_report_with_charts.pdf").await;
    assert_eq!(d.page_count, 2);
    let f: Vec<(&str, u32, u32)> = d
        .pages
        .iter()
        .flat_map(|p| {
            p.images
                .iter()
                .map(|i| (i.format.as_str(), i.width, i.height))
        })
        .collect();
    assert_eq!(f, vec![("png", 770, 396), ("jpeg", 770, 396)]);
    for phrase in [
        "Weekly Market Review: Support Holds on the S&P 500",
        "tested the 4,200 support zone twice this week and closed at 4,287",
        "resistance at 4,325 and 4,400; support at 4,200 and 4,150",
    ] {
        assert_has(&d.text, phrase);
    }
    assert_eq!(
        d.metadata.title.as_deref(),
        Some("Weekly Market Review: Support Holds on the S&P 500")
    );

    let d = doc(
        &env.opts,
        &dir,
        "py-pdf-sample-files__GeoTopo-komprimiert.pdf",
    )
    .await;
    assert_eq!(d.page_count, 117);
    assert_eq!(image_count(&d), 10);
    assert!(d.pages[..23].iter().all(|p| p.images.is_empty()));
    assert_has(
        &d.pages[0].text,
        "Einführung in die Geometrie und Topologie",
    );
    assert_has(&d.pages[0].text, "Martin Thoma");
    assert_has(&d.pages[0].text, "Auflage");
    assert_has(&d.pages[116].text, "Stichwortverzeichnis");
    // Type 1C / Type 3 fonts without ToUnicode still extract: no page needs OCR.
    assert_eq!(d.stats.pages_ocr, 0, "{:?}", d.warnings);
}

#[tokio::test]
async fn scanned_pages_are_ocred() {
    let dir = need_corpus!();
    let lib = need_pdfium!();
    need_tesseract!();
    let env = common::env(&lib);
    let d = doc(&env.opts, &dir, "ocrmypdf__linn.pdf").await;
    assert_eq!((d.page_count, image_count(&d)), (1, 1));
    assert_eq!(d.pages[0].source, TextSource::Ocr);
    for phrase in [
        "The LinnSequencer",
        "32 Track MIDI Sequence Recorder",
        "It is extremely powerful, yet amazingly simple to learn and use",
        "Optional SMPTE time code synchronization",
    ] {
        assert_has(&d.text, phrase);
    }

    let d = doc(&env.opts, &dir, "gen_scanned_trading_notes.pdf").await;
    assert_eq!((d.page_count, image_count(&d)), (2, 2));
    assert!(d.pages.iter().all(|p| p.source == TextSource::Ocr));
    assert!(
        d.pages
            .iter()
            .all(|p| p.ocr_confidence.is_some_and(|c| c > 70.0))
    );
    for phrase in [
        "Support and Resistance Basics",
        "EUR/USD bounced from 1.0850",
        "Rule 3: Risk no more than 1% of the account per trade.",
    ] {
        assert_has(&d.pages[0].text, phrase);
    }
    assert_has(
        &d.pages[1].text,
        "Account 25,000 USD, stop 40 pips: risk 250 USD.",
    );
    // Most of the exact source text comes back (word overlap with the companion file).
    let truth = std::fs::read_to_string(dir.join("gen_scanned_trading_notes.p1.txt")).unwrap();
    let got = squash(&d.pages[0].text);
    let words: Vec<&str> = truth.split_whitespace().collect();
    let found = words.iter().filter(|w| got.contains(*w)).count();
    assert!(
        found * 100 >= words.len() * 95,
        "{found} of {} words",
        words.len()
    );

    // A picture with no text: OCR must not invent any.
    let d = doc(&env.opts, &dir, "py-pdf-sample-files__grayscale-image.pdf").await;
    assert_eq!(image_count(&d), 1);
    assert!(
        d.pages[0].text.split_whitespace().count() <= 3,
        "{:?}",
        d.pages[0].text
    );
}

#[tokio::test]
async fn encrypted_documents() {
    let dir = need_corpus!();
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let d = doc(&env.opts, &dir, "pypdf__r4-owner-password.pdf").await;
    assert_eq!(d.page_count, 1);
    assert_has(&d.text, "pdf encryption test");
    assert_has(&d.text, "password: asdfzxcv");

    let d = doc(&env.opts, &dir, "pdfplumber__pr-138-example.pdf").await;
    assert_eq!((d.page_count, image_count(&d)), (2, 0));
    for phrase in [
        "Home Loan Interest Rates",
        "Effective as at 9 April 2019",
        "Commonwealth Bank of Australia",
        "Investment Home Loan Interest Rates",
    ] {
        assert_has(&d.text, phrase);
    }

    let path = dir.join("pdfplumber__password-example.pdf");
    let err = run(&env.opts, &PdfRequest::new(&path)).await.unwrap_err();
    assert!(matches!(err, PdfError::PasswordRequired(_)), "{err}");
    let mut req = PdfRequest::new(&path);
    req.password = Some("not-it".into());
    let err = run(&env.opts, &req).await.unwrap_err();
    assert!(matches!(err, PdfError::WrongPassword(_)), "{err}");
    assert!(
        !err.to_string().contains("not-it"),
        "password leaked: {err}"
    );
    req.password = Some("test".into());
    let d = run(&env.opts, &req).await.expect("with password");
    assert_eq!(d.page_count, 4);
    assert!(
        squash(&d.pages[0].text)
            .starts_with("Backup4all \u{2013}backup solution for network environments")
            || squash(&d.pages[0].text).starts_with("Backup4all –backup solution")
    );
    assert_has(
        &d.pages[3].text,
        "Create PDF files without this message by purchasing novaPDF printer",
    );
    // The cached result of the right password is not served without it.
    let err = run(&env.opts, &PdfRequest::new(&path)).await.unwrap_err();
    assert!(matches!(err, PdfError::PasswordRequired(_)), "{err}");
}

#[tokio::test]
async fn damaged_and_empty_files() {
    let dir = need_corpus!();
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let e = run(
        &env.opts,
        &PdfRequest::new(dir.join("ocrmypdf__invalid.pdf")),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, PdfError::Damaged { .. }), "{e}");
    let e = run(
        &env.opts,
        &PdfRequest::new(dir.join("pdfplumber__empty.pdf")),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, PdfError::EmptyFile(_)), "{e}");
    match run(
        &env.opts,
        &PdfRequest::new(dir.join("derived_truncated_pdflatex-4-pages.pdf")),
    )
    .await
    {
        Err(e) => assert!(matches!(e, PdfError::Damaged { .. }), "{e}"),
        Ok(d) => assert!(!d.warnings.is_empty(), "partial result needs warnings"),
    }
    let mut req = PdfRequest::new(dir.join("pdfminer__zen_of_python_corrupted.pdf"));
    req.ocr = OcrMode::Never;
    let d = run(&env.opts, &req).await.expect("recoverable");
    assert_eq!((d.page_count, d.pages[0].rotation), (1, 90));
    assert_has(&d.text, "Beautiful is better than ugly.");
    assert_has(
        &d.text,
        "Namespaces are one honking great idea \u{2212}\u{2212} let\u{2019}s do more of those!",
    );
    let t = squash(&d.text);
    assert!(t.find("Beautiful is better").unwrap() < t.find("Namespaces are one").unwrap());
}

/// The garbage-text threshold measured on the corpus: every PDF that opens is read with OCR
/// off and its pages' OCR verdicts printed (the table in `docs/pdf.md`). Only the pages
/// without a text layer are flagged; no page with good text is.
#[tokio::test]
async fn triage_flags_only_pages_that_need_ocr() {
    let dir = need_corpus!();
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".pdf"))
        .collect();
    names.sort();
    let expect_flagged = [
        ("gen_scanned_trading_notes.pdf", 2),
        ("ocrmypdf__linn.pdf", 1),
        ("py-pdf-sample-files__grayscale-image.pdf", 1),
    ];
    let mut opened = 0;
    for name in names {
        let mut req = PdfRequest::new(dir.join(&name));
        req.ocr = OcrMode::Never;
        if name == "pdfplumber__password-example.pdf" {
            req.password = Some("test".into());
        }
        let Ok(d) = run(&env.opts, &req).await else {
            eprintln!("{name}: does not open (expected for the damaged and empty files)");
            continue;
        };
        opened += 1;
        let flagged: Vec<String> = d
            .pages
            .iter()
            .filter_map(|p| Some(format!("p.{} {}", p.number, p.ocr_reason.as_deref()?)))
            .collect();
        eprintln!(
            "| {name} | {} | {} | {} |",
            d.pages.len(),
            flagged.len(),
            flagged.join("; ")
        );
        let want = expect_flagged
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, k)| *k);
        assert_eq!(flagged.len(), want, "{name}: {flagged:?}");
        assert!(
            flagged.iter().all(|f| f.ends_with("no text layer")),
            "{name}: {flagged:?}"
        );
    }
    assert!(opened >= 17, "only {opened} corpus PDFs opened");
}
