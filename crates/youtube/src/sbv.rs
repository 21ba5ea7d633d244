//! SubViewer (`.sbv`, what YouTube Studio downloads): a `start,end` timing line
//! (`0:00:01.000,0:00:04.000`), the cue's text lines, a blank line.

use std::sync::LazyLock;

use regex::Regex;

use crate::caption::{clean_line, parse_time};
use crate::error::{Error, Result};
use crate::segment::Segment;

static TIMING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(\d+:\d{1,2}:\d{1,2}(?:\.\d+)?)\s*,\s*(\d+:\d{1,2}:\d{1,2}(?:\.\d+)?)\s*$")
        .unwrap()
});

/// True when the first non-blank line is an SBV timing line.
pub(crate) fn looks_like_sbv(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| TIMING.is_match(l.trim_start_matches('\u{FEFF}')))
}

/// Parses SBV text (already decoded).
pub(crate) fn parse_sbv(text: &str) -> Result<Vec<Segment>> {
    let mut out: Vec<Segment> = Vec::new();
    let mut current: Option<Cue> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start_matches('\u{FEFF}');
        if let Some(c) = TIMING.captures(line) {
            flush(&mut out, current.take());
            let time = |s: &str| {
                parse_time(s).ok_or_else(|| Error::Caption {
                    line: n + 1,
                    reason: format!("unreadable SBV time {s:?}"),
                })
            };
            let (start, end) = (time(&c[1])?, time(&c[2])?);
            current = Some((start, end.max(start), Vec::new()));
        } else if line.trim().is_empty() {
            flush(&mut out, current.take());
        } else if let Some((_, _, lines)) = current.as_mut() {
            lines.push(line.to_string());
        } else if let Some(prev) = out.last_mut() {
            // Text after a stray blank line stays with its cue, as in SRT.
            prev.text = clean_line(&format!("{} {line}", prev.text));
        }
    }
    flush(&mut out, current.take());
    Ok(out)
}

/// A cue being read: start, end, text lines.
type Cue = (f64, f64, Vec<String>);

fn flush(out: &mut Vec<Segment>, cue: Option<Cue>) {
    if let Some((start, end, lines)) = cue {
        let text = clean_line(&lines.join(" "));
        if !text.is_empty() {
            out.push(Segment { start, end, text });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cues_blank_lines_and_bad_times() {
        let sbv = "0:00:01.000,0:00:03.500\nBuy above\nthe high\n\n\n0:00:04.000,0:00:06.000\n<i>Sell</i> below\n\nstray\n";
        let s = parse_sbv(sbv).unwrap();
        let got: Vec<(f64, f64, &str)> = s
            .iter()
            .map(|s| (s.start, s.end, s.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1.0, 3.5, "Buy above the high"),
                (4.0, 6.0, "Sell below stray")
            ]
        );
        assert!(looks_like_sbv("\u{FEFF}0:00:00.000,0:00:01.000\nx"));
        assert!(!looks_like_sbv("1\n00:00:01,000 --> 00:00:02,000\nx"));
        let e = parse_sbv("0:00:01.000,0:99:03.000\nx\n").unwrap_err();
        assert!(matches!(&e, Error::Caption { line: 1, .. }), "{e}");
    }
}
