//! Reading order: turns positioned glyphs of one page into plain text — words spaced from the
//! gaps between glyphs, columns read one after the other, hyphenated line ends rejoined,
//! ligatures expanded, right-to-left lines put back in logical order (`bidi`). Pure geometry;
//! knows nothing about PDFium.
//!
//! How: glyphs → *segments* (runs on one baseline without a wide gap) → horizontal *bands*
//! (segments whose cores overlap vertically) → *groups* of consecutive bands that share a
//! vertical gutter → each group is split at its gutters into columns, read left to right,
//! and each column is laid out again the same way (so a column may hold its own sub-columns).
//! A full-width line (title, header, figure caption) shares no gutter and starts a new group,
//! so "title, then left column, then right column, then footer" comes out in that order.
//! Tables keep row order: a gutter only splits text whose both sides are wide (≥ 8 em).

/// One glyph in display space: origin top-left, y grows downwards, units are points.
#[derive(Debug, Clone, PartialEq)]
pub struct Glyph {
    pub ch: char,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
    /// Font size in points (height of the em box).
    pub size: f32,
}

/// Gap (in em) above which two glyphs on one line are in different segments.
const SEGMENT_GAP_EM: f32 = 0.8;
/// Gap (in em) above which a space is inserted between two glyphs.
const SPACE_GAP_EM: f32 = 0.18;
/// Narrowest gutter between columns, in em.
const GUTTER_EM: f32 = 0.75;
/// Narrowest column, in em, for a gap to count as a gutter.
const COLUMN_EM: f32 = 8.0;
const MAX_DEPTH: usize = 6;

#[derive(Debug, Clone)]
struct Segment {
    text: String,
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
    size: f32,
}

impl Segment {
    fn cy(&self) -> f32 {
        (self.y0 + self.y1) / 2.0
    }
    /// Vertical core used for banding: loose glyph boxes of adjacent lines may touch.
    fn core(&self) -> (f32, f32) {
        let h = self.y1 - self.y0;
        (self.y0 + h * 0.25, self.y1 - h * 0.25)
    }
}

/// A line of text with its box, in reading order.
#[derive(Debug, Clone)]
struct Line {
    text: String,
    y0: f32,
    y1: f32,
}

/// Lays out one page's glyphs (in content-stream order) as text in reading order.
pub fn page_text(glyphs: &[Glyph]) -> String {
    let segments = segments(glyphs);
    if segments.is_empty() {
        return String::new();
    }
    let em = median(segments.iter().map(|s| s.size)).max(1.0);
    let mut blocks: Vec<Vec<Line>> = Vec::new();
    order_region(segments, em, 0, &mut blocks);
    let parts: Vec<String> = blocks
        .iter()
        .map(|b| join_lines(b))
        .filter(|t| !t.is_empty())
        .collect();
    parts.join("\n\n")
}

fn expand(ch: char, out: &mut String) {
    match ch {
        '\u{FB00}' => out.push_str("ff"),
        '\u{FB01}' => out.push_str("fi"),
        '\u{FB02}' => out.push_str("fl"),
        '\u{FB03}' => out.push_str("ffi"),
        '\u{FB04}' => out.push_str("ffl"),
        '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
        // PDFium reports a line-end soft hyphen as U+0002.
        '\u{2}' => out.push('\u{AD}'),
        c => out.push(c),
    }
}

