//! yt-dlp invocations: shared flags (cookies, proxy, sleeps, JS runtime, no config files), info
//! JSON, caption download and media download with progress. Failures go through `classify`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use url::Url;

use crate::classify::classify_ytdlp;
use crate::error::{Error, Result};
use crate::info::Track;
use crate::options::YoutubeOptions;
use crate::process::{Cmd, run};
use crate::progress::{Progress, ProgressFn, Stage};

/// What to download for a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    /// Smallest audio-only format (for ASR).
    Audio,
    /// Smallest video format up to `max_frame_height` (for frames), audio not needed.
    Video,
}

/// A yt-dlp command with the flags every call shares.
pub(crate) fn base_cmd(
    opts: &YoutubeOptions,
    url: Option<&Url>,
    timeout: std::time::Duration,
) -> Cmd {
    let mut c = Cmd::new("yt-dlp", &opts.ytdlp, timeout);
    c.args([
        "--ignore-config",
        "--no-cache-dir",
        "--socket-timeout",
        "30",
    ]);
    if let Some(cookies) = &opts.cookies_file {
        // yt-dlp rewrites the cookies file it is given: each run gets its own private copy
        // (0600, removed with the command), so concurrent runs never race on the original.
        match private_copy(cookies, &opts.cache_dir) {
            Ok(copy) => {
                c.arg("--cookies").arg(copy.to_path_buf());
                c.private.push(std::sync::Arc::new(copy));
            }
            Err(e) => tracing::warn!("cookies file not usable, running without it: {e}"),
        }
    }
    // The proxy may hold a password: it goes into the child's environment, never on its
    // command line (which every local user can read in `ps`). NO_PROXY is dropped so no host
    // bypasses it (the egress guard relies on that too).
    c.env_remove = ["NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .map(Into::into)
        .collect();
    if let Some(proxy) = &opts.proxy {
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            c.env.push((k.into(), proxy.expose().into()));
        }
        c.secrets.push(proxy.expose().to_string());
    }
    if let Some(s) = opts.sleep_requests {
        let s = format!("{s}");
        c.args(["--sleep-requests", &s, "--sleep-subtitles", &s]);
    }
    if let Some(js) = &opts.js_runtime {
        c.args(["--js-runtimes", js]);
    }
    // On YouTube's own hosts never fall back to the generic extractor, which would follow
    // whatever the page links to.
    if url.is_some_and(crate::link::is_youtube_host) {
        c.args(["--use-extractors", "default,-generic"]);
    }
    c
}

/// A 0600 copy of `src` under `cache_dir/tmp`, removed when the returned path is dropped.
fn private_copy(src: &Path, cache_dir: &Path) -> std::io::Result<tempfile::TempPath> {
    let dir = cache_dir.join("tmp");
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix("cookies-")
        .suffix(".txt")
        .tempfile_in(&dir)?;
    let mut f = std::fs::File::open(src)?;
    std::io::copy(&mut f, tmp.as_file_mut())?;
    Ok(tmp.into_temp_path())
}

/// `yt-dlp -J` for one URL; returns the raw JSON and yt-dlp's warnings.
pub(crate) async fn dump_json(
    opts: &YoutubeOptions,
    url: &Url,
    extra: &[&str],
    cancel: &CancellationToken,
) -> Result<(serde_json::Value, Vec<String>)> {
    let mut c = base_cmd(opts, Some(url), opts.timeouts.metadata);
    c.args(["-J", "--no-progress"])
        .args(extra.iter().copied())
        .arg("--")
        .arg(url.as_str());
    let out = run(&c, cancel, None).await?;
    if !out.status.success() {
        return Err(classify_ytdlp(&out.stderr));
    }
    let json = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Output(format!("yt-dlp -J printed invalid JSON: {e}")))?;
    Ok((json, crate::classify::ytdlp_warnings(&out.stderr)))
}

