//! The fleet's daily LLM spend in Redis: `<prefix>hlbot.llm.spend.<YYYY-MM-DD>` (UTC), a float
//! string grown with `INCRBYFLOAT`, expiring two days after its day began. Backs
//! `hlbot_llm::SpendLedger`; the cap itself is enforced in `hlbot-llm`.

use async_trait::async_trait;
use hlbot_engine::redis::Conn;
use hlbot_llm::SpendLedger;

pub struct RedisSpend {
    conn: Conn,
    prefix: String,
}

impl RedisSpend {
    /// `prefix` is the full key prefix up to the date (`<global prefix>hlbot.llm.spend.`).
    pub fn new(conn: Conn, prefix: String) -> Self {
        Self { conn, prefix }
    }

    /// Today's key.
    pub fn key(&self) -> String {
        format!("{}{}", self.prefix, chrono::Utc::now().format("%Y-%m-%d"))
    }
}

fn err(e: redis::RedisError) -> hlbot_llm::Error {
    hlbot_llm::Error::Cache(format!("daily spend: {e}"))
}

#[async_trait]
impl SpendLedger for RedisSpend {
    async fn spent_today(&self) -> hlbot_llm::Result<f64> {
        let mut c = self.conn.clone();
        let v: Option<String> = redis::cmd("GET")
            .arg(self.key())
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0.0))
    }

    async fn add(&self, usd: f64) -> hlbot_llm::Result<()> {
        let mut c = self.conn.clone();
        let key = self.key();
        let _: () = redis::pipe()
            .atomic()
            .cmd("INCRBYFLOAT")
            .arg(&key)
            .arg(usd)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(2 * 24 * 3600)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the real Redis the suite uses (`HLBOT_TEST_REDIS`); under `CI=true` a missing
    /// Redis fails the test.
    #[tokio::test]
    async fn books_and_reads_todays_spend_with_a_ttl() {
        let url =
            std::env::var("HLBOT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let conn = match redis::Client::open(url.as_str()) {
            Ok(c) => Conn::connect(c).await,
            Err(e) => Err(e),
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "no Redis: {e}"
                );
                eprintln!("SKIP: no Redis at {url}: {e}");
                return;
            }
        };
        let prefix = format!("t{}:hlbot.llm.spend.", std::process::id());
        let s = RedisSpend::new(conn.clone(), prefix.clone());
        assert_eq!(s.spent_today().await.unwrap(), 0.0);
        s.add(0.25).await.unwrap();
        s.add(0.5).await.unwrap();
        assert!((s.spent_today().await.unwrap() - 0.75).abs() < 1e-9);
        let key = s.key();
        assert!(
            key.starts_with(&prefix) && key.len() == prefix.len() + 10,
            "{key}"
        );
        let mut c = conn.clone();
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(ttl > 24 * 3600 && ttl <= 2 * 24 * 3600, "{ttl}");
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
    }
}
