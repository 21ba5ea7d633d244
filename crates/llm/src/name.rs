//! A strategy's name for the offline extractor, from what the speaker or author calls it:
//! "I call this the London breakout", "the EMA pullback strategy", "today's setup is the VWAP
//! reclaim", a document's title heading. Only when nothing names it is a name made from the
//! lesson's main indicator and what the entries do ("EMA pullback on EUR/USD") — never just the
//! first indicator mentioned.

use crate::sentence::Sentence;
use crate::strategy::Strategy;

/// Words that make a named thing a strategy.
const KINDS: &[&str] = &["strategy", "setup", "system", "method", "approach"];
/// Words that end a name read backwards from its kind word.
const DETERMINERS: &[&str] = &[
    "the", "my", "this", "our", "a", "an", "your", "his", "her", "their", "that", "today's", "is",
    "called", "about", "of", "it's", "its",
];
/// Words that end a name read forwards ("the London breakout on cable").
const STOPS: &[&str] = &[
    "on", "for", "with", "in", "and", "i", "we", "which", "that", "because", "to", "at", "this",
    "it", "from", "using", "where", "when", "is", "—", "-", "–", "(",
];
/// Names that name nothing.
const GENERIC: &[&str] = &[
    "same",
    "whole",
    "first",
    "second",
    "third",
    "next",
    "other",
    "new",
    "simple",
    "trading",
    "favourite",
    "favorite",
    "best",
    "one",
    "two",
    "three",
    "main",
    "entire",
    "following",
    "notes",
    "conditions",
    "rules",
    "management",
    "risk",
    "entry",
    "exit",
    "tools",
    "overview",
    "summary",
    "setup",
    "trade",
];

/// The name the text gives the strategy, if any.
pub(crate) fn spoken(sentences: &[Sentence]) -> Option<String> {
    let mut by_kind = None;
    for s in sentences {
        let words: Vec<&str> = s.text.split_whitespace().collect();
        let lower: Vec<String> = words.iter().map(|w| bare(w)).collect();
        // "I call this the X", "called the X", "known as the X".
        for i in 0..lower.len() {
            let after = match lower[i].as_str() {
                "call" if matches!(lower.get(i + 1).map(String::as_str), Some("this" | "it")) => {
                    i + 2
                }
                "called" | "named" => i + 1,
                "as" if i > 0 && lower[i - 1] == "known" => i + 1,
                _ => continue,
            };
            if let Some(n) = forward(&words, &lower, after) {
                return Some(n);
            }
        }
        if by_kind.is_some() {
            continue;
        }
        for (i, w) in lower.iter().enumerate() {
            if !KINDS.contains(&w.as_str()) {
                continue;
            }
            // "my setup is the VWAP reclaim", "a trading system, the weekly trend swing".
            if let Some(next) = lower.get(i + 1)
                && (next == "is" || words[i].ends_with([',', ':']))
            {
                let from = if next == "is" { i + 2 } else { i + 1 };
                by_kind = forward(&words, &lower, from);
                if by_kind.is_some() {
                    break;
                }
            }
            // "the EMA pullback strategy": back to the determiner.
            let mut a = i;
            while a > 0
                && i - a < 5
                && !DETERMINERS.contains(&lower[a - 1].as_str())
                && !words[a - 1].ends_with([',', '.', ':'])
            {
                a -= 1;
            }
            let determined = a == 0 || DETERMINERS.contains(&lower[a - 1].as_str());
            if a < i && determined {
                by_kind = accept(&words[a..i]);
            }
            if by_kind.is_some() {
                break;
            }
        }
    }
    by_kind.or_else(|| title(sentences))
}

