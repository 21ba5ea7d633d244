//! WebVTT and SRT cue parsing, lenient where files in the wild are sloppy (missing header, missing
//! hours or milliseconds, 2-digit fractions, no blank line before a timing line, CR line ends) and
//! loud where text would otherwise be lost (a timing line with neither time readable is an error
//! naming the line; one readable time keeps the cue).
//! Also undoes YouTube's auto-caption layout: rolling repeated lines and 10 ms duplicate cues.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::{Error, Result};
use crate::segment::Segment;

/// Markup: WebVTT/SRT/HTML tags by name (so `RSI < 30 and price > 50` stays text), inline
/// timestamps (`<00:00:01.234>`) and SSA override blocks (`{\an8}`).
static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)</?(?:c|i|b|u|s|v|lang|ruby|rt|rp|font|span|br|p|em|strong|sub|sup|big|small|tt)(?:[.\s][^<>\n]*)?/?>|<\d+(?::\d+){1,2}(?:[.,]\d+)?>|\{\\[^}\n]*\}",
    )
    .unwrap()
});
static INLINE_TS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<(\d+:)?\d{1,2}:\d{1,2}[.,]\d+>").unwrap());
static ENTITY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"&(#\d+|#[xX][0-9a-fA-F]+|[a-zA-Z]+);").unwrap());

/// One cue as written: times and its text lines, already cleaned of tags and entities.
#[derive(Debug, Clone, PartialEq)]
struct Cue {
    start: f64,
    end: f64,
    lines: Vec<String>,
}

#[derive(PartialEq)]
enum State {
    Outside,
    InCue,
    Skip,
}

/// Parses WebVTT or SRT text (already decoded) into transcript segments.
pub(crate) fn parse_text_captions(text: &str) -> Result<Vec<Segment>> {
    let text = text
        .trim_start_matches('\u{FEFF}')
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let is_vtt = lines
        .iter()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("WEBVTT"));
    let auto_layout = INLINE_TS.is_match(&text)
        || (text.contains("position:0%") && (text.contains("<c>") || text.contains("<c.")));

    let mut cues: Vec<Cue> = Vec::new();
    let mut state = State::Outside;
    let mut pending: Vec<String> = Vec::new();
    let mut i = 0;
    if is_vtt {
        // Header: everything up to the first blank line or timing line.
        while i < lines.len() && !lines[i].trim().is_empty() && !lines[i].contains("-->") {
            i += 1;
        }
    }
    for (n, raw) in lines.iter().enumerate().skip(i) {
        let line_no = n + 1;
        // Cue text may hold an arrow ("EUR --> USD", "2 --> 3 pips"): inside a cue, a `-->` line
        // whose left side is no timestamp attempt (a digit first and a colon) is text.
        let timing = raw.split_once("-->").is_some_and(|(left, _)| {
            let left = left.trim();
            state != State::InCue
                || (left.starts_with(|c: char| c.is_ascii_digit()) && left.contains(':'))
        });
        if timing {
            // One unreadable side (`00:00:07.000 --> 00:00:1d.890`) keeps the cue and its text:
            // a point cue at the start, or one from the previous cue's end; neither is an error.
            let prev_end = cues.last().map_or(0.0, |c| c.end);
            let (start, end) = match parse_timing(raw) {
                (Some(s), Some(e)) => (s, e),
                (Some(s), None) => (s, s),
                (None, Some(e)) => (prev_end.min(e), e),
                (None, None) => {
                    return Err(Error::Caption {
                        line: line_no,
                        reason: format!("unreadable timing line {:?}", raw.trim()),
                    });
                }
            };
            // A lone line before a timing line is the cue identifier; more than one is stray text.
            flush_pending(&mut pending, &mut cues, 1);
            cues.push(Cue {
                start,
                end: end.max(start),
                lines: Vec::new(),
            });
            state = State::InCue;
            continue;
        }
        let blank = raw.is_empty() || (state != State::InCue && raw.trim().is_empty());
        if blank {
            flush_pending(&mut pending, &mut cues, 0);
            state = State::Outside;
            continue;
        }
        match state {
            State::InCue => {
                if let Some(cue) = cues.last_mut() {
                    cue.lines.push(clean_line(raw));
                }
            }
            State::Skip => {}
            State::Outside => {
                let t = raw.trim_start();
                let block_kw = ["NOTE", "STYLE", "REGION"].iter().any(|k| {
                    t == *k
                        || t.strip_prefix(k)
                            .is_some_and(|r| r.starts_with([' ', '\t']))
                });
                if pending.is_empty() && block_kw {
                    state = State::Skip;
                } else {
                    pending.push(raw.to_string());
                }
            }
        }
    }
    flush_pending(&mut pending, &mut cues, 0);
    Ok(if auto_layout {
        dedupe_rolling(&cues)
    } else {
        plain_segments(&cues)
    })
}

