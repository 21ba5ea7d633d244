//! `hlbot doctor` against real faults, one per check: Redis down (a closed port), a Redis user
//! that may not run Lua, Redis without
//! persistence and with an evicting maxmemory policy (private `redis-server`s started that way),
//! a Sentinel that knows the master (no replica) or not, a tesseract language that is not
//! installed, an input root that does not exist, a yt-dlp that is not there, a database that
//! refuses, a wrong API key (`--online` against a local server answering 401). Each asserts the
//! line, the exit code, and that no secret is printed.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use hlbot_testkit::http::{Mock, Reply};
use hlbot_testkit::{PrivateRedis, TestPostgres, TestRedis};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

/// `hlbot doctor` with nothing from the user's environment: no config file, no keys, the test's
/// own cache and data folders, the tools `scripts/env.sh` points at.
fn doctor(dir: &Path, broker: &str) -> Command {
    let mut c = hlbot_testkit::worker::command(BIN);
    c.current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("HLBOT_CACHE_DIR", dir.join("cache"))
        .env("HLBOT_DATA_DIR", dir.join("data"))
        .env_remove("REDIS_URL")
        .env_remove("HLBOT_MODEL")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("HLBOT_INPUT_ROOTS")
        .env_remove("HLBOT_RESULT_BACKEND")
        .env_remove("HLBOT_SENTINEL_MASTER")
        .env_remove("HLBOT_CONFIG")
        .args(["--broker", broker, "doctor"]);
    c
}

fn run(c: &mut Command) -> (i32, String) {
    let o: Output = c.output().expect("hlbot doctor");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

/// The line of `check` at `level` (`ok`, `warn`, `FAIL`), or a panic showing everything.
fn line<'a>(out: &'a str, level: &str, check: &str) -> &'a str {
    let prefix = format!("{level:<4}  {check}: ");
    out.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_healthy_setup_passes_with_warnings_only() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRedis::new();
    let (code, out) = run(&mut doctor(dir.path(), &r.url));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    for check in [
        "redis",
        "redis version",
        "redis maxmemory",
        "pdfium",
        "tesseract",
    ] {
        line(&out, "ok", check);
    }
    assert!(line(&out, "ok", "pdfium").contains("loads and reads a PDF"));
    // No key: a warning that names the fallback, not a failure.
    assert!(line(&out, "warn", "llm key").contains("offline rules extractor"));
    assert!(line(&out, "ok", "cache dir").contains("GiB free"));
    // Doctor reports the SQLite library missing; it does not create it.
    assert!(
        line(&out, "ok", "database").contains("not created yet"),
        "{out}"
    );
    assert!(!dir.path().join("data/library.sqlite3").exists());
}

#[test]
fn redis_down_fails_with_the_url_masked() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://:doctor-pw-123@127.0.0.1:{}/0", free_port());
    let (code, out) = run(&mut doctor(dir.path(), &url));
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "FAIL", "redis");
    assert!(
        l.contains("cannot connect to redis://:****@127.0.0.1:"),
        "{l}"
    );
    assert!(l.contains("start Redis"), "{l}");
    assert!(!out.contains("doctor-pw-123"), "password printed:\n{out}");
}

#[test]
fn redis_without_persistence_is_a_warning() {
    let Some(r) = PrivateRedis::start_with(&["--appendonly", "no", "--save", ""]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(&mut doctor(dir.path(), &r.url()));
    let l = line(&out, "warn", "redis persistence");
    assert!(l.contains("restarts lose queued work"), "{l}");
    assert!(l.contains("appendonly yes"), "{l}");
    assert_eq!(code, 0, "a warning alone passes:\n{out}");

    let Some(aof) = PrivateRedis::start() else {
        return;
    };
    let (_, out) = run(&mut doctor(dir.path(), &aof.url()));
    assert!(line(&out, "ok", "redis persistence").contains("AOF on"));
}

#[test]
fn an_evicting_maxmemory_policy_fails() {
    let Some(r) =
        PrivateRedis::start_with(&["--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"])
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(&mut doctor(dir.path(), &r.url()));
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "FAIL", "redis maxmemory");
    assert!(l.contains("allkeys-lru") && l.contains("noeviction"), "{l}");
}