fn segments(glyphs: &[Glyph]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut cur: Option<Segment> = None;
    let mut pending_space = false;
    // Previous glyph's x range: ligatures come out as several glyphs sharing one box.
    let (mut last_x0, mut last_x1) = (f32::NAN, f32::NAN);
    for g in glyphs {
        let valid = g.x0.is_finite() && g.x1.is_finite() && g.y0.is_finite() && g.y1.is_finite();
        if !valid {
            continue;
        }
        if g.ch.is_whitespace() || (g.ch.is_control() && g.ch != '\u{2}') {
            pending_space = true;
            continue;
        }
        let size = if g.size.is_finite() && g.size > 0.5 {
            g.size
        } else {
            (g.y1 - g.y0).abs().max(1.0)
        };
        let (y0, y1) = if g.y1 - g.y0 < 0.1 {
            (g.y0 - size * 0.8, g.y0 + size * 0.2)
        } else {
            (g.y0, g.y1)
        };
        if let Some(mut s) = cur.take() {
            let em = s.size.max(size);
            let same_line = ((y0 + y1) / 2.0 - s.cy()).abs() < 0.45 * em;
            let gap = g.x0 - last_x1;
            let forward = gap > -0.3 * em || g.x0 >= last_x0 - 0.05 * em;
            // Right-to-left text comes in reading order, each glyph left of the one before:
            // the segment keeps display order (left to right), `bidi` restores reading order.
            let back_gap = last_x0 - g.x1;
            let leftward = crate::bidi::is_rtl(g.ch)
                && g.x1 <= last_x0 + 0.3 * em
                && back_gap < SEGMENT_GAP_EM * em;
            if same_line && leftward && !forward {
                let mut t = String::new();
                expand(g.ch, &mut t);
                if (pending_space || back_gap > SPACE_GAP_EM * em) && !s.text.starts_with(' ') {
                    t.push(' ');
                }
                s.text.insert_str(0, &t);
                s.x0 = s.x0.min(g.x0);
                s.y0 = s.y0.min(y0);
                s.y1 = s.y1.max(y1);
                pending_space = false;
                (last_x0, last_x1) = (g.x0, g.x1);
                cur = Some(s);
                continue;
            }
            if same_line && forward && gap < SEGMENT_GAP_EM * em {
                if (pending_space || gap > SPACE_GAP_EM * em) && !s.text.ends_with(' ') {
                    s.text.push(' ');
                }
                expand(g.ch, &mut s.text);
                s.x1 = s.x1.max(g.x1);
                s.y0 = s.y0.min(y0);
                s.y1 = s.y1.max(y1);
                pending_space = false;
                (last_x0, last_x1) = (g.x0, g.x1);
                cur = Some(s);
                continue;
            }
            out.push(s);
        }
        let mut text = String::new();
        expand(g.ch, &mut text);
        cur = Some(Segment {
            text,
            x0: g.x0,
            y0,
            x1: g.x1,
            y1,
            size,
        });
        pending_space = false;
        (last_x0, last_x1) = (g.x0, g.x1);
    }
    out.extend(cur);
    for s in &mut out {
        let t = s.text.trim().to_string();
        s.text = t;
    }
    out.retain(|s| !s.text.is_empty());
    out
}

