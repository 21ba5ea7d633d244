//! The strategy schema (`schema/strategy.v1.json`) as Rust types, its validation, and the merge
//! of per-chunk answers into one list. No I/O here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::usage::Usage;

/// Version tag of the strategy schema; part of every cache key.
pub const STRATEGY_SCHEMA_VERSION: &str = "strategy.v1";
/// The committed JSON schema file.
pub const STRATEGY_SCHEMA_JSON: &str = include_str!("../../../schema/strategy.v1.json");

const MARKETS: &[&str] = &[
    "forex",
    "crypto",
    "stocks",
    "indices",
    "futures",
    "commodities",
    "options",
    "mixed",
];
const STYLES: &[&str] = &["scalping", "day", "swing", "position"];

/// One indicator with its parameters (`{"period": 14}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    pub name: String,
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

/// A price level named by the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyLevel {
    pub price: f64,
    #[serde(default = "level_kind")]
    pub kind: String,
    #[serde(default)]
    pub note: Option<String>,
}

fn level_kind() -> String {
    "level".into()
}

/// A verbatim quote with its transcript timestamp or page number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub quote: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub page: Option<u32>,
}

/// One trading strategy (schema `strategy.v1`, `$defs/strategy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Strategy {
    pub name: String,
    pub instruments: Vec<String>,
    pub market: Option<String>,
    pub timeframes: Vec<String>,
    pub style: Option<String>,
    pub indicators: Vec<Indicator>,
    pub key_levels: Vec<KeyLevel>,
    pub entry_rules: Vec<String>,
    pub exit_rules: Vec<String>,
    pub stop_loss: Option<String>,
    pub take_profit: Option<String>,
    pub position_sizing: Option<String>,
    pub risk_management: Vec<String>,
    pub filters: Vec<String>,
    pub confidence: f64,
    pub evidence: Vec<Evidence>,
}

/// The answer object the model fills in (the tool input / JSON response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StrategyList {
    pub strategies: Vec<Strategy>,
}

/// What `extract_strategy` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StrategyResult {
    /// `strategy.v1`.
    pub schema_version: String,
    /// `anthropic`, `openai`, `ollama` (the configured prefix) or `rules`.
    pub provider: String,
    /// The model id actually used (aliases resolved).
    pub model: String,
    /// Set for the `rules` provider: "offline rules — …", so no one mistakes it for an LLM.
    pub label: Option<String>,
    pub strategies: Vec<Strategy>,
    pub usage: Usage,
    /// Estimated cost of the calls billed by this run (cache hits cost nothing); `None` when
    /// the model has no configured price.
    pub cost_usd: Option<f64>,
    /// Chunks the content was split into.
    pub chunks: usize,
    /// Things the caller should know (truncation handled by splitting, cache failures, …).
    pub warnings: Vec<String>,
    /// True when the cost budget stopped the run before every chunk was read: `strategies`
    /// holds what the chunks read so far found (a warning says how many).
    #[serde(default)]
    pub partial: bool,
}

/// Parses and validates a model answer. The error text is fed back in the repair attempt.
pub fn validate_strategies(value: &Value) -> Result<StrategyList, String> {
    let obj = value
        .as_object()
        .ok_or("the answer must be a JSON object")?;
    let list = obj
        .get("strategies")
        .ok_or("missing required property \"strategies\"")?;
    if !list.is_array() {
        return Err("\"strategies\" must be an array".into());
    }
    let mut parsed: StrategyList =
        serde_json::from_value(value.clone()).map_err(|e| format!("schema mismatch: {e}"))?;
    for (i, s) in parsed.strategies.iter_mut().enumerate() {
        if s.name.trim().is_empty() {
            return Err(format!("strategies[{i}].name must be a non-empty string"));
        }
        if !(0.0..=1.0).contains(&s.confidence) || s.confidence.is_nan() {
            return Err(format!(
                "strategies[{i}].confidence must be between 0 and 1"
            ));
        }
        check_enum(&mut s.market, MARKETS, &format!("strategies[{i}].market"))?;
        check_enum(&mut s.style, STYLES, &format!("strategies[{i}].style"))?;
        for l in &mut s.key_levels {
            l.kind = l.kind.to_lowercase();
            if !["support", "resistance", "level"].contains(&l.kind.as_str()) {
                return Err(format!(
                    "strategies[{i}].key_levels kind {:?} is not allowed",
                    l.kind
                ));
            }
        }
    }
    Ok(parsed)
}

