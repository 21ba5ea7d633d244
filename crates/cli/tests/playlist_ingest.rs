//! `hlbot ingest` of a playlist URL (YouTube is unreachable: yt-dlp is the testkit's stand-in
//! replaying a flat listing of three videos, one of them private): each video goes through the
//! single-video pipeline into the library, the private one is reported and the others go on —
//! in this process and, with `--queue`, as one chain per video on a real worker.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");
const URL: &str = "https://www.youtube.com/playlist?list=PLhlbotTestList000";
const IDS: [&str; 3] = ["aaaaaaaaaa1", "bbbbbbbbbb2", "cccccccccc3"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The stand-in's answers: the listing, two videos with an English subtitle track (the
/// README's EMA lesson), the third private.
fn responses(dir: &Path) {
    let entries: Vec<Value> = IDS
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"_type": "url", "ie_key": "Youtube", "id": id,
                "url": format!("https://www.youtube.com/watch?v={id}"),
                "title": format!("Lesson {}", i + 1), "duration": 60})
        })
        .collect();
    let listing = json!({"_type": "playlist", "id": "PLhlbotTestList000", "title": "Lessons",
        "extractor": "youtube:tab", "entries": entries});
    std::fs::write(dir.join("playlist.json"), listing.to_string()).unwrap();
    let lesson = std::fs::read(repo().join("examples/ema_pullback_lesson.en.vtt")).unwrap();
    for (i, id) in IDS[..2].iter().enumerate() {
        let info = json!({"_type": "video", "id": id, "title": format!("Lesson {}", i + 1),
            "duration": 60, "extractor": "youtube",
            "webpage_url": format!("https://www.youtube.com/watch?v={id}"),
            "subtitles": {"en": [{"ext": "vtt"}]}, "automatic_captions": {}});
        std::fs::write(dir.join(format!("{id}.json")), info.to_string()).unwrap();
        std::fs::write(dir.join(format!("{id}.en.vtt")), &lesson).unwrap();
    }
    std::fs::write(
        dir.join(format!("{}.stderr", IDS[2])),
        format!("ERROR: [youtube] {}: Private video. Sign in if you've been granted access to this video\n", IDS[2]),
    )
    .unwrap();
}

/// `hlbot` with the stand-in yt-dlp, its own data and cache folders, no API key.
fn hlbot(dir: &Path, ytdlp: &Path) -> Command {
    let mut c = hlbot_testkit::worker::command(BIN);
    c.current_dir(repo())
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env("HLBOT_YTDLP", ytdlp)
        .env("HLBOT_DATA_DIR", dir.join("data"))
        .env("HLBOT_CACHE_DIR", dir.join("cache"));
    c
}

fn run(c: &mut Command) -> (String, String, bool) {
    let out = c.output().expect("run hlbot");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

fn check_videos(v: &Value) {
    assert_eq!(
        (v["succeeded"].as_u64(), v["failed"].as_u64()),
        (Some(2), Some(1)),
        "{v:#}"
    );
    let videos = v["videos"].as_array().unwrap();
    assert_eq!(videos.len(), 3);
    assert!(
        videos[2]["error"]
            .as_str()
            .unwrap()
            .contains("rivate video"),
        "{v:#}"
    );
    for video in &videos[..2] {
        let result = if video.get("report").is_some() {
            &video["report"]["result"]
        } else {
            &video["result"]
        };
        assert!(
            result["strategies"][0]["instruments"]
                .to_string()
                .contains("EUR/USD"),
            "{video:#}"
        );
    }
}

#[test]
fn a_playlist_is_ingested_video_by_video_and_a_private_one_reported() {
    let dir = tempfile::tempdir().unwrap();
    let answers = dir.path().join("answers");
    std::fs::create_dir_all(&answers).unwrap();
    responses(&answers);
    let ytdlp = hlbot_testkit::ytdlp::fake(&answers);

    let (stdout, stderr, ok) = run(hlbot(dir.path(), &ytdlp)
        .env("REDIS_URL", "redis://127.0.0.1:1/0")
        .args(["ingest", "--no-frames", "--json", URL]));
    assert!(ok, "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(v["source"], json!({"kind": "playlist", "source": URL}));
    check_videos(&v);

    // The library holds each video under its own id; the private one as failed.
    let (stdout, stderr, ok) = run(hlbot(dir.path(), &ytdlp).args(["library", "list", "--json"]));
    assert!(ok, "{stderr}");
    let listed: Value = serde_json::from_str(&stdout).expect("JSON");
    let status = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["content_key"] == id)
            .map(|s| (s["status"].clone(), s["strategies"].clone()))
    };
    assert_eq!(status(IDS[0]), Some((json!("done"), json!(1))), "{stdout}");
    assert_eq!(status(IDS[1]), Some((json!("done"), json!(1))), "{stdout}");
    assert_eq!(
        status(IDS[2]).map(|s| s.0),
        Some(json!("failed")),
        "{stdout}"
    );

    // Readable output, and --max-videos.
    let (stdout, stderr, ok) =
        run(hlbot(dir.path(), &ytdlp).args(["ingest", "--no-frames", "--max-videos", "1", URL]));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("== video 1/1: Lesson 1"), "{stdout}");
    assert!(
        stdout.contains("playlist: 1 video(s), 1 ingested, 0 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("EMA pullback"), "{stdout}");
}

#[test]
fn a_queued_playlist_sends_one_chain_per_video() {
    let dir = tempfile::tempdir().unwrap();
    let answers = dir.path().join("answers");
    std::fs::create_dir_all(&answers).unwrap();
    responses(&answers);
    let ytdlp = hlbot_testkit::ytdlp::fake(&answers);
    // Its own key prefix, cleaned up when `r` is dropped.
    let r = hlbot_testkit::TestRedis::new();
    let on_redis = ["--broker", &r.url, "--key-prefix", &r.prefix];
    let mut worker = hlbot(dir.path(), &ytdlp)
        .args(on_redis)
        .args(["worker", "-Q", "youtube,llm", "-c", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker");
    let out = run(hlbot(dir.path(), &ytdlp).args(on_redis).args([
        "ingest",
        "--queue",
        "--no-frames",
        "--json",
        "-t",
        "120",
        URL,
    ]));
    let _ = worker.kill();
    let _ = worker.wait();
    let (stdout, stderr, ok) = out;
    assert!(ok, "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("JSON");
    check_videos(&v);
    assert_eq!(v["videos"][0]["result"]["read"]["kind"], "video", "{v:#}");
}
