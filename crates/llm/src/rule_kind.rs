//! What a sentence of a lesson is as a trading rule: entry, exit, stop, target, sizing or filter
//! (or none), from the words a trader uses for each. One kind per sentence, checked in a fixed
//! order (sizing, stop, target, strong filter, exit, entry, weak filter) so a sentence that says
//! "take profit at 2R and move the stop" is read once. Numbers stay in the sentence.

use std::sync::LazyLock;

use regex::Regex;

use crate::lexicon::NUM;

/// The kind of a rule sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Entry,
    Exit,
    Stop,
    Target,
    Sizing,
    Filter,
}

fn re(p: &str) -> Regex {
    Regex::new(p).unwrap()
}

static SIZING: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\brisk(?:s|ing)? (?:only |just |no more than |more than |at most |about |maximum |max )?(?:{NUM}) ?(?:%|percent|per ?cent|dollars|\$)|\b(?:{NUM}) ?(?:%|percent|per ?cent) (?:risk|of (?:your|the|my) (?:account|capital|equity|balance|portfolio))|\bposition siz(?:e|ing)\b|\bsize (?:the|your|my) position\b|\blot size\b|\bunits?\b|\bper (?:trade|position)\b.*\b(?:account|equity)\b"
    ))
});
static BUY_STOP: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:buy|sell) stops?\b"));
static STOP: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\bstop[- ]?loss(?:es)?\b|\b(?:the|your|my|initial|a|our) stop\b|^stop\b|\bstop (?:goes|at|below|under|above|beyond|is)\b|\b(?:fixed|hard|tight|wide|initial) stop\b|\bbreak ?even\b",
    )
});
static TARGET: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\btake[- ]?profits?\b|\btargets?\b|\btake (?:half|some|partials?|a partial)\b|\b(?:sell|close) half\b|\bcover\b|\b\d(?:\.\d)? ?: ?\d\b|\b\d+(?:\.\d+)? ?r\b|\breward\b",
    )
});
static FILTER_STRONG: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\bonly (?:trade|take|buy|sell|go|look|enter|when|if|during|between|at|in)\b|\btrade (?:it )?only\b|\bonly if\b|\bavoid\b|\bskip\b|\bno trades?\b|\b(?:do not|don't|never) (?:trade|fade|buy|sell|take|enter)\b|\bmust\b|\bhas to\b|\bhave to be\b|\bneeds? to be\b|\bshould (?:be|stay)\b|\bcounts only\b",
    )
});
static EXIT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\bexit\b|\bget out\b|\bclose (?:the|your|my|it|everything|all|the rest|early|out|half)\b|^close\b|\bgets? closed\b|\bclosed\b|\bsell everything\b|\btrail|\bcancel\b|\bscale out\b|\bbook profits?\b|\bsell at the close\b",
    )
});
static ENTRY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:buy|buys|sell|sells|short|enter|go long|go short|going long|long when|longs? (?:when|if)|open a (?:long|short))\b|\bentry (?:is|comes|happens|when)\b|\bcross(?:es|ing)? (?:above|below|over|up|down)\b|\bbreaks? (?:above|below|the)\b|\bwait for\b|\bpull(?:s)? ?back to\b",
    )
});
static FILTER_WEAK: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:is|are|stays?|remains?) (?:above|below|green|red|positive|negative|rising|falling)\b|\bat least\b|\bnews\b|\bsession\b|\bin the direction of\b|\bwith the trend\b|\btrend filter\b",
    )
});

static QUESTION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\?\s*$|^(?:(?:okay|ok|so|now|and)\s+)*(?:where|what|how|when|why|which)\s+(?:do|does|did|is|are|should|would|can|will)\b",
    )
});

/// A question ("where do you put your stop loss") and the kind it asks about: its answer, the
/// next sentence, is a rule of that kind.
pub(crate) fn question(sentence: &str) -> Option<Option<Kind>> {
    let l = sentence.to_ascii_lowercase();
    QUESTION
        .is_match(l.trim())
        .then(|| classify_words(&l).map(|k| k.0))
}

/// The kind of `sentence` and whether it rests on a strong cue (a weak one — "price is above
/// the cloud" — yields to the list heading the sentence stands under).
pub(crate) fn classify(sentence: &str) -> Option<(Kind, bool)> {
    let l = sentence.to_ascii_lowercase();
    if question(&l).is_some() {
        return None;
    }
    classify_words(&l)
}

fn classify_words(l: &str) -> Option<(Kind, bool)> {
    let l = l.trim_start_matches(|c: char| !c.is_alphanumeric());
    if l.split_whitespace().count() < 3 {
        return None;
    }
    if SIZING.is_match(l) {
        return Some((Kind::Sizing, true));
    }
    let stop_order = BUY_STOP.is_match(l);
    // Stop or target: whichever the sentence names first ("take profit at 2R and move the stop
    // to break even" is a target).
    let stop = STOP.find(l).filter(|_| !stop_order).map(|m| m.start());
    let target = TARGET.find(l).map(|m| m.start());
    match (stop, target) {
        (Some(s), Some(t)) if t < s => return Some((Kind::Target, true)),
        (Some(_), _) => return Some((Kind::Stop, true)),
        (None, Some(_)) => return Some((Kind::Target, true)),
        _ => {}
    }
    if FILTER_STRONG.is_match(l) {
        return Some((Kind::Filter, true));
    }
    if EXIT.is_match(l) {
        return Some((Kind::Exit, true));
    }
    if ENTRY.is_match(l) || stop_order {
        return Some((Kind::Entry, true));
    }
    if FILTER_WEAK.is_match(l) {
        return Some((Kind::Filter, false));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<Kind> {
        classify(s).map(|k| k.0)
    }

    #[test]
    fn kinds() {
        use Kind::*;
        for (s, k) in [
            ("Risk 1% of the account per trade.", Some(Sizing)),
            (
                "Never risk more than 2% of your capital on one trade.",
                Some(Sizing),
            ),
            (
                "The stop loss goes below the swing low of the pullback.",
                Some(Stop),
            ),
            ("Move the stop to break even at 1R.", Some(Stop)),
            (
                "Take profit at 2R and move the stop to break even at 1R.",
                Some(Target),
            ),
            ("Take profit at 2R, that is twice the risk.", Some(Target)),
            ("Take profit at 3:1 reward to risk.", Some(Target)),
            (
                "Only take longs when price is above the VWAP.",
                Some(Filter),
            ),
            (
                "Avoid trading 30 minutes before high impact news.",
                Some(Filter),
            ),
            ("Exit early if price closes below the 200 EMA.", Some(Exit)),
            ("The rest I trail under each higher low.", Some(Exit)),
            (
                "Buy when a candle closes outside the upper band.",
                Some(Entry),
            ),
            ("Place a buy stop 3 pips above the range high.", Some(Entry)),
            ("Tenkan crosses above kijun.", Some(Entry)),
            ("Price is above the cloud.", Some(Filter)),
            ("Thanks for watching, see you next week.", None),
            ("I use the 1 hour chart for the entries.", None),
        ] {
            assert_eq!(kind(s), k, "{s}");
        }
        assert_eq!(
            classify("Price is above the cloud."),
            Some((Kind::Filter, false))
        );
    }
}