/// Downloads one caption track next to `info_json` as `subs.<lang>.<ext>` and returns its path.
pub(crate) async fn download_captions(
    opts: &YoutubeOptions,
    info_json: &Path,
    track: &Track,
    dir: &Path,
    cancel: &CancellationToken,
) -> Result<(PathBuf, Vec<String>)> {
    let mut c = base_cmd(opts, None, opts.timeouts.metadata);
    c.arg("--load-info-json").arg(info_json);
    c.args(["--skip-download", "--no-progress"]);
    c.arg(if track.auto {
        "--write-auto-subs"
    } else {
        "--write-subs"
    });
    c.args(["--sub-langs", &track.lang, "--sub-format", track.ext]);
    c.arg("-o").arg(dir.join("subs.%(ext)s"));
    let out = run(&c, cancel, None).await?;
    let warnings = crate::classify::ytdlp_warnings(&out.stderr);
    let want = dir.join(format!("subs.{}.{}", track.lang, track.ext));
    if want.is_file() {
        return Ok((want, warnings));
    }
    // yt-dlp reports a failed subtitle download as a warning and exits 0 in some versions.
    Err(match classify_ytdlp(&out.stderr) {
        Error::Tool { .. } => Error::Output(format!(
            "yt-dlp did not write the {} captions ({})",
            track.source(),
            crate::process::last_lines(&out.stderr, 3)
        )),
        e => e,
    })
}

