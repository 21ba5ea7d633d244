//! Workers for tests, with ready-waiting: [`InProcess`] runs the engine's `Worker` on the test's
//! runtime; [`bin_worker`] starts `hlbot worker` as a process on the test's key prefix and
//! [`TestRedis::wait_workers`] waits until that many workers hold their liveness lease (they are
//! consuming). [`wait_until`] is the one polling loop the suites share.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hlbot_engine::{Client, Registry, Shutdown, Worker, WorkerOptions};

use crate::process::Proc;
use crate::redis::TestRedis;

/// A worker running on the test's runtime; stop it with [`InProcess::stop`] (warm shutdown).
pub struct InProcess {
    pub shutdown: Shutdown,
    pub handle: tokio::task::JoinHandle<hlbot_engine::Result<()>>,
}

impl InProcess {
    /// Start a worker for `client` (it is consuming when this returns).
    pub async fn start(client: Client, registry: Registry, o: WorkerOptions) -> InProcess {
        let worker = Worker::new(client, registry, o).await.expect("worker");
        let shutdown = Shutdown::default();
        let handle = tokio::spawn(worker.run(shutdown.clone()));
        InProcess { shutdown, handle }
    }

    /// Warm shutdown, waited for up to 20 s.
    pub async fn stop(self) {
        self.shutdown.warm.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.handle).await;
    }
}

/// Worker options for a test: a node name of its own, these queues, 4 slots, prefetch 1, runs
/// counted (`hlbot.runs.<id>`, see [`TestRedis::runs`]).
pub fn options(queues: &[&str]) -> WorkerOptions {
    WorkerOptions {
        node_name: format!("w{}@test", uuid::Uuid::new_v4().simple()),
        queues: queues.iter().map(|s| s.to_string()).collect(),
        concurrency: 4,
        prefetch_multiplier: 1,
        shutdown_timeout: Duration::from_secs(10),
        count_runs: true,
        ..Default::default()
    }
}

/// `hlbot` (the binary at `bin`) pointed at the test's Redis and key prefix, with no config,
/// `REDIS_URL` or `DATABASE_URL` from the environment, and a data directory of the test
/// binary's own (its SQLite library never touches the user's).
pub fn hlbot(bin: &str, r: &TestRedis) -> Command {
    let mut c = command(bin);
    c.args(["--broker", &r.url, "--key-prefix", &r.prefix]);
    c.env_remove("REDIS_URL").env_remove("HLBOT_CONFIG");
    c
}

/// `hlbot` with no `DATABASE_URL` and the test binary's own data directory: whatever it
/// records goes to a temporary SQLite library.
pub fn command(bin: &str) -> Command {
    let mut c = Command::new(bin);
    c.env_remove("DATABASE_URL")
        .env("HLBOT_DATA_DIR", data_dir());
    c
}

/// A temporary data directory shared by the `hlbot` processes of this test binary.
pub fn data_dir() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp data dir"))
        .path()
        .to_path_buf()
}

/// `hlbot <global> worker <args>` as a child process killed with the test; its stderr (the log)
/// goes to the test's output. `global` are options before the subcommand
/// (`--visibility-timeout`, `-l`, …).
pub fn bin_worker(bin: &str, r: &TestRedis, global: &[&str], args: &[&str]) -> Proc {
    let c = hlbot(bin, r)
        .args(global)
        .arg("worker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hlbot worker");
    Proc(c)
}

impl TestRedis {
    /// Wait until at least `n` workers on this prefix hold their liveness lease
    /// (`hlbot.alive.<uuid>`, taken when consuming starts); panics after `within`.
    pub async fn wait_workers(&self, n: usize, within: Duration) {
        let mut c = self.conn().await;
        let pattern = self.key("hlbot.alive.*");
        let end = Instant::now() + within;
        loop {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            if keys.len() >= n {
                return;
            }
            assert!(
                Instant::now() < end,
                "{n} worker(s) not consuming after {within:?} (found {})",
                keys.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Poll `f` every 50 ms until it yields `Some`; panics naming `what` after `within`.
pub fn wait_until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
