//! The offline `rules` provider for strategies: deterministic keyword and pattern extraction
//! (instruments, timeframes, indicators with periods, price levels, entry/exit/stop/target,
//! sizing, risk and filter sentences) with evidence quotes that keep timestamps and pages.
//! No network, no key; every result says it is "offline rules".

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Map;

use crate::content::{self, Line};
use crate::lexicon::{self, INDICATORS, NUM, fmt_num, number};
use crate::name;
use crate::pattern::{indicator_params, key_level};
use crate::rule_kind::{Kind, classify, question};
use crate::sentence::{self, Sentence};
use crate::strategy::{Evidence, Indicator, Strategy};

/// The label on every `rules` result.
pub const RULES_LABEL: &str = "offline rules: deterministic keyword extraction, no LLM was called; \
     fields are literal matches from the text and may be incomplete";

/// Indexed text: words with byte spans in `flat` and the line each came from.
struct Doc {
    flat: String,
    lower: String,
    words: Vec<(usize, usize)>,
    word_line: Vec<usize>,
    lines: Vec<Line>,
}

impl Doc {
    fn new(lines: Vec<Line>) -> Doc {
        let mut flat = String::new();
        let mut words = Vec::new();
        let mut word_line = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            for w in l.text.split_whitespace() {
                if !flat.is_empty() {
                    flat.push(' ');
                }
                words.push((flat.len(), flat.len() + w.len()));
                word_line.push(i);
                flat.push_str(w);
            }
        }
        let lower = flat.to_ascii_lowercase();
        Doc {
            flat,
            lower,
            words,
            word_line,
            lines,
        }
    }

    fn word_at(&self, pos: usize) -> usize {
        self.words
            .partition_point(|(_, end)| *end <= pos)
            .min(self.words.len().saturating_sub(1))
    }

    fn ends_sentence(&self, w: usize) -> bool {
        let (s, e) = self.words[w];
        let word = &self.flat[s..e];
        if word.ends_with(['.', '!', '?', ';']) && !word.ends_with("...") {
            return true;
        }
        let Some(&next_line) = self.word_line.get(w + 1) else {
            return true;
        };
        let line = self.word_line[w];
        if next_line == line {
            return false;
        }
        // Across lines: a blank line, a bullet or checklist item, or (in untimed text) a line
        // ending in punctuation ends the sentence. Timestamped caption lines run on.
        next_line > line + 1
            || BULLET.is_match(&self.lines[next_line].text)
            || self.lines[line].timestamp.is_none()
                && self.lines[line]
                    .text
                    .trim_end()
                    .ends_with(|c: char| !c.is_alphanumeric())
    }

    /// A quote around byte `pos`: back to the sentence start (≤ `back` words), forward to the
    /// sentence end (≤ `fwd` words), with the timestamp/page of its first word.
    fn quote(&self, pos: usize, back: usize, fwd: usize) -> Quote {
        if self.words.is_empty() {
            let ev = Evidence {
                quote: String::new(),
                timestamp: None,
                page: None,
            };
            return Quote { ev, a: 0, b: 0 };
        }
        let w = self.word_at(pos);
        let mut a = w;
        while a > 0 && w - a < back && !self.ends_sentence(a - 1) {
            a -= 1;
        }
        let mut b = w;
        while b + 1 < self.words.len() && b - w < fwd && !self.ends_sentence(b) {
            b += 1;
        }
        let quote = self.flat[self.words[a].0..self.words[b].1].to_string();
        let line = &self.lines[self.word_line[a]];
        Quote {
            ev: Evidence {
                quote,
                timestamp: line.timestamp.clone(),
                page: line.page,
            },
            a,
            b,
        }
    }
}

/// A quote and the word range it covers (to drop near-duplicate quotes).
#[derive(Clone)]
struct Quote {
    ev: Evidence,
    a: usize,
    b: usize,
}

impl Quote {
    fn overlaps(&self, o: &Quote) -> bool {
        // Quotes built from listed lines carry no word range (usize::MAX).
        if self.a == usize::MAX || o.a == usize::MAX {
            return self.ev.quote == o.ev.quote;
        }
        let inter = self.b.min(o.b) as i64 - self.a.max(o.a) as i64 + 1;
        let shorter = (self.b - self.a).min(o.b - o.a) as i64 + 1;
        inter * 2 > shorter
    }
}

