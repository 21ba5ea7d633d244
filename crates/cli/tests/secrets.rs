//! Secrets stay secret through a real worker: with API keys for every provider set, a task run
//! and its child processes alive, no key appears in any process's command line (the worker, its
//! task children, yt-dlp/tesseract/PDFium if running), in the worker's debug log or in the
//! task's result.

use std::process::Stdio;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");
const SECRETS: [&str; 3] = [
    "sk-ant-api03-SECRET-never-shown-1",
    "sk-proj-SECRET-never-shown-2",
    "asr-SECRET-never-shown-3",
];

/// Command lines of `root` and every process below it.
fn tree_cmdlines(root: u32) -> Vec<String> {
    let mut pids = vec![root];
    let mut out = Vec::new();
    while let Some(pid) = pids.pop() {
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            out.push(String::from_utf8_lossy(&c).replace('\0', " "));
        }
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid …: the comm may hold spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                pids.extend(e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()));
            }
        }
    }
    out
}

#[test]
fn keys_never_reach_command_lines_logs_or_results() {
    let url =
        std::env::var("HLBOT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let prefix = format!("s{}:", std::process::id());
    let tmp = tempfile::tempdir().expect("tmp");
    let log = tmp.path().join("worker.log");
    let mut worker = hlbot_testkit::worker::command(BIN)
        .env("ANTHROPIC_API_KEY", SECRETS[0])
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .env("OPENAI_API_KEY", SECRETS[1])
        .env("HLBOT_ASR_API_KEY", SECRETS[2])
        .env("HLBOT_INPUT_ROOTS", tmp.path())
        .env("HLBOT_CACHE_DIR", tmp.path().join("cache"))
        .args([
            "--loglevel",
            "debug",
            "--broker",
            &url,
            "--key-prefix",
            &prefix,
            "worker",
            "-Q",
            "llm",
            "-c",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("worker");
    let kwargs = serde_json::json!({
        "content": "Buy EUR/USD when RSI 14 drops below 30 on the 1 hour chart. Stop loss 20 pips.",
        "model": "rules",
    })
    .to_string();
    let sender = hlbot_testkit::worker::command(BIN)
        .args([
            "--broker",
            &url,
            "--key-prefix",
            &prefix,
            "send",
            "extract_trading_strategy",
        ])
        .args(["--kwargs", &kwargs, "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("send");
    // Sample the worker's process tree while the task (in a child process) is running.
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.extend(tree_cmdlines(worker.id()));
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = sender.wait_with_output().expect("send output");
    seen.extend(tree_cmdlines(worker.id()));
    let _ = worker.kill();
    let _ = worker.wait();
    let result = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{result}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(result.contains("EUR/USD"), "{result}");
    assert!(
        seen.iter().any(|c| c.contains("worker-child")),
        "a task child was sampled: {seen:?}"
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("ready"), "the log was captured: {logged}");
    for s in SECRETS {
        for c in &seen {
            assert!(!c.contains(s), "{s} in a command line: {c}");
        }
        assert!(!logged.contains(s), "{s} in the worker log");
        assert!(!result.contains(s), "{s} in the result");
    }
    clean(&url, &prefix);
}

fn clean(url: &str, prefix: &str) {
    if let Ok(client) = redis::Client::open(url) {
        if let Ok(mut c) = client.get_connection() {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query(&mut c)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
        }
    }
}
