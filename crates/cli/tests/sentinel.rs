//! Redis Sentinel failover drill: a real `redis-server` master and replica and three
//! `redis-server --sentinel` on private loopback ports (started here), one `hlbot worker` on the
//! `sentinel://` URL draining `HLBOT_SENTINEL_DRILL_TASKS` (default 5 000) `acks_late` tasks, the
//! master SIGKILLed mid-drain. The sentinels promote the replica; the worker follows without a
//! restart and the drain finishes on the new master. Counted per task id (the run counter is
//! written with the SUCCESS and the ack, in one step): succeeded, ran twice, lost — printed as
//! `sentinel drill: …`. Replication is asynchronous, so writes the master acknowledged in its
//! last moments may never reach the replica: such a task's SUCCESS can be lost (it then runs
//! again: "ran twice" — its first run's counter is gone with it, so it shows as once) or a
//! task's message lost. The drill asserts the bound documented in docs/sentinel.md: every task
//! succeeded at least once, none lost, and re-runs within the messages in flight at the kill.
//! `scripts/sentinel-drill.sh` runs the full-size variant.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hlbot_engine::{Client, RedisSettings, Router, SendOptions, TaskCall};
use hlbot_testkit::{Proc, TestRedis};
use serde_json::{Map, json};

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");
const MASTER: &str = "hlmaster";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server(args: &[String]) -> Server {
    Server(
        Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server"),
    )
}

