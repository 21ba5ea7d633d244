//! Error classification on recorded yt-dlp stderr (fixtures named `<kind>__<case>.txt`).

use hlbot_youtube::classify_ytdlp;

#[test]
fn recorded_ytdlp_messages_are_classified() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ytdlp_stderr");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let (want, _) = name.split_once("__").unwrap();
        let stderr = std::fs::read_to_string(&path).unwrap();
        let err = classify_ytdlp(&stderr);
        assert_eq!(err.kind(), want, "{name}: {err}");
        let retry = matches!(
            want,
            "bot_check" | "rate_limited" | "not_yet_live" | "network" | "tool_failed"
        );
        assert_eq!(err.retryable(), retry, "{name}");
        assert!(
            !err.to_string().contains("WARNING"),
            "{name}: warnings leak into {err}"
        );
        n += 1;
    }
    assert!(n >= 20, "only {n} fixtures");
}
