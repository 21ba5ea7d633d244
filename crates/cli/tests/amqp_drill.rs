//! RabbitMQ fault drill (issue #20): a private `rabbitmq-server` node started here (its own
//! node name, AMQP and distribution ports, data and log folders; never the machine's shared
//! node), `HLBOT_AMQP_DRILL_TASKS` (default 400) `acks_late` tasks published to it with
//! confirms, drained by `hlbot worker --broker amqp://… --acks-late --count-runs` with results in
//! Redis, while the worker is SIGKILLed three times (a new one started at once, as systemd would)
//! and the RabbitMQ node is stopped and started again once on the same data folder (the worker
//! stays up and reconnects). Events fire at 20 %, 40 %, 60 % (the broker restart) and 80 % of the
//! tasks done.
//!
//! Counted per task id at the end: **lost** = sent − tasks with a SUCCESS result (`sleep(0.02)`
//! returning 0.02); **committed twice** = Σ (runs − 1) over tasks whose `hlbot.runs.<id>`
//! counter — INCRed in the same Redis transaction that stores the SUCCESS — is above 1;
//! **left in queue** = RabbitMQ's ready + unacknowledged messages once the drain settles (every
//! redelivered copy of a finished task must have been acked too). Every tenth task links a
//! callback (`echo`, its task id fixed), which the worker publishes with confirms after the
//! task's SUCCESS: none may be lost (a callback may run twice — at least once — when a worker is
//! killed between its confirm and the parent's ack; counted and printed). Every twentieth task
//! also sends a chord of two more `acks_late` tasks (counted with the tasks) whose body (`echo`,
//! its id fixed) the completing worker publishes: no body may be lost either (at least once on
//! RabbitMQ: `docs/canvas.md`). The drill asserts 0 lost, 0 committed twice, 0 left, 0 callbacks
//! and 0 chord bodies lost, and prints one table.
//! `scripts/amqp-drill.sh` runs the full-size variant (10 000 tasks).
//!
//! Without RabbitMQ's server scripts (`/usr/lib/rabbitmq/bin`, or `$HLBOT_RABBITMQ_BIN`) the
//! test prints a skip, except under `CI=true`, where that is a failure.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hlbot_engine::SendOptions;
use hlbot_engine::amqp::{Amqp, AmqpUrl, Layout};
use hlbot_testkit::{Proc, TestRedis};
use nix::sys::signal::Signal;
use serde_json::{Map, Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");
const QUEUE: &str = "drill";
const SECONDS: f64 = 0.02;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The folder of RabbitMQ's own scripts (`rabbitmq-server`, `rabbitmqctl`), run as the current
/// user (not the packaged `/usr/sbin` wrappers, which switch to the `rabbitmq` user).
fn rabbit_bin() -> Option<PathBuf> {
    let dir = std::env::var_os("HLBOT_RABBITMQ_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/rabbitmq/bin"));
    dir.join("rabbitmq-server").is_file().then_some(dir)
}

/// A RabbitMQ node of the drill's own: killed (its whole process group) on drop.
struct Rabbit {
    bin: PathBuf,
    dir: PathBuf,
    node: String,
    port: u16,
    dist: u16,
    child: Option<Child>,
}

impl Rabbit {
    fn new(bin: PathBuf, dir: &Path) -> Self {
        let port = free_port();
        let dist = free_port();
        let node = format!(
            "hlbotdrill{}x{}@localhost",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        )
        .unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        // Not /etc/rabbitmq/rabbitmq-env.conf: it names the machine's node.
        std::fs::write(dir.join("rabbitmq-env.conf"), "").unwrap();
        Self {
            bin,
            dir: dir.to_path_buf(),
            node,
            port,
            dist,
            child: None,
        }
    }

    fn command(&self, prog: &str) -> Command {
        let d = &self.dir;
        let mut c = Command::new(self.bin.join(prog));
        // HOME holds the Erlang cookie the server and rabbitmqctl share.
        c.env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .current_dir(d)
            .stdin(Stdio::null());
        c
    }

