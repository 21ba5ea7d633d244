//! Caption formats besides WebVTT/SRT/json3, end to end through `read_captions` (format told
//! apart by content, any encoding): TTML/DFXP, YouTube srv1/srv3, SBV, SSA/ASS; and the error a
//! file of none of them gets.

use hlbot_youtube::{Detection, Error, read_captions, transcript_text};

fn texts(bytes: &[u8]) -> Vec<(f64, String)> {
    read_captions(bytes, None)
        .unwrap_or_else(|e| panic!("{e}"))
        .segments
        .into_iter()
        .map(|s| (s.start, s.text))
        .collect()
}

#[test]
fn ttml_with_a_comment_holding_an_arrow_is_read_as_xml() {
    // The `-->` closing the comment must not send the file to the WebVTT/SRT parser.
    let ttml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- exported by a caption editor -->
<tt xml:lang="en" xmlns="http://www.w3.org/ns/ttml">
  <head><styling/></head>
  <body><div>
    <p begin="00:00:02.000" end="00:00:04.000">Wait for the close<br/>above the range</p>
    <p begin="00:00:04.000" end="00:00:06.500">then buy the retest &amp; hold</p>
  </div></body>
</tt>"#;
    assert_eq!(
        texts(ttml.as_bytes()),
        vec![
            (2.0, "Wait for the close above the range".into()),
            (4.0, "then buy the retest & hold".into())
        ]
    );
}

#[test]
fn ttml_in_the_code_page_its_declaration_names() {
    let ttml = "<?xml version=\"1.0\" encoding=\"windows-1252\"?>\n<tt xmlns=\"http://www.w3.org/ns/ttml\"><body><div>\
        <p begin=\"1s\" end=\"2s\">Caf\u{e9} \u{201c}breakout\u{201d} \u{2013} 5\u{20ac}</p></div></body></tt>";
    let (bytes, _, bad) = encoding_rs::WINDOWS_1252.encode(ttml);
    assert!(!bad);
    let c = read_captions(&bytes, None).unwrap();
    assert_eq!(
        c.segments[0].text,
        "Caf\u{e9} \u{201c}breakout\u{201d} \u{2013} 5\u{20ac}"
    );
    assert_eq!(c.encoding.name, "windows-1252");
    assert_eq!(c.encoding.detection, Detection::Declared);
}

#[test]
fn youtube_srv3_in_utf16_and_srv1_double_escaped() {
    let srv3 = "<?xml version=\"1.0\" encoding=\"utf-8\" ?><timedtext format=\"3\">\n<body>\n\
        <p t=\"0\" d=\"2150\" w=\"1\">[Music]</p>\n\
        <p t=\"2160\" d=\"2630\" w=\"1\"><s ac=\"0\">hey</s><s t=\"286\" ac=\"0\"> everyone</s></p>\n\
        <p t=\"4789\" d=\"10\" w=\"1\" a=\"1\">\n</p>\n\
        <p t=\"4799\" d=\"4213\" w=\"1\"><s ac=\"0\">today</s><s t=\"508\" ac=\"0\"> we</s></p>\n</body>\n</timedtext>";
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(srv3.encode_utf16().flat_map(u16::to_le_bytes));
    let c = read_captions(&utf16, None).unwrap();
    assert_eq!(
        transcript_text(&c.segments),
        "[Music] hey everyone today we"
    );
    assert_eq!(c.segments[1].start, 2.16);
    let srv1 = r#"<?xml version="1.0" encoding="utf-8" ?><transcript><text start="0.5" dur="3.1">don&amp;#39;t buy if RSI &amp;gt; 70</text></transcript>"#;
    assert_eq!(
        texts(srv1.as_bytes()),
        vec![(0.5, "don't buy if RSI > 70".into())]
    );
}

#[test]
fn sbv_from_youtube_studio_with_crlf() {
    let sbv = "0:00:00.599,0:00:04.160\r\nSupport is where buyers\r\nkeep stepping in\r\n\r\n0:00:04.160,0:01:02.000\r\n>> stop below 1.0850\r\n";
    assert_eq!(
        texts(sbv.as_bytes()),
        vec![
            (0.599, "Support is where buyers keep stepping in".into()),
            (4.16, ">> stop below 1.0850".into())
        ]
    );
}

