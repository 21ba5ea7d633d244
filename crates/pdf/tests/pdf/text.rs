//! Text you can trust: a text layer in fonts without a Unicode mapping is OCR'd instead (and
//! the page says so), right-to-left lines come out in logical order, mixed RTL/LTR lines too,
//! and the values of a filled form and FreeText comments are part of the page's text.

use hlbot_pdf::{PdfRequest, TextSource};

use crate::common::{self, assert_has, need_pdfium, need_tesseract, run};
use crate::fixtures::Pdf;
use crate::fonts::{self, Ttf};

const DEJAVU: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// A document whose pages use the fonts `fonts` (resource name, object id) and draw `contents`.
fn build(mut pdf: Pdf, fonts: &[(&str, usize)], contents: &[String]) -> Vec<u8> {
    let catalog = pdf.reserve();
    let tree = pdf.reserve();
    let res: String = fonts
        .iter()
        .map(|(n, id)| format!("/{n} {id} 0 R "))
        .collect();
    let mut kids = String::new();
    for c in contents {
        let content = pdf.stream("", c.as_bytes());
        let page = pdf.add(format!(
            "<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 612 792] /Resources << /Font << {res}>> >> /Contents {content} 0 R >>"
        ));
        kids.push_str(&format!("{page} 0 R "));
    }
    pdf.set(
        tree,
        format!(
            "<< /Type /Pages /Kids [{kids}] /Count {} >>",
            contents.len()
        ),
    );
    pdf.set(catalog, format!("<< /Type /Catalog /Pages {tree} 0 R >>"));
    pdf.finish(catalog, None)
}

/// Words drawn as shapes (what a reader sees) under a text layer of `layer` lines in `font`,
/// set as invisible text (render mode 3) like an OCR'd scan's layer, one line per 20 pt.
fn scan_under(words: &[&str], font: &str, layer: &[&str]) -> String {
    let mut c = crate::fixtures::vector_scan_content(words);
    for (i, line) in layer.iter().enumerate() {
        c.push_str(&format!(
            "BT 3 Tr /{font} 12 Tf 72 {} Td ({line}) Tj ET\n",
            700 - 20 * i as i32
        ));
    }
    c
}

#[tokio::test]
async fn text_in_fonts_without_unicode_is_ocred_and_says_why() {
    let lib = need_pdfium!();
    need_tesseract!();
    let env = common::env(&lib);
    let mut pdf = Pdf::default();
    let type3 = fonts::unmapped_type3(&mut pdf);
    let scrambled = fonts::scrambled_helvetica(&mut pdf);
    // Page 1: codes with no Unicode mapping at all. Page 2: codes that map to letters, but
    // the wrong ones ("abcd" shows as "qxzk").
    let unmapped = "\\001\\002\\003 \\004\\005\\006\\007 \\010\\001\\002\\003\\004";
    let nonsense = "abcd efgh hgfe dcba abch gfed bbcd ehgf";
    let pages = [
        scan_under(&["BUY SUPPORT", "SELL HIGHS"], "T3", &[unmapped, unmapped]),
        scan_under(&["BUY LOWS", "SELL HIGHER"], "F3", &[nonsense, nonsense]),
    ];
    let bytes = build(pdf, &[("T3", type3), ("F3", scrambled)], &pages);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unmapped.pdf");
    std::fs::write(&path, bytes).unwrap();
    let doc = run(&env.opts, &PdfRequest::new(&path))
        .await
        .expect("process");
    for (page, words) in doc
        .pages
        .iter()
        .zip([["BUY SUPPORT", "SELL HIGHS"], ["BUY LOWS", "SELL HIGHER"]])
    {
        eprintln!(
            "page {}: {:?} {:?}",
            page.number, page.ocr_reason, page.text
        );
        assert_eq!(page.source, TextSource::Ocr, "page {}", page.number);
        let reason = page.ocr_reason.as_deref().unwrap_or_default();
        assert!(reason.starts_with("garbage text layer"), "{reason}");
        for w in words {
            assert_has(&page.text, w);
        }
    }
    assert!(
        doc.pages[0]
            .ocr_reason
            .as_deref()
            .is_some_and(|r| r.contains("without Unicode mapping")),
        "{:?}",
        doc.pages[0].ocr_reason
    );
    assert!(
        doc.pages[1]
            .ocr_reason
            .as_deref()
            .is_some_and(|r| r.contains("word-like")),
        "{:?}",
        doc.pages[1].ocr_reason
    );
    assert_eq!(doc.stats.pages_ocr, 2);
}

/// Logical → visual order with the Unicode bidi algorithm: how a PDF producer draws a line.
fn visual(logical: &str) -> String {
    let info = unicode_bidi::BidiInfo::new(logical, None);
    let para = &info.paragraphs[0];
    info.reorder_line(para, para.range.clone()).into_owned()
}

