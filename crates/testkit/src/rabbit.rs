//! Private RabbitMQ nodes for the fault drills: RabbitMQ's own scripts run as the current user
//! with a node name, free loopback AMQP and distribution ports, and a folder (data, logs, config,
//! the Erlang cookie in `HOME`) of their own — never the machine's node. Nodes made with the same
//! cookie can be joined into a cluster ([`Rabbit::join`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The folder of RabbitMQ's own scripts (`rabbitmq-server`, `rabbitmqctl`), run as the current
/// user (not the packaged `/usr/sbin` wrappers, which switch to the `rabbitmq` user).
pub fn rabbit_bin() -> Option<PathBuf> {
    let dir = std::env::var_os("HLBOT_RABBITMQ_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/rabbitmq/bin"));
    dir.join("rabbitmq-server").is_file().then_some(dir)
}

/// The last `n` lines of a file (empty if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A RabbitMQ node of a drill's own: killed (its whole process group) on drop.
pub struct Rabbit {
    bin: PathBuf,
    dir: PathBuf,
    /// `name@localhost`.
    pub node: String,
    /// The AMQP port on 127.0.0.1.
    pub port: u16,
    dist: u16,
    child: Option<Child>,
}

impl Rabbit {
    /// A node in `dir` (made if missing), not started.
    pub fn new(bin: PathBuf, dir: &Path) -> Self {
        Self::with_cookie(bin, dir, None)
    }

    /// A node whose Erlang cookie is `cookie` (nodes that share one can form a cluster).
    pub fn with_cookie(bin: PathBuf, dir: &Path, cookie: Option<&str>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
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
        if let Some(cookie) = cookie {
            let path = dir.join(".erlang.cookie");
            std::fs::write(&path, cookie).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o400))
                .unwrap();
        }
        Self {
            bin,
            dir: dir.to_path_buf(),
            node,
            port,
            dist,
            child: None,
        }
    }

    /// One of RabbitMQ's scripts, set up for this node.
    pub fn command(&self, prog: &str) -> Command {
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

    /// Start the node (on its data folder as left by the last stop) without waiting.
    pub fn spawn(&mut self) {
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
    }

    /// Wait (up to 90 s) until the node listens for AMQP.
    pub fn wait_listening(&mut self) {
        let end = Instant::now() + Duration::from_secs(90);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
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

    /// Start the node and wait for its listener; returns how long that took.
    pub fn start(&mut self) -> Duration {
        let t0 = Instant::now();
        self.spawn();
        self.wait_listening();
        t0.elapsed()
    }

    /// Stop it as `systemctl stop` would (SIGTERM: a clean shutdown) and wait for the exit.
    pub fn stop(&mut self) {
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

    /// SIGKILL the node's whole process group (the Erlang VM included): a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(c.id() as i32),
                Signal::SIGKILL,
            );
            let _ = c.wait();
        }
    }

    /// `rabbitmqctl -n <node> ARGS`; its output, panicking on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self
            .command("rabbitmqctl")
            .args(["-n", &self.node])
            .args(args)
            .output()
            .expect("rabbitmqctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?} on {}: {}{}",
            self.node,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Join `other`'s cluster (this node must share its cookie and be running).
    pub fn join(&self, other: &Rabbit) {
        self.ctl(&["stop_app"]);
        self.ctl(&["join_cluster", &other.node]);
        self.ctl(&["start_app"]);
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/", self.port)
    }

    /// Ready and unacknowledged messages in `queue` (`rabbitmqctl list_queues`).
    pub fn messages(&self, queue: &str) -> Option<(u64, u64)> {
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

    /// The node's own log, last lines.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.join("server.out"), 30)
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        self.kill();
    }
}