fn check_enum(v: &mut Option<String>, allowed: &[&str], what: &str) -> Result<(), String> {
    if let Some(s) = v {
        let lower = s.trim().to_lowercase();
        if lower.is_empty() || lower == "unknown" {
            *v = None;
        } else if allowed.contains(&lower.as_str()) {
            *s = lower;
        } else {
            return Err(format!("{what} {s:?} is not one of {allowed:?}"));
        }
    }
    Ok(())
}

/// Merges per-chunk lists: strategies with the same normalised name (or a chunk's only
/// unnamed-looking strategy matching an existing one's instruments) become one, lists are
/// unioned in order, evidence is kept.
pub fn merge_strategies(parts: Vec<Vec<Strategy>>) -> Vec<Strategy> {
    let mut out: Vec<Strategy> = Vec::new();
    for part in parts {
        for s in part {
            let key = norm(&s.name);
            match out.iter_mut().find(|o| norm(&o.name) == key) {
                Some(existing) => merge_into(existing, s),
                None => out.push(s),
            }
        }
    }
    out
}

fn norm(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

fn union<T: PartialEq>(into: &mut Vec<T>, from: Vec<T>) {
    for x in from {
        if !into.contains(&x) {
            into.push(x);
        }
    }
}

fn merge_into(a: &mut Strategy, b: Strategy) {
    union(&mut a.instruments, b.instruments);
    union(&mut a.timeframes, b.timeframes);
    for ind in b.indicators {
        match a
            .indicators
            .iter_mut()
            .find(|x| norm(&x.name) == norm(&ind.name))
        {
            Some(x) => {
                for (k, v) in ind.parameters {
                    x.parameters.entry(k).or_insert(v);
                }
            }
            None => a.indicators.push(ind),
        }
    }
    for l in b.key_levels {
        if !a
            .key_levels
            .iter()
            .any(|x| (x.price - l.price).abs() < 1e-9)
        {
            a.key_levels.push(l);
        }
    }
    union(&mut a.entry_rules, b.entry_rules);
    union(&mut a.exit_rules, b.exit_rules);
    union(&mut a.risk_management, b.risk_management);
    union(&mut a.filters, b.filters);
    union(&mut a.evidence, b.evidence);
    a.market = a.market.take().or(b.market);
    a.style = a.style.take().or(b.style);
    a.stop_loss = a.stop_loss.take().or(b.stop_loss);
    a.take_profit = a.take_profit.take().or(b.take_profit);
    a.position_sizing = a.position_sizing.take().or(b.position_sizing);
    a.confidence = a.confidence.max(b.confidence);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_file_is_json() {
        let v: Value = serde_json::from_str(STRATEGY_SCHEMA_JSON).unwrap();
        assert_eq!(v["type"], "object");
    }

    #[test]
    fn validation() {
        let ok = json!({"strategies": [{"name": "A", "market": "Forex", "confidence": 0.5}]});
        let list = validate_strategies(&ok).unwrap();
        assert_eq!(list.strategies[0].market.as_deref(), Some("forex"));
        assert!(validate_strategies(&json!([])).is_err());
        assert!(validate_strategies(&json!({"strategies": 3})).is_err());
        assert!(validate_strategies(&json!({"strategies": [{"name": ""}]})).is_err());
        assert!(
            validate_strategies(&json!({"strategies": [{"name": "x", "confidence": 7}]})).is_err()
        );
        assert!(
            validate_strategies(&json!({"strategies": [{"name": "x", "style": "yolo"}]})).is_err()
        );
        assert!(
            validate_strategies(&json!({"strategies": [{"name": "x", "entry_rules": "no"}]}))
                .is_err()
        );
    }

    #[test]
    fn merge_by_name() {
        let a = Strategy {
            name: "RSI Reversal".into(),
            timeframes: vec!["1H".into()],
            evidence: vec![Evidence {
                quote: "q1".into(),
                timestamp: None,
                page: None,
            }],
            confidence: 0.4,
            ..Default::default()
        };
        let b = Strategy {
            name: "rsi reversal".into(),
            timeframes: vec!["1H".into(), "4H".into()],
            stop_loss: Some("below swing low".into()),
            evidence: vec![Evidence {
                quote: "q2".into(),
                timestamp: None,
                page: None,
            }],
            confidence: 0.8,
            ..Default::default()
        };
        let c = Strategy {
            name: "Breakout".into(),
            ..Default::default()
        };
        let merged = merge_strategies(vec![vec![a], vec![b, c]]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].timeframes, vec!["1H", "4H"]);
        assert_eq!(merged[0].evidence.len(), 2);
        assert_eq!(merged[0].stop_loss.as_deref(), Some("below swing low"));
        assert_eq!(merged[0].confidence, 0.8);
    }
}