fn conn(port: u16) -> Option<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn info(port: u16, field: &str) -> Option<String> {
    let mut c = conn(port)?;
    let s: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

fn master_port(sentinel: u16) -> Option<u16> {
    let mut c = conn(sentinel)?;
    let r: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(MASTER)
        .query(&mut c)
        .ok()?;
    r.map(|(_, p)| p)
}

fn sentinel_conf(dir: &Path, port: u16, master: u16) -> String {
    let p = dir.join(format!("sentinel-{port}.conf"));
    std::fs::write(
        &p,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER} 127.0.0.1 {master} 2\n\
             sentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 10000\n\
             sentinel parallel-syncs {MASTER} 1\n",
            dir.display()
        ),
    )
    .unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_drill_worker_follows_the_promoted_replica() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        hlbot_testkit::env::missing::<()>("the program redis-server");
        return;
    }
    let n: usize = std::env::var("HLBOT_SENTINEL_DRILL_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let (m, r) = (free_port(), free_port());
    let s: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let base = |port: u16| -> Vec<String> {
        vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
        ]
    };
    let mut master = Some(redis_server(&base(m)));
    wait_for("master up", Duration::from_secs(10), || conn(m).is_some());
    let mut rargs = base(r);
    rargs.extend(["--replicaof".into(), "127.0.0.1".into(), m.to_string()]);
    let _replica = redis_server(&rargs);
    wait_for("replica in sync", Duration::from_secs(20), || {
        info(r, "master_link_status").as_deref() == Some("up")
    });
    let _sentinels: Vec<Server> = s
        .iter()
        .map(|p| redis_server(&[sentinel_conf(dir.path(), *p, m), "--sentinel".into()]))
        .collect();
    wait_for("sentinels see the master", Duration::from_secs(20), || {
        s.iter().all(|p| master_port(*p) == Some(m))
    });
    // Each sentinel must know the others before a failover can be voted.
    wait_for("sentinels know each other", Duration::from_secs(30), || {
        s.iter().all(|p| {
            conn(*p).is_some_and(|mut c| {
                redis::cmd("SENTINEL")
                    .arg("ckquorum")
                    .arg(MASTER)
                    .query::<String>(&mut c)
                    .is_ok()
            })
        })
    });

    // The tasks, sent through the sentinel URL too.
    let url = s
        .iter()
        .map(|p| format!("sentinel://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(";")
        + "/0";
    let t = TestRedis::on(&format!("redis://127.0.0.1:{m}/0"));
    let settings = RedisSettings::new(&url)
        .unwrap()
        .with_prefix(&t.prefix)
        .with_result_prefix(&t.prefix)
        .with_sentinel_master(Some(MASTER))
        .unwrap();
    let client = Client::new(
        hlbot_engine::Broker::connect(&settings, Default::default())
            .await
            .unwrap(),
        hlbot_engine::Backend::connect(&settings, Some(Duration::from_secs(3600)))
            .await
            .unwrap(),
        Router::default(),
    );
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let calls = chunk
            .iter()
            .map(|i| TaskCall {
                name: "hlbot.debug.sleep".into(),
                args: vec![json!(0.002), json!(i)],
                kwargs: Map::new(),
                options: SendOptions {
                    queue: Some("default".into()),
                    ..Default::default()
                },
            })
            .collect();
        ids.extend(
            client
                .send_many(calls)
                .await
                .unwrap()
                .into_iter()
                .map(|h| h.id),
        );
    }
    {
        let mut c = conn(m).unwrap();
        let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut c).unwrap();
    }
    let queue = format!("{}default", t.prefix);

    let mut worker = Proc(
        Command::new(BIN)
            .args([
                "--broker",
                &url,
                "--sentinel-master",
                MASTER,
                "--key-prefix",
                &t.prefix,
            ])
            .args([
                "--visibility-timeout",
                "5",
                "-l",
                "info",
                "worker",
                "-Q",
                "default",
            ])
            .args(["-c", "8", "--acks-late", "--count-runs"])
            .env_remove("REDIS_URL")
            .env_remove("HLBOT_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hlbot worker"),
    );
    // Kill the master once about half is drained.
    wait_for("half drained", Duration::from_secs(60), || {
        conn(m).is_some_and(|mut c| {
            redis::cmd("LLEN")
                .arg(&queue)
                .query::<usize>(&mut c)
                .is_ok_and(|l| l <= n / 2)
        })
    });
    let killed_at = Instant::now();
    drop(master.take());
    wait_for("a replica promoted", Duration::from_secs(30), || {
        s.iter().any(|p| master_port(*p) == Some(r))
    });
    let promoted = killed_at.elapsed();

    // The drain finishes on the new master: nothing queued or unacked, results settled.
    let results = |c: &mut redis::Connection| -> (usize, usize, usize) {
        let (mut ok, mut twice, mut missing) = (0, 0, 0);
        for chunk in ids.chunks(1000) {
            // One key per task id of the chunk, under the test's prefix.
            let keys = |kind: &str| -> Vec<String> {
                chunk
                    .iter()
                    .map(|id| format!("{}{kind}{id}", t.prefix))
                    .collect()
            };
            let metas: Vec<Option<String>> = redis::cmd("MGET")
                .arg(keys("celery-task-meta-"))
                .query(c)
                .unwrap();
            let runs: Vec<Option<i64>> = redis::cmd("MGET")
                .arg(keys("hlbot.runs."))
                .query(c)
                .unwrap();
            for (meta, runs) in metas.iter().zip(&runs) {
                if meta.as_deref().is_some_and(|m| m.contains("\"SUCCESS\"")) {
                    ok += 1;
                } else {
                    missing += 1;
                }
                if runs.unwrap_or(0) > 1 {
                    twice += 1;
                }
            }
        }
        (ok, twice, missing)
    };
    let mut c = conn(r).unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let (ok, twice, missing) = loop {
        let queued: usize = redis::cmd("LLEN").arg(&queue).query(&mut c).unwrap_or(0);
        let unacked: usize = redis::cmd("HLEN")
            .arg(format!("{}unacked", t.prefix))
            .query(&mut c)
            .unwrap_or(0);
        let (ok, twice, missing) = results(&mut c);
        if (queued == 0 && unacked == 0 && missing == 0) || Instant::now() > end {
            break (ok, twice, missing);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // Remote control through the new master: the worker's pidbox followed too.
    let ping = Command::new(BIN)
        .args([
            "--broker",
            &url,
            "--sentinel-master",
            MASTER,
            "--key-prefix",
            &t.prefix,
        ])
        .args(["inspect", "ping", "--timeout", "5"])
        .env_remove("REDIS_URL")
        .env_remove("HLBOT_CONFIG")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&ping.stdout);
    assert!(
        out.contains("pong"),
        "no pong after the failover: {out} {}",
        String::from_utf8_lossy(&ping.stderr)
    );
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = worker.wait_exit(Duration::from_secs(30));
    println!(
        "sentinel drill: tasks {n}, succeeded {ok}, lost {missing}, ran twice {twice}, \
         replica promoted {:.1}s after the kill",
        promoted.as_secs_f64()
    );
    assert_eq!(missing, 0, "tasks lost across the failover");
    assert_eq!(ok, n);
    // Re-runs are bounded by what was in flight at the kill: the prefetch (8) plus the writes
    // the master acknowledged but had not replicated (one writer batch at most, ≤ 2048 ops).
    assert!(twice <= 2048 + 8, "{twice} tasks ran twice");
}