#[tokio::test]
async fn right_to_left_lines_come_out_in_logical_order() {
    let lib = need_pdfium!();
    let Some(ttf) = Ttf::load(DEJAVU) else {
        // The font ships with the setup's package list; under CI its absence is a failure.
        assert!(std::env::var("CI").is_err(), "{DEJAVU} is missing");
        eprintln!("skipped: {DEJAVU} is missing");
        return;
    };
    let env = common::env(&lib);
    let lines = [
        "הממוצע הנע 200 מעל המחיר",
        "Buy EUR/USD כאשר RSI מתחת 30",
        "مؤشر القوة النسبية 14 يوم",
        "Stop below the swing low",
    ];
    let mut pdf = Pdf::default();
    let font = fonts::type0(&mut pdf, &ttf, &lines);
    let mut content = String::new();
    for (i, l) in lines.iter().enumerate() {
        // Glyphs drawn left to right in display order, as producers write them.
        content.push_str(&format!(
            "BT /F1 14 Tf 72 {} Td {} Tj ET\n",
            700 - 30 * i as i32,
            fonts::glyphs_hex(&ttf, &visual(l))
        ));
    }
    let bytes = build(pdf, &[("F1", font)], &[content]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rtl.pdf");
    std::fs::write(&path, bytes).unwrap();
    let doc = run(&env.opts, &PdfRequest::new(&path))
        .await
        .expect("process");
    let got: Vec<&str> = doc.pages[0].text.lines().collect();
    eprintln!("{got:?}");
    assert_eq!(got, lines);
    assert_eq!(doc.pages[0].source, TextSource::Text);
}

/// A filled form: labels in the page content, the values in text-field widgets and a FreeText
/// comment, each drawn by its appearance stream (as every form filler writes them), plus a
/// link and a sticky note that carry no page text.
fn filled_form_pdf() -> Vec<u8> {
    let mut pdf = Pdf::default();
    let catalog = pdf.reserve();
    let tree = pdf.reserve();
    let page = pdf.reserve();
    let font = pdf
        .add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>");
    let labels = "BT /F1 12 Tf 72 700 Td (Instrument:) Tj 0 -30 Td (Entry price:) Tj 0 -30 Td (Stop loss:) Tj ET";
    let content = pdf.stream("", labels.as_bytes());
    let mut annots = Vec::new();
    for (name, value, y) in [
        ("instrument", "EUR/USD", 695),
        ("entry", "1.0850", 665),
        ("stop", "1.0800", 635),
    ] {
        let ap = pdf.stream(
            &format!("/Type /XObject /Subtype /Form /BBox [0 0 200 20] /Resources << /Font << /Helv {font} 0 R >> >>"),
            format!("/Tx BMC BT /Helv 12 Tf 2 5 Td ({value}) Tj ET EMC").as_bytes(),
        );
        annots.push(pdf.add(format!(
            "<< /Type /Annot /Subtype /Widget /FT /Tx /T ({name}) /V ({value}) /F 4 /Rect [180 {y} 380 {}] /P {page} 0 R /DA (/Helv 12 Tf 0 g) /AP << /N {ap} 0 R >> >>",
            y + 20
        )));
    }
    let note_ap = pdf.stream(
        &format!("/Type /XObject /Subtype /Form /BBox [0 0 300 40] /Resources << /Font << /Helv {font} 0 R >> >>"),
        b"BT /Helv 11 Tf 4 24 Td (Reviewer: move the stop under the 1.0790 swing low) Tj ET",
    );
    annots.push(pdf.add(format!(
        "<< /Type /Annot /Subtype /FreeText /F 4 /Rect [72 500 372 540] /Contents (Reviewer: move the stop under the 1.0790 swing low) /DA (/Helv 11 Tf 0 g) /AP << /N {note_ap} 0 R >> >>"
    )));
    annots.push(pdf.add("<< /Type /Annot /Subtype /Link /Rect [72 450 200 470] /A << /S /URI /URI (https://example.com/) >> >>"));
    annots.push(pdf.add("<< /Type /Annot /Subtype /Text /Rect [400 450 420 470] /Contents (a sticky note) /Open false >>"));
    let annot_refs: String = annots.iter().map(|a| format!("{a} 0 R ")).collect();
    let fields: String = annots[..3].iter().map(|a| format!("{a} 0 R ")).collect();
    pdf.set(page, format!(
        "<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {font} 0 R >> >> /Contents {content} 0 R /Annots [{annot_refs}] >>"
    ));
    pdf.set(
        tree,
        format!("<< /Type /Pages /Kids [{page} 0 R] /Count 1 >>"),
    );
    pdf.set(catalog, format!(
        "<< /Type /Catalog /Pages {tree} 0 R /AcroForm << /Fields [{fields}] /DA (/Helv 0 Tf 0 g) >> >>"
    ));
    pdf.finish(catalog, None)
}

/// Found in pdf.js's test PDFs: PDFium's text page holds no annotation, so a filled form read as
/// its labels alone ("Entry price:" without the price), a FreeText comment not at all.
#[tokio::test]
async fn a_filled_form_reads_with_its_values_and_comments() {
    let lib = need_pdfium!();
    let env = common::env(&lib);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("form.pdf");
    std::fs::write(&path, filled_form_pdf()).unwrap();
    let doc = run(&env.opts, &PdfRequest::new(&path))
        .await
        .expect("process");
    let text = &doc.pages[0].text;
    eprintln!("{text}");
    for phrase in [
        "Instrument: EUR/USD",
        "Entry price: 1.0850",
        "Stop loss: 1.0800",
        "Reviewer: move the stop under the 1.0790 swing low",
    ] {
        assert_has(text, phrase);
    }
    assert!(!text.contains("sticky note"), "{text}");
    assert_eq!(doc.pages[0].source, TextSource::Text);
    assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
}
