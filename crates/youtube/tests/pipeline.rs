//! The whole pipeline with the real yt-dlp (generic extractor) and ffmpeg on media served over
//! HTTP on 127.0.0.1: captions from an HTML5 <track>, scene frames, cache reuse, truncated media,
//! hard time limits, host refusal, playlists with a failing entry.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hlbot_youtube::{Error, Stage, YoutubeOptions, no_progress, process_playlist, process_video};
use tokio_util::sync::CancellationToken;

fn options(ytdlp: &Path, cache: &Path) -> YoutubeOptions {
    YoutubeOptions {
        ytdlp: ytdlp.to_path_buf(),
        cache_dir: cache.to_path_buf(),
        extra_allowed_hosts: vec!["127.0.0.1".into()],
        // These tests are about captions and cuts; slide text is `tests/frames.rs`'s.
        frame_ocr: Some(false),
        ..Default::default()
    }
}

fn tools() -> Option<std::path::PathBuf> {
    let y = common::ytdlp()?;
    (common::have("ffmpeg") && common::have("ffprobe")).then_some(y)
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.15
}

#[tokio::test]
async fn html5_page_gives_manual_captions_frames_and_reuses_cache() {
    let Some(ytdlp) = tools() else { return };
    let media = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    common::make_scenes_video(&media.path().join("lesson.mp4"));
    std::fs::write(media.path().join("lesson.en.vtt"), common::SCENES_VTT).unwrap();
    std::fs::write(
        media.path().join("lesson.html"),
        "<html><head><title>Support lesson</title></head><body><video controls src=\"lesson.mp4\">\
         <track kind=\"captions\" srclang=\"en\" label=\"English\" src=\"lesson.en.vtt\"></video></body></html>",
    )
    .unwrap();
    let server = common::serve(media.path().to_path_buf()).await;
    let opts = options(&ytdlp, cache.path());
    let url = server.url("lesson.html");
    let stages = Arc::new(Mutex::new(Vec::new()));
    let s2 = stages.clone();
    let progress = move |p: &hlbot_youtube::Progress| s2.lock().unwrap().push(p.stage);

    let r = process_video(
        &opts,
        &url,
        true,
        true,
        &progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.transcript_source, "captions:manual:en");
    assert_eq!(r.transcript, common::SCENES_TRANSCRIPT);
    assert_eq!(r.transcript_segments.len(), 3);
    assert_eq!(
        (r.transcript_segments[1].start, r.transcript_segments[1].end),
        (2.0, 4.0)
    );
    assert_eq!(r.extractor.as_deref(), Some("html5"));
    assert!(!r.video_id.is_empty());
    let times: Vec<f64> = r.frames.iter().map(|f| f.timestamp).collect();
    assert_eq!(times.len(), 3, "frames at {times:?}");
    assert!(
        near(times[0], 0.0) && near(times[1], 2.0) && near(times[2], 4.0),
        "{times:?}"
    );
    for f in &r.frames {
        assert!(f.path.is_file() && f.path.starts_with(cache.path()));
        assert_eq!((f.width, f.height), (640, 360));
    }
    assert!(stages.lock().unwrap().contains(&Stage::DownloadVideo));
    // Bulk media is not kept once frames exist.
    assert!(!r.cache_dir.join("video.mp4").exists());

    // Same request again with the server gone: everything must come from the cache.
    let hits = server.hits();
    server.stop();
    let again = process_video(
        &opts,
        &url,
        true,
        true,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(again.transcript, r.transcript);
    assert_eq!(again.frames, r.frames);
    assert!(hits > 0);
}

#[tokio::test]
async fn corpus_lesson_video_frames_at_known_cuts() {
    let Some(ytdlp) = tools() else { return };
    let Some(video_dir) = common::corpus("video") else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let server = common::serve(video_dir).await;
    let opts = options(&ytdlp, cache.path());
    let r = process_video(
        &opts,
        &server.url("gen_trading_lesson_3scenes.mp4"),
        true,
        true,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    // No captions and no ASR provider: an honest "none" with a warning.
    assert_eq!(r.transcript_source, "none");
    assert!(r.transcript.is_empty());
    assert!(
        r.warnings.iter().any(|w| w.contains("no ASR provider")),
        "{:?}",
        r.warnings
    );
    let times: Vec<f64> = r.frames.iter().map(|f| f.timestamp).collect();
    assert_eq!(times.len(), 3, "{times:?}");
    assert!(
        near(times[0], 0.0) && near(times[1], 2.0) && near(times[2], 4.0),
        "{times:?}"
    );
    assert!(r.frames.iter().all(|f| (f.width, f.height) == (1280, 720)));
    assert_eq!(r.video_id, "gen_trading_lesson_3scenes");
}

#[tokio::test]
async fn rotation_metadata_is_honoured_and_height_capped() {
    let Some(ytdlp) = tools() else { return };
    let media = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let plain = media.path().join("plain.mp4");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=1280x720:r=10:d=2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        plain.to_str().unwrap(),
    ]);
    // A phone-style file: landscape pixels with a 90° display matrix → portrait on screen.
    let rotated = media.path().join("rotated.mp4");
    common::ffmpeg(&[
        "-i",
        plain.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        rotated.to_str().unwrap(),
    ]);
    let server = common::serve(media.path().to_path_buf()).await;
    let mut opts = options(&ytdlp, cache.path());
    opts.max_frame_height = 480;
    let r = process_video(
        &opts,
        &server.url("rotated.mp4"),
        true,
        true,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let f = &r.frames[0];
    assert!(
        f.height > f.width,
        "rotation ignored: {}x{}",
        f.width,
        f.height
    );
    assert!(f.height <= 480);
}

#[tokio::test]
async fn truncated_media_gives_a_clear_error_quickly() {
    let Some(ytdlp) = tools() else { return };
    let media = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let full = media.path().join("full.mp4");
    // Without faststart the index (moov) is at the end: cutting the file loses it.
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=640x360:r=25:d=4",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        full.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(media.path().join("cut.mp4"), &bytes[..bytes.len() * 2 / 5]).unwrap();
    let server = common::serve(media.path().to_path_buf()).await;
    let opts = options(&ytdlp, cache.path());
    let (url, token) = (server.url("cut.mp4"), CancellationToken::new());
    let run = process_video(&opts, &url, true, true, &no_progress, &token);
    // A generous guard only to turn a hang into a failure.
    let err = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(matches!(err, Error::Media { .. }), "{err}");
    assert!(!err.retryable());
    let msg = err.to_string();
    assert!(
        msg.contains("moov") || msg.contains("Invalid data"),
        "{msg}"
    );
}

#[tokio::test]
async fn download_time_limit_kills_ytdlp_and_ffmpeg() {
    let Some(ytdlp) = tools() else { return };
    let media = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=640x360:r=25:d=20",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        media.path().join("big.mp4").to_str().unwrap(),
    ]);
    let server = common::serve(media.path().to_path_buf()).await;
    let mut opts = options(&ytdlp, cache.path());
    // yt-dlp hands the transfer to ffmpeg: the group then holds python + ffmpeg.
    opts.downloader = Some("ffmpeg".into());
    opts.timeouts.download = Duration::from_secs(8);
    let port = format!("127.0.0.1:{}", server.addr.port());
    let seen_ffmpeg = Arc::new(Mutex::new(false));
    let (seen2, port2) = (seen_ffmpeg.clone(), port.clone());
    let watcher = tokio::spawn(async move {
        loop {
            if common::processes_with(&port2)
                .iter()
                .any(|c| c.starts_with("ffmpeg") || c.contains("/ffmpeg "))
            {
                *seen2.lock().unwrap() = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let err = process_video(
        &opts,
        &server.url("slow/big.mp4"),
        true,
        true,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    watcher.abort();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.retryable());
    assert!(
        *seen_ffmpeg.lock().unwrap(),
        "ffmpeg was never started by yt-dlp"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = common::processes_with(&port);
    assert!(left.is_empty(), "orphans: {left:?}");
}

#[tokio::test]
async fn cancellation_during_download_kills_the_group() {
    let Some(ytdlp) = tools() else { return };
    let media = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=640x360:r=25:d=20",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        media.path().join("v.mp4").to_str().unwrap(),
    ]);
    let server = common::serve(media.path().to_path_buf()).await;
    let opts = options(&ytdlp, cache.path());
    let token = CancellationToken::new();
    let t2 = token.clone();
    let port = format!("127.0.0.1:{}", server.addr.port());
    let url = server.url("slow/v.mp4");
    let requests = server.requests.clone();
    tokio::spawn(async move {
        // Cancel once yt-dlp is downloading (second request: the first is the metadata probe).
        for _ in 0..400 {
            if requests.load(std::sync::atomic::Ordering::SeqCst) >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        t2.cancel();
    });
    let err = process_video(&opts, &url, true, true, &no_progress, &token)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(common::processes_with(&port).is_empty());
}

#[tokio::test]
async fn disallowed_host_is_refused_before_any_request() {
    let Some(ytdlp) = tools() else { return };
    let media = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = common::serve(media.path().to_path_buf()).await;
    let mut opts = options(&ytdlp, cache.path());
    opts.extra_allowed_hosts.clear();
    let err = process_video(
        &opts,
        &server.url("x.mp4"),
        true,
        true,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::HostNotAllowed { .. }), "{err}");
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn playlist_records_a_failing_video_without_failing() {
    let Some(ytdlp) = tools() else { return };
    let media = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    common::make_scenes_video(&media.path().join("one.mp4"));
    std::fs::write(
        media.path().join("list.html"),
        "<html><head><title>Course</title></head><body><video src=\"one.mp4\"></video><video src=\"gone.mp4\"></video></body></html>",
    )
    .unwrap();
    let server = common::serve(media.path().to_path_buf()).await;
    let opts = options(&ytdlp, cache.path());
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r2 = reports.clone();
    let progress = move |p: &hlbot_youtube::Progress| {
        if p.stage == Stage::Playlist {
            r2.lock().unwrap().push((p.done, p.total));
        }
    };
    let r = process_playlist(
        &opts,
        &server.url("list.html"),
        false,
        true,
        None,
        &progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.items.len(), 2);
    assert_eq!((r.succeeded, r.failed), (1, 1));
    assert!(r.items[0].result.is_some());
    let err = r.items[1].error.as_ref().unwrap();
    assert_eq!(err.kind, "unavailable", "{err:?}");
    assert!(!err.retryable);
    assert_eq!(reports.lock().unwrap().last(), Some(&(Some(2), Some(2))));

    let listed = hlbot_youtube::list_playlist(
        &opts,
        &server.url("list.html"),
        Some(1),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].index, 1);
}

/// The seed's URL through the real yt-dlp. Without network (this workplace) it must fail fast as a
/// retryable network error; where YouTube is reachable it must satisfy the seed's check.
#[tokio::test]
async fn seed_url_with_real_ytdlp_is_network_error_or_transcript() {
    let Some(ytdlp) = tools() else { return };
    let cache = tempfile::tempdir().unwrap();
    let opts = YoutubeOptions {
        ytdlp,
        cache_dir: cache.path().to_path_buf(),
        ..Default::default()
    };
    let url = "https://www.youtube.com/watch?v=dQw4w9WgXcQ";
    match process_video(
        &opts,
        url,
        false,
        true,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    {
        Ok(r) => {
            assert_eq!(r.video_id, "dQw4w9WgXcQ");
            assert!(!r.transcript.is_empty());
        }
        Err(e) => {
            assert!(
                matches!(e.kind(), "network" | "bot_check" | "rate_limited"),
                "{e}"
            );
            assert!(e.retryable());
        }
    }
}

#[tokio::test]
async fn returning_to_an_earlier_slide_is_a_near_duplicate() {
    let Some(ytdlp) = tools() else { return };
    let media = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let slide_a =
        "drawbox=x=80:y=80:w=480:h=60:c=yellow:t=fill,drawbox=x=80:y=200:w=300:h=30:c=white:t=fill";
    let graph = format!(
        "[0]{slide_a}[a];[1]drawgrid=w=40:h=40:c=gray[b];[2]{slide_a}[c];[a][b][c]concat=n=3:v=1:a=0,format=yuv420p[v]"
    );
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0x203060:s=640x360:r=25:d=3",
        "-f",
        "lavfi",
        "-i",
        "color=c=white:s=640x360:r=25:d=3",
        "-f",
        "lavfi",
        "-i",
        "color=c=0x203060:s=640x360:r=25:d=3",
        "-filter_complex",
        &graph,
        "-map",
        "[v]",
        "-c:v",
        "libx264",
        media.path().join("aba.mp4").to_str().unwrap(),
    ]);
    let server = common::serve(media.path().to_path_buf()).await;
    let opts = options(&ytdlp, cache.path());
    let r = process_video(
        &opts,
        &server.url("aba.mp4"),
        true,
        true,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let times: Vec<f64> = r.frames.iter().map(|f| f.timestamp).collect();
    assert_eq!(times.len(), 2, "{times:?}");
    assert!(near(times[0], 0.0) && near(times[1], 3.0), "{times:?}");
}
