//! Waits that stop, `queues` numbers, `tasks`, send warnings, `result` on an unknown id, `control`
//! with nobody listening, `peek`'s default, completions and the man page, the tmux recording of
//! the live status line, and the README's Python snippet.

use super::*;

#[test]
fn ingest_queue_returns_at_once_when_the_first_chain_step_fails() {
    let r = TestRedis::new();
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("worker.log");
    // No input roots: the worker refuses to read the file (the first step fails).
    let _w = worker_logging_to(&r, &log, &["-Q", "pdf,llm", "-c", "2"]);
    let pdf = dir.path().join("report.pdf");
    std::fs::write(&pdf, b"%PDF-1.4\n%%EOF\n").expect("pdf");
    let out = hlbot(&r)
        .args([
            "ingest",
            pdf.to_str().unwrap_or_default(),
            "--queue",
            "-m",
            "rules",
        ])
        .args(["--timeout", "120"])
        .output()
        .expect("ingest");
    let err = text(&out.stderr);
    // Exit 1 (the failure), not 3 (the wait timed out).
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("FAILURE"), "{err}");
    assert!(
        err.contains("input_roots") || err.contains("not allowed"),
        "the first step's error is shown: {err}"
    );
}

#[test]
fn sigint_stops_send_wait_with_130_and_says_how_to_follow() {
    let r = TestRedis::new();
    let mut child = Proc(
        hlbot(&r)
            .args(["send", "hlbot.debug.sleep", "--args", "[30]", "--wait"])
            .args(["-Q", "nobody-consumes-this", "--timeout", "600"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("send"),
    );
    let mut id = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut id)
        .expect("id line");
    let id = id.trim().to_string();
    assert_eq!(id.len(), 36, "{id:?}");
    std::thread::sleep(Duration::from_millis(300));
    child.signal(Signal::SIGINT);
    let status = child
        .wait_exit(Duration::from_secs(10))
        .expect("send --wait ignored SIGINT");
    assert_eq!(status.code(), Some(130));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).ok();
    assert!(
        err.contains(&format!("`hlbot result {id} --wait`")),
        "{err}"
    );
    assert!(err.contains("keeps running"), "{err}");

    // SIGTERM ends `result --wait` the same way.
    let mut child = Proc(
        hlbot(&r)
            .args(["result", &id, "--wait", "--timeout", "600"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("result"),
    );
    std::thread::sleep(Duration::from_millis(500));
    child.signal(Signal::SIGTERM);
    let status = child
        .wait_exit(Duration::from_secs(10))
        .expect("result --wait ignored SIGTERM");
    assert_eq!(status.code(), Some(130));
}

#[test]
fn config_is_found_by_the_default_search_and_unknown_routes_warn() {
    let r = TestRedis::new();
    let dir = tempfile::tempdir().expect("tmp");
    let conf = "[routes]\ncleanup_pdf_cache = \"pdf\"\nno_such_task = \"x\"\n";
    // ./hlbot.toml
    std::fs::write(dir.path().join("hlbot.toml"), conf).expect("cfg");
    let out = hlbot(&r)
        .arg("tasks")
        .current_dir(dir.path())
        .output()
        .expect("tasks");
    assert!(
        text(&out.stdout).contains("cleanup_pdf_cache(max_age_days, max_total_bytes)  queue=pdf"),
        "{}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("no task named \"no_such_task\" is registered"),
        "{err}"
    );
    // $XDG_CONFIG_HOME/hlbot/config.toml, from another folder.
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("hlbot")).expect("mkdir");
    std::fs::write(xdg.join("hlbot/config.toml"), conf).expect("cfg");
    let elsewhere = tempfile::tempdir().expect("tmp");
    let out = hlbot(&r)
        .arg("tasks")
        .current_dir(elsewhere.path())
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .expect("tasks");
    assert!(
        text(&out.stdout).contains("cleanup_pdf_cache(max_age_days, max_total_bytes)  queue=pdf"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_shows_the_numbers_of_a_prepared_redis() {
    let r = TestRedis::new();
    let client = r.client().await;
    let send = |prio: Option<u8>, countdown: Option<f64>| SendOptions {
        queue: Some("qa".into()),
        priority: prio,
        countdown,
        ..Default::default()
    };
    for o in [send(None, None), send(None, None), send(Some(9), None)] {
        client
            .send_task("hlbot.debug.echo", vec![], Map::new(), o)
            .await
            .expect("send");
    }
    // Two messages "delivered": taken off the list into `unacked`, one of them due in an hour.
    for (tag, countdown) in [("tag-now", None), ("tag-eta", Some(3600.0))] {
        client
            .send_task(
                "hlbot.debug.echo",
                vec![],
                Map::new(),
                send(None, countdown),
            )
            .await
            .expect("send");
        let mut c = r.conn().await;
        let raw: String = c.lpop(r.key("qa"), None).await.expect("lpop");
        let entry = json!([serde_json::from_str::<Value>(&raw).expect("json"), "", "qa"]);
        let _: () = c
            .hset(r.key("unacked"), tag, entry.to_string())
            .await
            .expect("hset");
    }
    let dead = json!({"reason": "test", "queue": "qa", "task_id": "dead-1", "task": "x",
                      "at": 1.0, "raw": "{}"});
    let mut c = r.conn().await;
    let _: () = c
        .lpush(r.key("hlbot.dead"), dead.to_string())
        .await
        .expect("lpush");
    let _w = hlbot_testkit::bin_worker(BIN, &r, &[], &["-Q", "qb"]);
    r.wait_workers(1, Duration::from_secs(30)).await;

    let out = run(&r, &["queues", "-Q", "qa,qb", "-j"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let qa = rows.iter().find(|v| v["queue"] == "qa").expect("qa row");
    assert_eq!(qa["waiting"], 3, "{qa}");
    assert_eq!(qa["by_priority"], json!({"0": 2, "9": 1}), "{qa}");
    assert_eq!(qa["unacked"], 2, "{qa}");
    assert_eq!(qa["scheduled"], 1, "{qa}");
    assert_eq!(qa["dead"], 1, "{qa}");
    assert_eq!(qa["consumers"], json!([]), "{qa}");
    let qb = rows.iter().find(|v| v["queue"] == "qb").expect("qb row");
    assert_eq!(qb["consumers"].as_array().map(Vec::len), Some(1), "{qb}");
    // The table form shows the same numbers.
    let table = text(&run(&r, &["queues", "-Q", "qa"]).stdout);
    let row = table.lines().find(|l| l.starts_with("qa ")).expect("row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..5], ["qa", "3", "2", "1", "1"], "{table}");

    // dead delete: by id, then it is gone from the numbers.
    let out = run(&r, &["dead", "delete", "dead-1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("deleted 1"));
    assert_eq!(
        run(&r, &["dead", "delete", "dead-1"]).status.code(),
        Some(1)
    );
    let out = run(&r, &["queues", "-Q", "qa", "-j", "-t", "0.1"]);
    let qa: Value = serde_json::from_str(text(&out.stdout).trim()).expect("json");
    assert_eq!(qa["dead"], 0);
}

#[test]
fn tasks_lists_arguments_and_queues_without_a_worker() {
    let r = TestRedis::new();
    let out = run(&r, &["tasks"]);
    let s = text(&out.stdout);
    assert!(out.status.success());
    assert!(
        s.contains(
            "process_pdf_document(pdf_path, extract_images, password, ocr, languages, pages, force)  queue=pdf"
        ),
        "{s}"
    );
    assert!(
        s.contains(
            "process_youtube_video(url, extract_frames, prefer_captions, force)  queue=youtube"
        ),
        "{s}"
    );
}

#[test]
fn send_warns_about_unknown_tasks_and_queues_nobody_consumes() {
    let r = TestRedis::new();
    let out = run(&r, &["send", "no.such.task", "-Q", "nobody-here"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("no task named \"no.such.task\" is registered"),
        "{err}"
    );
    assert!(
        err.contains("no worker replied that it consumes queue \"nobody-here\""),
        "{err}"
    );
    // A queue an hlbot worker consumes: a task it registers passes quietly, an unknown one is
    // named with the consumer that would reject it.
    let _w = hlbot_testkit::bin_worker(BIN, &r, &[], &["-Q", "served"]);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(r.wait_workers(1, Duration::from_secs(30)));
    let out = run(&r, &["send", "hlbot.debug.echo", "-Q", "served"]);
    assert_eq!(text(&out.stderr), "", "no warning for a served, known task");
    let out = run(&r, &["send", "no.such.task", "-Q", "served"]);
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "no task named \"no.such.task\" is registered on the workers consuming queue \"served\""
        ),
        "{err}"
    );
}

#[test]
fn result_of_an_unknown_id_is_explained_with_exit_3() {
    let r = TestRedis::new();
    let out = run(&r, &["result", "00000000-0000-0000-0000-000000000000"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout).trim(), "PENDING");
    assert!(text(&out.stderr).contains("no result stored for"));
}

#[test]
fn control_with_nobody_listening_fails_like_inspect() {
    let r = TestRedis::new();
    for args in [
        &["control", "shutdown", "-t", "0.2"][..],
        &["control", "heartbeat", "-t", "0.2"][..],
        &["inspect", "ping", "-t", "0.2"][..],
    ] {
        let out = run(&r, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains("No nodes replied"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_peek_looks_at_the_default_queue() {
    let r = TestRedis::new();
    let client = r.client().await;
    let h = client
        .send_task(
            "hlbot.debug.echo",
            vec![json!(1)],
            Map::new(),
            SendOptions::default(),
        )
        .await
        .expect("send");
    let out = run(&r, &["peek"]);
    assert!(text(&out.stdout).contains(&h.id), "{}", text(&out.stdout));
}

#[test]
fn completions_and_man_page_are_generated() {
    let r = TestRedis::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&r, &["completions", shell]);
        let s = text(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(s.contains("queues") && s.contains("hlbot"), "{shell}: {s}");
    }
    // The bash script is valid bash.
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("hlbot.bash");
    std::fs::write(&f, run(&r, &["completions", "bash"]).stdout).expect("write");
    let ok = Command::new("bash")
        .arg("-n")
        .arg(&f)
        .status()
        .expect("bash");
    assert!(ok.success());
    let man = text(&run(&r, &["man"]).stdout);
    assert!(man.contains(".TH hlbot 1"), "{man}");
    assert!(man.contains(".SH NAME") && man.contains("queues"), "{man}");
}

/// The tmux recording: the live status line while `send --wait` waits, then Ctrl-C.
#[test]
fn recorded_terminal_shows_status_line_and_ctrl_c() {
    if !hlbot_testkit::tool("tmux", "-V") {
        return;
    }
    let r = TestRedis::new();
    let dir = tempfile::tempdir().expect("tmp");
    let out_file = dir.path().join("session.txt");
    let script = hlbot_testkit::workspace().join("scripts/record-terminal.sh");
    let out = Command::new(script)
        .arg(&out_file)
        .env("HLBOT_BIN", BIN)
        .env("REDIS_URL", &r.url)
        .env("HLBOT_KEY_PREFIX", &r.prefix)
        .output()
        .expect("record");
    let s = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert!(out.status.success(), "{}\n{s}", text(&out.stderr));
    let (live, after) = s.split_once("--- after Ctrl-C").expect("two frames");
    assert!(
        regex_like_status(live),
        "no live status line in the live frame:\n{live}"
    );
    assert!(
        after.contains("keeps running; follow it with `hlbot result"),
        "{after}"
    );
    assert!(after.contains("exit=130"), "{after}");
}

/// `<id> STARTED 1.2s` somewhere in the frame.
fn regex_like_status(frame: &str) -> bool {
    frame.lines().any(|l| {
        l.split_once(" STARTED ").is_some_and(|(_, rest)| {
            rest.split('s')
                .next()
                .is_some_and(|n| n.parse::<f64>().is_ok())
        })
    })
}

/// README's Python snippet, as printed, run by the setup's Python against an hlbot worker (only
/// the key prefix is added, to keep the test on its own keys).
#[test]
fn readme_python_snippet_runs_against_an_hlbot_worker() {
    let Some(python) = std::env::var_os("HLBOT_PYTHON")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| hlbot_testkit::missing("the setup's Python ($HLBOT_PYTHON)"))
    else {
        return;
    };
    let readme =
        std::fs::read_to_string(hlbot_testkit::workspace().join("README.md")).expect("README");
    let start = readme
        .find("```python\nfrom celery import Celery")
        .expect("README has the Python snippet");
    let body = &readme[start + "```python\n".len()..];
    let snippet = &body[..body.find("```").expect("fence")];
    let url = "redis://127.0.0.1:6379/0";
    assert!(snippet.contains(url), "{snippet}");
    let r = TestRedis::new();
    let mut code = String::new();
    for line in snippet.lines() {
        code.push_str(&line.replace(url, &r.url));
        code.push('\n');
        if line.starts_with("app = Celery(") {
            code.push_str(&format!(
                "app.conf.broker_transport_options = {{'global_keyprefix': '{p}'}}\n\
                 app.conf.result_backend_transport_options = {{'global_keyprefix': '{p}'}}\n",
                p = r.prefix
            ));
        }
    }
    let _w = hlbot_testkit::bin_worker(BIN, &r, &[], &["-Q", "celery"]);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(r.wait_workers(1, Duration::from_secs(30)));
    let out = Command::new(python)
        .args(["-c", &code])
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "{'args': [1, 2], 'kwargs': {}}");
}