#[test]
fn a_redis_user_without_scripting_fails() {
    let Some(r) = PrivateRedis::start_with(&[
        "--user",
        "hlbot",
        "on",
        ">doctor-acl-pw",
        "~*",
        "&*",
        "+@all",
        "-@scripting",
    ]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://hlbot:doctor-acl-pw@127.0.0.1:{}/0", r.port);
    let (code, out) = run(&mut doctor(dir.path(), &url));
    assert_eq!(code, 1, "{out}");
    line(&out, "ok", "redis");
    let l = line(&out, "FAIL", "redis scripting");
    assert!(
        l.contains("EVAL refused") && l.contains("+@scripting"),
        "{l}"
    );
    assert!(!out.contains("doctor-acl-pw"), "{out}");
    // The default user may script.
    let (_, out) = run(&mut doctor(dir.path(), &r.url()));
    line(&out, "ok", "redis scripting");
}

#[test]
fn a_missing_tesseract_language_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hlbot.toml");
    std::fs::write(&cfg, "[pdf]\nlanguages = \"eng+zzz\"\n").unwrap();
    let r = TestRedis::new();
    let (code, out) = run(doctor(dir.path(), &r.url).env("HLBOT_CONFIG", &cfg));
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "FAIL", "tesseract");
    assert!(l.contains("zzz missing"), "{l}");
    assert!(l.contains("tesseract-ocr-zzz"), "{l}");
}

#[test]
fn a_missing_tool_fails() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRedis::new();
    let (code, out) = run(doctor(dir.path(), &r.url)
        .env("HLBOT_YTDLP", "/nonexistent/yt-dlp")
        .env("HLBOT_PDFIUM_LIB", "/nonexistent/libpdfium.so"));
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "FAIL", "yt-dlp");
    assert!(l.contains("/nonexistent/yt-dlp does not run"), "{l}");
    assert!(l.contains("HLBOT_YTDLP"), "{l}");
    assert!(line(&out, "FAIL", "pdfium").contains("HLBOT_PDFIUM_LIB"));
}

#[test]
fn queues_limit_the_tools_checked() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRedis::new();
    let mut c = doctor(dir.path(), &r.url);
    c.args(["-Q", "default,llm"])
        .env("HLBOT_YTDLP", "/nonexistent/yt-dlp")
        .env("HLBOT_PDFIUM_LIB", "/nonexistent/libpdfium.so");
    let (code, out) = run(&mut c);
    assert_eq!(code, 0, "no queue of these needs yt-dlp or pdfium:\n{out}");
    for check in ["yt-dlp", "pdfium", "tesseract", "ffmpeg"] {
        assert!(
            !out.contains(&format!("  {check}: ")),
            "{check} checked:\n{out}"
        );
    }
    let (code, out) = run(doctor(dir.path(), &r.url)
        .args(["-Q", "youtube"])
        .env("HLBOT_YTDLP", "/nonexistent/yt-dlp"));
    assert_eq!(code, 1, "{out}");
    line(&out, "FAIL", "yt-dlp");
    line(&out, "ok", "ffmpeg");
    assert!(!out.contains("  pdfium: "), "{out}");
}

#[test]
fn a_missing_input_root_fails() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let gone = dir.path().join("gone");
    let r = TestRedis::new();
    let roots = format!("{}:{}", inbox.display(), gone.display());
    let (code, out) = run(doctor(dir.path(), &r.url).env("HLBOT_INPUT_ROOTS", &roots));
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "ok", "input root").contains(&inbox.display().to_string()));
    let l = line(&out, "FAIL", "input root");
    assert!(
        l.contains(&gone.display().to_string()) && l.contains("input_roots"),
        "{l}"
    );
}

#[test]
fn an_unreachable_database_fails_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRedis::new();
    let url = format!("postgres://hlbot:db-pw-456@127.0.0.1:{}/hlbot", free_port());
    let (code, out) = run(doctor(dir.path(), &r.url).env("DATABASE_URL", &url));
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "FAIL", "database");
    assert!(l.contains("postgres://hlbot:****@127.0.0.1:"), "{l}");
    assert!(!out.contains("db-pw-456"), "password printed:\n{out}");
}

#[test]
fn an_sqlite_library_is_checked_for_pending_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRedis::new();
    // An empty file is an SQLite database with no tables: every migration is pending.
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/library.sqlite3"), b"").unwrap();
    let (code, out) = run(&mut doctor(dir.path(), &r.url));
    assert_eq!(code, 0, "pending migrations are a warning:\n{out}");
    let l = line(&out, "warn", "database");
    assert!(
        l.contains("(sqlite)") && l.contains("migration(s) pending"),
        "{l}"
    );
    assert!(l.contains("hlbot db migrate"), "{l}");

    let migrate = hlbot_testkit::worker::command(BIN)
        .env("HLBOT_DATA_DIR", dir.path().join("data"))
        .args(["db", "migrate"])
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");
    let (_, out) = run(&mut doctor(dir.path(), &r.url));
    assert!(line(&out, "ok", "database").contains("(sqlite) reachable, migrated to"));
}

