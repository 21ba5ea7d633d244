//! The seed's own check (`video_id == "dQw4w9WgXcQ"`, non-empty transcript) and playlist handling,
//! offline: YouTube is unreachable here, so yt-dlp is replaced by a script replaying recorded
//! output (hand-written info JSON in yt-dlp's format, the corpus' real flat-playlist capture).

mod common;

use std::path::{Path, PathBuf};

use hlbot_youtube::{
    YoutubeOptions, list_playlist, no_progress, process_playlist, process_video, video_id,
};
use tokio_util::sync::CancellationToken;

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed")
}

#[tokio::test]
async fn seed_rick_roll_video_id_and_transcript() {
    let responses = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::copy(
        seed_dir().join("dQw4w9WgXcQ.info.json"),
        responses.path().join("dQw4w9WgXcQ.json"),
    )
    .unwrap();
    std::fs::copy(
        seed_dir().join("dQw4w9WgXcQ.en.json3"),
        responses.path().join("dQw4w9WgXcQ.en.json3"),
    )
    .unwrap();
    let opts = YoutubeOptions {
        ytdlp: hlbot_testkit::ytdlp::fake(responses.path()),
        cache_dir: cache.path().to_path_buf(),
        ..Default::default()
    };
    let url = "https://www.youtube.com/watch?v=dQw4w9WgXcQ";
    assert_eq!(video_id(url).as_deref(), Some("dQw4w9WgXcQ"));
    let r = process_video(
        &opts,
        url,
        false,
        true,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["video_id"], "dQw4w9WgXcQ");
    assert!(!json["transcript"].as_str().unwrap().is_empty());
    assert_eq!(
        r.transcript,
        "[♪♪♪] this caption fixture stands in for the manual English track"
    );
    assert_eq!(r.transcript_source, "captions:manual:en");
    assert_eq!(r.transcript_segments[1].start, 18.64);
    assert_eq!(r.duration, Some(213.0));
    assert_eq!(r.upload_date.as_deref(), Some("2009-10-25"));
    assert_eq!(r.channel.as_deref(), Some("Rick Astley"));
    for key in [
        "url",
        "title",
        "description",
        "chapters",
        "transcript_segments",
        "frames",
        "warnings",
    ] {
        assert!(json.get(key).is_some(), "{key} missing");
    }
    // YouTube URLs never fall back to the generic extractor.
    let calls = std::fs::read_to_string(responses.path().join("calls.log")).unwrap();
    assert!(
        calls
            .lines()
            .next()
            .unwrap()
            .contains("--use-extractors default,-generic"),
        "{calls}"
    );

    // A repeat request is served from the cache: yt-dlp is not called again.
    let before = calls.lines().count();
    let again = process_video(
        &opts,
        "https://youtu.be/dQw4w9WgXcQ?si=x",
        false,
        true,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(again.transcript, r.transcript);
    let after = std::fs::read_to_string(responses.path().join("calls.log"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(before, after);
}

#[tokio::test]
async fn caption_429_without_asr_is_a_retryable_error() {
    let responses = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    // Info lists captions, but the caption file is missing → the fake answers 429.
    std::fs::copy(
        seed_dir().join("dQw4w9WgXcQ.info.json"),
        responses.path().join("dQw4w9WgXcQ.json"),
    )
    .unwrap();
    let opts = YoutubeOptions {
        ytdlp: hlbot_testkit::ytdlp::fake(responses.path()),
        cache_dir: cache.path().to_path_buf(),
        ..Default::default()
    };
    let err = process_video(
        &opts,
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        false,
        true,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "rate_limited", "{err}");
    assert!(err.retryable());
}

#[tokio::test]
async fn corpus_flat_playlist_is_listed_and_a_private_video_is_recorded() {
    let Some(dir) = common::corpus("ytdlp") else {
        return;
    };
    let responses = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.join("media-archivist__yt_dlp_flat_playlist.json"),
        responses.path().join("playlist.json"),
    )
    .unwrap();
    let video = |id: &str, title: &str| {
        format!(
            r#"{{"id":"{id}","_type":"video","title":"{title}","duration":10,"webpage_url":"https://www.youtube.com/watch?v={id}","extractor":"youtube","subtitles":{{}},"automatic_captions":{{}}}}"#
        )
    };
    std::fs::write(
        responses.path().join("ftaXMKV3ffE.json"),
        video("ftaXMKV3ffE", "one"),
    )
    .unwrap();
    std::fs::write(responses.path().join("lO38tZoA0l8.stderr"), "ERROR: [youtube] lO38tZoA0l8: Private video. Sign in if you've been granted access to this video\n").unwrap();
    std::fs::write(
        responses.path().join("aSZt3WC1vB4.json"),
        video("aSZt3WC1vB4", "three"),
    )
    .unwrap();
    let opts = YoutubeOptions {
        ytdlp: hlbot_testkit::ytdlp::fake(responses.path()),
        cache_dir: cache.path().to_path_buf(),
        ..Default::default()
    };
    let url = "https://www.youtube.com/playlist?list=PLrEnWoR732-BHrPp_Pm8_VleD68f9s14-";

    let entries = list_playlist(&opts, url, None, &CancellationToken::new())
        .await
        .unwrap();
    let ids: Vec<_> = entries
        .iter()
        .map(|e| e.video_id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["ftaXMKV3ffE", "lO38tZoA0l8", "aSZt3WC1vB4"]);
    assert_eq!(entries[1].duration, Some(1262.0));
    assert!(
        entries[1]
            .title
            .as_deref()
            .unwrap()
            .starts_with("Rose Bowl: Alabama Crimson Tide vs. Michigan Wolverines")
    );
    assert_eq!(entries[2].live_status.as_deref(), Some("was_live"));
    assert!(entries[2].title.as_deref().unwrap().contains('’'));
    assert_eq!(
        entries[0].url,
        "https://www.youtube.com/watch?v=ftaXMKV3ffE"
    );

    let r = process_playlist(
        &opts,
        url,
        false,
        true,
        Some(3),
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!((r.succeeded, r.failed), (2, 1));
    let failed = r.items[1].error.as_ref().unwrap();
    assert_eq!(failed.kind, "private");
    assert!(!failed.retryable);
    assert_eq!(r.items[2].result.as_ref().unwrap().video_id, "aSZt3WC1vB4");
    // No captions and no ASR: the video still succeeds, with source "none".
    assert_eq!(
        r.items[0].result.as_ref().unwrap().transcript_source,
        "none"
    );
}

#[test]
fn nested_channel_tabs_and_embed_urls_are_flattened() {
    // Shape of `yt-dlp --flat-playlist -J https://www.youtube.com/@chan` (tabs inline) with an entry
    // that only carries an embed URL.
    let json = serde_json::json!({
        "_type": "playlist", "id": "UCx", "entries": [
            {"_type": "playlist", "title": "chan - Videos", "entries": [
                {"_type": "url", "ie_key": "Youtube", "id": "aaaaaaaaaaa", "url": "https://www.youtube.com/watch?v=aaaaaaaaaaa", "title": "A"},
                {"_type": "url", "url": "https://www.youtube.com/embed/bbbbbbbbbbb?rel=0"}
            ]},
            {"_type": "playlist", "title": "chan - Shorts", "entries": [
                {"_type": "url", "ie_key": "Youtube", "id": "ccccccccccc", "url": "https://www.youtube.com/shorts/ccccccccccc"}
            ]}
        ]
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("playlist.json"), json.to_string()).unwrap();
    let opts = YoutubeOptions {
        ytdlp: hlbot_testkit::ytdlp::fake(dir.path()),
        cache_dir: dir.path().join("cache"),
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let entries = rt
        .block_on(list_playlist(
            &opts,
            "https://www.youtube.com/@chan",
            None,
            &CancellationToken::new(),
        ))
        .unwrap();
    let ids: Vec<_> = entries
        .iter()
        .map(|e| e.video_id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"]);
    assert_eq!(
        entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let two = rt
        .block_on(list_playlist(
            &opts,
            "https://www.youtube.com/@chan",
            Some(2),
            &CancellationToken::new(),
        ))
        .unwrap();
    assert_eq!(two.len(), 2);
}

#[tokio::test]
async fn concurrent_requests_for_one_video_fetch_once() {
    let responses = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::copy(
        seed_dir().join("dQw4w9WgXcQ.info.json"),
        responses.path().join("dQw4w9WgXcQ.json"),
    )
    .unwrap();
    std::fs::copy(
        seed_dir().join("dQw4w9WgXcQ.en.json3"),
        responses.path().join("dQw4w9WgXcQ.en.json3"),
    )
    .unwrap();
    let opts = YoutubeOptions {
        ytdlp: hlbot_testkit::ytdlp::fake(responses.path()),
        cache_dir: cache.path().to_path_buf(),
        ..Default::default()
    };
    let token = CancellationToken::new();
    let (a, b) = tokio::join!(
        process_video(
            &opts,
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            false,
            true,
            &no_progress,
            &token
        ),
        process_video(
            &opts,
            "https://youtu.be/dQw4w9WgXcQ",
            false,
            true,
            &no_progress,
            &token
        ),
    );
    assert_eq!(a.unwrap().transcript, b.unwrap().transcript);
    let calls = std::fs::read_to_string(responses.path().join("calls.log")).unwrap();
    assert_eq!(
        calls.lines().filter(|l| l.contains(" -J ")).count(),
        1,
        "{calls}"
    );
    // While a call holds the folder, cleanup leaves it alone.
    let _held = std::fs::File::create(cache.path().join("dQw4w9WgXcQ/.lock")).unwrap();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(cache.path().join("dQw4w9WgXcQ/.lock"))
        .unwrap();
    lock.lock().unwrap();
    let report = hlbot_youtube::cleanup_cache(cache.path(), 0.0, Some(0)).unwrap();
    assert!(report.removed.is_empty());
    drop(lock);
    let report = hlbot_youtube::cleanup_cache(cache.path(), 0.0, Some(0)).unwrap();
    assert_eq!(report.removed.len(), 1);
}

/// The duration cap is checked from the metadata, before captions or media are fetched.
#[tokio::test]
async fn a_video_over_the_duration_cap_is_refused_before_any_download() {
    let responses = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::copy(
        seed_dir().join("dQw4w9WgXcQ.info.json"),
        responses.path().join("dQw4w9WgXcQ.json"),
    )
    .unwrap();
    let opts = YoutubeOptions {
        ytdlp: hlbot_testkit::ytdlp::fake(responses.path()),
        cache_dir: cache.path().to_path_buf(),
        max_duration: 100.0,
        ..Default::default()
    };
    let url = "https://www.youtube.com/watch?v=dQw4w9WgXcQ";
    let err = process_video(
        &opts,
        url,
        true,
        true,
        &no_progress,
        &CancellationToken::new(),
    )
    .await
    .expect_err("213 s > 100 s");
    assert!(matches!(err, hlbot_youtube::Error::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("youtube.max_duration"), "{err}");
    assert!(!err.retryable());
    let calls = std::fs::read_to_string(responses.path().join("calls.log")).unwrap();
    assert_eq!(calls.lines().count(), 1, "only the metadata call: {calls}");
}
