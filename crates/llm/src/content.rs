//! The input text model: content types, caption files (WebVTT/SRT) turned into
//! `[hh:mm:ss] text` lines, and per-line transcript timestamps and page numbers so evidence
//! can cite them. Page markers understood: `[page N]`, `--- page N ---`, `Page N` alone on a
//! line, and form feeds.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What the content is; it changes the prompt wording and caption handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    /// Spoken text, possibly with `[hh:mm:ss]` line prefixes.
    #[default]
    Transcript,
    /// A raw WebVTT or SRT file; converted to timestamped lines first.
    Captions,
    /// A PDF's text, possibly with page markers.
    Document,
    /// Anything else.
    Text,
}

impl FromStr for ContentType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "transcript" | "video" | "youtube" => Ok(ContentType::Transcript),
            "captions" | "vtt" | "srt" | "subtitles" => Ok(ContentType::Captions),
            "document" | "pdf" => Ok(ContentType::Document),
            "text" | "txt" | "md" => Ok(ContentType::Text),
            other => Err(Error::Config(format!(
                "unknown content type {other:?}: transcript, captions, document or text"
            ))),
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContentType::Transcript => "transcript",
            ContentType::Captions => "captions",
            ContentType::Document => "document",
            ContentType::Text => "text",
        })
    }
}

/// One line of content with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    /// The text without its timestamp prefix.
    pub text: String,
    pub timestamp: Option<String>,
    pub page: Option<u32>,
}

static TS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*\[?((?:\d{1,2}:)?\d{1,2}:\d{2})(?:[.,]\d+)?\]?\s*(?:-\s+)?(.*)$").unwrap()
});
static PAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:[-=]{2,}\s*|\[\s*|<\s*)?page\s+(\d{1,5})(?:\s+of\s+\d+)?\s*(?:[-=]{2,}|\]|>)?\s*$")
        .unwrap()
});
static CUE_TIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*((?:\d+:)?\d{1,2}:\d{2})(?:[.,]\d+)?\s*-->\s*").unwrap());
/// Caption markup by tag name and inline timestamps; a bare `<` or `>` (`RSI < 30`) is text.
static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)</?(?:c|i|b|u|s|v|lang|ruby|rt|rp|font|span|br|p|em|strong|sub|sup|big|small|tt)(?:[.\s][^<>\n]*)?/?>|<\d+(?::\d+){1,2}(?:[.,]\d+)?>",
    )
    .unwrap()
});

/// True when the text looks like a WebVTT or SRT file.
pub fn looks_like_captions(text: &str) -> bool {
    let t = text.trim_start_matches('\u{feff}').trim_start();
    t.starts_with("WEBVTT")
        || t.lines()
            .take(6)
            .any(|l| l.contains("-->") && CUE_TIME.is_match(l))
}

/// Turns content into the text sent to models: captions become `[hh:mm:ss] text` lines
/// (YouTube's rolling duplicate lines removed), line endings normalised.
pub fn prepare(content: &str, content_type: ContentType) -> String {
    let text = content
        .trim_start_matches('\u{feff}')
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    if content_type == ContentType::Captions || looks_like_captions(&text) {
        captions_to_lines(&text)
    } else {
        text
    }
}

fn hhmmss(t: &str) -> String {
    let parts: Vec<&str> = t.split(':').collect();
    let n = |s: &str| s.parse::<u64>().unwrap_or(0);
    let secs = match parts.as_slice() {
        [h, m, s] => n(h) * 3600 + n(m) * 60 + n(s),
        [m, s] => n(m) * 60 + n(s),
        _ => 0,
    };
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// WebVTT/SRT → `[hh:mm:ss] text` lines. A line already emitted in one of the two previous
/// outputs is skipped (YouTube auto-captions repeat each line in the next cue).
fn captions_to_lines(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut recent: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        if let Some(c) = CUE_TIME.captures(raw) {
            current = Some(hhmmss(&c[1]));
            continue;
        }
        let Some(ts) = &current else { continue };
        let line = TAG.replace_all(raw, "");
        let line = line
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&nbsp;", " ");
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if raw.trim().is_empty() {
            // A blank line ends the cue; a following number is an SRT cue id.
            if raw.is_empty() {
                current = None;
            }
            continue;
        }
        if line.is_empty() || recent.contains(&line) {
            continue;
        }
        out.push(format!("[{ts}] {line}"));
        recent.push(line);
        if recent.len() > 2 {
            recent.remove(0);
        }
    }
    out.join("\n")
}

