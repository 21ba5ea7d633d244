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
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hlbot_engine::SendOptions;
use hlbot_engine::amqp::{Amqp, AmqpUrl, Layout};
use hlbot_testkit::rabbit::{Rabbit, rabbit_bin, tail};
use hlbot_testkit::{Proc, TestRedis};
use nix::sys::signal::Signal;
use serde_json::{Map, Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");
const QUEUE: &str = "drill";
const SECONDS: f64 = 0.02;

/// RabbitMQ's server scripts (else a printed skip, or a failure under `CI=true`) and the drill's
/// size from the environment variable `var` (default 400 tasks).
fn prerequisites(var: &str) -> Option<(std::path::PathBuf, usize)> {
    let bin = rabbit_bin().or_else(|| {
        hlbot_testkit::env::missing(
            "RabbitMQ's server scripts (/usr/lib/rabbitmq/bin or $HLBOT_RABBITMQ_BIN)",
        )
    })?;
    let n = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    Some((bin, n))
}

/// One `hlbot worker` on the drill's broker (`global`: more global flags), its log appended to
/// `<dir>/worker.log`.
fn worker(broker: &str, global: &[&str], t: &TestRedis, dir: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("worker.log"))
        .unwrap();
    Proc(
        Command::new(BIN)
            .args(["--broker", broker, "--result-backend", &t.url])
            .args(global)
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

/// What a drill sent: every task id (the chords' header parts included), the linked callbacks'
/// ids and the chord bodies' ids.
struct Sent {
    ids: Vec<String>,
    callbacks: Vec<String>,
    bodies: Vec<String>,
}

/// Publish `n` `sleep(SECONDS)` tasks, each confirmed by the broker (persistent, durable queue).
/// Every tenth links a callback (published by the worker, with confirms, after the task's
/// SUCCESS): follow-up messages must survive the faults too. With `chords`, every twentieth is
/// preceded by a chord of two more such tasks and an `echo` body.
async fn send(client: &hlbot_engine::Client, n: usize, chords: bool) -> Sent {
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
    let mut sent = Sent {
        ids: Vec::with_capacity(n),
        callbacks: Vec::new(),
        bodies: Vec::new(),
    };
    for i in 0..n {
        if chords && i % 20 == 5 {
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
            sent.ids.extend(parts);
            sent.bodies.push(body);
        }
        let mut options = SendOptions {
            queue: Some(QUEUE.into()),
            ..Default::default()
        };
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
            sent.callbacks.push(id);
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
        sent.ids.push(h.id);
    }
    sent
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
    let Some((bin, n)) = prerequisites("HLBOT_AMQP_DRILL_TASKS") else {
        return;
    };
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
    let Sent {
        ids,
        callbacks,
        bodies,
    } = send(&client, n, true).await;
    drop(client);

    let mut redis = redis::Client::open(t.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut w = worker(&rabbit.url(), &[], &t, &dir);
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
                w = worker(&rabbit.url(), &[], &t, &dir);
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

/// The cluster drill: three private nodes (one Erlang cookie) joined into one cluster, the tasks
/// on a **quorum queue** (`--queue-type quorum`: replicated on all three), published with
/// confirms through the failover list `amqp://n1;amqp://n2;amqp://n3` and drained by one worker
/// given the same list. At 30 % done the node the worker is connected to — the first, where the
/// queue was declared: its leader — is SIGKILLed (a crash, not a clean stop); at 60 % it is
/// started again and rejoins; at 80 % the node the worker failed over to is SIGKILLed too. Every
/// tenth task links a callback. Asserts 0 lost, 0 committed twice, nothing left in the queue and
/// no callback lost. `HLBOT_AMQP_CLUSTER_TASKS` sets the size (default 400;
/// `scripts/amqp-drill.sh` runs 10 000).
#[tokio::test]
async fn amqp_cluster_node_crashes_lose_nothing_and_commit_once() {
    let Some((bin, n)) = prerequisites("HLBOT_AMQP_CLUSTER_TASKS") else {
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("hlbot-amqp-cluster.")
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let started = Instant::now();
    let cookie = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let mut nodes: Vec<Rabbit> = (0..3)
        .map(|i| Rabbit::with_cookie(bin.clone(), &dir.join(format!("node{i}")), Some(&cookie)))
        .collect();
    for r in &mut nodes {
        r.spawn();
    }
    for r in &mut nodes {
        r.wait_listening();
    }
    nodes[1].join(&nodes[0]);
    nodes[2].join(&nodes[0]);
    let boot = started.elapsed().as_secs_f64();
    let url = nodes.iter().map(Rabbit::url).collect::<Vec<_>>().join(";");

    let t = TestRedis::new();
    let layout = Layout {
        queue_type: hlbot_engine::amqp::layout::QueueType::Quorum,
        ..Layout::default()
    };
    let client = t.client().await.with_amqp(Amqp::new(
        AmqpUrl::parse(&url).unwrap(),
        layout,
        "hlbot-drill",
    ));
    let Sent { ids, callbacks, .. } = send(&client, n, false).await;
    drop(client);

    let mut redis = redis::Client::open(t.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut w = worker(&url, &["--queue-type", "quorum"], &t, &dir);
    let bound = Duration::from_secs(150) + Duration::from_millis(30 * n as u64);
    let end = Instant::now() + bound;
    let mut crashes = Vec::new();
    for (at, what) in [(0.3, "crash 0"), (0.6, "start 0"), (0.8, "crash 1")] {
        loop {
            let done = tally(&mut redis, &t.prefix, &ids, &json!(SECONDS)).succeeded;
            if done as f64 >= at * n as f64 {
                break;
            }
            if Instant::now() >= end {
                let kept = tmp.keep();
                panic!(
                    "cluster drill stalled at {done}/{n} before {what} (logs kept in {}); \
                     worker log:\n{}",
                    kept.display(),
                    tail(&kept.join("worker.log"), 40),
                );
            }
            if let Ok(Some(st)) = w.0.try_wait() {
                panic!("the worker exited on its own ({st})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match what {
            "crash 0" => {
                nodes[0].kill();
                crashes.push(nodes[0].node.clone());
            }
            "start 0" => {
                nodes[0].start();
            }
            _ => {
                nodes[1].kill();
                crashes.push(nodes[1].node.clone());
            }
        }
    }

    let cb_value = json!({"args": [SECONDS, "cb"], "kwargs": {}});
    let (res, cbs, left) = loop {
        let res = tally(&mut redis, &t.prefix, &ids, &json!(SECONDS));
        let cbs = tally(&mut redis, &t.prefix, &callbacks, &cb_value);
        let left = nodes[2].messages(QUEUE);
        if (res.lost == 0 && cbs.lost == 0 && left == Some((0, 0))) || Instant::now() > end {
            break (res, cbs, left);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    w.signal(Signal::SIGTERM);
    let stopped = w.wait_exit(Duration::from_secs(15));
    let failovers = count_lines(&dir.join("worker.log"), "failed over to");
    let retried = count_lines(&dir.join("worker.log"), "publish not confirmed");
    let skipped = count_lines(&dir.join("worker.log"), "redelivered but already succeeded");
    let ok = res.lost == 0
        && res.twice == 0
        && res.wrong == 0
        && cbs.lost == 0
        && cbs.wrong == 0
        && left == Some((0, 0));
    let (ready, unacked) = left.unwrap_or((u64::MAX, u64::MAX));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "| cluster drill | tasks | succeeded | lost | committed twice | left in queue | node crashes \
         | worker failovers | redelivered copies skipped | callbacks lost / run twice | verdict |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n\
         | 3 nodes, quorum queue, -c 8 -m 4 | {n} | {} | {} | {} | {} | {} | {failovers} | {skipped} \
         | {} / {} of {} | {} |",
        res.succeeded,
        res.lost,
        res.twice,
        ready.saturating_add(unacked),
        crashes.len(),
        cbs.lost,
        cbs.twice,
        callbacks.len(),
        if ok { "ok" } else { "FAIL" },
    );
    let _ = writeln!(
        out,
        "amqp cluster drill: tasks {n}, succeeded {}, lost {}, committed twice {}, left {:?}; \
         callbacks {}, lost {}; crashed {crashes:?}; failovers {failovers}; publishes retried \
         {retried}; cluster up in \
         {boot:.1}s, total {:.1}s",
        res.succeeded,
        res.lost,
        res.twice,
        left,
        callbacks.len(),
        cbs.lost,
        started.elapsed().as_secs_f64()
    );
    drop(out);
    if !ok || std::env::var_os("HLBOT_AMQP_DRILL_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!("amqp cluster drill: logs kept in {}", kept.display());
    }
    assert!(
        stopped.is_some(),
        "the worker did not stop within 15 s of SIGTERM"
    );
    assert_eq!(res.lost, 0, "tasks lost");
    assert_eq!(res.wrong, 0, "wrong results");
    assert_eq!(res.twice, 0, "tasks committed twice");
    assert_eq!(left, Some((0, 0)), "messages left in the quorum queue");
    assert_eq!(cbs.lost, 0, "callbacks lost");
    assert!(
        failovers >= 2,
        "the worker failed over {failovers} time(s), expected 2 or more"
    );
}