/// Lines seen outside any cue: the last `keep_as_id` of them are a cue id; the rest is text that
/// belongs to the previous cue (a stray blank line inside a cue). Text before the first cue is
/// header material (e.g. a STYLE body with a blank line) and is dropped.
fn flush_pending(pending: &mut Vec<String>, cues: &mut [Cue], keep_as_id: usize) {
    let n = pending.len().saturating_sub(keep_as_id);
    if let Some(prev) = cues.last_mut() {
        for l in &pending[..n] {
            let l = l.trim();
            // A bare number between cues is an SRT id whose timing line went missing.
            if !l.chars().all(|c| c.is_ascii_digit()) {
                prev.lines.push(clean_line(l));
            }
        }
    }
    pending.clear();
}

/// `start --> end [settings]` with lenient timestamps.
fn parse_timing(line: &str) -> (Option<f64>, Option<f64>) {
    let Some((a, b)) = line.split_once("-->") else {
        return (None, None);
    };
    let start = parse_time(a.trim());
    let end = b.split_whitespace().next().and_then(parse_time);
    (start, end)
}

/// `hh:mm:ss.fff`, `mm:ss.fff`, `hh:mm:ss,fff`, `hh:mm:ss` (no fraction), `hh:mm:ss.ff`
/// (a decimal fraction: `.04` = 40 ms).
pub(crate) fn parse_time(s: &str) -> Option<f64> {
    let (clock, frac) = match s.find(['.', ',']) {
        Some(p) => (&s[..p], Some(&s[p + 1..])),
        None => (s, None),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let nums: Vec<f64> = parts
        .iter()
        .map(|p| p.parse::<f64>().ok())
        .collect::<Option<_>>()?;
    let (h, m, sec) = if nums.len() == 3 {
        (nums[0], nums[1], nums[2])
    } else {
        (0.0, nums[0], nums[1])
    };
    if m >= 60.0 || sec >= 60.0 {
        return None;
    }
    let fraction = match frac {
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("0.{f}").parse::<f64>().ok()?
        }
        Some(_) => return None,
        None => 0.0,
    };
    Some(h * 3600.0 + m * 60.0 + sec + fraction)
}

/// Removes markup (`<c.colorE5E5E5>`, `<00:00:01.234>`, `<i>`, `{\an8}`), decodes entities and
/// collapses whitespace.
pub(crate) fn clean_line(raw: &str) -> String {
    let no_tags = TAG.replace_all(raw, "");
    let decoded = ENTITY.replace_all(&no_tags, |c: &regex::Captures<'_>| {
        decode_entity(&c[1]).unwrap_or_else(|| c[0].to_string())
    });
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn decode_entity(name: &str) -> Option<String> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code).map(String::from);
    }
    let s = match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        "nbsp" => " ",
        "lrm" | "rlm" | "zwj" | "zwnj" => "",
        "hellip" => "…",
        "mdash" => "—",
        "ndash" => "–",
        "rsquo" => "’",
        "lsquo" => "‘",
        "ldquo" => "“",
        "rdquo" => "”",
        _ => return None,
    };
    Some(s.to_string())
}

