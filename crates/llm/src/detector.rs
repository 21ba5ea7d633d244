//! The cheap "is this a price chart?" test run before any chart reading: pixels only, no model,
//! no OCR (about a millisecond on a downscaled copy). A price chart is a plain background
//! holding either candles — many short vertical bars in two colours, one warm (red) and one
//! cool (green or teal) — or a thin coloured series line spanning the plot beside long straight
//! axis or grid lines. Photos, cartoons, logos, line-art figures and text slides have neither.
//! Measured on the corpus images and frames: see `docs/llm.md` ("Charts inside sources").

use image::{DynamicImage, GenericImageView, imageops::FilterType};
use serde::Serialize;

/// The verdict with what it rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChartLook {
    pub is_chart: bool,
    /// `candlestick`, `line` or `none`.
    pub kind: &'static str,
    /// In words: what was seen (or missed).
    pub why: String,
    pub features: ChartFeatures,
}

/// What the test measures on the downscaled image.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChartFeatures {
    /// Share of pixels in the most common colour (4 bits per channel).
    pub background: f32,
    /// Separate vertical bars of warm / cool colour (candles).
    pub warm_bars: usize,
    pub cool_bars: usize,
    /// Long straight lines (≥ 60 % of the width or height) in a non-background colour.
    pub long_lines: usize,
    /// Share of columns crossed by a thin line of one saturated colour (a series).
    pub series_span: f32,
}

/// Width the image is reduced to before measuring.
const WIDTH: u32 = 400;
/// Least share of the most common colour for a chart's plain background.
const MIN_BACKGROUND: f32 = 0.35;
/// Least number of candles of each colour.
const MIN_BARS: usize = 6;

/// Look at `img`.
pub fn chart_look(img: &DynamicImage) -> ChartLook {
    let (w, h) = img.dimensions();
    if w < 64 || h < 48 {
        return verdict(
            false,
            "none",
            "too small for a chart",
            ChartFeatures::default(),
        );
    }
    let small = if w > WIDTH {
        let nh = ((h as f32) * (WIDTH as f32) / (w as f32)).round().max(1.0) as u32;
        img.resize_exact(WIDTH, nh, FilterType::Triangle).to_rgb8()
    } else {
        img.to_rgb8()
    };
    let f = measure(&small);
    if f.background < MIN_BACKGROUND {
        let why = format!(
            "no plain background (most common colour covers {:.0} % of the image)",
            f.background * 100.0
        );
        return verdict(false, "none", &why, f);
    }
    if f.warm_bars >= MIN_BARS && f.cool_bars >= MIN_BARS {
        let why = format!(
            "{} warm and {} cool vertical bars (candles) on a plain background",
            f.warm_bars, f.cool_bars
        );
        return verdict(true, "candlestick", &why, f);
    }
    if f.series_span >= 0.5 && f.long_lines >= 1 {
        let why = format!(
            "a thin coloured series across {:.0} % of the width beside {} axis/grid line(s)",
            f.series_span * 100.0,
            f.long_lines
        );
        return verdict(true, "line", &why, f);
    }
    let why = format!(
        "no candles ({} warm / {} cool bars) and no series line ({:.0} % of the width, {} axis/grid lines)",
        f.warm_bars,
        f.cool_bars,
        f.series_span * 100.0,
        f.long_lines
    );
    verdict(false, "none", &why, f)
}

/// [`chart_look`] on encoded bytes (PNG, JPEG, WebP, GIF); None when they do not decode.
pub fn chart_look_bytes(bytes: &[u8]) -> Option<ChartLook> {
    image::load_from_memory(bytes).ok().map(|i| chart_look(&i))
}

fn verdict(is_chart: bool, kind: &'static str, why: &str, features: ChartFeatures) -> ChartLook {
    ChartLook {
        is_chart,
        kind,
        why: why.to_string(),
        features,
    }
}

/// Candle colours: red-ish, and green or teal (matplotlib, TradingView and MetaTrader defaults).
fn warm(p: [u8; 3]) -> bool {
    let [r, g, b] = p.map(i32::from);
    r >= g + 60 && r >= b + 40
}

