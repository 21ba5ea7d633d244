//! Fonts for hand-written fixtures: an embedded TrueType font as a Type0/CIDFontType2 font
//! (glyph ids as codes, real widths from `hmtx`, a ToUnicode CMap), enough for PDFium to place
//! and map any script the font covers; and a Type3 font whose codes have no Unicode mapping.

use std::fmt::Write as _;

use crate::fixtures::Pdf;

/// The few tables of a TrueType font a PDF writer needs: cmap (format 4) and advance widths.
pub struct Ttf {
    data: Vec<u8>,
    cmap4: usize,
    hmtx: usize,
    metrics: u16,
    units: u16,
}

fn u16_at(d: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([d[o], d[o + 1]])
}

fn u32_at(d: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]])
}

impl Ttf {
    pub fn load(path: &str) -> Option<Ttf> {
        let data = std::fs::read(path).ok()?;
        let tables = u16_at(&data, 4) as usize;
        let table = |tag: &[u8]| {
            (0..tables)
                .map(|i| 12 + 16 * i)
                .find(|&r| &data[r..r + 4] == tag)
                .map(|r| u32_at(&data, r + 8) as usize)
        };
        let (cmap, head, hhea, hmtx) = (
            table(b"cmap")?,
            table(b"head")?,
            table(b"hhea")?,
            table(b"hmtx")?,
        );
        let cmap4 = (0..u16_at(&data, cmap + 2) as usize)
            .map(|i| cmap + 4 + 8 * i)
            .map(|r| cmap + u32_at(&data, r + 4) as usize)
            .find(|&sub| u16_at(&data, sub) == 4)?;
        Some(Ttf {
            cmap4,
            hmtx,
            metrics: u16_at(&data, hhea + 34),
            units: u16_at(&data, head + 18),
            data,
        })
    }

    /// Glyph id of `c` (0 when the font lacks it).
    pub fn gid(&self, c: char) -> u16 {
        let (d, t) = (&self.data, self.cmap4);
        let c = c as u32;
        if c > 0xFFFF {
            return 0;
        }
        let seg2 = u16_at(d, t + 6) as usize;
        for i in 0..seg2 / 2 {
            let end = u16_at(d, t + 14 + 2 * i) as u32;
            if c > end {
                continue;
            }
            let start = u16_at(d, t + 16 + seg2 + 2 * i) as u32;
            if c < start {
                return 0;
            }
            let delta = u16_at(d, t + 16 + 2 * seg2 + 2 * i) as u32;
            let ro_at = t + 16 + 3 * seg2 + 2 * i;
            let ro = u16_at(d, ro_at) as usize;
            if ro == 0 {
                return ((c + delta) & 0xFFFF) as u16;
            }
            let g = u16_at(d, ro_at + ro + 2 * (c - start) as usize) as u32;
            return if g == 0 {
                0
            } else {
                ((g + delta) & 0xFFFF) as u16
            };
        }
        0
    }

    /// Advance width of glyph `gid` in PDF text space units (1/1000 em).
    pub fn width(&self, gid: u16) -> u32 {
        let i = gid.min(self.metrics - 1) as usize;
        let adv = u16_at(&self.data, self.hmtx + 4 * i) as u32;
        adv * 1000 / self.units as u32
    }
}

/// Adds `ttf` as a Type0 font that can show every character of `texts`; returns the font
/// object and a function-ready map to encode a string as the hex glyph string for `Tj`.
pub fn type0(pdf: &mut Pdf, ttf: &Ttf, texts: &[&str]) -> usize {
    let mut chars: Vec<char> = texts.iter().flat_map(|t| t.chars()).collect();
    chars.sort_unstable();
    chars.dedup();
    let mut widths = String::new();
    let mut bf = String::new();
    for &c in &chars {
        let g = ttf.gid(c);
        assert!(g != 0, "the font has no glyph for {c:?}");
        let _ = write!(widths, "{g} [{}] ", ttf.width(g));
        let mut utf16 = [0u16; 2];
        let hex: String = c
            .encode_utf16(&mut utf16)
            .iter()
            .map(|u| format!("{u:04X}"))
            .collect();
        let _ = writeln!(bf, "<{g:04X}> <{hex}>");
    }
    let cmap = format!(
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n\
         /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
         /CMapName /Adobe-Identity-UCS def /CMapType 2 def\n\
         1 begincodespacerange <0000> <FFFF> endcodespacerange\n\
         {} beginbfchar\n{bf}endbfchar\n\
         endcmap CMapName currentdict /CMap defineresource pop end end",
        chars.len()
    );
    let to_unicode = pdf.stream("", cmap.as_bytes());
    let file = pdf.stream(&format!("/Length1 {}", ttf.data.len()), &ttf.data.clone());
    let descriptor = pdf.add(format!(
        "<< /Type /FontDescriptor /FontName /DejaVuSans /Flags 32 /FontBBox [-1021 -463 1793 1232] /ItalicAngle 0 /Ascent 928 /Descent -236 /CapHeight 729 /StemV 80 /FontFile2 {file} 0 R >>"
    ));
    let cid = pdf.add(format!(
        "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /DejaVuSans /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /FontDescriptor {descriptor} 0 R /CIDToGIDMap /Identity /DW 1000 /W [{widths}] >>"
    ));
    pdf.add(format!(
        "<< /Type /Font /Subtype /Type0 /BaseFont /DejaVuSans /Encoding /Identity-H /DescendantFonts [{cid} 0 R] /ToUnicode {to_unicode} 0 R >>"
    ))
}

/// `text` as the hex string of glyph ids a `type0` font shows with `Tj`.
pub fn glyphs_hex(ttf: &Ttf, text: &str) -> String {
    let hex: String = text
        .chars()
        .map(|c| format!("{:04X}", ttf.gid(c)))
        .collect();
    format!("<{hex}>")
}

/// A Type3 font whose glyphs draw nothing and whose codes 1–8 are named `/g1`…`/g8` (names no
/// Unicode table knows), without a ToUnicode map: text in it has no Unicode mapping.
pub fn unmapped_type3(pdf: &mut Pdf) -> usize {
    let proc_ = pdf.stream("", b"500 0 d0");
    let procs: String = (1..=8).map(|i| format!("/g{i} {proc_} 0 R ")).collect();
    let names: String = (1..=8).map(|i| format!("/g{i} ")).collect();
    pdf.add(format!(
        "<< /Type /Font /Subtype /Type3 /FontBBox [0 0 500 700] /FontMatrix [0.001 0 0 0.001 0 0] /CharProcs << {procs}>> /Encoding << /Type /Encoding /Differences [1 {names}] >> /FirstChar 1 /LastChar 8 /Widths [500 500 500 500 500 500 500 500] /Resources << >> >>"
    ))
}

/// Helvetica re-encoded so that the codes of "a"–"h" show as nonsense letters (a subset font
/// with a custom encoding and no ToUnicode, as some producers write): the text layer reads
/// as words that are not words.
pub fn scrambled_helvetica(pdf: &mut Pdf) -> usize {
    pdf.add(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding << /Type /Encoding /BaseEncoding /WinAnsiEncoding /Differences [97 /q /x /z /k /j /v /w /f] >> >>",
    )
}
