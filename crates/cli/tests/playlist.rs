//! `process_youtube_playlist` fanned out across two `hlbot worker` processes on local media: a
//! playlist page on a local HTTP server (yt-dlp's generic extractor) lists five videos, one of
//! them missing; each video runs as its own `process_youtube_video` task (a chord header), both
//! workers run some, the chord body assembles the playlist result under the playlist's own id
//! with the missing video listed with its typed error, and PROGRESS done/total is stored there
//! meanwhile.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use hlbot_engine::{Keys, SendOptions};
use hlbot_testkit::{Proc, TestRedis};
use serde_json::{Map, Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

fn ffmpeg_video(path: &Path, color: &str) {
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("color=c={color}:s=320x240:r=10:d=2"))
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(path)
        .status()
        .expect("ffmpeg");
    assert!(ok.success());
}

/// A config in `dir`: its own cache, this yt-dlp, local hosts allowed.
fn config_in(dir: &Path, ytdlp: &Path) -> std::path::PathBuf {
    let config = dir.join("hlbot.toml");
    std::fs::write(
        &config,
        format!(
            "cache_dir = {:?}\n[youtube]\nytdlp = {:?}\nallowed_hosts = [\"127.0.0.1\"]\n",
            dir.join("c"),
            ytdlp
        ),
    )
    .unwrap();
    config
}

fn worker(r: &TestRedis, config: &Path, name: &str) -> Proc {
    let c = hlbot_testkit::worker::hlbot(BIN, r)
        .args(["--config"])
        .arg(config)
        .args([
            "-l", "info", "worker", "-Q", "youtube", "-c", "1", "-E", "-n",
        ])
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hlbot worker");
    Proc(c)
}