/// Downloads the audio or the small video into `dir` as `audio.<ext>` / `video.<ext>`.
/// `source` is the info JSON when it is fresh (no second page fetch) or the URL.
pub(crate) async fn download_media(
    opts: &YoutubeOptions,
    source: MediaSource<'_>,
    media: Media,
    dir: &Path,
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> Result<PathBuf> {
    let (stem, stage) = match media {
        Media::Audio => ("audio", Stage::DownloadAudio),
        Media::Video => ("video", Stage::DownloadVideo),
    };
    let url = match source {
        MediaSource::Url(u) => Some(u),
        MediaSource::InfoJson(_) => None,
    };
    let mut c = base_cmd(opts, url, opts.timeouts.download);
    match source {
        MediaSource::InfoJson(p) => {
            c.arg("--load-info-json").arg(p);
        }
        MediaSource::Url(_) => {
            c.arg("--no-playlist");
        }
    }
    let h = opts.max_frame_height;
    match media {
        Media::Audio => c.args(["-f", "ba/ba*/w", "-S", "+size,+br"]),
        Media::Video => c.args([
            "-f".to_string(),
            format!("bv*[height<=?{h}]/b[height<=?{h}]/wv*/w"),
            "-S".to_string(),
            format!("res:{h},+size,+br"),
        ]),
    };
    if let Some(d) = &opts.downloader {
        c.args(["--downloader", d]);
    }
    if opts.max_filesize > 0 {
        // `--no-quiet`: `--print` silences the "larger than max-filesize" notice otherwise,
        // and yt-dlp then exits 0 having written nothing.
        c.arg("--max-filesize").arg(opts.max_filesize.to_string());
        c.arg("--no-quiet");
    }
    c.args(["--no-part", "--newline", "--progress", "--no-simulate"]);
    c.args([
        "--progress-template",
        "download:HLPROG %(progress.downloaded_bytes)s %(progress.total_bytes)s %(progress.total_bytes_estimate)s",
        "--print",
        "after_move:HLPATH %(filepath)s",
    ]);
    c.arg("-o").arg(dir.join(format!("{stem}.%(ext)s")));
    if let MediaSource::Url(u) = source {
        c.arg("--").arg(u.as_str());
    }
    let last_report = AtomicU64::new(0);
    // `--max-filesize` only helps when the server states a length: the running count is
    // watched too, and the download stopped (group killed) once it passes the cap.
    let over = CancellationToken::new();
    let run_cancel = cancel.child_token();
    let on_line = |line: &str| {
        if line.contains("larger than max-filesize") {
            over.cancel();
        }
        if let Some(rest) = line.strip_prefix("HLPROG ") {
            let nums: Vec<Option<u64>> = rest
                .split_whitespace()
                .map(|n| n.parse::<f64>().ok().map(|f| f as u64))
                .collect();
            let done = nums.first().copied().flatten().unwrap_or(0);
            if opts.max_filesize > 0 && done > opts.max_filesize {
                over.cancel();
                run_cancel.cancel();
            }
            let total = nums
                .get(1)
                .copied()
                .flatten()
                .or(nums.get(2).copied().flatten());
            // Report at most every 256 KiB to keep callbacks cheap.
            let prev = last_report.load(Ordering::Relaxed);
            if done < prev || done - prev >= 256 * 1024 || Some(done) == total {
                last_report.store(done, Ordering::Relaxed);
                progress(&Progress::new(stage, format!("downloading {stem}")).counts(done, total));
            }
        }
    };
    let too_large = || {
        Error::TooLarge(format!(
            "the {stem} download is larger than {} bytes (youtube.max_filesize)",
            opts.max_filesize
        ))
    };
    let out = match run(&c, &run_cancel, Some(&on_line)).await {
        Err(Error::Cancelled) if over.is_cancelled() => return Err(too_large()),
        r => r?,
    };
    if over.is_cancelled() || out.stderr.contains("max-filesize") {
        return Err(too_large());
    }
    if !out.status.success() {
        return Err(classify_ytdlp(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("HLPATH "))
        .map(PathBuf::from);
    match printed
        .filter(|p| p.is_file())
        .or_else(|| find_stem(dir, stem))
    {
        Some(p) => Ok(p),
        None => Err(Error::Output(format!(
            "yt-dlp reported success but wrote no {stem} file"
        ))),
    }
}

/// Where yt-dlp takes the video from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MediaSource<'a> {
    InfoJson(&'a Path),
    Url(&'a Url),
}

/// `dir/<stem>.<ext>` written earlier (ignores partial downloads).
pub(crate) fn find_stem(dir: &Path, stem: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.flatten().map(|e| e.path()).find(|p| {
        p.is_file()
            && p.file_stem().and_then(|s| s.to_str()) == Some(stem)
            && !matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("part" | "ytdl" | "tmp" | "json")
            )
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::options::ApiKey;

    #[test]
    fn proxy_travels_in_the_environment_and_cookies_are_a_private_copy() {
        let dir = tempfile::tempdir().unwrap();
        let cookies = dir.path().join("cookies.txt");
        std::fs::write(&cookies, "# Netscape HTTP Cookie File\n").unwrap();
        let opts = YoutubeOptions {
            proxy: Some(ApiKey::new("http://user:s3cret-pw@proxy.example:3128")),
            cookies_file: Some(cookies.clone()),
            cache_dir: dir.path().join("cache"),
            ..Default::default()
        };
        let c = base_cmd(&opts, None, std::time::Duration::from_secs(1));
        let args: Vec<String> = c
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!args.iter().any(|a| a.contains("s3cret")), "{args:?}");
        assert!(!args.iter().any(|a| a == "--proxy"), "{args:?}");
        assert!(
            c.env
                .iter()
                .any(|(k, v)| k == "HTTPS_PROXY" && v.to_string_lossy().contains("s3cret"))
        );
        assert!(c.env_remove.iter().any(|k| k == "NO_PROXY"));
        let i = args
            .iter()
            .position(|a| a == "--cookies")
            .expect("cookies passed");
        let copy = std::path::PathBuf::from(&args[i + 1]);
        assert_ne!(copy, cookies, "a private copy, not the shared file");
        assert_eq!(
            std::fs::read(&copy).unwrap(),
            std::fs::read(&cookies).unwrap()
        );
        assert_eq!(
            std::fs::metadata(&copy).unwrap().permissions().mode() & 0o077,
            0
        );
        let c2 = base_cmd(&opts, None, std::time::Duration::from_secs(1));
        assert_ne!(c2.private[0].to_path_buf(), copy, "one copy per run");
        drop(c);
        assert!(!copy.exists(), "removed with its command");
    }
}
