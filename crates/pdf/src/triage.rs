//! Per-page triage: decides whether a page's text layer is usable or the page needs OCR
//! (no text layer, garbage glyphs, or a page-sized image under thin text). Pure logic.

use crate::options::OcrMode;

/// What the PDFium pass measured on one page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageSignals {
    /// Non-whitespace characters in the text layer.
    pub chars: usize,
    /// Characters without a usable Unicode mapping (U+0000, U+FFFD, private use, controls).
    pub bad_chars: usize,
    /// Fraction (0–1) of the page area covered by the largest image.
    pub image_cover: f32,
    /// Number of page objects of any kind (0 = truly blank page).
    pub objects: usize,
    /// Of those, text objects (each draws at least one glyph).
    pub text_objects: usize,
}

/// Pages with fewer non-whitespace characters than this are "thin": a page-sized image under
/// them means a scan.
const THIN_TEXT_CHARS: usize = 200;

/// At least this many text objects giving under half a character each is a lost text layer.
const LOST_TEXT_OBJECTS: usize = 50;

/// Whether the page-object signals (`image_cover`, `objects`, `text_objects`) can change the
/// verdict for a page with these glyph counts; when not, the worker skips walking the page's
/// objects.
pub fn uses_page_objects(s: &PageSignals) -> bool {
    s.chars < THIN_TEXT_CHARS
}

/// True for a character that a font without a Unicode mapping typically produces.
pub fn is_bad_char(c: char) -> bool {
    let u = c as u32;
    c == '\u{FFFD}'
        || (c.is_control() && !c.is_whitespace() && c != '\u{2}')
        || (0xE000..=0xF8FF).contains(&u)
        || (0xF0000..=0x10FFFF).contains(&u)
}

/// Share (0–1) of whitespace-separated tokens that look like words or numbers.
pub fn wordlike_ratio(text: &str) -> (f32, usize) {
    let mut total = 0usize;
    let mut good = 0usize;
    for tok in text.split_whitespace() {
        let core = tok.trim_matches(|c: char| !c.is_alphanumeric());
        // Dot leaders, bullets and dashes (tables of contents, lists) say nothing either way.
        if core.is_empty() && tok.chars().all(|c| ".…·•-–—_|".contains(c)) {
            continue;
        }
        total += 1;
        if !core.is_empty() && (is_numberish(core) || is_wordish(core)) {
            good += 1;
        }
    }
    if total == 0 {
        (0.0, 0)
    } else {
        (good as f32 / total as f32, total)
    }
}

fn is_numberish(t: &str) -> bool {
    let digits = t.chars().filter(char::is_ascii_digit).count();
    digits > 0
        && t.chars()
            .all(|c| c.is_ascii_digit() || ".,:/%$€£-–+()".contains(c) || c.is_alphabetic())
        && digits * 2 >= t.chars().count()
}

fn is_wordish(t: &str) -> bool {
    let letters = t.chars().filter(|c| c.is_alphabetic()).count();
    let n = t.chars().count();
    if letters == 0 || letters * 10 < n * 8 {
        return false;
    }
    // Scripts without Latin vowels (CJK, Cyrillic, ...) are trusted as words.
    if t.chars()
        .any(|c| c.is_alphabetic() && !c.is_ascii() && !is_latin_ext(c))
    {
        return true;
    }
    if n <= 3 {
        return true;
    }
    let vowels = t.chars().filter(|c| is_vowel(*c)).count();
    vowels > 0 && n <= 30
}

fn is_latin_ext(c: char) -> bool {
    ('\u{00C0}'..='\u{024F}').contains(&c)
}

fn is_vowel(c: char) -> bool {
    if c.is_ascii() {
        return matches!(c.to_ascii_lowercase(), 'a' | 'e' | 'i' | 'o' | 'u' | 'y');
    }
    let l = c.to_lowercase().next().unwrap_or(c);
    "aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýÿœ".contains(l)
}

/// Why a page needs OCR, or `None` when its text layer is good enough.
pub fn ocr_reason(mode: OcrMode, signals: &PageSignals, text: &str) -> Option<String> {
    match mode {
        OcrMode::Never => return needs_ocr(signals, text),
        OcrMode::Always => return Some("ocr=always".to_string()),
        OcrMode::Auto => {}
    }
    needs_ocr(signals, text)
}

