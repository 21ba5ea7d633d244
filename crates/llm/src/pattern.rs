//! Number-in-context readers for the offline `rules` provider: the parameters written next to
//! an indicator ("RSI 14", "20 EMA", "MACD 12 26 9", "RSI below 30") and price levels next to
//! support/resistance words (periods, percentages, money and arithmetic excluded).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::strategy::KeyLevel;

fn re(p: &str) -> Regex {
    Regex::new(p).unwrap()
}

/// Periods and thresholds written next to an indicator ("RSI 14", "20 EMA", "MACD 12 26 9",
/// "RSI below 30"). One parameter map per distinct period.
pub(crate) fn indicator_params(
    name: &str,
    l: &str,
    hits: &[(usize, usize)],
) -> Vec<Map<String, Value>> {
    static AFTER: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"^\s*(?:\(\s*|(?:period|length|of|set to|with a|with|setting|settings|on)\s+)*(\d{1,3})\b(?:\s*[,/ ]\s*(\d{1,3})\b)?(?:\s*[,/ ]\s*(\d{1,3})\b)?",
        )
    });
    static BEFORE: LazyLock<Regex> =
        LazyLock::new(|| re(r"(\d{1,3})(?:[- ](?:period|day|bar|length))?[- ]?$"));
    static THRESH: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"^[a-z ]{0,12}?(below|under|above|over|crosses above|crosses below|reaches|hits)\s+(\d{1,3})\b",
        )
    });
    let mut out: Vec<Map<String, Value>> = Vec::new();
    let mut thresholds = Map::new();
    for &(h, kw_end) in hits {
        let after = clip(l, kw_end, kw_end + 40);
        let before = clip(l, h.saturating_sub(20), h).trim_end();
        let mut p = Map::new();
        if matches!(name, "RSI" | "Stochastic" | "CCI")
            && let Some(c) = THRESH.captures(after)
        {
            let v: f64 = c[2].parse().unwrap_or(0.0);
            let key = if matches!(&c[1], "below" | "under" | "crosses below") {
                "oversold"
            } else {
                "overbought"
            };
            thresholds.insert(key.into(), json!(v));
            continue;
        }
        if name == "Support and resistance" || name == "Candle wicks" || name == "Volume" {
            continue;
        }
        if let Some(c) = BEFORE.captures(before)
            && let Ok(n) = c[1].parse::<u64>()
            && (2..=400).contains(&n)
        {
            p.insert("period".into(), json!(n));
        } else if let Some(c) = AFTER.captures(after) {
            let nums: Vec<u64> = [c.get(1), c.get(2), c.get(3)]
                .iter()
                .flatten()
                .filter_map(|m| m.as_str().parse().ok())
                .collect();
            match (name, nums.as_slice()) {
                ("MACD", [f, s, g]) => {
                    p.insert("fast".into(), json!(f));
                    p.insert("slow".into(), json!(s));
                    p.insert("signal".into(), json!(g));
                }
                ("Bollinger Bands", [n, d, ..]) if *d <= 4 => {
                    p.insert("period".into(), json!(n));
                    p.insert("std_dev".into(), json!(d));
                }
                (_, [n, ..]) if (2..=400).contains(n) => {
                    p.insert("period".into(), json!(n));
                }
                _ => {}
            }
        }
        if !p.is_empty() && !out.contains(&p) {
            out.push(p);
        }
    }
    if !thresholds.is_empty() {
        match out.first_mut() {
            Some(first) => first.extend(thresholds),
            None => out.push(thresholds),
        }
    }
    out
}

/// `s[a..b]` shrunk to char boundaries (the text is ASCII-lowercased, not ASCII-only).
pub(crate) fn clip(s: &str, a: usize, b: usize) -> &str {
    let mut a = a.min(s.len());
    let mut b = b.min(s.len());
    while !s.is_char_boundary(a) {
        a += 1;
    }
    while b > a && !s.is_char_boundary(b) {
        b -= 1;
    }
    &s[a..b.max(a)]
}

