//! Prepared text rebuilt into sentences for the offline extractor: caption cues joined,
//! rolling duplicates (YouTube auto-captions repeat the previous line) and disfluencies ("uh",
//! "um", "you know", stutters) dropped, split at sentence ends, bullets and headings; run-ons
//! from unpunctuated captions cut at clause boundaries so no sentence grows past [`MAX_WORDS`].
//! Each sentence keeps the timestamp and page of its first word. Classification lives in
//! `rule_kind`.

use std::sync::LazyLock;

use regex::Regex;

use crate::content::Line;

/// The longest sentence kept whole; longer run-ons are cut at clause boundaries.
pub(crate) const MAX_WORDS: usize = 32;

/// One sentence with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sentence {
    pub text: String,
    pub timestamp: Option<String>,
    pub page: Option<u32>,
    /// A heading or label line ("Entry rules:", "# Setup"), not a statement.
    pub heading: bool,
    /// A bullet or numbered item.
    pub bullet: bool,
    /// The index of the line its first word is on.
    pub line: usize,
}

static BULLET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?:[-*\u{2022}]\s+|\[[ xX]?\]\s*|\d{1,2}[.)]\s+|(?i:rule|step)\s+\d+\s*[:.)-]\s*)",
    )
    .unwrap()
});

/// Words dropped wherever they stand (with a trailing comma).
const FILLERS: &[&str] = &["uh", "um", "uhm", "umm", "er", "erm", "ah", "hmm"];
/// Words that open a new statement in unpunctuated speech.
const OPENERS: &[&str] = &[
    "i", "i'll", "i'm", "we", "we're", "we'll", "you", "you'll", "then", "so", "finally", "my",
    "your", "first", "next", "now", "okay", "alright", "also", "never", "always", "once", "if",
    "put", "place", "take", "don't", "do", "let", "hope", "thanks", "and", "buy", "sell", "target",
    "risk", "exit", "enter", "the",
];
/// Words after "and" that make it open a statement ("… the level | and always wait …").
const AND_OPENERS: &[&str] = &[
    "i", "we", "you", "my", "your", "finally", "always", "never", "also",
];
/// Verbs and prepositions a possessive continues ("put your stop", "of my account").
const TAKES_OBJECT: &[&str] = &[
    "put", "place", "set", "move", "size", "take", "plan", "trail", "risk", "of", "in", "on",
    "for", "with", "at", "from", "into", "by", "under", "below", "above", "through", "time",
    "close", "exit", "manage", "protect", "cut", "hit", "reach", "reaches", "against", "within",
];
/// Words after "so" that make it open a statement ("so the stop …", not "so chart").
const SO_OPENERS: &[&str] = &[
    "i",
    "we",
    "you",
    "the",
    "today",
    "now",
    "if",
    "when",
    "this",
    "that",
    "here",
    "my",
    "your",
    "let's",
    "first",
    "basically",
];
/// Words after "the" that open a statement ("… the low | the target is …").
const THE_OPENERS: &[&str] = &[
    "stop", "target", "entry", "exit", "first", "second", "trend", "risk",
];
/// Words after which an opener continues the same statement ("when I", "that you").
const JOINERS: &[&str] = &[
    "and", "that", "so", "when", "if", "because", "then", "once", "where", "until", "as", "before",
    "after", "what", "how", "do", "can", "will", "should", "would", "to", "the", "a", "me", "let",
    "but", "or", "while", "unless", "why", "which", "who", "than", "is", "are", "was", "have", "i",
    "we", "you", "they", "then", "also", "must", "only", "not", "never", "always", "and",
];

/// A word with the line it came from.
#[derive(Clone)]
struct Word {
    text: String,
    line: usize,
}

/// Rebuilds `lines` into sentences.
pub(crate) fn sentences(lines: &[Line]) -> Vec<Sentence> {
    let mut out = Vec::new();
    let mut buf: Vec<Word> = Vec::new();
    // The last words of the caption stream, to drop a cue's repeat of the previous line.
    let mut recent: Vec<String> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.text.trim();
        if t.is_empty() {
            if l.timestamp.is_none() {
                flush(&mut buf, lines, &mut out);
            }
            continue;
        }
        let bullet = BULLET.find(t);
        let prev_blank = i == 0 || lines[i - 1].text.trim().is_empty();
        if l.timestamp.is_none() && (bullet.is_some() || is_heading(t, prev_blank)) {
            flush(&mut buf, lines, &mut out);
            let body = bullet.map_or(t, |m| &t[m.end()..]);
            push_words(&mut buf, body, i);
            if bullet.is_none() {
                let text = clean(&buf);
                buf.clear();
                if !text.is_empty() {
                    out.push(Sentence {
                        text,
                        timestamp: l.timestamp.clone(),
                        page: l.page,
                        heading: true,
                        bullet: false,
                        line: i,
                    });
                }
            } else {
                let n = out.len();
                flush(&mut buf, lines, &mut out);
                for s in &mut out[n..] {
                    s.bullet = true;
                }
            }
            continue;
        }
        let mut new: Vec<String> = t.split_whitespace().map(str::to_string).collect();
        if l.timestamp.is_some() {
            let k = rolling_overlap(&recent, &new);
            new.drain(..k);
            recent.extend(new.iter().cloned());
            let excess = recent.len().saturating_sub(40);
            recent.drain(..excess);
        }
        for w in new {
            let end = ends_sentence(&w);
            buf.push(Word { text: w, line: i });
            if end {
                flush(&mut buf, lines, &mut out);
            }
        }
    }
    flush(&mut buf, lines, &mut out);
    out
}

