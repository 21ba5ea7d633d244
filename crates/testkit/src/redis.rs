//! Redis fixtures. [`TestRedis`]: the shared server (`$HLBOT_TEST_REDIS`, default
//! 127.0.0.1:6379/0) under a key prefix of the test's own, every key of it deleted on drop — tests
//! run in parallel and twice in a row without meeting. [`PrivateRedis`]: a `redis-server` of the
//! test's own (port, folder, AOF), for faults that would disturb others: refused writes, a crash,
//! a restart.

use std::time::Duration;

use hlbot_engine::{Backend, Broker, BrokerOptions, Client, RedisSettings, Router};

pub fn redis_url() -> String {
    std::env::var("HLBOT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A key prefix of the test's own on the shared server.
pub struct TestRedis {
    pub prefix: String,
    pub url: String,
    pub settings: RedisSettings,
}

impl TestRedis {
    pub fn new() -> Self {
        Self::on(&redis_url())
    }

    /// A prefix of the test's own on the server at `url`.
    pub fn on(url: &str) -> Self {
        let prefix = format!("t{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let url = url.to_string();
        let settings = RedisSettings::new(&url)
            .expect("url")
            .with_prefix(&prefix)
            .with_result_prefix(&prefix);
        Self {
            prefix,
            url,
            settings,
        }
    }

    pub async fn broker(&self, visibility: Duration) -> Broker {
        Broker::connect(
            &self.settings,
            BrokerOptions {
                visibility_timeout: visibility,
                ..Default::default()
            },
        )
        .await
        .expect("redis reachable")
    }

    pub async fn backend(&self) -> Backend {
        Backend::connect(&self.settings, Some(Duration::from_secs(3600)))
            .await
            .expect("redis")
    }

    pub async fn client(&self) -> Client {
        Client::new(
            self.broker(Duration::from_secs(3600)).await,
            self.backend().await,
            Router::default(),
        )
    }

    /// A plain async connection for assertions.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis")
    }

    pub fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    /// Committed runs of a task id (workers started with `--count-runs`).
    pub async fn runs(&self, id: &str) -> i64 {
        let mut c = self.conn().await;
        redis::cmd("GET")
            .arg(self.key(&format!("hlbot.runs.{id}")))
            .query_async::<Option<i64>>(&mut c)
            .await
            .expect("get")
            .unwrap_or(0)
    }
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut c) = client.get_connection() else {
            return;
        };
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut c)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
        }
    }
}

/// A `redis-server` of the test's own (its own port and folder), for faults that would disturb
/// other tests on the shared server: refused writes, a crash, a restart from its AOF.
pub struct PrivateRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    /// Settings after the defaults (the last of a repeated one wins).
    extra: Vec<String>,
}

impl PrivateRedis {
    /// Start one with AOF on. Panics (fails the test) when `redis-server` is missing under CI.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// Start one with AOF on, then `extra` settings (`["--appendonly", "no"]` turns it off).
    pub fn start_with(extra: &[&str]) -> Option<Self> {
        if std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            return crate::env::missing("the program redis-server");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut r = Self {
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        r.restart();
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// (Re)start on the same port and folder (data comes back from the AOF).
    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let up = redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if up.is_ok() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "private redis did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn settings(&self, prefix: &str) -> RedisSettings {
        RedisSettings::new(&self.url())
            .expect("url")
            .with_prefix(prefix)
            .with_result_prefix(prefix)
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis")
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
