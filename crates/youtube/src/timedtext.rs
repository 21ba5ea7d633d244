//! XML caption formats: TTML/DFXP (W3C Timed Text, also YouTube's `ttml` and Netflix-style tick
//! times) and YouTube's own timed text `srv1` (`<transcript><text start dur>`), `srv2`
//! (`<timedtext><text t d>`) and `srv3` (`<timedtext format="3"><body><p t d><s>`).

use roxmltree::{Document, Node, ParsingOptions};

use crate::caption::clean_line;
use crate::error::{Error, Result};
use crate::segment::Segment;

/// Most elements a caption file may hold (a 10-hour srv3 file has ~200 000): bounds the memory a
/// hostile file can take.
const NODES_LIMIT: u32 = 4_000_000;

/// Parses an XML caption file (already decoded). Which dialect is decided by the root element.
pub(crate) fn parse_timed_text(text: &str) -> Result<Vec<Segment>> {
    let options = ParsingOptions {
        allow_dtd: true,
        nodes_limit: NODES_LIMIT,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| Error::Caption {
        line: e.pos().row as usize,
        reason: format!("invalid XML: {e}"),
    })?;
    let root = doc.root_element();
    match root.tag_name().name() {
        "tt" => ttml(root),
        "transcript" => Ok(youtube(root, "text", "start", "dur", 1.0)),
        "timedtext" if root.attribute("format") == Some("3") => {
            Ok(youtube(root, "p", "t", "d", 0.001))
        }
        "timedtext" => Ok(youtube(root, "text", "t", "d", 0.001)),
        other => Err(Error::Caption {
            line: doc.text_pos_at(root.range().start).row as usize,
            reason: format!(
                "XML root <{other}> is not a caption format (TTML <tt>, YouTube <transcript> or <timedtext>)"
            ),
        }),
    }
}