#[test]
fn an_unreachable_result_backend_fails() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRedis::new();
    let backend = format!("redis://127.0.0.1:{}/1", free_port());
    let (code, out) = run(doctor(dir.path(), &r.url).env("HLBOT_RESULT_BACKEND", &backend));
    assert_eq!(code, 1, "{out}");
    line(&out, "ok", "redis");
    assert!(line(&out, "FAIL", "result backend").contains(&backend));
}

#[tokio::test]
async fn a_migrated_database_passes() {
    let Some(pg) = TestPostgres::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let r = TestRedis::new();
    let migrate = hlbot_testkit::worker::command(BIN)
        .args(["--database-url", &pg.url, "db", "migrate"])
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");
    let (code, out) = run(doctor(dir.path(), &r.url).env("DATABASE_URL", &pg.url));
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "ok", "database").contains("reachable, migrated to"));
}

#[tokio::test]
async fn a_wrong_key_fails_online_and_is_never_printed() {
    let mock = Mock::start().await;
    mock.respond_with(|_| {
        Reply::json(
            401,
            json!({"type": "error", "error": {"type": "authentication_error",
                   "message": "invalid x-api-key"}}),
        )
    });
    let key = "sk-ant-api03-doctor-wrong-key-0000";
    let dir = tempfile::tempdir().unwrap();
    let r = TestRedis::new();
    let mut c = doctor(dir.path(), &r.url);
    c.arg("--online")
        .env("ANTHROPIC_API_KEY", key)
        .env("ANTHROPIC_BASE_URL", mock.url());
    let (code, out) = tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "FAIL", "llm online");
    assert!(l.contains("rejected the key (401)"), "{l}");
    assert!(line(&out, "ok", "llm key").contains("ANTHROPIC_API_KEY is set"));
    assert!(!out.contains(key), "key printed:\n{out}");
    let seen = mock.seen();
    assert_eq!(seen.len(), 1, "one cheap call");
    assert_eq!(seen[0].path, "/v1/models");
    assert_eq!(
        seen[0].headers.get("x-api-key").map(String::as_str),
        Some(key)
    );
}

#[tokio::test]
async fn a_good_key_passes_online_on_an_openai_compatible_server() {
    let mock = Mock::start().await;
    mock.respond_with(|_| Reply::json(200, json!({"data": [{"id": "m1"}, {"id": "m2"}]})));
    let dir = tempfile::tempdir().unwrap();
    let r = TestRedis::new();
    let mut c = doctor(dir.path(), &r.url);
    c.args(["--online", "--json"])
        .env("HLBOT_MODEL", "openai:gpt-4o")
        .env("OPENAI_API_KEY", "sk-openai-doctor-good-key-1111")
        .env("OPENAI_BASE_URL", format!("{}/v1", mock.url()));
    let (code, out) = tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let online = lines
        .iter()
        .find(|v| v["check"] == "llm online")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(online["level"], "ok", "{online}");
    assert!(online["finding"].as_str().unwrap().contains("2 models"));
    let seen = mock.seen();
    assert_eq!(seen[0].path, "/v1/models");
    assert_eq!(
        seen[0].headers.get("authorization").map(String::as_str),
        Some("Bearer sk-openai-doctor-good-key-1111")
    );
    assert!(!out.contains("sk-openai-doctor-good-key-1111"));
}

#[test]
fn sentinel_names_the_master_and_counts_its_replicas() {
    let Some(master) = PrivateRedis::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor doctormaster 127.0.0.1 {} 1\n",
            dir.path().display(),
            master.port
        ),
    )
    .unwrap();
    let _sentinel = hlbot_testkit::Proc(
        Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server --sentinel"),
    );
    let url = format!("sentinel://127.0.0.1:{port}/0");
    hlbot_testkit::wait_until(Duration::from_secs(10), "sentinel up", || {
        let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
        let mut c = c.get_connection().ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok()
    });
    let ask = |name: &str| run(doctor(dir.path(), &url).args(["--sentinel-master", name]));
    let (_, out) = ask("doctormaster");
    let l = line(&out, "ok", "sentinel");
    assert!(l.contains(&format!("127.0.0.1:{}", master.port)), "{l}");
    assert!(line(&out, "warn", "sentinel replicas").contains("no replica"));
    line(&out, "ok", "redis");

    let (code, out) = ask("nosuchmaster");
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "FAIL", "sentinel").contains("\"nosuchmaster\""));
}