fn push_words(buf: &mut Vec<Word>, text: &str, line: usize) {
    buf.extend(text.split_whitespace().map(|w| Word {
        text: w.to_string(),
        line,
    }));
}

/// How many leading words of `new` repeat the tail of `recent` (a rolling caption line).
fn rolling_overlap(recent: &[String], new: &[String]) -> usize {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    for k in (1..=new.len().min(recent.len())).rev() {
        let tail = &recent[recent.len() - k..];
        if tail.iter().zip(&new[..k]).all(|(a, b)| eq(a, b)) && (k >= 3 || k == new.len()) {
            return k;
        }
    }
    0
}

fn ends_sentence(w: &str) -> bool {
    let w = w.trim_end_matches(['"', '\'', ')', '\u{201d}']);
    if !w.ends_with(['.', '!', '?']) || w.ends_with("..") {
        return false;
    }
    let lower = w.to_ascii_lowercase();
    let abbreviation = [
        "e.g.", "i.e.", "vs.", "etc.", "approx.", "mr.", "ms.", "dr.", "no.",
    ]
    .contains(&lower.as_str())
        || lower.len() == 2 && lower.as_bytes()[0].is_ascii_alphabetic();
    !abbreviation
}

/// A label line: markdown heading, a line ending in ':', or a short unpunctuated title after a
/// blank line (a wrapped paragraph's first line is longer).
fn is_heading(t: &str, prev_blank: bool) -> bool {
    let words = t.split_whitespace().count();
    t.starts_with('#')
        || (t.ends_with(':') && words <= 6)
        || (prev_blank && words <= 8 && !t.ends_with(['.', '!', '?', ',']) && !t.contains(". "))
}

/// The words without fillers ("uh", "um"), so run-ons are cut on what was said.
fn without_fillers(words: &[Word]) -> Vec<Word> {
    words
        .iter()
        .filter(|w| {
            let bare = w.text.trim_end_matches([',', '.']).to_ascii_lowercase();
            !FILLERS.contains(&bare.as_str()) || w.text.ends_with(['.', '?', '!'])
        })
        .cloned()
        .collect()
}

/// Drops fillers and stutters; joins the words.
fn clean(words: &[Word]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i].text;
        let bare = w.trim_end_matches([',', '.']).to_ascii_lowercase();
        if FILLERS.contains(&bare.as_str()) {
            // Keep a sentence end the filler carried.
            if w.ends_with(['.', '?', '!'])
                && let Some(last) = out.last_mut()
            {
                last.push('.');
            }
            i += 1;
            continue;
        }
        if bare == "you"
            && let Some(next) = words.get(i + 1)
            && next.text.trim_end_matches(',').eq_ignore_ascii_case("know")
            && is_filler_you_know(words, i)
        {
            i += 2;
            continue;
        }
        // A two-word stutter: "the stop the stop".
        if out.len() >= 2
            && let Some(next) = words.get(i + 1)
            && out[out.len() - 2].eq_ignore_ascii_case(w)
            && out[out.len() - 1].eq_ignore_ascii_case(&next.text)
            && w.chars().all(char::is_alphabetic)
        {
            i += 2;
            continue;
        }
        // A stutter: the same word twice ("if if", "stop, stop,").
        if let Some(prev) = out.last()
            && prev.trim_end_matches(',').eq_ignore_ascii_case(&bare)
            && bare.chars().all(|c| c.is_alphabetic() || c == '\'')
            && !bare.is_empty()
        {
            i += 1;
            continue;
        }
        out.push(w.clone());
        i += 1;
    }
    let mut s = out.join(" ");
    // A comma left dangling by a removed filler ("so, when").
    s = s.replace(" ,", ",");
    s.trim_matches(|c: char| c == ',' || c.is_whitespace())
        .to_string()
}

/// "you know" as a filler, not as a verb: "do you know", "if you know the level", "you know
/// where the level is".
fn is_filler_you_know(words: &[Word], i: usize) -> bool {
    let prev = i
        .checked_sub(1)
        .map(|p| words[p].text.to_ascii_lowercase())
        .unwrap_or_default();
    let next = words
        .get(i + 2)
        .map(|w| w.text.to_ascii_lowercase())
        .unwrap_or_default();
    words[i + 1].text.ends_with(',')
        || !([
            "do", "did", "if", "when", "once", "unless", "because", "that",
        ]
        .contains(&prev.as_str())
            || ["how", "what", "where", "why", "which", "whether", "that"].contains(&next.as_str()))
}

