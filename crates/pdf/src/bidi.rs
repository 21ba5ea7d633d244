//! Right-to-left text back in logical order. PDFium hands a line's characters over in drawing
//! (visual, left-to-right) order; Arabic or Hebrew then reads backwards. `logical` undoes the
//! Unicode bidi display order of one visual line: the paragraph direction is the majority of
//! its strong characters, RTL words are reversed, LTR words and numbers inside RTL text keep
//! their own order, and the runs are put back in reading order. Pure text; knows nothing of
//! PDFium or geometry.
//!
//! Undoing bidi is not unique: a number drawn between an LTR word and an RTL word is read as
//! belonging to the RTL phrase ("RSI מתחת 30", the usual case in Hebrew and Arabic prose).

use unicode_bidi::{BidiClass, bidi_class};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rtl,
    Ltr,
    Number,
    Neutral,
}

fn kind(c: char) -> Kind {
    match bidi_class(c) {
        BidiClass::R | BidiClass::AL => Kind::Rtl,
        BidiClass::L => Kind::Ltr,
        BidiClass::EN | BidiClass::AN => Kind::Number,
        _ => Kind::Neutral,
    }
}

/// Whether `c` lies in a block where right-to-left letters live (Hebrew, Arabic, Syriac, …,
/// their presentation forms, the historic RTL planes, and U+200F RIGHT-TO-LEFT MARK). A range
/// test, no table lookup: most text (Latin, but also dashes, quotes and ligatures, which are
/// above U+0590 too) is ruled out here. Every character of bidi class R or AL is inside
/// (unit test `rtl_blocks_hold_every_rtl_letter`).
fn in_rtl_block(c: char) -> bool {
    matches!(c as u32,
        0x0590..=0x08FF | 0x200F | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF | 0x10800..=0x10FFF
            | 0x1E800..=0x1EFFF)
}

/// Whether `c` is a right-to-left letter (Hebrew, Arabic, …).
pub(crate) fn is_rtl(c: char) -> bool {
    in_rtl_block(c) && kind(c) == Kind::Rtl
}

/// Whether `c` joins the digits on both sides into one number ("1.5", "10,000", "3/4").
fn joins_numbers(c: char) -> bool {
    matches!(bidi_class(c), BidiClass::CS | BidiClass::ES | BidiClass::ET)
}

/// One visual line (left to right as drawn) in logical order. Lines without RTL characters
/// come back unchanged.
pub(crate) fn logical(visual: String) -> String {
    // Most lines hold no character from a right-to-left block: handed back as they are.
    if !visual.chars().any(in_rtl_block) {
        return visual;
    }
    let visual = visual.as_str();
    let chars: Vec<char> = visual.chars().collect();
    let kinds: Vec<Kind> = chars.iter().map(|&c| kind(c)).collect();
    let rtl = kinds.iter().filter(|k| **k == Kind::Rtl).count();
    if rtl == 0 {
        return visual.to_string();
    }
    let ltr = kinds.iter().filter(|k| **k == Kind::Ltr).count();
    let tokens = tokens(&chars, &kinds);
    if rtl > ltr {
        // RTL paragraph: the whole line was reversed, then every LTR run and number again.
        render(&tokens, 0, tokens.len(), true, &chars)
    } else {
        // LTR paragraph: each RTL phrase (RTL words with the numbers next to them) was
        // reversed where it stands.
        let mut out = String::new();
        let mut i = 0;
        while i < tokens.len() {
            match rtl_span(&tokens, i) {
                Some(end) => {
                    out.push_str(&render(&tokens, i, end, true, &chars));
                    i = end;
                }
                None => {
                    out.push_str(&render(&tokens, i, i + 1, false, &chars));
                    i += 1;
                }
            }
        }
        out
    }
}

/// A run of characters shown in one direction: RTL letters, an LTR run (letters with the
/// neutrals between them), a number, or neutrals (spaces, punctuation) between runs.
#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