/// YouTube's srv1/2/3: one element per line with a start and a duration in `scale` seconds.
fn youtube(root: Node<'_, '_>, tag: &str, start: &str, dur: &str, scale: f64) -> Vec<Segment> {
    let mut out = Vec::new();
    for el in root.descendants().filter(|n| n.has_tag_name(tag)) {
        let text = clean_line(&inner_text(el));
        if text.is_empty() {
            continue;
        }
        let num = |a: &str| {
            el.attribute(a)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        let begin = num(start).unwrap_or(0.0) * scale;
        let end = begin + num(dur).unwrap_or(0.0) * scale;
        let end = if end.is_finite() { end } else { begin };
        out.push(Segment {
            start: begin,
            end,
            text,
        });
    }
    out
}

/// The rates TTML times are counted in (`ttp:frameRate`, `ttp:subFrameRate`, `ttp:tickRate`).
struct Rates {
    frame: f64,
    sub_frame: f64,
    tick: f64,
}

/// The namespace of Apple's lyric TTML attributes (`itunes:timing`, `itunes:key`).
const ITUNES_NS: &str = "http://music.apple.com/lyric-ttml-internal";

/// TTML: every `<p>` with text is a segment; its times are offsets from the `begin` of the
/// enclosing `<body>`/`<div>` (TTML's time containers), `end` or `dur` closes it.
fn ttml(root: Node<'_, '_>) -> Result<Vec<Segment>> {
    let rate = |name: &str| {
        attr(root, name)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let frame = rate("frameRate").unwrap_or(30.0);
    let sub_frame = rate("subFrameRate").unwrap_or(1.0);
    let rates = Rates {
        frame,
        sub_frame,
        tick: rate("tickRate").unwrap_or(if attr(root, "frameRate").is_some() {
            frame * sub_frame
        } else {
            1.0
        }),
    };
    // Apple's lyric TTML (root in the iTunes namespace) writes every time from the start of the
    // track, also inside a timed `<div>`; TTML proper counts them from the container's begin.
    let absolute = root.namespaces().any(|ns| ns.uri() == ITUNES_NS);
    let mut out = Vec::new();
    for p in root.descendants().filter(|n| n.has_tag_name("p")) {
        let text = clean_line(&inner_text(p));
        if text.is_empty() {
            continue;
        }
        let line = p.document().text_pos_at(p.range().start).row as usize;
        let time = |name: &str| -> Result<Option<f64>> {
            match attr(p, name) {
                None => Ok(None),
                Some(v) => ttml_time(v, &rates)
                    .map(Some)
                    .ok_or_else(|| Error::Caption {
                        line,
                        reason: format!("unreadable TTML time {name}={v:?}"),
                    }),
            }
        };
        let offset: f64 = if absolute {
            0.0
        } else {
            p.ancestors()
                .skip(1)
                .filter_map(|a| attr(a, "begin"))
                .filter_map(|v| ttml_time(v, &rates))
                .sum()
        };
        let begin = offset + time("begin")?.unwrap_or(0.0);
        let end = match (time("end")?, time("dur")?) {
            (Some(e), _) => offset + e,
            (None, Some(d)) => begin + d,
            (None, None) => begin,
        };
        if !(begin.is_finite() && end.is_finite()) {
            return Err(Error::Caption {
                line,
                reason: "TTML times add up past any video length".into(),
            });
        }
        out.push(Segment {
            start: begin,
            end: end.max(begin),
            text,
        });
    }
    Ok(out)
}

/// An attribute by its local name, whatever its namespace (`ttp:tickRate`, `tickRate`).
fn attr<'a>(node: Node<'a, '_>, local: &str) -> Option<&'a str> {
    node.attributes()
        .find(|a| a.name() == local)
        .map(|a| a.value())
}

/// A TTML time expression: clock time `hh:mm:ss(.fff)`, `hh:mm:ss:frames(.sub)`, or an offset
/// `12.3s`, `1500ms`, `2m`, `1h`, `30f`, `123450000t`, or bare seconds `19.764`.
fn ttml_time(v: &str, rates: &Rates) -> Option<f64> {
    let v = v.trim();
    if v.contains(':') {
        let parts: Vec<&str> = v.split(':').collect();
        return match parts.as_slice() {
            [_, _, _] | [_, _] => crate::caption::parse_time(v),
            [h, m, s, f] => {
                let clock = crate::caption::parse_time(&format!("{h}:{m}:{s}"))?;
                let (frames, sub) = f.split_once('.').unwrap_or((f, "0"));
                let frames =
                    frames.parse::<f64>().ok()? + sub.parse::<f64>().ok()? / rates.sub_frame;
                Some(clock + frames / rates.frame).filter(|s| s.is_finite())
            }
            _ => None,
        };
    }
    // A bare number is seconds: not in the TTML grammar, but Apple's lyric TTML writes
    // `begin="19.764"` and other readers take it so.
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n = num
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)?;
    let secs = match unit {
        "h" => n * 3600.0,
        "m" => n * 60.0,
        "s" | "" => n,
        "ms" => n / 1000.0,
        "f" => n / rates.frame,
        "t" => n / rates.tick,
        _ => return None,
    };
    Some(secs).filter(|s| s.is_finite())
}

/// The text of an element: its text nodes in order, `<br/>` as a space, `<metadata>` skipped.
/// A walk, not a recursion: a file of 100 000 nested `<span>`s must not overflow the stack.
fn inner_text(el: Node<'_, '_>) -> String {
    let mut out = String::new();
    let mut next = el.first_child();
    while let Some(n) = next {
        if n.is_text() {
            out.push_str(n.text().unwrap_or_default());
        } else if n.has_tag_name("br") {
            out.push(' ');
        }
        let child = if n.has_tag_name("metadata") {
            None
        } else {
            n.first_child()
        };
        next = child.or_else(|| {
            // Up until a node with a next sibling; the walk ends back at `el`.
            let mut up = n;
            loop {
                if let Some(s) = up.next_sibling() {
                    return Some(s);
                }
                up = up.parent()?;
                if up.id() == el.id() {
                    return None;
                }
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Vec<(f64, f64, String)> {
        parse_timed_text(xml)
            .unwrap()
            .into_iter()
            .map(|s| (s.start, s.end, s.text))
            .collect()
    }

    #[test]
    fn ttml_clock_offset_and_container_times() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<tt xmlns="http://www.w3.org/ns/ttml" xmlns:ttp="http://www.w3.org/ns/ttml#parameter" xmlns:tts="http://www.w3.org/ns/ttml#styling" ttp:frameRate="25">
 <body><div begin="10s">
  <p begin="00:00:01.500" end="00:00:03.000">Buy the <span tts:color="red">breakout</span><br/>above 1.0850</p>
  <p begin="4s" dur="1500ms">second</p>
  <p begin="00:00:06:05" end="00:00:07:00">frames</p>
  <p begin="8s" end="9s"><metadata>x</metadata>  </p>
 </div></body></tt>"#;
        assert_eq!(
            parse(xml),
            vec![
                (11.5, 13.0, "Buy the breakout above 1.0850".into()),
                (14.0, 15.5, "second".into()),
                (16.2, 17.0, "frames".into()),
            ]
        );
    }

    #[test]
    fn dfxp_ticks() {
        let xml = r#"<tt xmlns:ttp="http://www.w3.org/ns/ttml#parameter" ttp:tickRate="10000000"><body><div>
            <p begin="15000000t" end="25000000t">ticks</p></div></body></tt>"#;
        assert_eq!(parse(xml), vec![(1.5, 2.5, "ticks".into())]);
    }

    #[test]
    fn youtube_srv1_srv2_srv3() {
        let srv1 = r#"<?xml version="1.0" encoding="utf-8" ?><transcript><text start="1.5" dur="2">it&amp;#39;s &lt; 30</text><text start="4" dur="1"></text></transcript>"#;
        assert_eq!(parse(srv1), vec![(1.5, 3.5, "it's < 30".into())]);
        let srv2 =
            r#"<timedtext><window id="1"/><text t="1000" d="2500" w="1">two</text></timedtext>"#;
        assert_eq!(parse(srv2), vec![(1.0, 3.5, "two".into())]);
        let srv3 = r#"<timedtext format="3"><head/><body>
            <p t="1000" d="2000" w="1"><s ac="0">hey</s><s t="400" ac="0"> everyone</s></p>
            <p t="2990" d="10" w="1" a="1">
</p>
            <p t="3000" d="1000">[Music]</p></body></timedtext>"#;
        assert_eq!(
            parse(srv3),
            vec![
                (1.0, 3.0, "hey everyone".into()),
                (3.0, 4.0, "[Music]".into())
            ]
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let depth = 100_000;
        let xml = format!(
            "<tt><body><p begin=\"1s\" end=\"2s\">{}deep<metadata><a>x</a></metadata>{}</p></body></tt>",
            "<span>".repeat(depth),
            "</span>".repeat(depth)
        );
        // On a small stack, as a tokio worker thread has.
        let got = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || parse(&xml))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(got, vec![(1.0, 2.0, "deep".into())]);
    }

    #[test]
    fn entity_bombs_and_external_entities_are_refused() {
        // Billion laughs: 10^8 "lol"s if expanded; refused at once instead.
        let mut dtd = String::from("<!ENTITY a \"lollollollol\">");
        for (name, prev) in ["b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g"])
        {
            dtd.push_str(&format!(
                "<!ENTITY {name} \"{}\">",
                format!("&{prev};").repeat(10)
            ));
        }
        let bomb = format!("<!DOCTYPE tt [{dtd}]><tt><body><p begin=\"1s\">&h;</p></body></tt>");
        let e = parse_timed_text(&bomb).unwrap_err().to_string();
        assert!(e.contains("invalid XML"), "{e}");
        // An external entity is never fetched or read (no file content can reach a transcript).
        let xxe = "<!DOCTYPE tt [<!ENTITY x SYSTEM \"file:///etc/hostname\">]>\
                   <tt><body><p begin=\"1s\">leak: &x;</p></body></tt>";
        let e = parse_timed_text(xxe).unwrap_err().to_string();
        assert!(e.contains("unknown entity reference 'x'"), "{e}");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_timed_text("<tt>\n<body><p begin=\"soon\">x</p></body></tt>").unwrap_err();
        assert!(
            matches!(&e, Error::Caption { line: 2, reason } if reason.contains("begin=\"soon\"")),
            "{e}"
        );
        let e = parse_timed_text("<html><body>x</body></html>").unwrap_err();
        assert!(e.to_string().contains("<html>"), "{e}");
        let e = parse_timed_text("<tt>\n<body><p>x</body></tt>").unwrap_err();
        assert!(
            matches!(&e, Error::Caption { line: 2, reason } if reason.contains("invalid XML")),
            "{e}"
        );
    }
}