/// A document's title: its first heading, cut at a dash, parenthesis or colon.
fn title(sentences: &[Sentence]) -> Option<String> {
    let h = sentences.iter().take(3).find(|s| s.heading)?;
    let t = h.text.trim_start_matches('#').trim();
    let cut = t
        .find([':', '(', '\u{2014}', '\u{2013}', '|'])
        .or_else(|| t.find(" - "))
        .unwrap_or(t.len());
    let words: Vec<&str> = t[..cut].split_whitespace().collect();
    let words: Vec<&str> = words
        .into_iter()
        .filter(|w| !KINDS.contains(&bare(w).as_str()))
        .collect();
    let words = match words.first().map(|w| bare(w)) {
        Some(f) if f == "the" => &words[1..],
        _ => &words[..],
    };
    // A title in capitals reads better in sentence case.
    let name = accept(words)?;
    Some(if name.chars().any(char::is_lowercase) {
        name
    } else {
        let lower = name.to_lowercase();
        let mut c = lower.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default()
    })
}

/// Words after `from`, skipping an article, up to a stop word or punctuation (≤ 5 words).
fn forward(words: &[&str], lower: &[String], from: usize) -> Option<String> {
    let mut a = from;
    while a < lower.len()
        && ["the", "a", "an", "my", "what", "i", "call", "this"].contains(&lower[a].as_str())
    {
        a += 1;
    }
    let mut b = a;
    while b < words.len() && b - a < 5 && !STOPS.contains(&lower[b].as_str()) {
        if KINDS.contains(&lower[b].as_str()) {
            break;
        }
        b += 1;
        if words[b - 1].ends_with([',', '.', '!', '?', ':', ';']) {
            break;
        }
    }
    accept(&words[a..b])
}

fn accept(words: &[&str]) -> Option<String> {
    let words: Vec<&str> = words
        .iter()
        .map(|w| {
            w.trim_matches(|c: char| !(c.is_alphanumeric() || c == '/' || c == '&' || c == '+'))
        })
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty()
        || words.len() > 5
        || words.iter().all(|w| GENERIC.contains(&bare(w).as_str()))
    {
        return None;
    }
    Some(words.join(" "))
}

fn bare(w: &str) -> String {
    w.trim_matches(|c: char| !(c.is_alphanumeric() || c == '\''))
        .to_lowercase()
}

/// A made-up name when nothing names the strategy: the most-mentioned indicator (not volume,
/// levels or wicks unless nothing else) and what the entries do, on the first instrument.
pub(crate) fn fallback(s: &Strategy, lower_text: &str) -> String {
    let minor = [
        "Volume",
        "Candle wicks",
        "Support and resistance",
        "Trendline",
    ];
    let mut counts: Vec<(&str, usize)> = s
        .indicators
        .iter()
        .map(|i| i.name.as_str())
        .filter(|n| !minor.contains(n))
        .map(|n| (n, lower_text.matches(&n.to_ascii_lowercase()).count()))
        .collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let method = counts
        .first()
        .map(|c| c.0)
        .or_else(|| s.indicators.first().map(|i| i.name.as_str()))
        .unwrap_or("Price action");
    let concept = [
        "pullback",
        "breakout",
        "crossover",
        "bounce",
        "reversal",
        "retest",
        "divergence",
        "squeeze",
        "fade",
        "scalp",
        "retracement",
        "reclaim",
    ]
    .into_iter()
    .filter(|c| !method.to_ascii_lowercase().contains(c))
    .max_by_key(|c| lower_text.matches(c).count())
    .filter(|c| lower_text.contains(c));
    let mut name = method.to_string();
    if let Some(c) = concept {
        name.push(' ');
        name.push_str(c);
    }
    if let Some(i) = s.instruments.first() {
        name.push_str(&format!(" on {i}"));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::lines;
    use crate::sentence::sentences;

    fn name(t: &str) -> Option<String> {
        spoken(&sentences(&lines(t)))
    }

    #[test]
    fn names_from_speech() {
        assert_eq!(
            name("Today I'll show you the EMA pullback strategy I trade on EUR/USD.").as_deref(),
            Some("EMA pullback")
        );
        assert_eq!(
            name("I call this the London breakout and I trade it daily.").as_deref(),
            Some("London breakout")
        );
        assert_eq!(
            name("Today's setup is the VWAP reclaim on Tesla.").as_deref(),
            Some("VWAP reclaim")
        );
        assert_eq!(
            name("# RANGE FADE — USD/CAD\n\nSell the top.").as_deref(),
            Some("Range fade")
        );
        assert_eq!(name("This strategy works. The same setup again."), None);
    }
}
