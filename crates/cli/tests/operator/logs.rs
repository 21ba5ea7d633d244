//! The worker's task log and banner, beat's compact schedule and send lines, and the log level.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_logs_each_task_like_celery_in_plain_text() {
    let r = TestRedis::new();
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("worker.log");
    let mut w = worker_logging_to(&r, &log, &["-Q", "default", "-c", "2"]);
    r.wait_workers(1, Duration::from_secs(30)).await;
    let client = r.client().await;
    let o = || SendOptions {
        queue: Some("default".into()),
        ..Default::default()
    };
    let ok = client
        .send_task("hlbot.debug.echo", vec![json!(7)], Map::new(), o())
        .await
        .expect("send");
    let bad = client
        .send_task("hlbot.debug.fail", vec![json!("boom")], Map::new(), o())
        .await
        .expect("send");
    let key = format!("flaky-{}", uuid::Uuid::new_v4());
    let flaky = client
        .send_task(
            "hlbot.debug.flaky",
            vec![json!(1), json!(key)],
            Map::new(),
            o(),
        )
        .await
        .expect("send");
    for h in [&ok, &bad, &flaky] {
        let _ = h.wait_meta(Duration::from_secs(30)).await.expect("done");
    }
    w.signal(Signal::SIGINT);
    assert!(w.wait_exit(Duration::from_secs(20)).is_some());
    let log = std::fs::read_to_string(&log).expect("log");
    for want in [
        format!("Task hlbot.debug.echo[{}] received", ok.id),
        format!("Task hlbot.debug.echo[{}] succeeded in ", ok.id),
        format!(
            "Task hlbot.debug.fail[{}] failed: RuntimeError('boom')",
            bad.id
        ),
        format!(
            "Task hlbot.debug.flaky[{}] retry in 0s: RuntimeError(",
            flaky.id
        ),
        format!("Task hlbot.debug.flaky[{}] succeeded in ", flaky.id),
        "worker: Warm shutdown".to_string(),
        "queues:      default".to_string(),
        "concurrency: 2".to_string(),
    ] {
        assert!(log.contains(&want), "{want:?} not in the log:\n{log}");
    }
    assert!(!log.contains('\x1b'), "colour codes in a file:\n{log}");
    assert!(!log.contains("Some(\""), "debug-printed fields:\n{log}");
}

#[test]
fn beat_prints_cron_compactly_and_logs_each_send() {
    let r = TestRedis::new();
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("beat.toml");
    std::fs::write(
        &cfg,
        "[[beat.entries]]\nname = \"fast\"\ntask = \"hlbot.debug.echo\"\ninterval = 0.3\n\n\
         [[beat.entries]]\nname = \"cron\"\ntask = \"hlbot.debug.echo\"\ncrontab = \"*/5 * * * *\"\n",
    )
    .expect("cfg");
    let log = dir.path().join("beat.log");
    let mut beat = Proc(
        hlbot(&r)
            .args(["--config", cfg.to_str().unwrap_or_default(), "beat"])
            .stderr(std::fs::File::create(&log).expect("log"))
            .stdout(Stdio::null())
            .spawn()
            .expect("beat"),
    );
    wait_until(Duration::from_secs(30), "beat logs a send", || {
        let s = std::fs::read_to_string(&log).ok()?;
        s.contains("Sending due task fast (hlbot.debug.echo)")
            .then_some(())
    });
    beat.signal(Signal::SIGINT);
    beat.wait_exit(Duration::from_secs(10));
    let s = std::fs::read_to_string(&log).expect("log");
    assert!(
        s.contains("beat entry cron: hlbot.debug.echo (*/5 * * * *)"),
        "{s}"
    );
    assert!(!s.contains("bitfields"), "{s}");
}

/// `HLBOT_LOGLEVEL=WARNING`: the per-task INFO lines go, a failure (ERROR) stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hlbot_loglevel_sets_the_worker_level() {
    let r = TestRedis::new();
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("worker.log");
    let f = std::fs::File::create(&log).expect("log");
    let mut w = Proc(
        hlbot(&r)
            .env("HLBOT_LOGLEVEL", "WARNING")
            .args(["worker", "-Q", "default"])
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("worker"),
    );
    r.wait_workers(1, Duration::from_secs(30)).await;
    let client = r.client().await;
    let o = SendOptions {
        queue: Some("default".into()),
        ..Default::default()
    };
    let h = client
        .send_task("hlbot.debug.fail", vec![json!("quiet")], Map::new(), o)
        .await
        .expect("send");
    let _ = h.wait_meta(Duration::from_secs(30)).await.expect("done");
    w.signal(Signal::SIGINT);
    w.wait_exit(Duration::from_secs(20));
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(
        log.contains(&format!("[{}] failed: RuntimeError('quiet')", h.id)),
        "{log}"
    );
    assert!(!log.contains("received"), "{log}");
}
