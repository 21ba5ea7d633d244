//! The chart schema (`schema/chart.v1.json`) as Rust types and its validation. No I/O here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::usage::Usage;

/// Version tag of the chart schema; part of every cache key.
pub const CHART_SCHEMA_VERSION: &str = "chart.v1";
/// The committed JSON schema file.
pub const CHART_SCHEMA_JSON: &str = include_str!("../../../schema/chart.v1.json");

/// An indicator visible on the chart, with its value when printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartIndicator {
    pub name: String,
    #[serde(default)]
    pub value: Option<Value>,
}

/// A trade idea read from the chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TradeIdea {
    pub bias: String,
    pub entry: Option<f64>,
    pub stop: Option<f64>,
    pub targets: Vec<f64>,
    pub rationale: Option<String>,
}

/// One chart reading (schema `chart.v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ChartAnalysis {
    pub instrument: Option<String>,
    pub timeframe: Option<String>,
    pub chart_type: Option<String>,
    pub trend: String,
    pub support_levels: Vec<f64>,
    pub resistance_levels: Vec<f64>,
    pub patterns: Vec<String>,
    pub indicators: Vec<ChartIndicator>,
    pub trade_idea: Option<TradeIdea>,
    pub price_labels: Vec<f64>,
    pub confidence: f64,
    pub notes: Option<String>,
}

/// The image as read and as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// `png`, `jpeg`, `webp` or `gif`, from the file's bytes (not its name).
    pub format: String,
    pub width: u32,
    pub height: u32,
    /// Size sent to the provider after downscaling (equal to the original when small enough).
    pub sent_width: u32,
    pub sent_height: u32,
}

/// What `analyze_chart` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChartResult {
    /// `chart.v1`.
    pub schema_version: String,
    pub provider: String,
    pub model: String,
    /// Set for the `rules` provider: says the reading is offline and limited.
    pub label: Option<String>,
    pub analysis: ChartAnalysis,
    pub image: ImageInfo,
    /// Raw OCR text (only the `rules` provider fills this).
    pub ocr_text: Option<String>,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub warnings: Vec<String>,
}

/// Parses and validates a model answer for the chart schema.
pub fn validate_chart(value: &Value) -> Result<ChartAnalysis, String> {
    if !value.is_object() {
        return Err("the answer must be a JSON object".into());
    }
    let mut a: ChartAnalysis =
        serde_json::from_value(value.clone()).map_err(|e| format!("schema mismatch: {e}"))?;
    a.trend = a.trend.trim().to_lowercase();
    if a.trend.is_empty() {
        a.trend = "unknown".into();
    }
    if !["up", "down", "sideways", "unknown"].contains(&a.trend.as_str()) {
        return Err(format!(
            "trend {:?} must be up, down, sideways or unknown",
            a.trend
        ));
    }
    if !(0.0..=1.0).contains(&a.confidence) || a.confidence.is_nan() {
        return Err("confidence must be between 0 and 1".into());
    }
    if let Some(t) = &mut a.trade_idea {
        t.bias = t.bias.trim().to_lowercase();
        if !["long", "short", "neutral"].contains(&t.bias.as_str()) {
            return Err(format!(
                "trade_idea.bias {:?} must be long, short or neutral",
                t.bias
            ));
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_and_validation() {
        let v: Value = serde_json::from_str(CHART_SCHEMA_JSON).unwrap();
        assert_eq!(v["type"], "object");
        let a = validate_chart(&json!({"trend": "Up", "confidence": 0.7,
            "trade_idea": {"bias": "LONG", "entry": 1.1, "targets": [1.2]}}))
        .unwrap();
        assert_eq!(a.trend, "up");
        assert_eq!(a.trade_idea.unwrap().bias, "long");
        assert!(validate_chart(&json!({"trend": "diagonal", "confidence": 0.1})).is_err());
        assert!(validate_chart(&json!({"trend": "up", "confidence": 2})).is_err());
        assert!(validate_chart(&json!("up")).is_err());
    }
}
