//! Text you can trust: a text layer in fonts without a Unicode mapping is OCR'd instead (and
//! the page says so), right-to-left lines come out in logical order, mixed RTL/LTR lines too.

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
