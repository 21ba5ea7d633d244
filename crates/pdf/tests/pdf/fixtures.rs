//! PDFs written by hand for the suite that runs without ../shared: text pages (Helvetica,
//! positioned lines), images (JPEG, raw RGB, raw CMYK, tiny), a page drawn only with vector
//! "pixels" spelling words (a scan stand-in with no text layer), and broken files.

use std::fmt::Write as _;
use std::io::Cursor;

/// Minimal PDF writer: numbered objects, classic xref table, trailer.
#[derive(Default)]
pub struct Pdf {
    objects: Vec<Option<Vec<u8>>>,
}

impl Pdf {
    pub fn reserve(&mut self) -> usize {
        self.objects.push(None);
        self.objects.len()
    }
    pub fn set(&mut self, id: usize, body: impl Into<Vec<u8>>) {
        self.objects[id - 1] = Some(body.into());
    }
    pub fn add(&mut self, body: impl Into<Vec<u8>>) -> usize {
        let id = self.reserve();
        self.set(id, body);
        id
    }
    pub fn stream(&mut self, dict: &str, data: &[u8]) -> usize {
        let mut body = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(b"\nendstream");
        self.add(body)
    }
    pub fn finish(self, root: usize, info: Option<usize>) -> Vec<u8> {
        let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, obj) in self.objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(obj.as_deref().unwrap_or(b"null"));
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        let mut x = format!("xref\n0 {}\n0000000000 65535 f \n", self.objects.len() + 1);
        for o in offsets {
            let _ = writeln!(x, "{o:010} 00000 n ");
        }
        let info = info.map(|i| format!(" /Info {i} 0 R")).unwrap_or_default();
        let _ = write!(
            x,
            "trailer\n<< /Size {} /Root {root} 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n",
            self.objects.len() + 1
        );
        out.extend_from_slice(x.as_bytes());
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('(', "\\(")
        .replace(')', "\\)")
}

/// A line of text: (x, y from the bottom, font size, text).
pub type Line<'a> = (f32, f32, f32, &'a str);

/// Content stream drawing `lines` in Helvetica (`/F1`), in the given order.
pub fn text_content(lines: &[Line]) -> String {
    let mut c = String::new();
    for (x, y, size, text) in lines {
        let _ = writeln!(
            c,
            "BT /F1 {size} Tf 1 0 0 1 {x} {y} Tm ({}) Tj ET",
            escape(text)
        );
    }
    c
}

/// A page description for `document`.
pub struct Page {
    pub content: String,
    /// (name, object id) of image XObjects used by the content.
    pub images: Vec<(String, usize)>,
    pub size: (f32, f32),
}

impl Page {
    pub fn text(lines: &[Line]) -> Self {
        Page {
            content: text_content(lines),
            images: vec![],
            size: (612.0, 792.0),
        }
    }
}

/// Builds a document from pages whose image objects were already added to `pdf`.
pub fn document(mut pdf: Pdf, pages: Vec<Page>, title: Option<&str>) -> Vec<u8> {
    let catalog = pdf.reserve();
    let tree = pdf.reserve();
    let font = pdf
        .add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>");
    let mut kids = Vec::new();
    for p in pages {
        let content = pdf.stream("", p.content.as_bytes());
        let xobjects: String = p
            .images
            .iter()
            .map(|(n, id)| format!("/{n} {id} 0 R "))
            .collect();
        let page = pdf.add(format!(
            "<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 {} {}] /Resources << /Font << /F1 {font} 0 R >> /XObject << {xobjects}>> >> /Contents {content} 0 R >>",
            p.size.0, p.size.1
        ));
        kids.push(page);
    }
    let kid_refs: String = kids.iter().map(|k| format!("{k} 0 R ")).collect();
    pdf.set(
        tree,
        format!(
            "<< /Type /Pages /Kids [{kid_refs}] /Count {} >>",
            kids.len()
        ),
    );
    pdf.set(catalog, format!("<< /Type /Catalog /Pages {tree} 0 R >>"));
    let info = title.map(|t| {
        pdf.add(format!(
            "<< /Title ({}) /Author (hlbot tests) /CreationDate (D:20240102030405Z) >>",
            escape(t)
        ))
    });
    pdf.finish(catalog, info)
}

/// Text of the two-column fixture, column by column, as a reader would read it.
pub const LEFT: [&str; 6] = [
    "Left column opens the story about support",
    "levels and how buyers step in near them",
    "every time the price falls back to the zone",
    "where earlier lows were made. This is an exam-",
    "ple of a hyphenated word across a line end.",
    "The left column ends with this sentence.",
];
pub const RIGHT: [&str; 5] = [
    "Right column starts with resistance levels",
    "which act as ceilings where sellers appear",
    "and rallies stall again and again until a",
    "breakout finally clears the level with volume.",
    "The right column ends here.",
];

/// One page: a full-width title, then two columns whose lines are written row by row
/// (left, right, left, right...), so content order and naive line merging both interleave.
pub fn two_column_pdf() -> Vec<u8> {
    let mut lines: Vec<Line> = vec![(72.0, 720.0, 16.0, "Market Structure: Two Columns")];
    for i in 0..LEFT.len().max(RIGHT.len()) {
        let y = 680.0 - i as f32 * 14.0;
        if let Some(l) = LEFT.get(i) {
            lines.push((72.0, y, 10.0, l));
        }
        if let Some(r) = RIGHT.get(i) {
            lines.push((320.0, y, 10.0, r));
        }
    }
    lines.push((290.0, 60.0, 9.0, "Page 1"));
    document(
        Pdf::default(),
        vec![Page::text(&lines)],
        Some("Two Columns"),
    )
}

