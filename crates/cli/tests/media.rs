//! Local media files through the binary (#18 item 7): `hlbot ingest lesson.mp4` offline with an
//! embedded subtitle track, a subtitle file beside the video, silent audio, a file that is not media, the corpus lesson video's
//! frames and chart, and `process_video_file` on a worker under the input roots. Fixtures are
//! made with ffmpeg at test time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

const LESSON_SRT: &str = "1
00:00:00,000 --> 00:00:03,000
Welcome. Today I trade the EMA pullback strategy on EUR/USD.

2
00:00:03,000 --> 00:00:06,000
On the 1 hour chart I wait for a pullback to the 50 EMA while price stays above the 200 EMA.

3
00:00:06,000 --> 00:00:09,000
I buy when a bullish engulfing candle closes above the 50 EMA.

4
00:00:09,000 --> 00:00:12,000
My stop loss goes 1.5 ATR below the swing low and I take profit at 2R.
";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// `hlbot` with no API keys, no ASR and no Redis reachable, its caches in `data`.
fn offline(data: &Path) -> Command {
    let mut c = hlbot_testkit::worker::command(BIN);
    c.current_dir(repo())
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("HLBOT_ASR_API_KEY")
        .env_remove("HLBOT_WHISPER_MODEL")
        .env("REDIS_URL", "redis://127.0.0.1:1/0")
        .env("HLBOT_CACHE_DIR", data.join("cache"))
        .env("HLBOT_DATA_DIR", data.join("data"));
    c
}

/// Runs ffmpeg with `args` (quiet, overwrite); false (after `missing`) when it cannot.
fn ffmpeg(args: &[&str]) -> bool {
    if !hlbot_testkit::tool("ffmpeg", "-version") {
        return false;
    }
    hlbot_testkit::media::ffmpeg(args);
    true
}

fn ingest(data: &Path, source: &Path, extra: &[&str]) -> (String, String, bool) {
    let out = offline(data)
        .arg("ingest")
        .args(extra)
        .arg(source)
        .output()
        .expect("run");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// A 12 s video (grey picture, silent audio) with the lesson as a mov_text subtitle track (made
/// from an SRT whose name is no subtitle file of the video's).
fn lesson_with_subtitles(dir: &Path) -> Option<PathBuf> {
    let srt = dir.join("track.srt");
    std::fs::write(&srt, LESSON_SRT).unwrap();
    let out = dir.join("lesson.mp4");
    let ok = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=160x120:r=10:d=12",
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=16000:cl=mono",
        "-i",
        srt.to_str().unwrap(),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-map",
        "2:s",
        "-t",
        "12",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-c:s",
        "mov_text",
        "-metadata:s:s:0",
        "language=eng",
        out.to_str().unwrap(),
    ]);
    ok.then_some(out)
}

#[test]
fn a_video_with_embedded_subtitles_gives_the_strategy_offline() {
    let dir = tempfile::tempdir().unwrap();
    let Some(video) = lesson_with_subtitles(dir.path()) else {
        return;
    };
    let (stdout, stderr, ok) = ingest(dir.path(), &video, &[]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("source           media file"), "{stdout}");
    assert!(
        stdout.contains("transcript       embedded subtitles (eng)"),
        "{stdout}"
    );
    assert!(stdout.contains("duration         0:00:12"), "{stdout}");
    assert!(stdout.contains("provider: rules"), "{stdout}");
    assert!(stdout.contains("Strategy 1: EMA pullback"), "{stdout}");
    assert!(
        stdout.contains("EUR/USD") && stdout.contains("1H"),
        "{stdout}"
    );
    assert!(stdout.contains("1.5 ATR below the swing low"), "{stdout}");
    // A still grey picture: one frame.
    assert!(stdout.contains("frames           1"), "{stdout}");
}

