//! The offline `rules` chart reader: image dimensions plus tesseract OCR of the chart's text
//! (ticker, timeframe, price labels, words like "support 1.0850"). It cannot see candles,
//! trends or patterns and says so in its label.

use std::io::Cursor;
use std::path::Path;
use std::sync::LazyLock;

use image::{DynamicImage, ImageFormat, imageops::FilterType};
use regex::Regex;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::chart::{CHART_SCHEMA_VERSION, ChartAnalysis, ChartIndicator, ChartResult, ImageInfo};
use crate::error::{Error, Result};
use crate::image::load_decoded;
use crate::lexicon::{self, INDICATORS};
use crate::options::LlmOptions;
use crate::process;
use crate::usage::Usage;

/// The label on every offline chart result.
pub const CHART_RULES_LABEL: &str = "offline rules: image size and OCR text only (ticker, timeframe, price labels); \
     no LLM was called, so trend, patterns and trade idea are not read";

static PRICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b\d{1,3}(?:,\d{3})+(?:\.\d+)?\b|\b\d+\.\d{1,5}\b|\b\d{3,6}\b").unwrap()
});
static DECIMAL_COMMA: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{1,6}),(\d{1,2})\b").unwrap());
static LABELLED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(support|resistance|sup|res)[ \t]*[:=@-]?[ \t]*(?:at[ \t]+)?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\b").unwrap()
});