fn re(p: &str) -> Regex {
    Regex::new(p).unwrap()
}

static BULLET: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(?:[-*\u{2022}]\s|\[[ xX]?\]|\d{1,2}[.)]\s|(?i:rule|step)\s+\d)"));
static ENTRY_LIST: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:#+\s*)?(?:entry|entries|long|short)\b.*\b(?:checklist|rules|criteria|conditions)\b|^(?i:entry|entries)\s*:?$",
    )
});
static EXIT_LIST: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:#+\s*)?(?:exit|exits)\b.*\b(?:checklist|rules|criteria|conditions)\b|^(?i:exit|exits)\s*:?$",
    )
});
static SIZING: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\brisk (?:only |just |no more than |at most |about |maximum |max )?({NUM}) ?(?:%|percent|per ?cent)|\b({NUM}) ?(?:%|percent|per ?cent) (?:of (?:your|the|my) )?(?:account|capital|equity|balance|portfolio)|\bposition siz(?:e|ing)\b|\bsize (?:the|your) position\b|\blot size\b"
    ))
});
static LEVEL_NUM: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b\d{1,3}(?:,\d{3})+(?:\.\d+)?\b|\b\d+\.\d+\b|\b\d{3,6}\b"));
static SECTION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?im)^\s*(?:#+\s*)?(?:\[\d{1,2}:\d{2}(?::\d{2})?\]\s*)?(?:strategy|setup|system)\s*(?:#|no\.?|number)?\s*(\d+|one|two|three|four|five)\b\s*[:.)-]?\s*(.*)$|(?im)^\s*(?:#+\s*)?(?:\[\d{1,2}:\d{2}(?::\d{2})?\]\s*)?(?:the )?(first|second|third|fourth|fifth) (?:strategy|setup)\b\s*[:.,-]?\s*(.*)$",
    )
});
/// A spoken section start: "the second strategy is …", "strategy two is …".
static SPOKEN_SECTION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:the |my |our )?(?:(?:first|second|third|fourth|fifth|next|last) (?:strategy|setup|system)|(?:strategy|setup|system) (?:#|no\.? ?|number )?(?:\d|one|two|three|four|five)\b)",
    )
});

/// Extracts strategies from prepared text. Several `Strategy N` / `second strategy` headings
/// (or, in speech, sentences opening with them) give several strategies.
pub fn extract(text: &str) -> Vec<Strategy> {
    let mut lines = content::lines(text);
    let mut heads: Vec<(usize, String)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let c = SECTION.captures(&l.text)?;
            let title = c.get(2).or(c.get(4)).map_or("", |m| m.as_str());
            Some((i, title.trim().to_string()))
        })
        .collect();
    if heads.len() < 2 {
        heads = spoken_heads(&mut lines);
    }
    if heads.len() < 2 {
        return extract_one(lines, None).into_iter().collect();
    }
    let mut out = Vec::new();
    for (i, (start, title)) in heads.iter().enumerate() {
        let end = heads.get(i + 1).map_or(lines.len(), |h| h.0);
        let name = (!title.is_empty()).then(|| title.trim_end_matches(['.', ':']).to_string());
        if let Some(s) = extract_one(lines[*start..end].to_vec(), name) {
            out.push(s);
        }
    }
    out
}

/// Section starts inside running speech: a sentence that opens with "the second strategy". The
/// line it starts on is cut there so the previous strategy keeps its last words.
fn spoken_heads(lines: &mut Vec<Line>) -> Vec<(usize, String)> {
    let starts: Vec<usize> = sentence::sentences(lines)
        .into_iter()
        .filter(|s| !s.bullet && SPOKEN_SECTION.find(&s.text).is_some_and(|m| m.start() == 0))
        .map(|s| s.line)
        .collect();
    if starts.len() < 2 {
        return vec![];
    }
    let mut heads = Vec::new();
    let mut shift = 0;
    for line in starts {
        let i = line + shift;
        let cut = SPOKEN_SECTION
            .find_iter(&lines[i].text)
            .last()
            .map(|m| m.start());
        match cut {
            Some(c) if c > 0 && lines[i].text[..c].trim_end().ends_with(['.', '!', '?']) => {
                let mut tail = lines[i].clone();
                tail.text = lines[i].text[c..].to_string();
                lines[i].text.truncate(c);
                lines.insert(i + 1, tail);
                shift += 1;
                heads.push((i + 1, String::new()));
            }
            _ => heads.push((i, String::new())),
        }
    }
    heads
}