/// Three pages of plain text, each with a distinct phrase.
pub fn three_page_pdf() -> Vec<u8> {
    let pages = (1..=3)
        .map(|n| {
            let line = format!("This is page number {n} of the generated report.");
            Page::text(&[
                (72.0, 700.0, 12.0, line.as_str()),
                (72.0, 680.0, 12.0, "Support and resistance."),
            ])
        })
        .collect();
    document(Pdf::default(), pages, Some("Three Pages"))
}

fn gradient(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x + y) % 256) as u8,
        ])
    })
}

pub fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(gradient(w, h))
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    out
}

/// Two pages: page 1 shows a JPEG, a raw RGB image and a tiny 8×8 icon; page 2 shows the same
/// JPEG again (must be saved once) and a raw CMYK image (must come out as RGB PNG).
pub fn images_pdf() -> (Vec<u8>, Vec<u8>) {
    let mut pdf = Pdf::default();
    let jpeg = jpeg_bytes(120, 80);
    let jpg = pdf.stream(
        "/Type /XObject /Subtype /Image /Width 120 /Height 80 /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode",
        &jpeg,
    );
    let rgb_raw = gradient(64, 48).into_raw();
    let rgb = pdf.stream(
        "/Type /XObject /Subtype /Image /Width 64 /Height 48 /ColorSpace /DeviceRGB /BitsPerComponent 8",
        &rgb_raw,
    );
    let tiny = pdf.stream(
        "/Type /XObject /Subtype /Image /Width 8 /Height 8 /ColorSpace /DeviceGray /BitsPerComponent 8",
        &[128u8; 64],
    );
    // Pure cyan in CMYK: (255, 0, 0, 0).
    let cmyk_raw: Vec<u8> = (0..40 * 40).flat_map(|_| [255u8, 0, 0, 0]).collect();
    let cmyk = pdf.stream(
        "/Type /XObject /Subtype /Image /Width 40 /Height 40 /ColorSpace /DeviceCMYK /BitsPerComponent 8",
        &cmyk_raw,
    );
    let mut p1 = Page::text(&[(72.0, 740.0, 12.0, "Chart page with a JPEG and a bitmap.")]);
    p1.content.push_str("q 240 0 0 160 72 500 cm /Im1 Do Q\nq 128 0 0 96 340 500 cm /Im2 Do Q\nq 8 0 0 8 72 450 cm /Im3 Do Q\n");
    p1.images = vec![
        ("Im1".into(), jpg),
        ("Im2".into(), rgb),
        ("Im3".into(), tiny),
    ];
    let mut p2 = Page::text(&[(
        72.0,
        740.0,
        12.0,
        "Second page reuses the JPEG and adds CMYK.",
    )]);
    p2.content
        .push_str("q 240 0 0 160 72 500 cm /Im1 Do Q\nq 80 0 0 80 340 500 cm /Im4 Do Q\n");
    p2.images = vec![("Im1".into(), jpg), ("Im4".into(), cmyk)];
    (document(pdf, vec![p1, p2], Some("Images")), jpeg)
}

/// 5×7 dot-matrix glyphs for the letters the "scan" fixture uses.
fn glyph(c: char) -> [&'static str; 7] {
    match c {
        'B' => [
            "####.", "#...#", "#...#", "####.", "#...#", "#...#", "####.",
        ],
        'U' => [
            "#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###.",
        ],
        'Y' => [
            "#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#..",
        ],
        'S' => [
            ".####", "#....", "#....", ".###.", "....#", "....#", "####.",
        ],
        'E' => [
            "#####", "#....", "#....", "####.", "#....", "#....", "#####",
        ],
        'L' => [
            "#....", "#....", "#....", "#....", "#....", "#....", "#####",
        ],
        'O' => [
            ".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###.",
        ],
        'W' => [
            "#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#.",
        ],
        'H' => [
            "#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#",
        ],
        'I' => [
            "#####", "..#..", "..#..", "..#..", "..#..", "..#..", "#####",
        ],
        'G' => [
            ".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".###.",
        ],
        'P' => [
            "####.", "#...#", "#...#", "####.", "#....", "#....", "#....",
        ],
        'R' => [
            "####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#",
        ],
        'T' => [
            "#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#..",
        ],
        _ => [
            ".....", ".....", ".....", ".....", ".....", ".....", ".....",
        ],
    }
}

/// A page with no text layer: words drawn as filled squares (vector "pixels").
pub fn vector_scan_pdf(words: &[&str]) -> Vec<u8> {
    let page = Page {
        content: vector_scan_content(words),
        images: vec![],
        size: (612.0, 792.0),
    };
    document(Pdf::default(), vec![page], None)
}

/// Content stream drawing `words` (one line each) as filled squares, from the top left.
pub fn vector_scan_content(words: &[&str]) -> String {
    let dot = 2.4f32;
    let mut c = String::from("0 g\n");
    for (row, word) in words.iter().enumerate() {
        let top = 700.0 - row as f32 * 12.0 * dot;
        for (i, ch) in word.chars().enumerate() {
            let left = 72.0 + i as f32 * 6.0 * dot;
            for (gy, line) in glyph(ch).iter().enumerate() {
                for (gx, px) in line.chars().enumerate() {
                    if px == '#' {
                        let x = left + gx as f32 * dot;
                        let y = top - gy as f32 * dot;
                        let _ = writeln!(c, "{x:.2} {y:.2} {dot:.2} {dot:.2} re f");
                    }
                }
            }
        }
    }
    c
}