/// Ordinary captions: one segment per cue, exact repeats of the previous cue merged.
fn plain_segments(cues: &[Cue]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for cue in cues {
        let text = cue
            .lines
            .iter()
            .filter(|l| !l.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() {
            continue;
        }
        if let Some(prev) = out.last_mut()
            && prev.text == text
            && cue.start <= prev.end + 0.05
        {
            prev.end = prev.end.max(cue.end);
            continue;
        }
        out.push(Segment {
            start: cue.start,
            end: cue.end,
            text,
        });
    }
    out
}

/// YouTube auto-captions: each cue repeats the line already shown and adds a new one, and 10 ms
/// cues repeat the finished line. Keep each line once, at the cue where it first appears.
fn dedupe_rolling(cues: &[Cue]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for cue in cues {
        for line in cue.lines.iter().filter(|l| !l.is_empty()) {
            let recent = out.iter().rev().take(2).position(|s| &s.text == line);
            if recent.is_some() {
                continue;
            }
            // Older layout: a line may grow ("yeah" → "yeah what"); keep only the new words.
            let text = match out.last() {
                Some(prev) => match line.strip_prefix(prev.text.as_str()) {
                    Some(rest) if rest.starts_with(' ') => rest.trim().to_string(),
                    _ => line.clone(),
                },
                None => line.clone(),
            };
            out.push(Segment {
                start: cue.start,
                end: cue.end,
                text,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &[Segment]) -> Vec<&str> {
        s.iter().map(|s| s.text.as_str()).collect()
    }

    #[test]
    fn timestamps_are_lenient() {
        assert_eq!(parse_time("00:01:39"), Some(99.0));
        assert_eq!(parse_time("00:01:41.04"), Some(101.04));
        assert_eq!(parse_time("00:16.500"), Some(16.5));
        assert_eq!(parse_time("01:02:03,456"), Some(3723.456));
        assert_eq!(parse_time("1:2:3.5"), Some(3723.5));
        assert_eq!(parse_time("00:61.000"), None);
        assert_eq!(parse_time("ab:cd"), None);
        assert_eq!(parse_time("00:00:01.x"), None);
    }

    #[test]
    fn srt_with_crlf_tags_and_entities() {
        let srt = "1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Tom &amp; Jerry</i>\r\n{\\an8}second &#233;&#x41; line\r\n\r\n2\r\n00:00:03,000 --> 00:00:04,000 X1:10 X2:20\r\nbye&nbsp;now\r\n";
        let segs = parse_text_captions(srt).unwrap();
        assert_eq!(texts(&segs), ["Tom & Jerry second éA line", "bye now"]);
        assert_eq!((segs[0].start, segs[0].end), (1.0, 2.5));
    }

    #[test]
    fn an_arrow_in_cue_text_is_text() {
        let srt = "1\n00:00:01,000 --> 00:00:02,000\nrotate EUR --> USD\n2 --> 3 pips\n\n\
                   2\n00:00:03,000 --> 00:00:04,000\nnext\n";
        let s = parse_text_captions(srt).unwrap();
        assert_eq!(texts(&s), ["rotate EUR --> USD 2 --> 3 pips", "next"]);
        // A timing attempt inside a cue starts a new cue, even with its start unreadable...
        let half = "1\n00:00:01,000 --> 00:00:02,000\ntext\n00:00:0x --> 00:00:04,000\nmore\n";
        let s = parse_text_captions(half).unwrap();
        assert_eq!(texts(&s), ["text", "more"]);
        assert_eq!((s[1].start, s[1].end), (2.0, 4.0), "from the previous end");
        // ...and with neither time readable it is an error, inside a cue or not.
        let bad = "1\n00:00:01,000 --> 00:00:02,000\ntext\n00:00:0x --> 00:0y\nmore\n";
        assert!(parse_text_captions(bad).is_err());
    }

    #[test]
    fn comparison_signs_are_text_not_tags() {
        let srt = "1\n00:00:01,000 --> 00:00:02,000\n<i>if RSI < 30 and price > 50 buy</i>\n\n\
                   2\n00:00:03,000 --> 00:00:04,000\n<font color=\"#fff\">EUR<USD</font> <b>x</b>\n";
        let s = parse_text_captions(srt).unwrap();
        assert_eq!(texts(&s), ["if RSI < 30 and price > 50 buy", "EUR<USD x"]);
    }

    #[test]
    fn bad_timing_line_is_an_error_naming_the_line() {
        let srt =
            "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:0x,000 --> 00:00:0y,000\nlost?\n";
        match parse_text_captions(srt) {
            Err(Error::Caption { line, .. }) => assert_eq!(line, 6),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stray_blank_line_inside_cue_keeps_text() {
        let srt = "1\n00:00:01,000 --> 00:00:02,000\nfirst part\n\nsecond part\n\n2\n00:00:03,000 --> 00:00:04,000\nnext\n";
        let segs = parse_text_captions(srt).unwrap();
        assert_eq!(texts(&segs), ["first part second part", "next"]);
    }

    #[test]
    fn youtube_rolling_layout_is_deduplicated() {
        let vtt = "WEBVTT\nKind: captions\nLanguage: en\n\n00:00:00.000 --> 00:00:01.829 align:start position:0%\n \nmy<00:00:00.160><c> career</c>\n\n00:00:01.829 --> 00:00:01.839 align:start position:0%\nmy career\n \n\n00:00:01.839 --> 00:00:04.550 align:start position:0%\nmy career\nin<00:00:02.240><c> open</c><00:00:02.800><c> source</c>\n";
        let segs = parse_text_captions(vtt).unwrap();
        assert_eq!(texts(&segs), ["my career", "in open source"]);
        assert_eq!(segs[1].start, 1.839);
    }

    #[test]
    fn note_style_region_blocks_are_skipped() {
        let vtt = "WEBVTT\n\nNOTE hidden\n\nSTYLE\n::cue { color: red }\n\nREGION\nid:x\n\n00:01.000 --> 00:02.000 region:x align:left\nshown\n\nNOTE also hidden\nsecond line\n\n00:03.000 --> 00:04.000\nshown too\n";
        let segs = parse_text_captions(vtt).unwrap();
        assert_eq!(texts(&segs), ["shown", "shown too"]);
    }
}