fn extract_one(lines: Vec<Line>, name: Option<String>) -> Option<Strategy> {
    let doc = Doc::new(lines);
    let sentences = sentence::sentences(&doc.lines);
    let quote = |pos: usize, back: usize, fwd: usize| {
        sentence_quote(&doc, &sentences, pos).unwrap_or_else(|| doc.quote(pos, back, fwd))
    };
    let l = &doc.lower;
    let mut s = Strategy::default();
    let mut ev: Vec<Quote> = Vec::new();
    let push_ev = |ev: &mut Vec<Quote>, q: Quote| {
        if !q.ev.quote.is_empty() && !ev.iter().any(|x| x.overlaps(&q)) {
            ev.push(q);
        }
    };

    let instruments = lexicon::instruments(l);
    let mut markets: Vec<String> = Vec::new();
    for f in &instruments {
        s.instruments.push(f.value.clone());
        if !markets.contains(&f.extra) {
            markets.push(f.extra.clone());
        }
        push_ev(&mut ev, quote(f.pos, 8, 16));
    }
    s.market = match markets.len() {
        0 => market_word(l),
        1 => Some(markets[0].clone()),
        _ => Some("mixed".into()),
    };
    for f in lexicon::timeframes(l, false) {
        s.timeframes.push(f.value.clone());
        push_ev(&mut ev, quote(f.pos, 8, 12));
    }
    for (name, pattern) in INDICATORS.iter() {
        let hits: Vec<(usize, usize)> =
            pattern.find_iter(l).map(|m| (m.start(), m.end())).collect();
        let Some(&(first, _)) = hits.first() else {
            continue;
        };
        let params = indicator_params(name, l, &hits);
        if params.is_empty() {
            s.indicators.push(Indicator {
                name: name.to_string(),
                parameters: Map::new(),
            });
        }
        for p in params {
            s.indicators.push(Indicator {
                name: name.to_string(),
                parameters: p,
            });
        }
        push_ev(&mut ev, quote(first, 8, 16));
    }
    // A named moving-average type makes the generic one redundant.
    if s.indicators
        .iter()
        .any(|i| i.name == "EMA" || i.name == "SMA")
    {
        s.indicators
            .retain(|i| !(i.name == "Moving average" && i.parameters.is_empty()));
    }
    for m in LEVEL_NUM.find_iter(l) {
        if let Some(level) = key_level(l, m.start(), m.end(), m.as_str())
            && !s.key_levels.iter().any(|k| k.price == level.price)
        {
            push_ev(&mut ev, quote(m.start(), 8, 14));
            s.key_levels.push(level);
        }
    }
    read_rules(&sentences, &mut s, &mut ev);
    let sizing = SIZING
        .captures_iter(l)
        .find(|c| c.get(1).or(c.get(2)).is_some())
        .or_else(|| SIZING.captures(l));
    if let Some(c) = sizing {
        let pct = c.get(1).or(c.get(2)).and_then(|n| number(n.as_str()));
        s.position_sizing = match pct {
            Some(p) => Some(format!("risk {}% of the account per trade", fmt_num(p))),
            None => s.risk_management.first().cloned(),
        };
    }
    s.style = style(l, &s.timeframes);

    let parts = [
        !s.instruments.is_empty(),
        !s.timeframes.is_empty(),
        !s.indicators.is_empty() || !s.key_levels.is_empty(),
        !s.entry_rules.is_empty(),
        s.stop_loss.is_some() || !s.exit_rules.is_empty() || s.take_profit.is_some(),
        s.position_sizing.is_some() || !s.risk_management.is_empty(),
    ];
    let found = parts.iter().filter(|p| **p).count();
    // Without a method (indicators/levels) and a rule, or an entry and a way out, there is no
    // strategy to report.
    if !(parts[2] && (parts[3] || parts[4]) || parts[3] && parts[4]) {
        return None;
    }
    // Keyword matches are never certain: confidence tops out at 0.6.
    s.confidence = ((found as f64 / parts.len() as f64) * 0.6 * 100.0).round() / 100.0;
    // A section title names the strategy unless it is the rest of a spoken sentence
    // ("Strategy one is what I call the London breakout").
    let title = name.filter(|n| {
        let w: Vec<&str> = n.split_whitespace().collect();
        !w.is_empty() && w.len() <= 5 && !["is", "was", "will"].contains(&w[0])
    });
    s.name = title
        .or_else(|| name::spoken(&sentences))
        .unwrap_or_else(|| name::fallback(&s, l));
    ev.truncate(16);
    s.evidence = ev.into_iter().map(|q| q.ev).collect();
    Some(s)
}