/// The page number if `line` is a page marker.
pub(crate) fn page_marker(line: &str) -> Option<u32> {
    PAGE.captures(line.trim_start_matches('\u{c}'))
        .and_then(|c| c[1].parse().ok())
}

/// Splits prepared text into lines with their timestamp and page.
pub(crate) fn lines(text: &str) -> Vec<Line> {
    let mut page: Option<u32> = None;
    let mut out = Vec::new();
    for raw in text.split('\n') {
        let mut raw = raw;
        while let Some(rest) = raw.strip_prefix('\u{c}') {
            page = Some(page.map_or(2, |p| p + 1));
            raw = rest;
        }
        if let Some(c) = PAGE.captures(raw) {
            page = c[1].parse().ok();
            continue;
        }
        let (timestamp, body) = match TS.captures(raw) {
            Some(c) if !c[2].trim().is_empty() => (Some(hhmmss(&c[1])), c[2].to_string()),
            _ => (None, raw.to_string()),
        };
        out.push(Line {
            text: body,
            timestamp,
            page,
        });
    }
    // Text before the first form feed is page 1 once form feeds are seen.
    if text.contains('\u{c}') {
        for l in out.iter_mut().filter(|l| l.page.is_none()) {
            l.page = Some(1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtt_rolling_lines() {
        let vtt = "WEBVTT\nKind: captions\n\n00:00:00.000 --> 00:00:02.150 align:start position:0%\n[Music]\n\n\
            00:00:02.160 --> 00:00:04.789 align:start position:0%\n \nhey<00:00:02.446><c> everyone</c>\n\n\
            00:00:04.789 --> 00:00:04.799 align:start position:0%\nhey everyone\n \n\n\
            00:00:04.799 --> 00:00:09.012 align:start position:0%\nhey everyone\ntoday<00:00:05.307><c> we</c>\n";
        assert_eq!(
            prepare(vtt, ContentType::Text),
            "[00:00:00] [Music]\n[00:00:02] hey everyone\n[00:00:04] today we"
        );
        let srt = "1\n00:00:00,500 --> 00:00:02,000\nCaption one\n\n2\n00:01:05,000 --> 00:01:07,000\nCaption two\n";
        assert_eq!(
            prepare(srt, ContentType::Captions),
            "[00:00:00] Caption one\n[00:01:05] Caption two"
        );
    }

    #[test]
    fn comparison_signs_in_captions_are_text() {
        let srt = "1\n00:00:01,000 --> 00:00:02,000\n<i>if RSI < 30 and price > 50 buy</i>\n";
        assert_eq!(
            prepare(srt, ContentType::Captions),
            "[00:00:01] if RSI < 30 and price > 50 buy"
        );
    }

    #[test]
    fn timestamps_and_pages() {
        let ls =
            lines("[00:01:23] buy the dip\n1:02:03 sell\n--- page 4 ---\nRSI 14\n[page 5]\nmore");
        assert_eq!(ls[0].timestamp.as_deref(), Some("00:01:23"));
        assert_eq!(ls[0].text, "buy the dip");
        assert_eq!(ls[1].timestamp.as_deref(), Some("01:02:03"));
        assert_eq!((ls[2].text.as_str(), ls[2].page), ("RSI 14", Some(4)));
        assert_eq!(ls[3].page, Some(5));
        let ff = lines("one\n\u{c}two\n\u{c}three");
        assert_eq!(
            ff.iter().map(|l| l.page).collect::<Vec<_>>(),
            vec![Some(1), Some(2), Some(3)]
        );
        assert_eq!("pdf".parse::<ContentType>().unwrap(), ContentType::Document);
        assert!("nope".parse::<ContentType>().is_err());
    }
}