fn cool(p: [u8; 3]) -> bool {
    let [r, g, b] = p.map(i32::from);
    g >= r + 50 && g + 20 >= b
}

fn quantize(p: [u8; 3]) -> u16 {
    (u16::from(p[0] >> 4) << 8) | (u16::from(p[1] >> 4) << 4) | u16::from(p[2] >> 4)
}

fn measure(img: &image::RgbImage) -> ChartFeatures {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let px = |x: usize, y: usize| img.get_pixel(x as u32, y as u32).0;
    let mut counts = vec![0u32; 4096];
    for p in img.pixels() {
        counts[quantize(p.0) as usize] += 1;
    }
    let (bg_bin, bg_count) = counts
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| **c)
        .map(|(i, c)| (i as u16, *c))
        .unwrap_or((0, 0));
    let background = bg_count as f32 / (w * h) as f32;
    let is_bg = |p: [u8; 3]| quantize(p) == bg_bin;
    ChartFeatures {
        background,
        warm_bars: bars(w, h, |x, y| warm(px(x, y))),
        cool_bars: bars(w, h, |x, y| cool(px(x, y))),
        long_lines: long_lines(w, h, &|x, y| !is_bg(px(x, y))),
        series_span: series_span(w, h, &px),
    }
}

/// Separate bars: maximal runs of adjacent columns each holding a vertical run of ≥ 3 `on`
/// pixels that is taller than the column run is wide (a bar, not a blob of text).
fn bars(w: usize, h: usize, on: impl Fn(usize, usize) -> bool) -> usize {
    let mut count = 0;
    let mut in_bar = false;
    let mut width = 0usize;
    let mut tallest = 0usize;
    for x in 0..w {
        let mut best = 0;
        let mut run = 0;
        for y in 0..h {
            if on(x, y) {
                run += 1;
                best = best.max(run);
            } else {
                run = 0;
            }
        }
        if best >= 3 {
            in_bar = true;
            width += 1;
            tallest = tallest.max(best);
        } else if in_bar {
            if width <= 24 && tallest >= 3 {
                count += 1;
            }
            in_bar = false;
            width = 0;
            tallest = 0;
        }
    }
    if in_bar && width <= 24 {
        count += 1;
    }
    count
}

/// Rows (and columns) whose `on` pixels form one straight run over ≥ 60 % of the width (height):
/// axes, grid lines, frames. Adjacent lines count once.
fn long_lines(w: usize, h: usize, on: &dyn Fn(usize, usize) -> bool) -> usize {
    let longest = |len: usize, at: &dyn Fn(usize) -> bool| {
        let (mut best, mut run) = (0, 0);
        for i in 0..len {
            if at(i) {
                run += 1;
                best = best.max(run);
            } else {
                run = 0;
            }
        }
        best
    };
    let mut lines = 0;
    let mut prev = false;
    for y in 0..h {
        let long = longest(w, &|x| on(x, y)) * 10 >= w * 6;
        if long && !prev {
            lines += 1;
        }
        prev = long;
    }
    prev = false;
    for x in 0..w {
        let long = longest(h, &|y| on(x, y)) * 10 >= h * 6;
        if long && !prev {
            lines += 1;
        }
        prev = long;
    }
    lines
}

/// Hue sector (12 of 30°) of a saturated pixel; None for greys and pale tints.
fn hue_bin(p: [u8; 3]) -> Option<usize> {
    let [r, g, b] = p.map(f32::from);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    if max - min < 50.0 {
        return None;
    }
    let d = max - min;
    let h = if max == r {
        ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    };
    Some(((h * 2.0) as usize).min(11))
}

