//! `cleanup_cache`: age limit, size limit (oldest first), report of what was freed.

use std::time::{Duration, SystemTime};

use hlbot_youtube::cleanup_cache;

fn entry(root: &std::path::Path, key: &str, bytes: usize, age_days: f64) {
    let dir = root.join(key);
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    std::fs::write(dir.join("info.json"), vec![b'x'; bytes / 2]).unwrap();
    std::fs::write(
        dir.join("frames/frame_0001.jpg"),
        vec![b'y'; bytes - bytes / 2],
    )
    .unwrap();
    let when = SystemTime::now() - Duration::from_secs_f64(age_days * 86_400.0);
    for p in [
        dir.join("info.json"),
        dir.join("frames/frame_0001.jpg"),
        dir.join("frames"),
        dir.clone(),
    ] {
        std::fs::File::open(&p).unwrap().set_modified(when).unwrap();
    }
}

#[test]
fn old_entries_go_first_then_oldest_until_under_the_size_limit() {
    let root = tempfile::tempdir().unwrap();
    entry(root.path(), "old_video_a", 1000, 10.0);
    entry(root.path(), "mid_video_b", 2000, 3.0);
    entry(root.path(), "new_video_c", 3000, 1.0);
    entry(root.path(), "now_video_d", 4000, 0.0);
    std::fs::write(root.path().join("stray-file"), b"not a video folder").unwrap();

    let r = cleanup_cache(root.path(), 7.0, None).unwrap();
    assert_eq!(
        r.removed.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["old_video_a"]
    );
    assert_eq!(r.freed_bytes, 1000);
    assert_eq!((r.kept_entries, r.kept_bytes), (3, 9000));
    assert!(!root.path().join("old_video_a").exists());

    // 9000 bytes left, limit 7500: the oldest (b, 2000) goes; c and d stay.
    let r = cleanup_cache(root.path(), 7.0, Some(7500)).unwrap();
    assert_eq!(
        r.removed.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["mid_video_b"]
    );
    assert_eq!(r.freed_bytes, 2000);
    assert_eq!(r.kept_bytes, 7000);
    assert!(
        root.path()
            .join("now_video_d/frames/frame_0001.jpg")
            .exists()
    );
    assert!(root.path().join("stray-file").exists());

    // Nothing to do, and a missing cache dir is not an error.
    assert_eq!(
        cleanup_cache(root.path(), 7.0, Some(7500))
            .unwrap()
            .freed_bytes,
        0
    );
    assert_eq!(
        cleanup_cache(&root.path().join("missing"), 7.0, None)
            .unwrap()
            .removed
            .len(),
        0
    );
}