    /// Start the node (on its data folder as left by the last stop) and wait for its listener.
    fn start(&mut self) -> Duration {
        let t0 = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.out"))
            .unwrap();
        let mut c = self.command("rabbitmq-server");
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let child = c
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn rabbitmq-server");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(90);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return t0.elapsed();
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("rabbitmq-server exited ({st}):\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < end,
                "rabbitmq-server not listening after 90 s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop it as `systemctl stop` would (SIGTERM: a clean shutdown) and wait for the exit.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rabbitmq-server did not stop within 60 s");
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/", self.port)
    }

    /// Ready and unacknowledged messages in `queue` (`rabbitmqctl list_queues`).
    fn messages(&self, queue: &str) -> Option<(u64, u64)> {
        let out = self
            .command("rabbitmqctl")
            .args(["-n", &self.node, "-q", "list_queues", "--no-table-headers"])
            .args(["name", "messages_ready", "messages_unacknowledged"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == queue)
                .then(|| Some((f[1].parse().ok()?, f[2].parse().ok()?)))
                .flatten()
        })
    }

    fn log_tail(&self) -> String {
        tail(&self.dir.join("server.out"), 30)
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(c.id() as i32),
                Signal::SIGKILL,
            );
            let _ = c.wait();
        }
    }
}

/// One `hlbot worker` on the drill's broker, its log appended to `<dir>/worker.log`.
fn worker(rabbit: &Rabbit, t: &TestRedis, dir: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("worker.log"))
        .unwrap();
    Proc(
        Command::new(BIN)
            .args(["--broker", &rabbit.url(), "--result-backend", &t.url])
            .args([
                "--key-prefix",
                &t.prefix,
                "-l",
                "info",
                "worker",
                "-Q",
                QUEUE,
            ])
            .args(["-c", "8", "--prefetch-multiplier", "4", "--acks-late"])
            .args(["--count-runs", "--shutdown-timeout", "5"])
            .env("HLBOT_DATA_DIR", dir.join("data"))
            .env_remove("REDIS_URL")
            .env_remove("HLBOT_CONFIG")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hlbot worker"),
    )
}

#[derive(Debug, Default)]
struct Tally {
    succeeded: usize,
    lost: usize,
    twice: i64,
    wrong: usize,
}

/// SUCCESS results and run counters of every id.
fn tally(c: &mut redis::Connection, prefix: &str, ids: &[String], expect: &Value) -> Tally {
    let mut t = Tally::default();
    for chunk in ids.chunks(1000) {
        let keys = |kind: &str| -> Vec<String> {
            chunk
                .iter()
                .map(|id| format!("{prefix}{kind}{id}"))
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
            let meta: Option<Value> = meta.as_deref().and_then(|m| serde_json::from_str(m).ok());
            match meta {
                Some(m) if m["status"] == "SUCCESS" => {
                    t.succeeded += 1;
                    if &m["result"] != expect {
                        t.wrong += 1;
                    }
                }
                _ => t.lost += 1,
            }
            t.twice += (runs.unwrap_or(0) - 1).max(0);
        }
    }
    t
}