/// Share of columns crossed by exactly one thin (≤ 6 px) run of the image's most common
/// saturated hue: a price series is a function of time, one value per column (a ring or a
/// shape's outline crosses a column twice).
fn series_span(w: usize, h: usize, px: &dyn Fn(usize, usize) -> [u8; 3]) -> f32 {
    let mut counts = [0usize; 12];
    for y in 0..h {
        for x in 0..w {
            if let Some(b) = hue_bin(px(x, y)) {
                counts[b] += 1;
            }
        }
    }
    let Some((bin, n)) = counts.iter().enumerate().max_by_key(|(_, c)| **c) else {
        return 0.0;
    };
    // A series is a small part of the image; a large saturated area is a photo or a fill.
    if *n == 0 || *n > w * h / 10 {
        return 0.0;
    }
    let mut crossed = 0;
    for x in 0..w {
        let (mut runs, mut run, mut thin) = (0, 0, true);
        for y in 0..=h {
            let on = y < h && hue_bin(px(x, y)) == Some(bin);
            if on {
                run += 1;
            } else if run > 0 {
                runs += 1;
                thin &= run <= 6;
                run = 0;
            }
        }
        if runs == 1 && thin {
            crossed += 1;
        }
    }
    crossed as f32 / w as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn canvas(bg: [u8; 3]) -> RgbImage {
        RgbImage::from_pixel(640, 360, Rgb(bg))
    }

    fn rect(img: &mut RgbImage, x0: u32, y0: u32, x1: u32, y1: u32, c: [u8; 3]) {
        for y in y0..y1 {
            for x in x0..x1 {
                img.put_pixel(x, y, Rgb(c));
            }
        }
    }

    fn candles(bg: [u8; 3], up: [u8; 3], down: [u8; 3]) -> DynamicImage {
        let mut img = canvas(bg);
        rect(&mut img, 40, 330, 620, 332, [90, 90, 90]); // x axis
        rect(&mut img, 40, 20, 42, 332, [90, 90, 90]); // y axis
        for i in 0..40u32 {
            let x = 50 + i * 14;
            let mid = 180 + ((i as f32 * 0.5).sin() * 80.0) as u32;
            let c = if i % 3 == 0 { down } else { up };
            rect(&mut img, x + 3, mid - 30, x + 4, mid + 30, c); // wick
            rect(&mut img, x, mid - 15, x + 8, mid + 15, c); // body
        }
        DynamicImage::ImageRgb8(img)
    }

    #[test]
    fn candlesticks_on_light_and_dark_backgrounds() {
        for (bg, up, down) in [
            ([255, 255, 255], [44, 160, 44], [214, 39, 40]),
            ([14, 17, 23], [38, 166, 154], [239, 83, 80]),
        ] {
            let look = chart_look(&candles(bg, up, down));
            assert!(look.is_chart, "{look:?}");
            assert_eq!(look.kind, "candlestick");
        }
    }

    #[test]
    fn a_line_chart_with_axes() {
        let mut img = canvas([255, 255, 255]);
        rect(&mut img, 40, 330, 620, 332, [0, 0, 0]);
        rect(&mut img, 40, 20, 42, 332, [0, 0, 0]);
        for x in 45..615u32 {
            let y = 180.0 + (x as f32 / 40.0).sin() * 90.0;
            rect(&mut img, x, y as u32, x + 1, y as u32 + 2, [31, 119, 180]);
        }
        let look = chart_look(&DynamicImage::ImageRgb8(img));
        assert!(look.is_chart, "{look:?}");
        assert_eq!(look.kind, "line");
    }

    #[test]
    fn not_charts() {
        // Noise (a photo's texture), a flat slide with black text bars, a tiny image.
        let mut noise = canvas([0, 0, 0]);
        let mut seed = 7u32;
        for p in noise.pixels_mut() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *p = Rgb([(seed >> 8) as u8, (seed >> 16) as u8, (seed >> 24) as u8]);
        }
        let mut slide = canvas([250, 250, 250]);
        for row in 0..6u32 {
            rect(
                &mut slide,
                60,
                60 + row * 40,
                560,
                60 + row * 40 + 14,
                [20, 20, 20],
            );
        }
        for img in [noise, slide, RgbImage::from_pixel(40, 30, Rgb([255, 0, 0]))] {
            let look = chart_look(&DynamicImage::ImageRgb8(img));
            assert!(!look.is_chart, "{look:?}");
        }
    }
}
