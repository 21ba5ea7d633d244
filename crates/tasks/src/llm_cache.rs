//! LLM response cache in Redis (`hlbot.llm.cache.<key>`, with a TTL), used when the worker has a
//! broker: a retried or repeated task is not billed twice, whichever worker runs it.

use std::time::Duration;

use async_trait::async_trait;
use hlbot_engine::redis::Conn;
use hlbot_llm::ResponseCache;
use redis::AsyncCommands;

pub struct RedisCache {
    conn: Conn,
    prefix: String,
    ttl: Duration,
}

impl RedisCache {
    /// `prefix` is the full entry prefix (`Keys::app("llm.cache.")`); entries live `ttl`.
    pub fn new(conn: Conn, prefix: String, ttl: Duration) -> Self {
        Self { conn, prefix, ttl }
    }
}

#[async_trait]
impl ResponseCache for RedisCache {
    async fn get(&self, key: &str) -> hlbot_llm::Result<Option<String>> {
        let mut c = self.conn.clone();
        c.get(format!("{}{key}", self.prefix))
            .await
            .map_err(|e| hlbot_llm::Error::Cache(e.to_string()))
    }

    async fn put(&self, key: &str, value: &str) -> hlbot_llm::Result<()> {
        let mut c = self.conn.clone();
        c.set_ex(
            format!("{}{key}", self.prefix),
            value,
            self.ttl.as_secs().max(1),
        )
        .await
        .map_err(|e| hlbot_llm::Error::Cache(e.to_string()))
    }
}
