//! `hlbot dashboard` and `hlbot worker --http-port` as operators meet them: a `/metrics` scrape
//! checked by a strict Prometheus text parser against the tasks run; pages driven in a real
//! headless Chromium (chromedriver): the worker online, a task sent from Python turning SUCCESS
//! live, revoke (terminate) from the page, the login off loopback, the library after `hlbot
//! ingest`. Screenshots go to `target/test-artifacts/`.

mod prom;
mod webdriver;

use std::process::Stdio;
use std::time::{Duration, Instant};

use hlbot_engine::SendOptions;
use hlbot_testkit::{Proc, TestRedis, bin_worker};
use redis::AsyncCommands;
use serde_json::{Map, Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn node() -> String {
    format!("w{}@test", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A worker consuming `default` with task events and its own `/metrics` on `port`.
fn worker(env: &TestRedis, name: &str, port: u16) -> Proc {
    let port = port.to_string();
    bin_worker(
        BIN,
        env,
        &["-l", "warn"],
        &["-Q", "default", "-c", "4", "-n", name, "--http-port", &port],
    )
}

/// `hlbot dashboard` on `address:port` with extra environment.
fn dashboard(env: &TestRedis, address: &str, port: u16, vars: &[(&str, &str)]) -> Proc {
    let mut c = hlbot_testkit::hlbot(BIN, env);
    c.args(["-l", "warn", "dashboard", "--address", address])
        .args(["--port", &port.to_string()])
        .env_remove("HLBOT_DASHBOARD_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in vars {
        c.env(k, v);
    }
    Proc(c.spawn().expect("spawn hlbot dashboard"))
}

async fn wait_http(url: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(url).await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < end, "{url} did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn q() -> SendOptions {
    SendOptions {
        queue: Some("default".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrape_matches_the_tasks_run() {
    let env = TestRedis::new();
    let (wport, dport) = (free_port(), free_port());
    let name = node();
    let _w = worker(&env, &name, wport);
    let _d = dashboard(&env, "127.0.0.1", dport, &[]);
    wait_http(&format!("http://127.0.0.1:{dport}/healthz")).await;
    env.wait_workers(1, Duration::from_secs(20)).await;
    wait_http(&format!("http://127.0.0.1:{wport}/readyz")).await;
    let client = env.client().await;
    let mut handles = Vec::new();
    for i in 0..5 {
        handles.push(client.send_task("hlbot.debug.echo", vec![json!(i)], Map::new(), q()));
    }
    for _ in 0..2 {
        handles.push(client.send_task("hlbot.debug.fail", vec![], Map::new(), q()));
    }
    for h in handles {
        let h = h.await.expect("send");
        let _ = h.get(Duration::from_secs(20)).await;
    }
    let want = [
        ("celery_task_received_total", "hlbot.debug.echo", 5.0),
        ("celery_task_started_total", "hlbot.debug.echo", 5.0),
        ("celery_task_succeeded_total", "hlbot.debug.echo", 5.0),
        ("celery_task_failed_total", "hlbot.debug.fail", 2.0),
        ("celery_task_runtime_count", "hlbot.debug.echo", 5.0),
    ];
    for base in [
        format!("http://127.0.0.1:{dport}"),
        format!("http://127.0.0.1:{wport}"),
    ] {
        let end = Instant::now() + Duration::from_secs(5);
        let samples = loop {
            let (status, text) = get(&format!("{base}/metrics")).await;
            assert_eq!(status, 200, "{text}");
            let s = prom::parse(&text);
            let all = want.iter().all(|(m, task, n)| {
                prom::value(&s, m, &[("name", task), ("hostname", &name)]) == Some(*n)
            }) && prom::value(&s, "celery_worker_up", &[("hostname", &name)])
                == Some(1.0);
            if all || Instant::now() > end {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for (m, task, n) in want {
            assert_eq!(
                prom::value(&samples, m, &[("name", task), ("hostname", &name)]),
                Some(n),
                "{base}: {m}{{name={task}}}"
            );
        }
        assert_eq!(
            prom::value(&samples, "celery_worker_up", &[("hostname", &name)]),
            Some(1.0)
        );
        assert_eq!(
            prom::value(&samples, "celery_active_worker_count", &[]),
            Some(1.0)
        );
        // Bounded labels: no task id anywhere.
        for s in &samples {
            for (k, v) in &s.labels {
                assert!(
                    uuid::Uuid::parse_str(v).is_err(),
                    "task id in label {k}: {s:?}"
                );
            }
        }
    }
    let (_, text) = get(&format!("http://127.0.0.1:{dport}/metrics")).await;
    let s = prom::parse(&text);
    assert_eq!(
        prom::value(&s, "celery_queue_length", &[("queue_name", "default")]),
        Some(0.0)
    );
    assert!(text.contains("# TYPE hlbot_dead_letters gauge"));
    assert!(text.contains("# TYPE hlbot_llm_cost_usd_total counter"));
    assert!(text.contains("# TYPE hlbot_writer_backlog gauge"));
    // An action without the CSRF token is refused.
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{dport}/queue/default/purge"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 403);
}

/// Send `task(args)` from Python Celery (the compat app on the test's prefix), with sent
/// events; its id.
fn python_send(env: &TestRedis, task: &str, args: Value) -> String {
    python_send_as(env, task, args, &uuid::Uuid::new_v4().to_string())
}

/// `python_send` with the task id chosen by the caller.
fn python_send_as(env: &TestRedis, task: &str, args: Value, id: &str) -> String {
    let python = std::env::var("HLBOT_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        "import sys\nsys.path.insert(0, {root:?})\nfrom compat.app import make_app\n\
         app = make_app(broker={url:?}, prefix={prefix:?})\napp.conf.task_send_sent_event = True\n\
         r = app.send_task({task:?}, args={args}, queue='default', task_id={id:?})\nprint(r.id)\n",
        root = hlbot_testkit::workspace().display().to_string(),
        url = env.url,
        prefix = env.prefix,
    );
    let out = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python send failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn browser_tools() -> Option<(String, String)> {
    let find = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("/usr/bin/{n}"))
            .find(|p| std::path::Path::new(p).exists())
    };
    let driver = find(&["chromedriver"])
        .or_else(|| hlbot_testkit::missing("chromedriver (Debian chromium-driver)"))?;
    let chromium = find(&["chromium", "chromium-browser", "google-chrome"])
        .or_else(|| hlbot_testkit::missing("chromium"))?;
    std::env::var("HLBOT_PYTHON").ok().or_else(|| {
        hlbot_testkit::missing("HLBOT_PYTHON (a venv with celery, scripts/setup.sh)")
    })?;
    Some((driver, chromium))
}

const STATE_OF: &str = "var r = document.getElementById('task-' + arguments[0]); return r ? r.getAttribute('data-state') : null;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_in_a_real_browser() {
    let Some((driver, chromium)) = browser_tools() else {
        return;
    };
    let env = TestRedis::new();
    let (wport, dport) = (free_port(), free_port());
    let name = node();
    let _w = worker(&env, &name, wport);
    let _d = dashboard(&env, "127.0.0.1", dport, &[]);
    let base = format!("http://127.0.0.1:{dport}");
    wait_http(&format!("{base}/healthz")).await;
    let b = webdriver::Driver::start(&driver, &chromium).await;

    // The worker appears online.
    b.goto(&format!("{base}/workers")).await;
    b.wait_for(
        "worker online on /workers",
        "var r = document.getElementById('worker-' + arguments[0]); \
         return r && r.querySelector('.status').textContent.trim() === 'online';",
        json!([name]),
        Duration::from_secs(20),
    )
    .await;
    b.screenshot("dashboard-workers").await;

    // A task sent from Python shows up live and reaches SUCCESS within a second.
    b.goto(&format!("{base}/tasks")).await;
    b.wait_for(
        "SSE connected",
        "return document.getElementById('live').className === 'on';",
        json!([]),
        Duration::from_secs(5),
    )
    .await;
    let t0 = Instant::now();
    let id = python_send(&env, "hlbot.debug.echo", json!(["from python"]));
    let sent = t0.elapsed();
    b.wait_for(
        "task row on /tasks",
        STATE_OF,
        json!([id]),
        Duration::from_secs(10),
    )
    .await;
    let end = Instant::now() + Duration::from_secs(10);
    while b.js(STATE_OF, json!([id])).await != json!("SUCCESS") {
        assert!(Instant::now() < end, "task never SUCCESS on screen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shown = t0.elapsed() - sent;
    eprintln!("python send {sent:?}; SUCCESS on screen {shown:?} after the send returned");
    assert!(
        shown < Duration::from_secs(1),
        "SUCCESS shown after {shown:?}"
    );
    b.screenshot("dashboard-tasks").await;
    // Python sent it with task-sent events: counted under the sender's hostname.
    let (_, text) = get(&format!("{base}/metrics")).await;
    let samples = prom::parse(&text);
    assert_eq!(
        prom::value(
            &samples,
            "celery_task_sent_total",
            &[("name", "hlbot.debug.echo")]
        ),
        Some(1.0),
        "{text}"
    );

    // Revoke (terminate) from the page stops a sleeping task. The page is opened before the
    // task is sent: it follows the task's events from "not seen yet" to its full view.
    let id = uuid::Uuid::new_v4().to_string();
    b.goto(&format!("{base}/task/{id}")).await;
    b.wait_for(
        "unseen task page follows its events",
        "return document.getElementById('live').className === 'on';",
        json!([]),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        python_send_as(&env, "hlbot.debug.sleep", json!([60]), &id),
        id
    );
    b.wait_for(
        "sleeping task STARTED",
        "var e = document.getElementById('task-state'); return e && e.getAttribute('data-state') === 'STARTED';",
        json!([]),
        Duration::from_secs(10),
    )
    .await;
    let t_revoke = Instant::now();
    b.js(
        "Array.from(document.querySelectorAll('form button')).find(x => x.textContent === 'terminate').click(); return true;",
        json!([]),
    )
    .await;
    b.wait_for(
        "task REVOKED on its page",
        "var e = document.getElementById('task-state'); return e && e.getAttribute('data-state') === 'REVOKED';",
        json!([]),
        Duration::from_secs(10),
    )
    .await;
    let mut c = env.conn().await;
    let meta: Option<String> = c
        .get(env.key(&format!("celery-task-meta-{id}")))
        .await
        .unwrap();
    assert!(
        meta.as_deref().is_some_and(|m| m.contains("REVOKED")),
        "result meta: {meta:?}"
    );
    assert!(t_revoke.elapsed() < Duration::from_secs(10));
    b.screenshot("dashboard-task-revoked").await;
    // A page connecting late still gets the task's state: `/events?task=` opens with it.
    let mut r = reqwest::get(format!("{base}/events?task={id}"))
        .await
        .expect("GET /events");
    let first = tokio::time::timeout(Duration::from_secs(5), r.chunk())
        .await
        .expect("first event within 5 s")
        .expect("event stream")
        .expect("a chunk");
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.starts_with("data: ") && first.contains(&id) && first.contains("\"REVOKED\""),
        "{first}"
    );
    drop(r);

    // The library shows a strategy after `hlbot ingest` of the example lesson.
    let lesson = hlbot_testkit::workspace().join("examples/ema_pullback_lesson.en.vtt");
    let out = hlbot_testkit::hlbot(BIN, &env)
        .env(
            "HLBOT_CACHE_DIR",
            hlbot_testkit::worker::data_dir().join("cache"),
        )
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .arg("ingest")
        .arg(&lesson)
        .args(["-m", "rules"])
        .stdin(Stdio::null())
        .output()
        .expect("hlbot ingest");
    assert!(
        out.status.success(),
        "ingest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.goto(&format!("{base}/library")).await;
    let n = b
        .wait_for(
            "a strategy on /library",
            "return document.querySelectorAll('#strategies tr.strategy').length;",
            json!([]),
            Duration::from_secs(5),
        )
        .await;
    assert!(n.as_u64() >= Some(1));
    b.screenshot("dashboard-library").await;
    b.js(
        "document.querySelector('#strategies a').click(); return true;",
        json!([]),
    )
    .await;
    b.wait_for(
        "a strategy card with evidence",
        "return document.querySelectorAll('section.strategy').length;",
        json!([]),
        Duration::from_secs(5),
    )
    .await;
    b.screenshot("dashboard-source").await;
    for page in ["queues", "history", "costs", "beat"] {
        b.goto(&format!("{base}/{page}")).await;
        b.screenshot(&format!("dashboard-{page}")).await;
    }

    // Off loopback: no credentials → refuses to start; with a token → login enforced.
    let mut refused = dashboard(&env, "0.0.0.0", free_port(), &[]);
    let status = refused.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "started off loopback without a login"
    );
    let token = "test-token-0123456789";
    let lport = free_port();
    let _l = dashboard(&env, "0.0.0.0", lport, &[("HLBOT_DASHBOARD_TOKEN", token)]);
    let host = non_loopback_ip().unwrap_or_else(|| "127.0.0.1".into());
    let lbase = format!("http://{host}:{lport}");
    wait_http(&format!("{lbase}/healthz")).await;
    let (status, _) = get(&format!("{lbase}/metrics")).await;
    assert_eq!(status, 401, "metrics without the token");
    let r = reqwest::Client::new()
        .get(format!("{lbase}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    b.goto(&format!("{lbase}/workers")).await;
    assert!(
        b.url().await.contains("/login"),
        "not sent to the login page"
    );
    b.screenshot("dashboard-login").await;
    b.js(
        "document.querySelector('input[name=token]').value = arguments[0]; document.getElementById('login').submit(); return true;",
        json!(["wrong-token-000000000"]),
    )
    .await;
    b.wait_for(
        "login refused",
        "return location.search.indexOf('failed=1') >= 0;",
        json!([]),
        Duration::from_secs(5),
    )
    .await;
    b.js(
        "document.querySelector('input[name=token]').value = arguments[0]; document.getElementById('login').submit(); return true;",
        json!([token]),
    )
    .await;
    b.wait_for(
        "logged in",
        "return location.pathname === '/workers' && !!document.getElementById('workers');",
        json!([]),
        Duration::from_secs(5),
    )
    .await;
    let html: String = b
        .js("return document.documentElement.outerHTML;", json!([]))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!html.contains(token), "the token is rendered");
    b.quit().await;
}

/// This machine's first non-loopback IPv4 address (a UDP "connect" sends nothing).
fn non_loopback_ip() -> Option<String> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback()).then(|| ip.to_string())
}
