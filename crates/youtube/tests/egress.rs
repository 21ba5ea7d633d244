//! Inputs that cannot hurt, with the real yt-dlp on 127.0.0.1: a redirect from an allowed host
//! to another local address is refused by the egress guard (the target never sees a request),
//! and a download over `max_filesize` is stopped with a typed error.

mod common;

use std::path::Path;
use std::time::Duration;

use hlbot_youtube::{Error, YoutubeOptions, no_progress, process_video};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// yt-dlp, ffmpeg and ffprobe; outside CI a missing tool skips, under `CI=true` it fails.
fn tools() -> Option<std::path::PathBuf> {
    let y = common::ytdlp().filter(|_| common::have("ffmpeg") && common::have("ffprobe"));
    if y.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "yt-dlp/ffmpeg missing under CI=true (run scripts/setup.sh)"
        );
    }
    y
}

fn options(ytdlp: &Path, cache: &Path, allowed: &str) -> YoutubeOptions {
    YoutubeOptions {
        ytdlp: ytdlp.to_path_buf(),
        cache_dir: cache.to_path_buf(),
        extra_allowed_hosts: vec![allowed.into()],
        ..Default::default()
    }
}

/// Answers every request with a 302 to `location`.
async fn redirector(location: String) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = c.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

fn small_video(dir: &Path, name: &str, seconds: &str) {
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=s=640x360:r=25:d={seconds}"),
        "-c:v",
        "libx264",
        "-b:v",
        "2M",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        dir.join(name).to_str().unwrap(),
    ]);
}

#[tokio::test]
async fn a_redirect_from_an_allowed_host_to_loopback_is_refused() {
    let Some(ytdlp) = tools() else { return };
    let media = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    small_video(media.path(), "secret.mp4", "2");
    // The "internal" service: anything reaching it is a breach.
    let internal = common::serve(media.path().to_path_buf()).await;
    let allowed = redirector(internal.url("secret.mp4")).await;
    let opts = options(&ytdlp, cache.path(), &allowed.to_string());
    let url = format!("http://{allowed}/video.mp4");
    let token = CancellationToken::new();
    let run = process_video(&opts, &url, true, true, &no_progress, &token);
    let err = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("no hang")
        .expect_err("the redirect must be refused");
    assert!(matches!(err, Error::EgressRefused(_)), "{err}");
    assert!(!err.retryable());
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert_eq!(internal.hits(), 0, "the internal server saw a request");
}

#[tokio::test]
async fn an_over_size_download_is_stopped() {
    let Some(ytdlp) = tools() else { return };
    let media = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    small_video(media.path(), "big.mp4", "6");
    let size = std::fs::metadata(media.path().join("big.mp4"))
        .unwrap()
        .len();
    let server = common::serve(media.path().to_path_buf()).await;
    let mut opts = options(&ytdlp, cache.path(), "127.0.0.1");
    opts.max_filesize = size / 4;
    let (url, token) = (server.url("big.mp4"), CancellationToken::new());
    let run = process_video(&opts, &url, true, true, &no_progress, &token);
    let err = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("no hang")
        .expect_err("over the cap");
    assert!(matches!(err, Error::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("youtube.max_filesize"), "{err}");
    assert!(!err.retryable());
    // Nothing of the download is left in the cache.
    let left: Vec<_> = walkdir::WalkDir::new(cache.path())
        .into_iter()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("video."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