/// The whole sentence around byte `pos` of `doc.lower` as evidence: the last sentence starting on
/// or before the word's line that holds the word. `None` when none does (a heading, a cut word).
fn sentence_quote(doc: &Doc, sentences: &[Sentence], pos: usize) -> Option<Quote> {
    if doc.words.is_empty() {
        return None;
    }
    let w = doc.word_at(pos);
    let (a, b) = doc.words[w];
    let word = doc.lower[a..b].trim_matches(|c: char| !c.is_alphanumeric());
    let line = doc.word_line[w];
    let end = sentences.partition_point(|s| s.line <= line);
    let sn = sentences[..end]
        .iter()
        .rev()
        .take(4)
        .find(|s| !word.is_empty() && s.text.to_ascii_lowercase().contains(word))?;
    Some(Quote {
        ev: Evidence {
            quote: sn.text.clone(),
            timestamp: sn.timestamp.clone(),
            page: sn.page,
        },
        a: usize::MAX,
        b: usize::MAX,
    })
}

/// Every sentence that states a rule, classified once, deduplicated, into the strategy's rule
/// fields; bullets under an "Entry checklist" / "Exit rules:" heading take the heading's kind
/// when their own words say little. The first stop and target sentences are `stop_loss` and
/// `take_profit`; further ones go to `risk_management` and `exit_rules`.
fn read_rules(sentences: &[Sentence], s: &mut Strategy, ev: &mut Vec<Quote>) {
    let mut list: Option<Kind> = None;
    let mut seen: Vec<String> = Vec::new();
    // "Where do you put your stop loss? You put it beyond the level": the answer's kind.
    let mut asked: Option<Kind> = None;
    for sn in sentences {
        let answer_to = asked.take();
        if let Some(q) = question(&sn.text) {
            asked = q;
            continue;
        }
        if sn.heading {
            let t = sn.text.trim();
            list = if ENTRY_LIST.is_match(t) {
                Some(Kind::Entry)
            } else if EXIT_LIST.is_match(t) {
                Some(Kind::Exit)
            } else {
                None
            };
            continue;
        }
        if !sn.bullet {
            list = None;
        }
        let kind = match classify(&sn.text) {
            Some((k, true)) => k,
            weak => match list.or(answer_to).or(weak.map(|w| w.0)) {
                Some(k) => k,
                None => continue,
            },
        };
        let key: String = sn
            .text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ')
            .collect();
        if seen
            .iter()
            .any(|k| k.contains(&key) || key.contains(k.as_str()))
        {
            continue;
        }
        seen.push(key);
        let text = sn.text.clone();
        match kind {
            Kind::Entry => s.entry_rules.push(text),
            Kind::Exit => s.exit_rules.push(text),
            Kind::Stop if s.stop_loss.is_none() => s.stop_loss = Some(text),
            Kind::Stop | Kind::Sizing => s.risk_management.push(text),
            Kind::Target if s.take_profit.is_none() => s.take_profit = Some(text),
            Kind::Target => s.exit_rules.push(text),
            Kind::Filter => s.filters.push(text),
        }
        let q = Quote {
            ev: Evidence {
                quote: sn.text.clone(),
                timestamp: sn.timestamp.clone(),
                page: sn.page,
            },
            a: usize::MAX,
            b: usize::MAX,
        };
        if !ev.iter().any(|x| x.ev.quote == q.ev.quote) {
            ev.push(q);
        }
    }
}

fn market_word(l: &str) -> Option<String> {
    for (w, m) in [
        ("forex", "forex"),
        ("crypto", "crypto"),
        ("stocks", "stocks"),
        ("shares", "stocks"),
        ("futures", "futures"),
        ("options", "options"),
    ] {
        if l.contains(w) {
            return Some(m.into());
        }
    }
    None
}

