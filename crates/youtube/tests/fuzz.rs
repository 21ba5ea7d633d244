//! Property tests (proptest, stable toolchain) over the caption parsers — VTT, SRT, json3, the XML
//! formats (TTML, srv1/2/3), SSA/ASS, SBV and the encoding detection in front of them: no input may panic, hang or come back as an empty
//! success; parsed segments have finite, non-negative times. Inputs: random bytes, generated
//! cue files with hostile timings, tags and entities, the files of `../shared/corpus/captions`
//! and one sample of each other format with bytes flipped, cut or inserted, and re-encodings (UTF-16/32, with and without BOM).
//! Case counts: `PROPTEST_CASES` (default 256; `scripts/fuzz.sh` runs more).

mod common;

use std::time::{Duration, Instant};

use hlbot_youtube::{decode_text, parse_captions};
use proptest::prelude::*;

/// Parses and checks the invariants every caller relies on.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let t = Instant::now();
    let _ = decode_text(bytes, None);
    if let Ok(segs) = parse_captions(bytes) {
        prop_assert!(!segs.is_empty(), "an empty success");
        for s in &segs {
            prop_assert!(s.start.is_finite() && s.end.is_finite(), "{s:?}");
            prop_assert!(s.start >= 0.0, "{s:?}");
        }
    }
    // Linear-time parsers: a few KiB never take long, even in a debug build.
    prop_assert!(
        t.elapsed() < Duration::from_secs(2),
        "slow: {:?}",
        t.elapsed()
    );
    Ok(())
}

fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..100, 0u32..60, 0u32..60, 0u32..1000)
            .prop_map(|(h, m, s, ms)| format!("{h:02}:{m:02}:{s:02}.{ms:03}")),
        (0u32..60, 0u32..60, 0u32..1000).prop_map(|(m, s, ms)| format!("{m:02}:{s:02},{ms:03}")),
        "[0-9:.,-]{0,16}",
        Just("99999999999999999999:00:00.000".to_string()),
        Just("-1:-1:-1.-1".to_string()),
    ]
}

fn cue_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 .,!?]{0,40}",
        "(<[a-z./0-9:]{0,8}>|&[a-z#0-9]{0,6};?|[^\\x00]){0,30}",
        Just("<c.colorE5E5E5>buy</c><00:00:01.000><c> the dip</c>".to_string()),
        Just("&amp;&lt;&gt;&#x1F600;&#99999999999;&".to_string()),
    ]
}

fn vtt_or_srt() -> impl Strategy<Value = String> {
    let cue = (
        any::<bool>(),
        timestamp(),
        timestamp(),
        "[ a-z:%0-9]{0,20}",
        cue_text(),
    );
    (any::<bool>(), prop::collection::vec(cue, 0..12)).prop_map(|(vtt, cues)| {
        let mut out = if vtt {
            "WEBVTT\n\n".to_string()
        } else {
            String::new()
        };
        for (i, (numbered, a, b, settings, text)) in cues.into_iter().enumerate() {
            if numbered {
                out.push_str(&format!("{}\n", i + 1));
            }
            out.push_str(&format!("{a} --> {b} {settings}\n{text}\n\n"));
        }
        out
    })
}

