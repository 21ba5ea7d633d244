//! SubStation Alpha (`.ssa`, v4) and Advanced SubStation (`.ass`, v4+): the `Dialogue:` lines of
//! the `[Events]` section, fields named by its `Format:` line, override tags (`{\i1}`), drawings
//! (`{\p1}…{\p0}`) and line breaks (`\N`) handled.

use crate::caption::clean_line;
use crate::error::{Error, Result};
use crate::segment::Segment;

/// True when the text is a SubStation file: its first line is a `[Script Info]` or `[Events]`
/// header or a `Dialogue:` line.
pub(crate) fn looks_like_ssa(text: &str) -> bool {
    text.lines()
        .map(|l| l.trim_start_matches('\u{FEFF}').trim())
        .find(|l| !l.is_empty())
        .is_some_and(|l| {
            l.eq_ignore_ascii_case("[script info]")
                || l.eq_ignore_ascii_case("[events]")
                || l.starts_with("Dialogue:")
        })
}

/// Parses SSA/ASS text (already decoded) into segments ordered by start time.
pub(crate) fn parse_ssa(text: &str) -> Result<Vec<Segment>> {
    // v4+ and v4 both have ten fields with the text last; Start/End are the 2nd and 3rd.
    let mut fields: Vec<String> = [
        "layer", "start", "end", "style", "name", "marginl", "marginr", "marginv", "effect", "text",
    ]
    .map(String::from)
    .to_vec();
    let mut in_events = true;
    let mut out: Vec<Segment> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start_matches('\u{FEFF}').trim();
        if line.starts_with('[') && line.ends_with(']') {
            in_events = line.eq_ignore_ascii_case("[events]");
            continue;
        }
        if !in_events {
            continue;
        }
        if let Some(rest) = line.strip_prefix("Format:") {
            fields = rest
                .split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .collect();
            continue;
        }
        let Some(rest) = line.strip_prefix("Dialogue:") else {
            continue;
        };
        let bad = |reason: String| Error::Caption {
            line: n + 1,
            reason,
        };
        // The text is the last field and may itself hold commas.
        let values: Vec<&str> = rest.splitn(fields.len(), ',').collect();
        let field = |name: &str| {
            fields
                .iter()
                .position(|f| f == name)
                .and_then(|i| values.get(i))
                .map(|v| v.trim())
        };
        let time = |name: &str| {
            let v = field(name).ok_or_else(|| bad(format!("Dialogue line without {name}")))?;
            crate::caption::parse_time(v)
                .ok_or_else(|| bad(format!("unreadable {name} time {v:?}")))
        };
        let (start, end) = (time("start")?, time("end")?);
        let text = clean_line(&without_drawings(field("text").unwrap_or_default()));
        if text.is_empty() {
            continue;
        }
        out.push(Segment {
            start,
            end: end.max(start),
            text,
        });
    }
    out.sort_by(|a, b| a.start.total_cmp(&b.start));
    Ok(out)
}

/// Dialogue text without drawing commands (`{\p1}m 0 0 l 100 0{\p0}`); `\N`, `\n`, `\h` as spaces.
/// The override blocks themselves are removed by [`clean_line`].
fn without_drawings(text: &str) -> String {
    let mut out = String::new();
    let mut drawing = false;
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        if !drawing {
            out.push_str(&rest[..open]);
        }
        let block = &rest[open..=close];
        if let Some(level) = block.split('\\').find_map(|t| {
            t.strip_prefix('p')
                .and_then(|v| v.trim_end_matches('}').trim().parse::<u32>().ok())
        }) {
            drawing = level > 0;
        }
        out.push_str(block);
        rest = &rest[close + 1..];
    }
    if !drawing {
        out.push_str(rest);
    }
    out.replace("\\N", " ")
        .replace("\\n", " ")
        .replace("\\h", " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ass_fields_tags_breaks_and_order() {
        let ass = "[Script Info]\nTitle: lesson\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontname\nStyle: Default,Arial\n\n\
            [Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n\
            Dialogue: 0,0:00:04.00,0:00:05.50,Default,,0,0,0,,Stop loss {\\i1}below{\\i0} the low, always\n\
            Comment: 0,0:00:02.00,0:00:03.00,Default,,0,0,0,,not shown\n\
            Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,First line\\Nsecond line\n\
            Dialogue: 0,0:00:06.00,0:00:07.00,Default,,0,0,0,,{\\p1}m 0 0 l 100 0 100 100{\\p0}\n";
        let s = parse_ssa(ass).unwrap();
        let got: Vec<(f64, &str)> = s.iter().map(|s| (s.start, s.text.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (1.0, "First line second line"),
                (4.0, "Stop loss below the low, always")
            ]
        );
        assert_eq!(s[1].end, 5.5);
    }

    #[test]
    fn ssa_v4_without_format_line() {
        let ssa = "[Script Info]\nScriptType: v4.00\n\n[Events]\n\
            Dialogue: Marked=0,0:00:01.50,0:00:03.00,Default,NTP,0000,0000,0000,!Effect,Hello, world\n";
        let s = parse_ssa(ssa).unwrap();
        assert_eq!(
            (s[0].start, s[0].end, s[0].text.as_str()),
            (1.5, 3.0, "Hello, world")
        );
    }

    #[test]
    fn a_bad_time_names_the_line() {
        let e = parse_ssa("[Events]\nDialogue: 0,soon,0:00:02.00,Default,,0,0,0,,x\n").unwrap_err();
        assert!(
            matches!(&e, Error::Caption { line: 2, reason } if reason.contains("\"soon\"")),
            "{e}"
        );
    }
}