fn median(values: impl Iterator<Item = f32>) -> f32 {
    let mut v: Vec<f32> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// True when the segments within `[a, b]` read like running text: most rows are one segment.
/// Table columns fail this (their rows are several cells), so tables keep row order.
fn text_like(all: &[Segment], idx: &[usize], a: f32, b: f32) -> bool {
    let mut side: Vec<&Segment> = idx
        .iter()
        .map(|&i| &all[i])
        .filter(|s| s.x0 >= a - 0.5 && s.x1 <= b + 0.5)
        .collect();
    side.sort_by(|p, q| p.cy().total_cmp(&q.cy()));
    let (mut rows, mut multi, mut in_row, mut row_cy) = (0usize, 0usize, 0usize, f32::NAN);
    for s in side {
        if (s.cy() - row_cy).abs() < 0.45 * s.size {
            in_row += 1;
            if in_row == 2 {
                multi += 1;
            }
        } else {
            rows += 1;
            in_row = 1;
            row_cy = s.cy();
        }
    }
    rows > 0 && multi * 2 <= rows
}

/// Gutters (x ranges) between text columns. A gutter is a vertical strip at least
/// `GUTTER_EM` wide that almost no line crosses (a few full-width lines — title, header — may),
/// with running text at least `COLUMN_EM` wide on both sides.
fn gutters(all: &[Segment], idx: &[usize], em: f32) -> Vec<(f32, f32)> {
    let mut out = Vec::new();
    if idx.len() < 4 {
        return out;
    }
    let minx = idx.iter().map(|&i| all[i].x0).fold(f32::INFINITY, f32::min);
    let maxx = idx
        .iter()
        .map(|&i| all[i].x1)
        .fold(f32::NEG_INFINITY, f32::max);
    let width = maxx - minx;
    if !(width.is_finite() && width > 2.0 * COLUMN_EM * em) {
        return out;
    }
    let bins = (width.ceil() as usize).clamp(1, 4000);
    let scale = bins as f32 / width;
    let bin = |x: f32| (((x - minx) * scale) as usize).min(bins - 1);
    let mut counts = vec![0u32; bins];
    for &i in idx {
        for c in &mut counts[bin(all[i].x0)..=bin(all[i].x1)] {
            *c += 1;
        }
    }
    let peak = counts.iter().copied().max().unwrap_or(0);
    let low = (peak as f32 * 0.15).floor().max(1.0) as u32;
    // Runs of low bins strictly inside the region.
    let mut runs: Vec<(f32, f32)> = Vec::new();
    let mut start: Option<usize> = None;
    for (b, &c) in counts.iter().enumerate() {
        match (c <= low, start) {
            (true, None) => start = Some(b),
            (false, Some(s)) => {
                if s > 0 {
                    runs.push((minx + s as f32 / scale, minx + b as f32 / scale));
                }
                start = None;
            }
            _ => {}
        }
    }
    runs.retain(|(a, b)| b - a >= GUTTER_EM * em);
    let mut left = minx;
    for (k, &(a, b)) in runs.iter().enumerate() {
        let right_end = runs.get(k + 1).map(|r| r.0).unwrap_or(maxx);
        let ok = a - left >= COLUMN_EM * em
            && right_end - b >= COLUMN_EM * em
            && text_like(all, idx, left, a)
            && text_like(all, idx, b, right_end);
        if ok {
            out.push((a, b));
            left = b;
        }
    }
    out
}

fn order_region(segs: Vec<Segment>, em: f32, depth: usize, blocks: &mut Vec<Vec<Line>>) {
    if segs.is_empty() {
        return;
    }
    let all_idx: Vec<usize> = (0..segs.len()).collect();
    let cuts = if depth < MAX_DEPTH {
        gutters(&segs, &all_idx, em)
    } else {
        Vec::new()
    };
    if cuts.is_empty() {
        blocks.push(lines_of(segs, em));
        return;
    }
    // Crossing a gutter means reaching from one column into the next, not just into the gap.
    let spans = |s: &Segment| cuts.iter().any(|c| s.x0 < c.0 && s.x1 > c.1);
    let mut order = all_idx;
    order.sort_by(|&a, &b| segs[a].core().0.total_cmp(&segs[b].core().0));
    // Bands: connected runs of vertically overlapping segment cores. A band holding a line
    // that crosses a gutter (title, full-width paragraph) interrupts the columns.
    let mut bands: Vec<Vec<usize>> = Vec::new();
    let mut band_end = f32::NEG_INFINITY;
    for i in order {
        let (c0, c1) = segs[i].core();
        match bands.last_mut() {
            Some(b) if c0 < band_end => {
                band_end = band_end.max(c1);
                b.push(i);
            }
            _ => {
                band_end = c1;
                bands.push(vec![i]);
            }
        }
    }
    let mut slots: Vec<Option<Segment>> = segs.into_iter().map(Some).collect();
    let mut run: Vec<Segment> = Vec::new();
    let flush = |run: &mut Vec<Segment>, blocks: &mut Vec<Vec<Line>>| {
        if run.is_empty() {
            return;
        }
        let mut columns: Vec<Vec<Segment>> = vec![Vec::new(); cuts.len() + 1];
        for s in run.drain(..) {
            let cx = (s.x0 + s.x1) / 2.0;
            let k = cuts.iter().take_while(|c| cx > c.0).count();
            columns[k].push(s);
        }
        for col in columns {
            order_region(col, em, depth + 1, blocks);
        }
    };
    for band in bands {
        let members: Vec<Segment> = band.iter().filter_map(|&i| slots[i].take()).collect();
        if members.iter().any(spans) {
            flush(&mut run, blocks);
            let lines = lines_of(members, em);
            // Consecutive full-width bands form one block.
            match blocks.last_mut() {
                Some(last) if run.is_empty() && last_was_span(last, &lines) => last.extend(lines),
                _ => blocks.push(lines),
            }
        } else {
            run.extend(members);
        }
    }
    flush(&mut run, blocks);
}

/// Whether `lines` continue the previous block directly (no column text in between).
fn last_was_span(prev: &[Line], lines: &[Line]) -> bool {
    match (prev.last(), lines.first()) {
        (Some(a), Some(b)) => b.y0 >= a.y0 && b.y0 - a.y0 < 3.0 * (b.y1 - b.y0).max(1.0),
        _ => false,
    }
}

/// Segments of a single-column region as lines, top to bottom, each left to right.
fn lines_of(mut segs: Vec<Segment>, em: f32) -> Vec<Line> {
    segs.sort_by(|a, b| a.cy().total_cmp(&b.cy()));
    let mut rows: Vec<Vec<Segment>> = Vec::new();
    for s in segs {
        match rows.last_mut() {
            Some(row) if (s.cy() - row[0].cy()).abs() < 0.45 * row[0].size.max(s.size) => {
                row.push(s)
            }
            _ => rows.push(vec![s]),
        }
    }
    let _ = em;
    rows.into_iter()
        .map(|mut row| {
            row.sort_by(|a, b| a.x0.total_cmp(&b.x0));
            let y0 = row.iter().map(|s| s.y0).fold(f32::INFINITY, f32::min);
            let y1 = row.iter().map(|s| s.y1).fold(f32::NEG_INFINITY, f32::max);
            let visual = row
                .iter()
                .map(|s| s.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            let text = crate::bidi::logical(visual);
            Line { text, y0, y1 }
        })
        .collect()
}

fn is_hyphen(c: char) -> bool {
    matches!(c, '-' | '\u{2010}' | '\u{AD}')
}

/// Joins a block's lines: hyphenated line ends are rejoined, wide vertical gaps become blank
/// lines (paragraphs).
fn join_lines(lines: &[Line]) -> String {
    let pitches: Vec<f32> = lines.windows(2).map(|w| w[1].y0 - w[0].y0).collect();
    let pitch = median(pitches.iter().copied().filter(|p| *p > 0.0));
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let text = line.text.trim();
        if text.is_empty() {
            continue;
        }
        if i > 0 && !out.is_empty() {
            let prev = &lines[i - 1];
            let gap = line.y0 - prev.y0;
            let last = out.chars().last().unwrap_or(' ');
            let before_last = out.chars().rev().nth(1).unwrap_or(' ');
            let next_lower = text.chars().next().is_some_and(|c| c.is_lowercase());
            let soft = last == '\u{AD}';
            if soft || (is_hyphen(last) && before_last.is_alphabetic() && next_lower) {
                out.pop();
            } else if pitch > 0.0 && gap > pitch * 1.6 {
                out.push_str("\n\n");
            } else {
                out.push('\n');
            }
        }
        out.push_str(text);
    }
    // A soft hyphen that did not end up at a join is invisible: drop it.
    out.retain(|c| c != '\u{AD}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Glyphs of `text` set at (x, y) in a 10 pt font, 5 pt per character.
    fn run(text: &str, x: f32, y: f32) -> Vec<Glyph> {
        text.chars()
            .enumerate()
            .map(|(i, ch)| Glyph {
                ch,
                x0: x + i as f32 * 5.0,
                y0: y,
                x1: x + i as f32 * 5.0 + 5.0,
                y1: y + 10.0,
                size: 10.0,
            })
            .collect()
    }

    #[test]
    fn two_columns_read_column_by_column() {
        let mut g = run("A Title Across The Whole Page Width Here", 50.0, 20.0);
        let left = [
            "left one aaaaaaaaaaaaaaaaaaaa",
            "left two bbbbbbbbbbbbbbbbbbbb",
        ];
        let right = [
            "right one cccccccccccccccccccc",
            "right two dddddddddddddddddddd",
        ];
        for (i, t) in left.iter().enumerate() {
            g.extend(run(t, 50.0, 60.0 + i as f32 * 12.0));
        }
        for (i, t) in right.iter().enumerate() {
            g.extend(run(t, 220.0, 60.0 + i as f32 * 12.0));
        }
        let text = page_text(&g);
        assert_eq!(
            text,
            "A Title Across The Whole Page Width Here\n\nleft one aaaaaaaaaaaaaaaaaaaa\nleft two \
             bbbbbbbbbbbbbbbbbbbb\n\nright one cccccccccccccccccccc\nright two dddddddddddddddddddd"
        );
    }

    #[test]
    fn content_order_does_not_matter() {
        // Rows written left-then-right, as some producers do.
        let mut g = Vec::new();
        for i in 0..3 {
            g.extend(run(
                &format!("left line {i} xxxxxxxxxxxxxxxxxx"),
                50.0,
                60.0 + i as f32 * 12.0,
            ));
            g.extend(run(
                &format!("right line {i} yyyyyyyyyyyyyyyy"),
                220.0,
                60.0 + i as f32 * 12.0,
            ));
        }
        let text = page_text(&g);
        let l2 = text.find("left line 2").unwrap();
        let r0 = text.find("right line 0").unwrap();
        assert!(l2 < r0, "{text}");
    }

    #[test]
    fn table_rows_stay_rows() {
        let mut g = Vec::new();
        for (i, row) in [
            ["Austria", "8.9", "Vienna"],
            ["Belgium", "11.5", "Brussels"],
        ]
        .iter()
        .enumerate()
        {
            let y = 100.0 + i as f32 * 12.0;
            g.extend(run(row[0], 50.0, y));
            g.extend(run(row[1], 120.0, y));
            g.extend(run(row[2], 170.0, y));
        }
        assert_eq!(page_text(&g), "Austria 8.9 Vienna\nBelgium 11.5 Brussels");
    }

    #[test]
    fn hyphens_and_ligatures() {
        let mut g = run("an exam-", 50.0, 50.0);
        g.extend(run("ple of \u{FB01}ne text", 50.0, 62.0));
        assert_eq!(page_text(&g), "an example of fine text");
        let mut g = run("Hyphen-", 50.0, 50.0);
        g.extend(run("Free stays", 50.0, 62.0));
        assert_eq!(page_text(&g), "Hyphen-\nFree stays");
        // Every Latin ligature expands; a soft hyphen inside a line is invisible.
        let g = run(
            "\u{FB00}e \u{FB02}at o\u{FB03}ce ba\u{FB04}e sta\u{AD}tion",
            50.0,
            50.0,
        );
        assert_eq!(page_text(&g), "ffe flat office baffle station");
    }

    #[test]
    fn gaps_make_spaces() {
        let mut g = run("two", 50.0, 50.0);
        g.extend(run("words", 67.0, 50.0));
        assert_eq!(page_text(&g), "two words");
        assert_eq!(page_text(&[]), "");
    }
}