fn flush(buf: &mut Vec<Word>, lines: &[Line], out: &mut Vec<Sentence>) {
    if buf.is_empty() {
        return;
    }
    let words = without_fillers(buf);
    for piece in split_run_on(&words) {
        let text = clean(piece);
        if text.is_empty() {
            continue;
        }
        let l = &lines[piece[0].line];
        out.push(Sentence {
            text,
            timestamp: l.timestamp.clone(),
            page: l.page,
            heading: false,
            bullet: false,
            line: piece[0].line,
        });
    }
    buf.clear();
}

fn next_in(words: &[Word], i: usize, set: &[&str]) -> bool {
    words
        .get(i + 1)
        .is_some_and(|n| set.contains(&n.text.to_ascii_lowercase().as_str()))
}

/// Cuts a sentence longer than [`MAX_WORDS`] before statement openers ("… euro dollar | I use
/// the 1H chart …"), then halves what is still too long at the opener nearest the middle.
fn split_run_on(words: &[Word]) -> Vec<&[Word]> {
    if words.len() <= MAX_WORDS {
        return vec![words];
    }
    let opener = |i: usize| -> bool {
        let w = words[i].text.to_ascii_lowercase();
        let prev = words[i - 1].text.to_ascii_lowercase();
        let prev_bare = prev.trim_end_matches(',');
        if !OPENERS.contains(&w.as_str())
            || JOINERS.contains(&prev_bare)
            || FILLERS.contains(&prev_bare)
        {
            return false;
        }
        match w.as_str() {
            "and" => next_in(words, i, AND_OPENERS),
            "so" => next_in(words, i, SO_OPENERS),
            "the" => next_in(words, i, THE_OPENERS),
            "my" | "your" => !TAKES_OBJECT.contains(&prev_bare),
            _ => true,
        }
    };
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..words.len() {
        if i - start >= 5 && opener(i) {
            out.push(&words[start..i]);
            start = i;
        }
    }
    out.push(&words[start..]);
    // Still too long: cut in the middle until every piece fits.
    let mut done = Vec::new();
    while let Some(p) = out.pop() {
        if p.len() <= MAX_WORDS {
            done.push(p);
        } else {
            let mid = p.len() / 2;
            done.push(&p[mid..]);
            out.push(&p[..mid]);
        }
    }
    done.reverse();
    // Restore document order (the stack reversed it piecewise).
    done.sort_by_key(|p| p.as_ptr() as usize);
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::lines;

    fn texts(t: &str) -> Vec<String> {
        sentences(&lines(t)).into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn joins_cues_and_splits_sentences() {
        let t = "[00:00:01] On the 1 hour chart I wait for a\n[00:00:04] pullback to the 50 EMA. Enter on\n[00:00:07] the close.";
        let s = sentences(&lines(t));
        assert_eq!(
            s[0].text,
            "On the 1 hour chart I wait for a pullback to the 50 EMA."
        );
        assert_eq!(s[0].timestamp.as_deref(), Some("00:00:01"));
        assert_eq!(s[1].text, "Enter on the close.");
        assert_eq!(s[1].timestamp.as_deref(), Some("00:00:04"));
    }

    #[test]
    fn drops_rolling_duplicates_and_fillers() {
        let t = "[00:00:01] we use the um 4-hour chart\n[00:00:03] we use the um 4-hour chart\n[00:00:03] and the daily so uh, you know\n[00:00:06] and the daily so uh, you know\n[00:00:06] the stop the stop goes under the low.";
        assert_eq!(
            texts(t),
            vec!["we use the 4-hour chart and the daily so the stop goes under the low."]
        );
        assert_eq!(
            texts("Skip the the day if if the range is 1.5 wide."),
            vec!["Skip the day if the range is 1.5 wide."]
        );
    }

    #[test]
    fn bullets_and_headings() {
        let t = "Entry rules:\n- Buy when price breaks the high\n- Stop below the low.\n\nThese notes wrap over two lines because the PDF\nlaid them out that way.";
        let s = sentences(&lines(t));
        assert!(s[0].heading);
        assert_eq!(s[1].text, "Buy when price breaks the high");
        assert_eq!(s[2].text, "Stop below the low.");
        assert_eq!(
            s[3].text,
            "These notes wrap over two lines because the PDF laid them out that way."
        );
        assert!(s[1].bullet && !s[3].bullet);
    }

    #[test]
    fn run_ons_are_cut() {
        let words = "what's up traders today we go through the EMA pullback strategy on the euro dollar \
            I use the 1H chart for the entries and the 4H chart for the trend on the 4H chart price \
            must be above the 50 EMA for me to look for buys on the 1H chart I wait for price";
        let s = texts(&format!("[00:00:01] {words}"));
        assert!(s.len() >= 2, "{s:?}");
        assert!(
            s.iter().all(|x| x.split_whitespace().count() <= MAX_WORDS),
            "{s:?}"
        );
        assert!(s[1].starts_with("I use the 1H chart"), "{s:?}");
    }
}
