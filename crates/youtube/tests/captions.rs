//! Caption parsing on the shared corpus (real YouTube auto-captions, SRT/VTT oddities, encodings)
//! with the MANIFEST ground truth.

mod common;

use hlbot_youtube::{Error, Segment, parse_captions, transcript_text};

fn load(name: &str) -> Option<Vec<Segment>> {
    let dir = common::corpus("captions")?;
    let bytes = std::fs::read(dir.join(name)).unwrap();
    Some(parse_captions(&bytes).unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn texts(s: &[Segment]) -> Vec<String> {
    s.iter().map(|s| s.text.clone()).collect()
}

#[test]
fn youtube_auto_modern_demo() {
    let Some(segs) = load("simonw-webvtt-to-json__demo.vtt") else {
        return;
    };
    assert_eq!(
        transcript_text(&segs),
        "my career in side projects and open source basically this is so i've been"
    );
}

#[test]
fn youtube_auto_older_colour_layout_malformed() {
    let Some(segs) = load("webvtt-py__youtube_dl.vtt") else {
        return;
    };
    let t = transcript_text(&segs);
    assert_eq!(t, "yeah what this will happen is I'm telling");
    assert!(!t.contains("-->"));
}

#[test]
fn generated_full_auto_caption_lesson() {
    let Some(segs) = load("gen_youtube_auto_en_support_resistance.en.vtt") else {
        return;
    };
    let dir = common::corpus("captions").unwrap();
    let expected =
        std::fs::read_to_string(dir.join("gen_youtube_auto_en_support_resistance.expected.txt"))
            .unwrap();
    let got = transcript_text(&segs);
    let got = got.strip_prefix("[Music] ").unwrap_or(&got);
    assert_eq!(got, common::squash(&expected));
    assert!(got.contains("bounced off 1.0850 three separate times"));
    assert!(
        segs.windows(2).all(|w| w[0].start <= w[1].start),
        "segments in time order"
    );
}

#[test]
fn manual_vtt_with_bom_notes_styles_regions_and_odd_timestamps() {
    let Some(segs) = load("astisub__example-in.vtt") else {
        return;
    };
    assert_eq!(
        texts(&segs),
        [
            "(deep rumbling)",
            "MAN: How did we end up here?",
            "This place is horrible.",
            "Smells like balls.",
            "We don't belong in this shithole.",
            "(computer playing electronic melody)"
        ]
    );
    assert_eq!((segs[0].start, segs[0].end), (99.0, 101.04));
    assert!((segs[5].start - 151.40).abs() < 1e-9 && (segs[5].end - 153.44).abs() < 1e-9);
    let t = transcript_text(&segs);
    for hidden in ["NOTE", "peachpuff", "Region", "comment inside"] {
        assert!(!t.contains(hidden), "{hidden} leaked");
    }
}

#[test]
fn vtt_without_hours_and_inline_tags() {
    let Some(segs) = load("webvtt-py__cue_tags.vtt") else {
        return;
    };
    assert_eq!(
        texts(&segs),
        [
            "When the moon hits your eye",
            "Like a big-a pizza pie",
            "That's amore"
        ]
    );
    assert_eq!((segs[0].start, segs[0].end), (16.5, 18.5));
    assert_eq!((segs[2].start, segs[2].end), (20.5, 21.5));
}

#[test]
fn vtt_missing_header_is_parsed_leniently() {
    let Some(segs) = load("webvtt-py__invalid.vtt") else {
        return;
    };
    let want: Vec<String> = (1..=7).map(|i| format!("Caption text #{i}")).collect();
    assert_eq!(texts(&segs), want);
}

#[test]
fn plain_srt() {
    let Some(segs) = load("webvtt-py__sample.srt") else {
        return;
    };
    let want: Vec<String> = (1..=5).map(|i| format!("Caption text #{i}")).collect();
    assert_eq!(texts(&segs), want);
    assert_eq!(segs[0].start, 0.5);
    assert_eq!(segs[4].end, 23.88);
}

#[test]
fn srt_with_bom_and_cr_only_line_ends() {
    let Some(segs) = load("astisub__example-in-carriage-return.srt") else {
        return;
    };
    assert_eq!(
        texts(&segs),
        [
            "Did one of the last stories strike you as more interesting than the other?",
            "That's true. You don’t often find 632 pieces of gum stuck on a sidewalk",
            "at a busy bus stop or anywhere else for that matter."
        ]
    );
    assert_eq!((segs[0].start, segs[0].end), (0.0, 3.766));
    assert_eq!((segs[2].start, segs[2].end), (10.733, 14.066));
}

#[test]
fn srt_utf16le_with_bom() {
    let Some(segs) = load("chardet__bom-utf-16-le.srt") else {
        return;
    };
    assert_eq!(segs.len(), 7);
    assert_eq!(
        segs[0].text,
        "About 2 months ago I found myself on the comment section of YouTube"
    );
    assert_eq!(segs[0].start, 6.5);
    assert_eq!(
        segs[6].text,
        "So what I thought I do is instead if answering on a YouTube comment is organize a global awareness day"
    );
    assert_eq!((segs[6].start, segs[6].end), (43.0, 50.0));
    assert!(!transcript_text(&segs).contains('\0'));
}

#[test]
fn srt_cue_id_zero_unicode() {
    let Some(segs) = load("moviepy__subtitles-unicode.srt") else {
        return;
    };
    assert_eq!(
        segs,
        [Segment {
            start: 0.0,
            end: 5.0,
            text: "ÁÉíöÙ".into()
        }]
    );
}

#[test]
fn legacy_8bit_and_truncated_files() {
    // Windows-1252 SRT written by an old tool.
    let srt = b"1\r\n00:00:01,000 --> 00:00:02,000\r\nCaf\xe9 \x93cr\xe8me\x94\r\n";
    assert_eq!(
        transcript_text(&parse_captions(srt).unwrap()),
        "Café “crème”"
    );
    // Cut in the middle of a timing line: a clear error naming the line, not silent loss.
    let cut = b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nfirst\n\n00:00:03.0";
    match parse_captions(cut) {
        Err(Error::Caption { line: 6, .. }) | Ok(_) => {}
        Err(e) => panic!("{e}"),
    }
}
