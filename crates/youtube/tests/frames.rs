//! Scene cuts and slide text on local files (`process_media_file`, no network): synthetic clips
//! made with ffmpeg's lavfi `color=` sources (a 0.5 s first scene, a grey 40→55 low-contrast
//! cut, a still video), a slide made with `drawtext`, and the corpus videos with the cuts
//! MANIFEST.md gives; a WebM with no stated duration.

mod common;

use std::path::Path;

use hlbot_youtube::{VideoResult, YoutubeOptions, no_progress, process_media_file};
use tokio_util::sync::CancellationToken;

use hlbot_testkit::media::FONT;

fn options(cache: &Path, ocr: bool) -> YoutubeOptions {
    YoutubeOptions {
        cache_dir: cache.to_path_buf(),
        frame_ocr: Some(ocr),
        ..Default::default()
    }
}

async fn run(opts: &YoutubeOptions, video: &Path) -> VideoResult {
    try_run(opts, video).await.unwrap()
}

/// `process_media_file` on `video`, keyed by its file stem.
async fn try_run(opts: &YoutubeOptions, video: &Path) -> hlbot_youtube::Result<VideoResult> {
    process_media_file(
        opts,
        video,
        video,
        &video.file_stem().unwrap().to_string_lossy(),
        true,
        None,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
}

fn times(r: &VideoResult) -> Vec<f64> {
    r.frames.iter().map(|f| f.timestamp).collect()
}

/// `scenes` (lavfi colour, seconds) concatenated into one 25 fps H.264 video.
fn colours(path: &Path, scenes: &[(&str, f64)]) {
    let mut args: Vec<String> = Vec::new();
    for (c, d) in scenes {
        args.extend(["-f", "lavfi", "-i"].map(String::from));
        args.push(format!("color=c={c}:s=320x180:r=25:d={d}"));
    }
    let inputs: String = (0..scenes.len()).map(|i| format!("[{i}]")).collect();
    args.extend([
        "-filter_complex".into(),
        format!(
            "{inputs}concat=n={}:v=1:a=0,format=yuv420p[v]",
            scenes.len()
        ),
        "-map".into(),
        "[v]".into(),
        "-c:v".into(),
        "libx264".into(),
        path.to_string_lossy().into_owned(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    common::ffmpeg(&refs);
}

/// Within one frame of the truth at 25 fps.
fn within_a_frame(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 0.04 + 1e-9, "{got:?} vs {want:?}");
    }
}

#[tokio::test]
async fn short_first_scene_and_low_contrast_cut_are_found() {
    if !(common::have("ffmpeg") && common::have("ffprobe")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("cuts.mp4");
    // 0.5 s red, then grey 40 → grey 55 (no pixel changes by more than 15 levels), then blue.
    colours(
        &video,
        &[
            ("0xc02020", 0.5),
            ("0x282828", 2.0),
            ("0x373737", 2.0),
            ("0x2040c0", 1.5),
        ],
    );
    let r = run(&options(dir.path(), false), &video).await;
    eprintln!(
        "cuts at {:?}, scores {:?}",
        times(&r),
        r.frames.iter().map(|f| f.scene_score).collect::<Vec<_>>()
    );
    within_a_frame(&times(&r), &[0.0, 0.5, 2.5, 4.5]);
    let grey = r.frames[2].scene_score;
    assert!((0.04..0.08).contains(&grey), "grey 40→55 scores {grey}");
    for f in &r.frames {
        assert!(f.path.is_file());
        assert_eq!((f.width, f.height), (320, 180));
    }
}

#[tokio::test]
async fn a_still_video_gives_exactly_one_frame() {
    if !(common::have("ffmpeg") && common::have("ffprobe")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("still.mp4");
    colours(&video, &[("0x406080", 4.0)]);
    let r = run(&options(dir.path(), false), &video).await;
    assert_eq!(times(&r), [0.0]);
}

/// MANIFEST.md: the lesson cuts exactly at frames 60 and 120 (2.000 s, 4.000 s at 30 fps);
/// Big Buck Bunny's second is one moving shot.
#[tokio::test]
async fn corpus_videos_cut_where_the_manifest_says() {
    let Some(corpus) = common::corpus("video") else {
        return;
    };
    if !(common::have("ffmpeg") && common::have("ffprobe")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), false);
    let r = run(&opts, &corpus.join("gen_trading_lesson_3scenes.mp4")).await;
    let t = times(&r);
    assert_eq!(t.len(), 3, "{t:?}");
    for (g, w) in t.iter().zip([0.0, 2.0, 4.0]) {
        assert!((g - w).abs() < 1.0 / 30.0, "{t:?}");
    }
    assert_eq!(r.duration, Some(6.0));
    let r = run(&opts, &corpus.join("moviepy__big_buck_bunny_432_433.webm")).await;
    assert_eq!(times(&r), [0.0], "motion is not a cut");
}

/// A slide stating a rule (drawtext) becomes an `[on screen]` segment at the slide's time;
/// the plain first scene adds nothing.
#[tokio::test]
async fn slide_text_joins_the_transcript_at_its_time() {
    if !(common::have("ffmpeg") && common::have("ffprobe")) {
        return;
    }
    if !hlbot_testkit::tool("tesseract", "--version") || !Path::new(FONT).is_file() {
        hlbot_testkit::missing::<()>("tesseract and DejaVuSans");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("slides.mp4");
    make_slide_video(&video);
    let r = run(&options(dir.path(), true), &video).await;
    eprintln!("segments: {:#?}", r.transcript_segments);
    within_a_frame(&times(&r), &[0.0, 2.0]);
    let on_screen: Vec<_> = r
        .transcript_segments
        .iter()
        .filter(|s| s.text.starts_with(hlbot_youtube::ON_SCREEN))
        .collect();
    assert_eq!(on_screen.len(), 1, "{on_screen:?}");
    assert!((on_screen[0].start - 2.0).abs() <= 0.04);
    assert!(
        on_screen[0]
            .text
            .contains("Stop loss 1.5 ATR below the swing low"),
        "{on_screen:?}"
    );
    assert!(r.transcript.contains("[on screen] Stop loss 1.5 ATR"));
}

/// Four slides, text on the first, third and fourth: each text joins the transcript at its own
/// slide's time (the frames are read in one tesseract run; its pages must not shift), and the
/// plain slide adds nothing.
#[tokio::test]
async fn each_slide_text_lands_at_its_own_slide() {
    if !(common::have("ffmpeg") && common::have("ffprobe")) {
        return;
    }
    if !hlbot_testkit::tool("tesseract", "--version") || !Path::new(FONT).is_file() {
        hlbot_testkit::missing::<()>("tesseract and DejaVuSans");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("slides.mp4");
    let texts = [
        Some("Buy the breakout above resistance"),
        None,
        Some("Stop loss 1.5 ATR below the swing low"),
        Some("Take profit at twice the risk"),
    ];
    hlbot_testkit::media::slide_video(&video, &texts);
    // tesseract behind a wrapper that counts its runs: one for the four frames.
    let calls = dir.path().join("calls");
    let wrapper = dir.path().join("tesseract");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho run >> '{}'\nexec tesseract \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut opts = options(dir.path(), true);
    opts.tesseract = wrapper;
    let r = run(&opts, &video).await;
    within_a_frame(&times(&r), &[0.0, 2.0, 4.0, 6.0]);
    let runs = std::fs::read_to_string(&calls)
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(runs, 1, "one tesseract run for every frame");
    let on_screen: Vec<(f64, &str)> = r
        .transcript_segments
        .iter()
        .filter(|s| s.text.starts_with(hlbot_youtube::ON_SCREEN))
        .map(|s| (s.start, s.text.as_str()))
        .collect();
    assert_eq!(on_screen.len(), 3, "{on_screen:?}");
    for ((start, text), (want_at, want)) in
        on_screen
            .iter()
            .zip([(0.0, texts[0]), (4.0, texts[2]), (6.0, texts[3])])
    {
        assert!((start - want_at).abs() <= 0.04, "{on_screen:?}");
        assert!(text.contains(want.unwrap_or_default()), "{on_screen:?}");
    }
}

/// 4 s, 640×360: a dark blue plain scene (0–2 s), then a slide with the stop rule (2–4 s).
pub fn make_slide_video(path: &Path) {
    hlbot_testkit::media::slide_video(path, &[None, Some("Stop loss 1.5 ATR below the swing low")]);
}

/// A WebM written to a pipe (as a browser's MediaRecorder or a live capture writes it) states
/// no duration: it is measured off its packets, so `youtube.max_duration` applies to it (before,
/// such a file had no length and no limit). An empty file is refused as empty.
#[tokio::test]
async fn a_webm_without_a_duration_is_measured_and_limited() {
    if !(common::have("ffmpeg") && common::have("ffprobe")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=0x406080:s=160x90:r=25:d=3",
        ])
        .args(["-c:v", "libvpx", "-b:v", "200k", "-f", "webm", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let video = dir.path().join("recording.webm");
    std::fs::write(&video, &out.stdout).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(&video)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "N/A");

    let r = run(&options(dir.path(), false), &video).await;
    let d = r.duration.expect("a duration");
    assert!((2.9..=3.1).contains(&d), "{d}");

    let mut limited = options(dir.path(), false);
    limited.max_duration = 2.0;
    let err = try_run(&limited, &video).await.unwrap_err();
    assert!(err.to_string().contains("youtube.max_duration"), "{err}");

    let empty = dir.path().join("empty.webm");
    std::fs::write(&empty, b"").unwrap();
    let err = try_run(&limited, &empty).await.unwrap_err();
    assert!(err.to_string().contains("empty (0 bytes)"), "{err}");
}