fn json3() -> impl Strategy<Value = String> {
    let seg = ("[a-z \\n]{0,10}", prop::option::of(-5i64..100_000));
    let event = (
        prop::option::of(prop_oneof![Just(-1i64), 0i64..10_000_000, Just(i64::MAX)]),
        prop::option::of(0i64..100_000),
        prop::collection::vec(seg, 0..4),
    );
    prop::collection::vec(event, 0..8).prop_map(|events| {
        let events: Vec<serde_json::Value> = events
            .into_iter()
            .map(|(start, dur, segs)| {
                serde_json::json!({
                    "tStartMs": start, "dDurationMs": dur,
                    "segs": segs.into_iter().map(|(t, off)| serde_json::json!({"utf8": t, "tOffsetMs": off})).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({"events": events}).to_string()
    })
}

fn time_attr() -> impl Strategy<Value = String> {
    prop_oneof![
        timestamp(),
        "[0-9.]{1,12}(h|m|s|ms|f|t)",
        "[0-9]{1,2}:[0-9]{2}:[0-9]{2}:[0-9]{1,3}(\\.[0-9])?",
        Just("1e308h".to_string()),
        Just("NaN".to_string()),
        "[0-9]{0,25}",
    ]
}

/// TTML and YouTube's srv1/2/3 with hostile times, rates, nesting and markup.
fn timed_text_xml() -> impl Strategy<Value = String> {
    let p = (time_attr(), time_attr(), any::<bool>(), cue_text());
    (
        0u8..4,
        prop::option::of("[0-9.a-z]{0,8}"),
        prop::collection::vec(p, 0..10),
        prop::option::of(time_attr()),
    )
        .prop_map(|(kind, rate, ps, div_begin)| {
            let esc = |t: &str| t.replace('&', "&amp;").replace('<', "&lt;");
            let body: String = ps
                .iter()
                .map(|(a, b, dur, text)| match kind {
                    0 => format!(
                        "<p begin=\"{a}\" {}=\"{b}\">{}<br/><span>x</span></p>",
                        if *dur { "dur" } else { "end" },
                        esc(text)
                    ),
                    1 => format!("<text start=\"{a}\" dur=\"{b}\">{}</text>", esc(text)),
                    2 => format!("<text t=\"{a}\" d=\"{b}\">{}</text>", esc(text)),
                    _ => format!("<p t=\"{a}\" d=\"{b}\"><s>{}</s><s t=\"1\"> y</s></p>", esc(text)),
                })
                .collect();
            let rate = rate.map(|r| format!(" ttp:tickRate=\"{r}\" ttp:frameRate=\"{r}\"")).unwrap_or_default();
            let div = div_begin.map(|b| format!(" begin=\"{b}\"")).unwrap_or_default();
            match kind {
                0 => format!("<?xml version=\"1.0\"?><!-- a -->\n<tt xmlns:ttp=\"urn:p\"{rate}><body{div}><div{div}>{body}</div></body></tt>"),
                1 => format!("<transcript>{body}</transcript>"),
                2 => format!("<timedtext>{body}</timedtext>"),
                _ => format!("<timedtext format=\"3\"><body>{body}</body></timedtext>"),
            }
        })
}

/// SSA/ASS with shuffled Format lines, hostile times, override tags and drawings; and SBV.
fn ssa_or_sbv() -> impl Strategy<Value = String> {
    let time = || {
        prop_oneof![
            2 => (0u32..10, 0u32..60, 0u32..60, 0u32..1000)
                .prop_map(|(h, m, s, ms)| format!("{h}:{m:02}:{s:02}.{ms:03}")),
            1 => timestamp(),
        ]
    };
    let line = (time(), time(), "[a-zA-Z, {}\\\\p0-9N]{0,40}");
    (
        any::<bool>(),
        prop::option::weighted(0.3, "[A-Za-z, ]{0,60}"),
        prop::collection::vec(line, 0..10),
    )
        .prop_map(|(ssa, format, lines)| {
            if ssa {
                let mut out = "[Script Info]\nScriptType: v4.00+\n\n[Events]\n".to_string();
                if let Some(f) = format {
                    out.push_str(&format!("Format: {f}\n"));
                }
                for (a, b, t) in lines {
                    out.push_str(&format!("Dialogue: 0,{a},{b},Default,,0,0,0,,{t}\n"));
                }
                out
            } else {
                lines
                    .into_iter()
                    .map(|(a, b, t)| format!("{a},{b}\n{t}\n\n"))
                    .collect()
            }
        })
}

fn encode(text: &str, how: u8) -> Vec<u8> {
    let u16s: Vec<u16> = text.encode_utf16().collect();
    match how % 6 {
        0 => text.as_bytes().to_vec(),
        1 => [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat(),
        2 => [
            vec![0xFF, 0xFE],
            u16s.iter().flat_map(|u| u.to_le_bytes()).collect(),
        ]
        .concat(),
        3 => u16s.iter().flat_map(|u| u.to_be_bytes()).collect(),
        4 => [
            vec![0, 0, 0xFE, 0xFF],
            text.chars()
                .flat_map(|c| (c as u32).to_be_bytes())
                .collect(),
        ]
        .concat(),
        _ => text
            .chars()
            .map(|c| if (c as u32) < 256 { c as u8 } else { b'?' })
            .collect(),
    }
}

/// One small file of each format the corpus lacks (TTML, srv1, srv3, SBV, SSA/ASS).
fn format_samples() -> Vec<Vec<u8>> {
    [
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- c -->\n<tt xmlns=\"http://www.w3.org/ns/ttml\" xmlns:ttp=\"http://www.w3.org/ns/ttml#parameter\" ttp:tickRate=\"10000000\"><body begin=\"1s\"><div>\n<p begin=\"00:00:01.500\" end=\"00:00:03.000\">Buy the <span>breakout</span><br/>above 1.0850</p>\n<p begin=\"40000000t\" dur=\"15000000t\">RSI &lt; 30</p>\n<p begin=\"00:00:06:05\" end=\"7s\">frames</p></div></body></tt>\n",
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?><transcript><text start=\"0.5\" dur=\"3.1\">don&amp;#39;t buy</text><text start=\"4\" dur=\"1\">sell</text></transcript>",
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?><timedtext format=\"3\">\n<body>\n<p t=\"0\" d=\"2150\" w=\"1\">[Music]</p>\n<p t=\"2160\" d=\"2630\" w=\"1\"><s ac=\"0\">hey</s><s t=\"286\" ac=\"0\"> everyone</s></p>\n</body>\n</timedtext>",
        "0:00:00.599,0:00:04.160\nSupport is where buyers\nkeep stepping in\n\n0:00:04.160,0:01:02.000\n>> stop below 1.0850\n",
        "[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontname\nStyle: Default,Arial\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\nDialogue: 0,0:00:03.00,0:00:05.00,Default,,0,0,0,,{\\an8}Risk one percent,\\Nno more\nDialogue: 0,0:00:06.00,0:00:07.00,Default,,0,0,0,,{\\p1}m 0 0 l 100 0{\\p0}\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn corpus_files() -> Vec<Vec<u8>> {
    let Some(dir) = common::corpus("captions") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "../shared/corpus/captions missing under CI=true"
        );
        return Vec::new();
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().ends_with(".txt"))
        .collect();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

proptest! {
    // Crashes found become named regression tests (below), not a persistence file.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        check(&bytes)?;
    }

    #[test]
    fn generated_cue_files(text in vtt_or_srt(), how in any::<u8>()) {
        check(&encode(&text, how))?;
    }

    #[test]
    fn generated_json3(text in json3(), how in any::<u8>()) {
        check(&encode(&text, how))?;
    }

    #[test]
    fn generated_timed_text_xml(text in timed_text_xml(), how in any::<u8>()) {
        check(&encode(&text, how))?;
    }

    #[test]
    fn generated_ssa_and_sbv(text in ssa_or_sbv(), how in any::<u8>()) {
        check(&encode(&text, how))?;
    }

    #[test]
    fn mutated_corpus_files(
        which in any::<usize>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut files = corpus_files();
        files.extend(format_samples());
        let mut b = files[which % files.len()].clone();
        for (at, byte, op) in edits {
            if b.is_empty() {
                break;
            }
            let i = at % b.len();
            match op {
                0 => b[i] ^= byte,
                1 => b.truncate(i),
                _ => b.insert(i, byte),
            }
        }
        check(&b)?;
    }
}

/// Crashes and contract breaks the properties found, kept as plain tests.
#[test]
fn every_format_sample_parses_unmutated() {
    for sample in format_samples() {
        let segs = parse_captions(&sample)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&sample)));
        assert!(!segs.is_empty(), "{segs:?}");
    }
}

#[test]
fn regression_no_cues_is_an_error_not_an_empty_success() {
    for input in [
        &b"{\"events\":[]}"[..],
        b"{\"events\":[{\"tStartMs\":0,\"segs\":[{\"utf8\":\"\\n\"}]}]}",
        b"WEBVTT\n\n00:00.000 --> 00:01.000\n\n",
    ] {
        assert!(
            parse_captions(input).is_err(),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn regression_negative_json3_times_clamp_to_zero() {
    let j = br#"{"events":[{"tStartMs":-1,"dDurationMs":null,"segs":[{"utf8":"a","tOffsetMs":null}]}]}"#;
    let s = parse_captions(j).expect("one cue");
    assert_eq!((s[0].start, s[0].text.as_str()), (0.0, "a"));
}