/// `(type, uuid, hostname)` of each event in a Celery event envelope (task events come
/// batched in a list on `task.multi`).
fn events(raw: &[u8]) -> Vec<(String, String, String)> {
    let Some(body) = serde_json::from_slice::<Value>(raw).ok().and_then(|env| {
        base64::engine::general_purpose::STANDARD
            .decode(env.get("body")?.as_str()?)
            .ok()
    }) else {
        return vec![];
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return vec![];
    };
    let list = match v {
        Value::Array(a) => a,
        one => vec![one],
    };
    list.iter()
        .filter_map(|ev| {
            let s = |k: &str| ev.get(k).and_then(Value::as_str).map(String::from);
            Some((s("type")?, s("uuid")?, s("hostname")?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlist_fans_out_over_two_workers_and_lists_the_failed_video() {
    let Some(ytdlp) = hlbot_testkit::env::ytdlp() else {
        return;
    };
    if !hlbot_testkit::env::tool("ffmpeg", "-version") {
        hlbot_testkit::env::missing::<()>("ffmpeg");
        return;
    }
    let r = TestRedis::new();
    let media = tempfile::tempdir().unwrap();
    let names = ["v1.mp4", "v2.mp4", "gone.mp4", "v4.mp4", "v5.mp4"];
    for (n, c) in [
        ("v1.mp4", "red"),
        ("v2.mp4", "green"),
        ("v4.mp4", "blue"),
        ("v5.mp4", "white"),
    ] {
        ffmpeg_video(&media.path().join(n), c);
    }
    let tags: String = names
        .iter()
        .map(|n| format!("<video src=\"{n}\"></video>"))
        .collect();
    std::fs::write(
        media.path().join("list.html"),
        format!("<html><head><title>Course</title></head><body>{tags}</body></html>"),
    )
    .unwrap();
    let server = hlbot_testkit::http::serve_dir(media.path().to_path_buf()).await;
    let cache = tempfile::tempdir().unwrap();
    let config = config_in(cache.path(), &ytdlp);

    // Watch the task events before anything runs.
    let keys = Keys::new(&r.prefix, &r.prefix, r.settings.db());
    let client = redis::Client::open(r.url.as_str()).unwrap();
    let mut ps = client.get_async_pubsub().await.unwrap();
    ps.psubscribe(keys.event_pattern()).await.unwrap();

    let _w1 = worker(&r, &config, "one@test");
    let _w2 = worker(&r, &config, "two@test");
    r.wait_workers(2, Duration::from_secs(30)).await;

    let hl = r.client().await;
    let mut kw = Map::new();
    kw.insert("url".into(), json!(server.url("list.html")));
    kw.insert("extract_frames".into(), json!(false));
    let h = hl
        .send_task(
            "process_youtube_playlist",
            vec![],
            kw,
            SendOptions {
                queue: Some("youtube".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Collect events until the playlist's result is in; note PROGRESS on its id on the way.
    let mut ran: BTreeMap<String, String> = BTreeMap::new();
    let mut progress = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut stream = ps.on_message();
    let result = loop {
        let meta = h.meta().await.unwrap();
        if meta.status == hlbot_proto::State::Success {
            break meta.result;
        }
        if meta.status.as_str() == "PROGRESS" {
            progress.insert((meta.result["done"].clone(), meta.result["total"].clone()));
        }
        assert!(
            !meta.status.is_ready(),
            "playlist ended {:?}: {}",
            meta.status,
            meta.result
        );
        assert!(tokio::time::Instant::now() < deadline, "playlist not done");
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            for (ty, id, host) in events(m.get_payload_bytes()) {
                if ty == "task-received" {
                    ran.insert(id, host);
                }
            }
        }
    };
    drop(stream);

    assert_eq!(result["count"], 5, "{result}");
    assert_eq!(
        (result["succeeded"].clone(), result["failed"].clone()),
        (json!(4), json!(1))
    );
    let items = result["items"].as_array().unwrap();
    for (i, item) in items.iter().enumerate() {
        let url = item["entry"]["url"].as_str().unwrap();
        assert!(
            url.ends_with(names[i]),
            "item {i} is {url}: playlist order kept"
        );
        if names[i] == "gone.mp4" {
            assert!(item["result"].is_null());
            assert_eq!(item["error"]["state"], "FAILURE", "{item}");
            assert!(
                item["error"]["kind"]
                    .as_str()
                    .is_some_and(|k| !k.is_empty()),
                "{item}"
            );
        } else {
            assert!(item["error"].is_null(), "{item}");
            assert!(item["result"].is_object(), "{item}");
        }
    }
    // Both workers ran videos (each video task's `task-received` names its worker).
    let video_ids: HashSet<&str> = items.iter().filter_map(|i| i["task_id"].as_str()).collect();
    let hosts: HashSet<&String> = ran
        .iter()
        .filter(|(id, _)| video_ids.contains(id.as_str()))
        .map(|(_, h)| h)
        .collect();
    assert_eq!(hosts.len(), 2, "videos ran on {hosts:?} ({ran:?})");
    // Progress was visible on the playlist's id, counted against the total.
    assert!(progress.iter().all(|(_, t)| *t == json!(5)), "{progress:?}");
    assert!(!progress.is_empty(), "no PROGRESS seen on the playlist id");
    server.stop();
}

/// `scripts/bench-playlist.sh` (ignored in the suite: a benchmark, not a test): a 10-video
/// playlist on local media with frames extracted, processed by one worker and then by two
/// (`-c 1` each), wall time from send to the playlist's result. Prints a table; asserts only
/// that every video succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench-playlist.sh"]
async fn playlist_bench() {
    let Some(ytdlp) = hlbot_testkit::env::ytdlp() else {
        return;
    };
    let media = tempfile::tempdir().unwrap();
    let n = 10;
    let mut tags = String::new();
    for i in 0..n {
        // 8 s of moving test pattern with a cut every 2 s: real decoding and scene work.
        let name = format!("v{i}.mp4");
        let ok = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=s=640x360:r=25:d=8,hue=H=t*{}", i + 1))
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .arg(media.path().join(&name))
            .status()
            .expect("ffmpeg");
        assert!(ok.success());
        tags.push_str(&format!("<video src=\"{name}\"></video>"));
    }
    std::fs::write(
        media.path().join("list.html"),
        format!("<html><head><title>Bench</title></head><body>{tags}</body></html>"),
    )
    .unwrap();
    let server = hlbot_testkit::http::serve_dir(media.path().to_path_buf()).await;
    let mut rows = Vec::new();
    for workers in [1usize, 2] {
        let r = TestRedis::new();
        let cache = tempfile::tempdir().unwrap();
        let config = config_in(cache.path(), &ytdlp);
        let procs: Vec<Proc> = (0..workers)
            .map(|i| worker(&r, &config, &format!("w{i}@bench")))
            .collect();
        r.wait_workers(workers, Duration::from_secs(30)).await;
        let hl = r.client().await;
        let mut kw = Map::new();
        kw.insert("url".into(), json!(server.url("list.html")));
        kw.insert("extract_frames".into(), json!(true));
        let t = std::time::Instant::now();
        let h = hl
            .send_task(
                "process_youtube_playlist",
                vec![],
                kw,
                SendOptions {
                    queue: Some("youtube".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let v = h
            .get(Duration::from_secs(900))
            .await
            .expect("playlist result");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(v["succeeded"], json!(n), "{v}");
        rows.push((workers, secs));
        drop(procs);
    }
    server.stop();
    println!("\n| workers (-c 1 each) | 10-video playlist, frames on: wall s | vs one worker |");
    println!("|---|---:|---:|");
    for (w, s) in &rows {
        println!("| {w} | {s:.2} | {:.2}× |", s / rows[0].1);
    }
}