fn tokens(chars: &[char], kinds: &[Kind]) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::new();
    let n = chars.len();
    let mut i = 0;
    while i < n {
        let k = kinds[i];
        let mut j = i + 1;
        while j < n {
            let same = kinds[j] == k;
            // Neutrals between two letters of the same direction belong to them; a separator
            // between digits belongs to the number.
            let bridged = kinds[j] == Kind::Neutral && {
                let next = (j..n).find(|&m| kinds[m] != Kind::Neutral);
                match (k, next) {
                    (Kind::Ltr | Kind::Rtl, Some(m)) => kinds[m] == k,
                    (Kind::Number, Some(m)) => {
                        m == j + 1 && kinds[m] == Kind::Number && joins_numbers(chars[j])
                    }
                    _ => false,
                }
            };
            if !(same || bridged) {
                break;
            }
            j += 1;
        }
        out.push(Token {
            kind: k,
            start: i,
            end: j,
        });
        i = j;
    }
    out
}

/// The end (exclusive token index) of the RTL phrase starting at token `i`: RTL words and
/// numbers with only neutrals between them, at least one RTL word, no neutrals at either end.
fn rtl_span(tokens: &[Token], i: usize) -> Option<usize> {
    if !matches!(tokens[i].kind, Kind::Rtl | Kind::Number) {
        return None;
    }
    let mut end = i;
    let mut has_rtl = false;
    let mut j = i;
    while j < tokens.len() {
        match tokens[j].kind {
            Kind::Rtl | Kind::Number => {
                has_rtl |= tokens[j].kind == Kind::Rtl;
                end = j + 1;
            }
            Kind::Neutral => {}
            Kind::Ltr => break,
        }
        j += 1;
    }
    // A number on its own between LTR words is not part of any RTL phrase.
    if !has_rtl {
        return None;
    }
    Some(end)
}

/// Tokens `a..b` as text; `reversed` undoes an RTL display (token order and RTL/neutral
/// characters reversed, LTR runs and numbers kept).
fn render(tokens: &[Token], a: usize, b: usize, reversed: bool, chars: &[char]) -> String {
    let mut out = String::new();
    let list: Box<dyn Iterator<Item = &Token>> = if reversed {
        Box::new(tokens[a..b].iter().rev())
    } else {
        Box::new(tokens[a..b].iter())
    };
    for t in list {
        let s = &chars[t.start..t.end];
        match (reversed, t.kind) {
            (true, Kind::Rtl | Kind::Neutral) => out.extend(s.iter().rev()),
            _ => out.extend(s.iter()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logical → visual with the real Unicode bidi algorithm, as a PDF producer draws it.
    fn visual(logical: &str) -> String {
        let info = unicode_bidi::BidiInfo::new(logical, None);
        let para = &info.paragraphs[0];
        info.reorder_line(para, para.range.clone()).into_owned()
    }

    #[test]
    fn hebrew_and_arabic_lines_come_back_in_logical_order() {
        for l in [
            "שלום עולם",
            "הממוצע הנע 200 מעל המחיר",
            "קנה כאשר RSI מתחת ל-30",
            "مؤشر القوة النسبية 14 يوم",
            "Buy EUR/USD כאשר RSI מתחת 30",
            "Buy EUR/USD when RSI is below 30",
            "יחס סיכון 1:2 ברור",
        ] {
            assert_eq!(logical(visual(l)), l, "visual {:?}", visual(l));
        }
    }

    #[test]
    fn rtl_blocks_hold_every_rtl_letter() {
        let outside: Vec<u32> = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| kind(c) == Kind::Rtl && !in_rtl_block(c))
            .map(|c| c as u32)
            .collect();
        assert!(
            outside.is_empty(),
            "RTL letters outside the blocks: {outside:x?}"
        );
        // Dashes, quotes and ligatures are above U+0590 but not right-to-left.
        assert!(!"\u{2013}\u{201C}\u{FB01}\u{2022}".chars().any(in_rtl_block));
    }

    #[test]
    fn ltr_lines_are_untouched() {
        assert_eq!(
            logical("EMA 20 (1.5%) pullback".into()),
            "EMA 20 (1.5%) pullback"
        );
    }
}