/// The last `n` lines of a log file (for a failure message).
fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn count_lines(path: &Path, needle: &str) -> usize {
    std::fs::File::open(path)
        .map(|f| {
            std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter(|l| l.contains(needle))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_drill_sigkills_and_a_broker_restart_lose_nothing_and_commit_once() {
    let Some(bin) = rabbit_bin().or_else(|| {
        hlbot_testkit::env::missing(
            "RabbitMQ's server scripts (/usr/lib/rabbitmq/bin or $HLBOT_RABBITMQ_BIN)",
        )
    }) else {
        return;
    };
    let n: usize = std::env::var("HLBOT_AMQP_DRILL_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let keep = std::env::var_os("HLBOT_AMQP_DRILL_KEEP").is_some();
    let tmp = tempfile::Builder::new()
        .prefix("hlbot-amqp-drill.")
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let started = Instant::now();
    let mut rabbit = Rabbit::new(bin, &dir);
    let boot = rabbit.start();

    // Publish every task, each confirmed by the broker (persistent, durable queue).
    let t = TestRedis::new();
    let amqp = Amqp::new(
        AmqpUrl::parse(&rabbit.url()).unwrap(),
        Layout::default(),
        "hlbot-drill",
    );
    let client = t.client().await.with_amqp(amqp);
    let mut ids = Vec::with_capacity(n);
    let mut callbacks = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..n {
        // Every twentieth task sends a chord too: two more acks_late tasks and an echo body.
        if i % 20 == 5 {
            let call = |name: &str, args: Vec<Value>, id: &str| hlbot_engine::TaskCall {
                name: name.into(),
                args,
                kwargs: Map::new(),
                options: SendOptions {
                    queue: Some(QUEUE.into()),
                    task_id: Some(id.to_string()),
                    ..Default::default()
                },
            };
            let parts: Vec<String> = (0..2).map(|_| uuid::Uuid::new_v4().to_string()).collect();
            let body = format!("chord-{}", uuid::Uuid::new_v4());
            client
                .send_chord(
                    parts
                        .iter()
                        .map(|id| {
                            call("hlbot.debug.sleep", vec![json!(SECONDS), json!("part")], id)
                        })
                        .collect(),
                    call("hlbot.debug.echo", vec![json!("chord")], &body),
                )
                .await
                .expect("confirmed chord");
            ids.extend(parts);
            bodies.push(body);
        }
        let mut options = SendOptions {
            queue: Some(QUEUE.into()),
            ..Default::default()
        };
        // Every tenth task links a callback (published by the worker, with confirms, after
        // the task's SUCCESS): follow-up messages must survive the faults too.
        if i % 10 == 0 {
            let id = format!("cb-{}", uuid::Uuid::new_v4());
            let mut o = Map::new();
            o.insert("task_id".into(), json!(id));
            o.insert("queue".into(), json!(QUEUE));
            options.link = vec![hlbot_proto::Signature {
                task: "hlbot.debug.echo".into(),
                args: vec![json!("cb")],
                kwargs: Map::new(),
                options: o,
                subtask_type: None,
                immutable: false,
                extra: Map::new(),
            }];
            callbacks.push(id);
        }
        let h = client
            .send_task(
                "hlbot.debug.sleep",
                vec![json!(SECONDS), json!(i)],
                Map::new(),
                options,
            )
            .await
            .expect("confirmed publish");
        ids.push(h.id);
    }
    drop(client);

    let mut redis = redis::Client::open(t.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut w = worker(&rabbit, &t, &dir);
    let (mut kills, mut restarts) = (0, 0);
    let mut restart_secs = 0.0;
    // Fractions of the tasks done at which the faults fire.
    let plan = [
        (0.2, "kill"),
        (0.4, "kill"),
        (0.6, "restart"),
        (0.8, "kill"),
    ];
    let bound = Duration::from_secs(120) + Duration::from_millis(30 * n as u64);
    let end = Instant::now() + bound;
    for (at, what) in plan {
        loop {
            let done = tally(&mut redis, &t.prefix, &ids, &json!(SECONDS)).succeeded;
            if done as f64 >= at * n as f64 {
                break;
            }
            if Instant::now() >= end {
                let kept = tmp.keep();
                panic!(
                    "drill stalled at {done}/{n} before the {what} at {at} (logs kept in {}); \
                     worker log:\n{}\nbroker log:\n{}",
                    kept.display(),
                    tail(&kept.join("worker.log"), 40),
                    rabbit.log_tail()
                );
            }
            if let Ok(Some(st)) = w.0.try_wait() {
                panic!("the worker exited on its own ({st})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match what {
            "kill" => {
                w.signal(Signal::SIGKILL);
                let _ = w.wait_exit(Duration::from_secs(10));
                kills += 1;
                w = worker(&rabbit, &t, &dir);
            }
            _ => {
                let t0 = Instant::now();
                rabbit.stop();
                rabbit.start();
                restart_secs = t0.elapsed().as_secs_f64();
                restarts += 1;
            }
        }
    }

    // Settle: every task SUCCESS and nothing ready or unacked in RabbitMQ.
    let cb_value = json!({"args": [SECONDS, "cb"], "kwargs": {}});
    let body_value = json!({"args": [[SECONDS, SECONDS], "chord"], "kwargs": {}});
    let (res, cbs, chords, left) = loop {
        let res = tally(&mut redis, &t.prefix, &ids, &json!(SECONDS));
        let cbs = tally(&mut redis, &t.prefix, &callbacks, &cb_value);
        let chords = tally(&mut redis, &t.prefix, &bodies, &body_value);
        let left = rabbit.messages(QUEUE);
        if (res.lost == 0 && cbs.lost == 0 && chords.lost == 0 && left == Some((0, 0)))
            || Instant::now() > end
        {
            break (res, cbs, chords, left);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    w.signal(Signal::SIGTERM);
    let stopped = w.wait_exit(Duration::from_secs(15));
    let skipped = count_lines(&dir.join("worker.log"), "redelivered but already succeeded");
    let (ready, unacked) = left.unwrap_or((u64::MAX, u64::MAX));
    let resent = count_lines(&dir.join("worker.log"), "publishing its");
    let ok = res.lost == 0
        && res.twice == 0
        && res.wrong == 0
        && cbs.lost == 0
        && cbs.wrong == 0
        && chords.lost == 0
        && chords.wrong == 0
        && left == Some((0, 0));
    let secs = started.elapsed().as_secs_f64();
    let left_n = ready.saturating_add(unacked);
    // The tasks sent: n plus the chords' header parts.
    let total = ids.len();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "| drill | tasks | succeeded | lost | committed twice | left in queue (ready+unacked) | \
         worker SIGKILLs | broker restarts | redelivered copies skipped | verdict |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n\
         | acks_late, -c 8 -m 4 | {total} | {} | {} | {} | {left_n} | {kills} | {restarts} | {skipped} | {} |\n\
         | their linked callbacks (every 10th task) | {} | {} | {} | {} | | | | \
         resent after a kill: {resent} | {} |\n\
         | chord bodies (a 2-part chord per 20 tasks) | {} | {} | {} | {} | | | | | {} |",
        res.succeeded,
        res.lost,
        res.twice,
        if ok { "ok" } else { "FAIL" },
        callbacks.len(),
        cbs.succeeded,
        cbs.lost,
        cbs.twice,
        if cbs.lost == 0 && cbs.wrong == 0 {
            "ok (at least once)"
        } else {
            "FAIL"
        },
        bodies.len(),
        chords.succeeded,
        chords.lost,
        chords.twice,
        if chords.lost == 0 && chords.wrong == 0 {
            "ok (at least once)"
        } else {
            "FAIL"
        },
    );
    let _ = writeln!(
        out,
        "amqp drill: tasks {total}, succeeded {}, lost {}, committed twice {}, left in queue {left_n}, \
         wrong results {}; callbacks {}, lost {}, run twice {}; chord bodies {}, lost {}, run \
         twice {}; worker SIGKILLs {kills}, broker restarts {restarts} (stop+start \
         {restart_secs:.1}s, first boot {:.1}s), total {secs:.1}s",
        res.succeeded,
        res.lost,
        res.twice,
        res.wrong,
        callbacks.len(),
        cbs.lost,
        cbs.twice,
        bodies.len(),
        chords.lost,
        chords.twice,
        boot.as_secs_f64()
    );
    drop(out);
    if keep || !ok {
        let kept = tmp.keep();
        eprintln!("amqp drill: logs kept in {}", kept.display());
    }
    assert!(
        stopped.is_some(),
        "the worker did not stop within 15 s of SIGTERM"
    );
    assert_eq!(kills, 3);
    assert_eq!(restarts, 1);
    assert_eq!(res.lost, 0, "tasks lost");
    assert_eq!(res.wrong, 0, "wrong results");
    assert_eq!(res.twice, 0, "tasks committed twice");
    assert_eq!(left, Some((0, 0)), "messages left in RabbitMQ");
    assert_eq!(cbs.lost, 0, "callbacks lost");
    assert_eq!(cbs.wrong, 0, "callbacks with a wrong result");
    assert_eq!(chords.lost, 0, "chord bodies lost");
    assert_eq!(chords.wrong, 0, "chord bodies with a wrong result");
}
