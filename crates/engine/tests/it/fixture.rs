//! Shared real-Redis fixture: a unique key prefix per test, cleaned up on drop.

use std::time::Duration;

use hlbot_engine::{Backend, Broker, BrokerOptions, Client, RedisSettings, Router};

pub fn redis_url() -> String {
    std::env::var("HLBOT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

pub struct TestRedis {
    pub prefix: String,
    pub settings: RedisSettings,
}

impl TestRedis {
    pub fn new() -> Self {
        let prefix = format!("t{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let settings = RedisSettings::new(&redis_url())
            .expect("url")
            .with_prefix(&prefix)
            .with_result_prefix(&prefix);
        Self { prefix, settings }
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
        redis::Client::open(redis_url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis")
    }

    pub fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else {
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