fn style(l: &str, tfs: &[String]) -> Option<String> {
    for (w, st) in [
        ("scalp", "scalping"),
        ("day trad", "day"),
        ("intraday", "day"),
        ("swing trad", "swing"),
        ("position trad", "position"),
    ] {
        if l.contains(w) {
            return Some(st.into());
        }
    }
    let minutes = |t: &str| -> Option<u32> {
        let (n, u) = t.split_at(t.len() - 1);
        let n: u32 = n.parse().ok()?;
        Some(
            n * match u {
                "m" => 1,
                "H" => 60,
                "D" => 1440,
                "W" => 10080,
                _ => 43200,
            },
        )
    };
    let smallest = tfs.iter().filter_map(|t| minutes(t)).min()?;
    Some(
        match smallest {
            0..=5 => "scalping",
            6..=60 => "day",
            61..=1440 => "swing",
            _ => "position",
        }
        .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "[00:00:05] Today I trade EUR/USD on the 1 hour chart.\n\
        [00:00:12] I use the 50 EMA and the 200 EMA, plus RSI 14.\n\
        [00:00:20] Enter long when price pulls back to the 50 EMA and RSI is below 30.\n\
        [00:00:31] Put your stop loss 10 pips below the swing low.\n\
        [00:00:40] Take profit at 2:1 risk to reward, resistance at 1.1050.\n\
        [00:00:48] Risk 1% of your account per trade and avoid trading during news.";

    #[test]
    fn sample_strategy() {
        let out = extract(SAMPLE);
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!(s.instruments, vec!["EUR/USD"]);
        assert_eq!(s.market.as_deref(), Some("forex"));
        assert_eq!(s.timeframes, vec!["1H"]);
        assert_eq!(s.style.as_deref(), Some("day"));
        let emas: Vec<_> = s.indicators.iter().filter(|i| i.name == "EMA").collect();
        assert_eq!(emas.len(), 2, "{:?}", s.indicators);
        assert_eq!(emas[0].parameters["period"], 50);
        assert_eq!(emas[1].parameters["period"], 200);
        let rsi = s.indicators.iter().find(|i| i.name == "RSI").unwrap();
        assert_eq!(rsi.parameters["period"], 14);
        assert_eq!(rsi.parameters["oversold"], 30.0);
        assert!(s.entry_rules.iter().any(|r| r.contains("Enter long")));
        assert!(
            s.stop_loss
                .as_deref()
                .unwrap()
                .contains("below the swing low")
        );
        assert!(s.take_profit.as_deref().unwrap().contains("2:1"));
        assert_eq!(
            s.position_sizing.as_deref(),
            Some("risk 1% of the account per trade")
        );
        // One kind per sentence: sizing comes first.
        assert!(s.risk_management.iter().any(|f| f.contains("news")));
        assert!(
            s.key_levels
                .iter()
                .any(|k| k.price == 1.105 && k.kind == "resistance")
        );
        assert!(
            s.evidence
                .iter()
                .any(|e| e.timestamp.as_deref() == Some("00:00:31"))
        );
        assert!(s.confidence > 0.0 && s.confidence <= 0.6);
    }

    #[test]
    fn several_strategies_and_pages() {
        let text = "[page 2]\nStrategy 1: RSI bounce\nBuy when RSI crosses above 30 on the daily chart. Stop loss below the low.\n\
            [page 3]\nStrategy 2: Breakout\nEnter on a breakout above resistance at 4,325 on the 15 minute chart. Exit at the close.";
        let out = extract(text);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].name, "RSI bounce");
        assert_eq!(out[1].name, "Breakout");
        assert!(out[0].evidence.iter().all(|e| e.page == Some(2)));
        assert!(out[1].evidence.iter().all(|e| e.page == Some(3)));
        assert!(out[1].key_levels.iter().any(|k| k.price == 4325.0));
    }

    #[test]
    fn never_panics_on_odd_text() {
        let odd = [
            "é".repeat(50),
            "Support at 1.0850 ü RSI é14 😀 EMA 20 stop loss € 2:1".into(),
            "Strategy 1: é\nStrategy 2: ü\n".into(),
            "\u{c}\u{c}[page 0]\n--- page 99999 ---\n[99:99:99] risk 100% of account".into(),
            "1,000,000,000,000.5 support 99999999999999999999 resistance".into(),
        ];
        for t in odd {
            let _ = extract(&t);
            let _ = crate::chunk::chunk_text(&t, 64, 16);
        }
    }

    #[test]
    fn nothing_to_find() {
        assert!(extract("The weather was nice and we went to the beach.").is_empty());
        assert!(extract("").is_empty());
    }
}