/// A price level if the number sits near level words and is not a period, percent or time.
pub(crate) fn key_level(l: &str, start: usize, end: usize, raw: &str) -> Option<KeyLevel> {
    let price = raw.replace(',', "").parse::<f64>().ok()?;
    let after = clip(l, end, end + 14);
    let before_full = clip(l, start.saturating_sub(60), start);
    let before_near = clip(l, start.saturating_sub(12), start).trim_end();
    let money = ["usd", "eur", "gbp", "dollar", "$", "bucks", "k "];
    if after.trim_start().starts_with(['%', 'x'])
        || after.trim_start().starts_with("percent")
        || money.iter().any(|m| after.trim_start().starts_with(m))
        || before_near.ends_with(['$', 'x', '*', '=', '/', '('])
        || before_near.contains("account")
        || before_near.contains("risk")
        || after.starts_with(['-', ' ']) && {
            let a = after.trim_start_matches(['-', ' ']);
            [
                "minute", "min", "hour", "period", "day", "bar", "ema", "sma", "rsi", "pip",
                "point", "tick", "times",
            ]
            .iter()
            .any(|w| a.starts_with(w))
        }
    {
        return None;
    }
    let window_start = start.saturating_sub(70);
    let window = clip(l, window_start, end + 70);
    const SUPPORT: &[&str] = &[
        "support", "bounced", "bounce", "floor", "held", "demand", "buyers", "lows",
    ];
    const RESIST: &[&str] = &[
        "resistance",
        "ceiling",
        "rejected",
        "supply",
        "sellers",
        "highs",
    ];
    const LEVEL: &[&str] = &[
        "level",
        "zone",
        "area",
        "broke",
        "break",
        "breakout",
        "round number",
        "touched",
    ];
    let near = |words: &[&str]| -> Option<usize> {
        words
            .iter()
            .filter_map(|w| window.find(w).map(|i| (window_start + i).abs_diff(start)))
            .min()
    };
    let (s, r, lv) = (near(SUPPORT), near(RESIST), near(LEVEL));
    let kind = match (s, r) {
        (Some(a), Some(b)) => {
            if a <= b {
                "support"
            } else {
                "resistance"
            }
        }
        (Some(_), None) => "support",
        (None, Some(_)) => "resistance",
        (None, None) if lv.is_some() => "level",
        _ => return None,
    };
    // Integers that look like years need an explicit level word right next to them.
    if !raw.contains(['.', ','])
        && (1900.0..=2100.0).contains(&price)
        && !before_full.ends_with("at ")
    {
        return None;
    }
    Some(KeyLevel {
        price,
        kind: kind.into(),
        note: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(text: &str, num: &str) -> Option<(f64, String)> {
        let l = text.to_ascii_lowercase();
        let start = l.find(num).unwrap();
        key_level(&l, start, start + num.len(), num).map(|k| (k.price, k.kind))
    }

    #[test]
    fn levels_and_non_levels() {
        assert_eq!(
            level("price bounced off 1.0850 twice", "1.0850"),
            Some((1.085, "support".into()))
        );
        assert_eq!(
            level("resistance at 4,325 and 4,400", "4,325"),
            Some((4325.0, "resistance".into()))
        );
        assert_eq!(level("the 200 ema is the level", "200"), None, "a period");
        assert_eq!(
            level("account 25,000 usd at the level", "25,000"),
            None,
            "money"
        );
        assert_eq!(
            level("(account x 0.01) at the level", "0.01"),
            None,
            "arithmetic"
        );
        assert_eq!(level("a 15 minute chart level", "15"), None);
        assert_eq!(level("in 2023 the level broke", "2023"), None, "a year");
        assert_eq!(
            level("nothing about 1.2345 here", "1.2345"),
            None,
            "no level words"
        );
    }

    #[test]
    fn params() {
        let l = "macd 12 26 9 and bollinger bands 20, 2 and the 21 ema";
        let hit = |w: &str| {
            let s = l.find(w).unwrap();
            vec![(s, s + w.len())]
        };
        assert_eq!(indicator_params("MACD", l, &hit("macd"))[0]["slow"], 26);
        assert_eq!(
            indicator_params("Bollinger Bands", l, &hit("bollinger bands"))[0]["std_dev"],
            2
        );
        assert_eq!(indicator_params("EMA", l, &hit("ema"))[0]["period"], 21);
    }
}
