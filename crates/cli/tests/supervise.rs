//! The worker under a supervisor, as systemd and a container runtime see it: the notify protocol
//! on a fake `NOTIFY_SOCKET` (READY, WATCHDOG, STOPPING in order) and the `/healthz` endpoint
//! read by `hlbot health`. Real binary, real Redis.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hlbot_testkit::{Proc, TestRedis, worker::hlbot};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn health(addr: &str) -> (bool, String) {
    let out = hlbot_testkit::worker::command(BIN)
        .args(["health", "--address", addr])
        .env_remove("HLBOT_HEALTH_ADDRESS")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn notify_socket_gets_ready_watchdog_stopping_and_health_follows() {
    let r = TestRedis::new();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut w = Proc(
        hlbot(BIN, &r)
            .args(["worker", "-Q", "default", "--health-address", &addr])
            .env("NOTIFY_SOCKET", &sock)
            .env("WATCHDOG_USEC", "1000000")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 512];
    let mut recv_for = |d: Duration, got: &mut Vec<String>| {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if let Ok(n) = rx.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    // READY once consuming, then pings every half WATCHDOG_USEC.
    let end = Instant::now() + Duration::from_secs(30);
    while !got.iter().any(|m| m == "WATCHDOG=1") && Instant::now() < end {
        recv_for(Duration::from_millis(200), &mut got);
    }
    assert!(got[0].starts_with("READY=1"), "first notification: {got:?}");
    assert!(
        got.iter().any(|m| m == "WATCHDOG=1"),
        "no watchdog ping: {got:?}"
    );
    let (ok, why) = health(&addr);
    assert!(ok, "healthy worker reported unhealthy: {why}");
    assert!(why.contains("consuming"), "{why}");
    recv_for(Duration::from_millis(1600), &mut got);
    let pings = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= 3, "pings over ~2 s with WATCHDOG_USEC=1s: {got:?}");

    w.signal(Signal::SIGTERM);
    let status = w.wait_exit(Duration::from_secs(20)).expect("worker exits");
    assert!(status.success(), "{status:?}");
    recv_for(Duration::from_millis(300), &mut got);
    let last = got.last().unwrap();
    assert!(last.starts_with("STOPPING=1"), "last notification: {got:?}");
    assert_eq!(
        got.iter().filter(|m| m.starts_with("READY=1")).count(),
        1,
        "{got:?}"
    );
    // The endpoint is gone with the worker: the health check fails with a sentence, exit 1.
    let (ok, why) = health(&addr);
    assert!(!ok);
    assert!(why.contains("cannot reach"), "{why}");
}

#[test]
fn without_notify_socket_nothing_is_sent_and_health_is_optional() {
    // `hlbot health` with nothing listening: a clear error, not a hang.
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (ok, why) = health(&addr);
    assert!(!ok);
    assert!(why.contains(&addr), "{why}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