#[test]
fn ass_with_bom_styles_and_override_tags() {
    let ass = "\u{feff}[Script Info]\nScriptType: v4.00+\nPlayResX: 1920\n\n[V4+ Styles]\n\
        Format: Name, Fontname, Fontsize\nStyle: Default,Arial,20\n\n[Events]\n\
        Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n\
        Dialogue: 0,0:00:03.00,0:00:05.00,Default,,0,0,0,,{\\an8}Risk one percent,\\Nno more\n\
        Dialogue: 0,0:00:01.00,0:00:03.00,Default,Coach,0,0,0,,{\\b1}Trend first{\\b0}\n";
    assert_eq!(
        texts(ass.as_bytes()),
        vec![
            (1.0, "Trend first".into()),
            (3.0, "Risk one percent, no more".into())
        ]
    );
}

#[test]
fn a_file_of_no_caption_format_says_which_formats_were_tried() {
    for bytes in [
        &b"just some notes about trading\nno timings here\n"[..],
        b"<html><body>not captions</body></html>",
        b"<tt><body><p begin=\"1s\">unclosed</body></tt>",
        b"[Events]\nDialogue: 0,later,0:00:02.00,Default,,0,0,0,,x\n",
    ] {
        let e = read_captions(bytes, None).unwrap_err();
        assert!(matches!(e, Error::Caption { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("not a caption file")
                || msg.contains("<html>")
                || msg.contains("invalid XML")
                || msg.contains("\"later\""),
            "{msg}"
        );
    }
    let e = read_captions(b"plain text\n", None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SBV") && e.contains("TTML") && e.contains("SSA"),
        "{e}"
    );
}

#[test]
fn an_arrow_in_sbv_or_ssa_text_does_not_make_it_webvtt() {
    let sbv = "0:00:01.000,0:00:02.000\nrotate EUR --> USD\n";
    assert_eq!(
        texts(sbv.as_bytes()),
        vec![(1.0, "rotate EUR --> USD".into())]
    );
    let ass = "[Script Info]\nScriptType: v4.00+\n\n[Events]\nDialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,EUR --> USD\n";
    assert_eq!(texts(ass.as_bytes()), vec![(1.0, "EUR --> USD".into())]);
}

/// Found by reading other projects' caption test files (webvtt-py, pysubs2): one typo in a
/// timing line refused the whole file, Apple's lyric TTML (`begin="19.764"`, bare seconds) was
/// refused, and a `WEBVTT` header without cues was called "not a caption file".
#[test]
fn one_bad_time_keeps_the_file_and_bare_ttml_seconds_are_read() {
    let vtt = "WEBVTT\n\n00:00:00.500 --> 00:00:07.000\nfirst\n\n00:00:07.000 --> 00:00:1d.890\nsecond\n\n\
               00:0x:11.000 --> 00:00:16.320\nthird\n\n00:00:16.320 --> 00:00:21.580\nfourth\n";
    assert_eq!(
        texts(vtt.as_bytes()),
        vec![
            (0.5, "first".into()),
            (7.0, "second".into()),
            (7.0, "third".into()),
            (16.32, "fourth".into()),
        ]
    );
    // Neither side readable: still the error naming the line.
    let e = read_captions(
        b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nok\n\nxx --> yy\nlost?\n",
        None,
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::Caption { line: 6, .. }) && e.to_string().contains("xx --> yy"),
        "{e}"
    );
    let apple = r#"<tt xmlns="http://www.w3.org/ns/ttml" xmlns:itunes="http://music.apple.com/lyric-ttml-internal" itunes:timing="Word">
  <body><div begin="19.764" end="59.300">
    <p begin="19.764" end="21.900"><span begin="19.764" end="20.105">When</span> <span begin="20.105" end="20.4">you</span></p>
    <p begin="22.5" end="25">were here before</p>
  </div></body></tt>"#;
    assert_eq!(
        texts(apple.as_bytes()),
        vec![
            (19.764, "When you".into()),
            (22.5, "were here before".into())
        ]
    );
    let e = read_captions(b"WEBVTT", None).unwrap_err().to_string();
    assert!(e.contains("no cues with text"), "{e}");
}