fn needs_ocr(s: &PageSignals, text: &str) -> Option<String> {
    if s.chars == 0 {
        return (s.objects > 0).then(|| "no text layer".to_string());
    }
    if s.bad_chars * 10 >= s.chars * 3 {
        return Some(format!(
            "garbage text layer ({} of {} glyphs without Unicode mapping)",
            s.bad_chars, s.chars
        ));
    }
    let (ratio, tokens) = wordlike_ratio(text);
    if tokens >= 8 && ratio < 0.5 {
        return Some(format!(
            "garbage text layer ({:.0}% word-like tokens)",
            ratio * 100.0
        ));
    }
    // Text PDFium draws but its text page drops (vertical CJK writing in Identity-V fonts:
    // pdfminer's kampo.pdf, 2 624 text objects giving 28 characters).
    if s.text_objects >= LOST_TEXT_OBJECTS && s.chars * 2 < s.text_objects {
        return Some(format!(
            "text layer lost ({} text objects gave {} characters: vertical writing or fonts \
             the engine cannot map)",
            s.text_objects, s.chars
        ));
    }
    if s.image_cover >= 0.5 && s.chars < THIN_TEXT_CHARS {
        return Some(format!(
            "large image ({:.0}% of the page) with thin text ({} chars)",
            s.image_cover * 100.0,
            s.chars
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(chars: usize, bad: usize, cover: f32) -> PageSignals {
        PageSignals {
            chars,
            bad_chars: bad,
            image_cover: cover,
            objects: 1,
            text_objects: 0,
        }
    }

    #[test]
    fn good_text_needs_no_ocr() {
        let t = "Support held at 4,200 twice this week; resistance at 4,325 and 4,400.";
        assert_eq!(ocr_reason(OcrMode::Auto, &sig(t.len(), 0, 0.0), t), None);
        let t = "Einführung in die Geometrie und Topologie für Studenten";
        assert_eq!(ocr_reason(OcrMode::Auto, &sig(t.len(), 0, 0.0), t), None);
        let t = "1.1 Topologische Räume . . . . . . . . . . . . . . . . . . . . . . . 2";
        assert_eq!(ocr_reason(OcrMode::Auto, &sig(t.len(), 0, 0.0), t), None);
        let t = "1.35 - 1.42 2.10 - 2.25 $/gal 13.5% 47,698";
        assert_eq!(ocr_reason(OcrMode::Auto, &sig(t.len(), 0, 0.0), t), None);
    }

    #[test]
    fn empty_garbage_and_scans_need_ocr() {
        assert!(ocr_reason(OcrMode::Auto, &sig(0, 0, 1.0), "").is_some());
        let blank = PageSignals::default();
        assert_eq!(ocr_reason(OcrMode::Auto, &blank, ""), None);
        let t = "\u{E001}\u{E002}\u{E003} \u{E004}";
        assert!(ocr_reason(OcrMode::Auto, &sig(4, 4, 0.0), t).is_some());
        let t = "#$% &*( !@#$ %^&* ()_+ {}|: <>?~ `~!@ #$%^ &*() x";
        let r = ocr_reason(OcrMode::Auto, &sig(t.len(), 0, 0.0), t).unwrap();
        assert!(r.contains("word-like"), "{r}");
        let t = "Xqzt Bkrw Pfft Glmnv Trzdp Qwrtx Zkpvb Mnbvc Hjklt";
        assert!(ocr_reason(OcrMode::Auto, &sig(t.len(), 0, 0.0), t).is_some());
        let r = ocr_reason(OcrMode::Auto, &sig(20, 0, 0.9), "Scanned by CamScanner").unwrap();
        assert!(r.contains("large image"), "{r}");
        assert!(ocr_reason(OcrMode::Always, &sig(500, 0, 0.0), "fine").is_some());
        // Thousands of text objects and a header line of text: the rest was lost.
        let lost = PageSignals {
            text_objects: 2624,
            objects: 2700,
            ..sig(28, 0, 0.0)
        };
        let r = ocr_reason(OcrMode::Auto, &lost, "平成 日 金曜日 官報 第").unwrap();
        assert!(r.contains("text layer lost"), "{r}");
        // One glyph per object (a common producer habit) is a normal layer.
        let per_glyph = PageSignals {
            text_objects: 120,
            ..sig(120, 0, 0.0)
        };
        assert_eq!(
            ocr_reason(
                OcrMode::Auto,
                &per_glyph,
                "Support held at 4,200 twice this week; resistance at 4,325 and 4,400 again and again."
            ),
            None
        );
    }
}