pub(crate) async fn read_chart(
    opts: &LlmOptions,
    path: &Path,
    bytes: Vec<u8>,
    cancel: &CancellationToken,
) -> Result<ChartResult> {
    let decoded = load_decoded(path, bytes, opts.max_image_pixels).await?;
    let (w, h) = (decoded.image.width(), decoded.image.height());
    let info = ImageInfo {
        format: decoded.format.into(),
        width: w,
        height: h,
        sent_width: w,
        sent_height: h,
    };
    let img = decoded.image;
    // The whole chart (title, labels) plus the left and right strips where price axes live:
    // tesseract reads axis numbers far better alone than among candles.
    let inputs =
        tokio::task::spawn_blocking(move || -> std::result::Result<_, image::ImageError> {
            let strip = (img.width() * 13 / 100).max(1);
            let full_scale = if img.width() < 1600 { 2 } else { 1 };
            let left = img.crop_imm(0, 0, strip, img.height());
            let right = img.crop_imm(img.width().saturating_sub(strip), 0, strip, img.height());
            Ok([
                (ocr_input(img, full_scale)?, "11"),
                (ocr_input(left, 3)?, "6"),
                (ocr_input(right, 3)?, "6"),
            ])
        })
        .await
        .map_err(|e| Error::Image {
            path: path.display().to_string(),
            message: e.to_string(),
        })?
        .map_err(|e| Error::Image {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    let mut texts = Vec::with_capacity(3);
    for (png, psm) in inputs {
        let t = process::run(
            &opts.tesseract,
            &["stdin", "stdout", "--psm", psm],
            png,
            opts.ocr_timeout,
            cancel,
        )
        .await?;
        texts.push(t);
    }
    let text = texts[0].trim().to_string();
    let axis = format!("{}\n{}", texts[1], texts[2]);
    let analysis = parse_ocr(&text, &axis);
    Ok(ChartResult {
        schema_version: CHART_SCHEMA_VERSION.into(),
        provider: "rules".into(),
        model: "rules".into(),
        label: Some(CHART_RULES_LABEL.into()),
        analysis,
        image: info,
        ocr_text: Some(text.trim().to_string()),
        usage: Usage::default(),
        cost_usd: Some(0.0),
        warnings: vec!["offline reader: limited to text printed on the chart".into()],
    })
}

/// Grayscale, light background (dark themes inverted), upscaled `scale` times for OCR.
fn ocr_input(img: DynamicImage, scale: u32) -> std::result::Result<Vec<u8>, image::ImageError> {
    let mut gray = img.to_luma8();
    let mean = gray.pixels().map(|p| p.0[0] as u64).sum::<u64>() / (gray.len().max(1) as u64);
    if mean < 128 {
        image::imageops::invert(&mut gray);
    }
    let mut g = DynamicImage::ImageLuma8(gray);
    if scale > 1 {
        g = g.resize(
            g.width() * scale,
            g.height() * scale,
            FilterType::CatmullRom,
        );
    }
    let mut out = Vec::new();
    g.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)?;
    Ok(out)
}

/// Reads what it can from OCR text.
pub(crate) fn parse_ocr(text: &str, axis: &str) -> ChartAnalysis {
    let lower = text.to_ascii_lowercase();
    // Axis labels: "92,5" is a decimal comma there (thousands groups have three digits).
    let axis = DECIMAL_COMMA
        .replace_all(axis, "$1.$2")
        .to_ascii_lowercase();
    let axis_labels = price_labels(&axis);
    let labels = if axis_labels.len() >= 2 {
        axis_labels
    } else {
        price_labels(&lower)
    };
    let instrument = lexicon::instruments(&lower)
        .into_iter()
        .next()
        .map(|f| f.value);
    let timeframe = lexicon::timeframes(&lower, true)
        .into_iter()
        .next()
        .map(|f| f.value);
    let (mut support, mut resistance) = (Vec::new(), Vec::new());
    for c in LABELLED.captures_iter(&lower) {
        let Ok(v) = c[2].replace(',', "").parse::<f64>() else {
            continue;
        };
        match &c[1] {
            "support" | "sup" | "s" => support.push(v),
            _ => resistance.push(v),
        }
    }
    let trend = if ["uptrend", "bullish", "higher highs"]
        .iter()
        .any(|w| lower.contains(w))
    {
        "up"
    } else if ["downtrend", "bearish", "lower lows"]
        .iter()
        .any(|w| lower.contains(w))
    {
        "down"
    } else {
        "unknown"
    };
    let patterns = [
        "double top",
        "double bottom",
        "head and shoulders",
        "triangle",
        "flag",
        "wedge",
        "breakout",
        "bounce",
    ]
    .iter()
    .filter(|p| lower.contains(*p))
    .map(|p| p.to_string())
    .collect::<Vec<_>>();
    let indicators = INDICATORS
        .iter()
        .filter(|(name, _)| {
            !matches!(
                *name,
                "Support and resistance" | "Candle wicks" | "Trendline"
            )
        })
        .filter_map(|(name, re)| {
            let m = re.find(&lower)?;
            let value = PRICE
                .find(crate::pattern::clip(&lower, m.end(), m.end() + 16))
                .map(|n| json!(n.as_str()));
            Some(ChartIndicator {
                name: name.to_string(),
                value,
            })
        })
        .collect::<Vec<_>>();
    let found = [
        instrument.is_some(),
        timeframe.is_some(),
        !labels.is_empty(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    ChartAnalysis {
        instrument,
        timeframe,
        chart_type: lower.contains("candle").then(|| "candlestick".to_string()),
        trend: trend.into(),
        support_levels: support,
        resistance_levels: resistance,
        patterns,
        indicators,
        trade_idea: None,
        price_labels: labels,
        confidence: (1.0 + found as f64) / 10.0,
        notes: Some(CHART_RULES_LABEL.into()),
    }
}

/// Numbers that look like prices (not timeframe digits, percentages or years), sorted.
fn price_labels(lower: &str) -> Vec<f64> {
    let mut labels: Vec<f64> = Vec::new();
    for m in PRICE.find_iter(lower) {
        // Skip timeframe digits ("4h", "15m") and years.
        let after = lower[m.end()..].chars().next().unwrap_or(' ');
        if after.is_ascii_alphabetic() || after == '%' {
            continue;
        }
        if let Ok(v) = m.as_str().replace(',', "").parse::<f64>()
            && !(m.as_str().len() == 4
                && !m.as_str().contains(['.', ','])
                && (1900.0..=2100.0).contains(&v))
            && !labels.contains(&v)
        {
            labels.push(v);
        }
    }
    labels.sort_by(|a, b| a.total_cmp(b));
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_panics_on_odd_text() {
        for t in [
            "",
            "é",
            "RSI é1.0850ü",
            "€€€ 1,000 support 2.5 ✓",
            "MACD\u{1F600}12",
        ] {
            let _ = parse_ocr(t, t);
        }
    }

    #[test]
    fn ocr_text_parsing() {
        let a = parse_ocr("", "110.0 -\n107.5 -\n92,5 5\n");
        assert_eq!(a.price_labels, vec![92.5, 107.5, 110.0]);
        let a = parse_ocr(
            "EUR/USD 4H - bounce at support\n1.0900\n1.0850\n1.0800\nSupport 1.0850\nRSI 41.2\n2024",
            "",
        );
        assert_eq!(a.instrument.as_deref(), Some("EUR/USD"));
        assert_eq!(a.timeframe.as_deref(), Some("4H"));
        assert_eq!(a.price_labels, vec![1.08, 1.085, 1.09, 41.2]);
        assert_eq!(a.support_levels, vec![1.085]);
        assert_eq!(a.patterns, vec!["bounce"]);
        assert_eq!(a.indicators[0].name, "RSI");
        assert_eq!(a.trend, "unknown");
    }
}
