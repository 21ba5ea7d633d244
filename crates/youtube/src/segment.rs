//! Transcript segments and the public caption entry points: `parse_captions` (json3, WebVTT, SRT,
//! TTML/DFXP, YouTube srv1/2/3, SBV, SSA/ASS in any common encoding) and `transcript_text`.

use serde::{Deserialize, Serialize};

use crate::encoding::Encoding;
use crate::error::{Error, Result};

/// One timed piece of transcript (seconds from the start of the video).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// A parsed caption file and the encoding its bytes were in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Captions {
    pub segments: Vec<Segment>,
    pub encoding: Encoding,
}

/// Parses a caption file of any supported format: YouTube `json3`, WebVTT (incl. YouTube's
/// auto-caption layouts), SRT, TTML/DFXP, YouTube `srv1`/`srv2`/`srv3`, SBV or SSA/ASS, told
/// apart by their content; UTF-8/16/32 with or without BOM, or a legacy code page.
/// Empty input or input with no cues is an error, never an empty success.
pub fn parse_captions(bytes: &[u8]) -> Result<Vec<Segment>> {
    read_captions(bytes, None).map(|c| c.segments)
}

/// [`parse_captions`] with a language hint for the code-page guess (the file name's language,
/// [`crate::lang_from_path`]), reporting the encoding found.
pub fn read_captions(bytes: &[u8], lang: Option<&str>) -> Result<Captions> {
    let (text, encoding) = crate::encoding::decode(bytes, lang);
    let trimmed = text.trim_start_matches('\u{FEFF}').trim_start();
    if trimmed.is_empty() {
        return Err(Error::Caption {
            line: 1,
            reason: "empty caption file".into(),
        });
    }
    // By the first line, before any `-->` test: a TTML file may hold `<!-- comments -->`, and
    // SSA or SBV cue text an arrow ("EUR --> USD"); neither is a WebVTT/SRT timing.
    let segments = if trimmed.starts_with('{') {
        parse_json3(trimmed)?
    } else if trimmed.starts_with('<') {
        crate::timedtext::parse_timed_text(trimmed)?
    } else if crate::ssa::looks_like_ssa(trimmed) {
        crate::ssa::parse_ssa(trimmed)?
    } else if crate::sbv::looks_like_sbv(trimmed) {
        crate::sbv::parse_sbv(trimmed)?
    } else if trimmed.contains("-->") || trimmed.starts_with("WEBVTT") {
        crate::caption::parse_text_captions(&text)?
    } else {
        return Err(Error::Caption {
            line: 1,
            reason: "not a caption file: no WebVTT/SRT timing line (`-->`), no SBV timing line, \
                     no SSA/ASS [Events], not json3 and not XML timed text (TTML, srv1/2/3)"
                .into(),
        });
    };
    // Found by the caption property tests: `{"events": []}` (or a file cut before its first
    // cue) parsed to an empty success, which callers took for a silent video.
    if segments.is_empty() {
        return Err(Error::Caption {
            line: 1,
            reason: "no cues with text".into(),
        });
    }
    Ok(Captions { segments, encoding })
}

/// The clean full text: segment texts joined by single spaces.
pub fn transcript_text(segments: &[Segment]) -> String {
    let mut out = String::new();
    for word in segments.iter().flat_map(|s| s.text.split_whitespace()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// YouTube's `json3` timed text: `{"events":[{"tStartMs","dDurationMs","segs":[{"utf8"}]}]}`.
fn parse_json3(text: &str) -> Result<Vec<Segment>> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Caption {
        line: e.line(),
        reason: format!("invalid json3: {e}"),
    })?;
    let events = value
        .get("events")
        .and_then(|e| e.as_array())
        .ok_or_else(|| Error::Caption {
            line: 1,
            reason: "json3 without an \"events\" array".into(),
        })?;
    let mut out: Vec<Segment> = Vec::new();
    for ev in events {
        let Some(segs) = ev.get("segs").and_then(|s| s.as_array()) else {
            continue;
        };
        let raw: String = segs
            .iter()
            .filter_map(|s| s.get("utf8").and_then(|u| u.as_str()))
            .collect();
        let text = crate::caption::clean_line(&raw.replace('\n', " "));
        if text.is_empty() {
            continue;
        }
        // Negative or non-finite times (found by the property tests) clamp to 0.
        let start = ev.get("tStartMs").and_then(|v| v.as_f64()).unwrap_or(0.0) / 1000.0;
        let start = if start.is_finite() {
            start.max(0.0)
        } else {
            0.0
        };
        let dur = ev
            .get("dDurationMs")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
            / 1000.0;
        out.push(Segment {
            start,
            end: start + dur.max(0.0),
            text,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json3_auto_captions() {
        let j = r#"{"wireMagic":"pb3","events":[{"tStartMs":0,"dDurationMs":5000,"id":1,"wpWinPosId":1},
          {"tStartMs":160,"dDurationMs":4000,"wWinId":1,"segs":[{"utf8":"hey"},{"utf8":" everyone","tOffsetMs":300}]},
          {"tStartMs":2000,"wWinId":1,"aAppend":1,"segs":[{"utf8":"\n"}]},
          {"tStartMs":2010,"dDurationMs":3000,"wWinId":1,"segs":[{"utf8":"welcome &amp; back"}]}]}"#;
        let segs = parse_captions(j.as_bytes()).unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(
            segs[0],
            Segment {
                start: 0.16,
                end: 4.16,
                text: "hey everyone".into()
            }
        );
        assert_eq!(transcript_text(&segs), "hey everyone welcome & back");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_captions(b"").is_err());
        assert!(parse_captions(b"hello world").is_err());
        assert!(parse_captions(b"{\"foo\":1}").is_err());
        assert!(parse_captions(b"{broken").is_err());
    }
}