/// yt-dlp `--write-subs` and players name subtitles after the video: `lesson.en.vtt` (or
/// `lesson.en-US.vtt`) beside `lesson.mp4` is its transcript, before speech-to-text (here: silent
/// audio).
#[test]
fn a_subtitle_file_beside_the_video_is_its_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("lesson.mp4");
    if !ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=160x120:r=10:d=3",
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=16000:cl=mono",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        video.to_str().unwrap(),
    ]) {
        return;
    }
    std::fs::copy(
        repo().join("examples/ema_pullback_lesson.en.vtt"),
        dir.path().join("lesson.en.vtt"),
    )
    .unwrap();
    // A plain-named one in another format comes after the language-tagged one.
    std::fs::write(
        dir.path().join("lesson.srt"),
        "1\n00:00:00,000 --> 00:00:01,000\nwrong file\n",
    )
    .unwrap();
    let (stdout, stderr, ok) = ingest(dir.path(), &video, &["--json"]);
    assert!(ok, "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        v["read"]["transcript_source"], "captions:file:en",
        "{stdout}"
    );
    assert_eq!(v["read"]["segments"], 11, "{stdout}");
    assert!(
        v["result"]["strategies"]
            .to_string()
            .contains("EMA pullback"),
        "{stdout}"
    );
    // yt-dlp's name for an English (United States) track is found too, with only `en` asked.
    std::fs::rename(
        dir.path().join("lesson.en.vtt"),
        dir.path().join("lesson.en-US.vtt"),
    )
    .unwrap();
    let (stdout, stderr, ok) = ingest(dir.path(), &video, &["--json", "--force"]);
    assert!(ok, "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        v["read"]["transcript_source"], "captions:file:en",
        "{stdout}"
    );
    assert_eq!(v["read"]["segments"], 11, "not lesson.srt: {stdout}");
    // Without it, the silent video has no transcript.
    std::fs::remove_file(dir.path().join("lesson.en-US.vtt")).unwrap();
    std::fs::remove_file(dir.path().join("lesson.srt")).unwrap();
    let (stdout, _, ok) = ingest(dir.path(), &video, &["--force"]);
    assert!(ok && stdout.contains("transcript       none"), "{stdout}");
}

#[test]
fn silent_audio_is_a_warning_and_no_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("quiet.m4a");
    if !ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=16000:cl=mono",
        "-t",
        "3",
        "-c:a",
        "aac",
        audio.to_str().unwrap(),
    ]) {
        return;
    }
    let (stdout, stderr, ok) = ingest(dir.path(), &audio, &[]);
    assert!(ok, "exit 0: {stdout}\n{stderr}");
    assert!(
        stdout.contains("warning          the audio is silent"),
        "{stdout}"
    );
    assert!(stdout.contains("transcript       none"), "{stdout}");
    assert!(stdout.contains("no strategy found"), "{stdout}");
    assert!(
        stdout.contains("frames           0"),
        "audio has no frames: {stdout}"
    );
}

#[test]
fn a_file_that_is_not_media_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    if !hlbot_testkit::tool("ffprobe", "-version") {
        return;
    }
    let fake = dir.path().join("lesson.mp4");
    std::fs::write(
        &fake,
        b"this is not a video, just text pretending to be one\n",
    )
    .unwrap();
    let (stdout, stderr, ok) = ingest(dir.path(), &fake, &[]);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("lesson.mp4") && stderr.contains("not a media file ffmpeg can read"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("/proc/"),
        "the name, not the descriptor: {stderr}"
    );
    assert!(!stderr.contains("cannot tell what"), "{stderr}");
}

/// The corpus lesson (MANIFEST: cuts at 2.000 s and 4.000 s, a candlestick chart 2–4 s):
/// three frames, and the chart scene gets a chart reading.
#[test]
fn the_corpus_lesson_video_gives_frames_and_a_chart_reading() {
    let Some(video) = hlbot_testkit::env::corpus("video") else {
        return;
    };
    if !hlbot_testkit::tool("ffmpeg", "-version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = offline(dir.path())
        .env("HLBOT_INPUT_ROOTS", video.as_os_str())
        .args(["ingest", "--json", "--no-library"])
        .arg(video.join("gen_trading_lesson_3scenes.mp4"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let times: Vec<f64> = v["document"]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| f["timestamp"].as_f64().unwrap())
        .collect();
    eprintln!("frames at {times:?}");
    assert_eq!(v["read"]["frames"], times.len());
    assert!(times.len() >= 3, "{times:?}");
    for cut in [2.0, 4.0] {
        assert!(
            times.iter().any(|t| *t >= cut - 0.05 && *t < cut + 0.5),
            "a frame just after the cut at {cut}: {times:?}"
        );
    }
    let charts = v["charts"].as_array().expect("charts");
    let chart = charts
        .iter()
        .find(|c| c["kind"] == "candlestick")
        .unwrap_or_else(|| panic!("no candlestick chart: {charts:#?}"));
    let at = chart["at"]["time"].as_f64().unwrap();
    assert!((2.0..4.0).contains(&at), "{chart:#}");
    assert_eq!(chart["analysis"]["provider"], "rules", "{chart:#}");
    assert!(
        charts
            .iter()
            .all(|c| (2.0..4.0).contains(&c["at"]["time"].as_f64().unwrap())),
        "only the chart scene is a chart: {charts:#?}"
    );
}

/// `process_video_file` on a worker: a file under the input roots is processed (the chain runs
/// the extractor), one outside them is refused.
#[test]
fn process_video_file_runs_on_a_worker_under_the_input_roots() {
    let dir = tempfile::tempdir().unwrap();
    let Some(video) = lesson_with_subtitles(dir.path()) else {
        return;
    };
    let url =
        std::env::var("HLBOT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let prefix = format!("media{}:", std::process::id());
    let mut worker = offline(dir.path())
        .env("HLBOT_INPUT_ROOTS", dir.path())
        .args([
            "--broker",
            &url,
            "--key-prefix",
            &prefix,
            "worker",
            "-Q",
            "youtube,llm",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker");
    let client = |args: &[&str]| {
        let out = offline(dir.path())
            .args(["--broker", &url, "--key-prefix", &prefix])
            .args(args)
            .output()
            .expect("client");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.success(),
        )
    };
    let video_arg = video.to_string_lossy().into_owned();
    let queued = client(&["ingest", "--queue", "--json", "-t", "120", &video_arg]);
    let outside = serde_json::json!({"path": "/etc/passwd"}).to_string();
    let refused = client(&["send", "process_video_file", "--kwargs", &outside, "--wait"]);
    let _ = worker.kill();
    let _ = worker.wait();
    if let Ok(c) = redis::Client::open(url.as_str())
        && let Ok(mut c) = c.get_connection()
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query(&mut c)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
        }
    }
    let (stdout, stderr, ok) = queued;
    assert!(ok, "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(v["read"]["kind"], "media file", "{v:#}");
    assert_eq!(v["read"]["transcript_source"], "captions:embedded:eng");
    assert!(
        v["strategies"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .contains("EMA pullback"),
        "{v:#}"
    );
    let (stdout, stderr, ok) = refused;
    assert!(!ok);
    let err = format!("{stdout}{stderr}");
    assert!(
        err.contains("PermissionError") && err.contains("not allowed"),
        "{err}"
    );
}

/// A silent lesson whose slide states the stop rule (#18 item 3): the slide's text joins the
/// transcript as `[on screen]` at its time and the offline extractor finds the rule.
#[test]
fn a_slide_states_the_stop_rule_and_the_extractor_finds_it() {
    let font = Path::new(hlbot_testkit::media::FONT);
    if !hlbot_testkit::tool("tesseract", "--version") || !font.is_file() {
        hlbot_testkit::missing::<()>("tesseract and DejaVuSans");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("slides.mp4");
    if !hlbot_testkit::tool("ffmpeg", "-version") {
        return;
    }
    hlbot_testkit::media::slide_video(
        &video,
        &[
            Some("EMA pullback strategy on EUR/USD"),
            Some("Stop loss 1.5 ATR below the swing low"),
        ],
    );
    let (stdout, stderr, ok) = ingest(dir.path(), &video, &["--json", "--no-library"]);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("JSON");
    let segs = v["document"]["transcript_segments"].as_array().unwrap();
    let stop = segs
        .iter()
        .find(|s| s["text"].as_str().unwrap().contains("Stop loss 1.5 ATR"))
        .unwrap_or_else(|| panic!("no on-screen stop rule: {segs:#?}"));
    assert!(stop["text"].as_str().unwrap().starts_with("[on screen] "));
    assert!(
        (stop["start"].as_f64().unwrap() - 2.0).abs() <= 0.04,
        "{stop}"
    );
    let strategy = &v["result"]["strategies"][0];
    assert!(
        strategy["stop_loss"]
            .to_string()
            .contains("1.5 ATR below the swing low"),
        "{:#}",
        v["result"]
    );
}
