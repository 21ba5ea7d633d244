//! Long-lived connections that notice a silent Redis: a pub/sub [`Subscription`] that pings its
//! connection and ends when a ping goes unanswered, and [`blocking_reply`], the bound on a
//! blocking command's wait. A peer that stops answering without closing (a network partition,
//! a NAT or load balancer that forgot the flow, a frozen VM) sends no FIN and no RST: without
//! these a worker would wait on it for ever — no more fetching, no more control replies.

use std::time::Duration;

use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::{Msg, RedisResult};
use tokio::time::{Instant, sleep_until, timeout};

use super::RedisSettings;
use crate::Result;

/// How long past its own timeout a blocking command (`BLMOVE`, `BRPOP`) may go unanswered
/// before its connection is taken for dead (the caller drops it and reconnects).
pub const BLOCK_GRACE: Duration = Duration::from_secs(10);

/// A quiet subscription pings its connection this often…
pub const PING_EVERY: Duration = Duration::from_secs(15);

/// …and takes it for dead when the answer (or a subscribe's confirmation) takes longer.
pub const PING_WAIT: Duration = Duration::from_secs(5);

/// Await a blocking command that Redis answers within `wait`: no answer by `wait` +
/// [`BLOCK_GRACE`] is an I/O time-out error, like a dropped connection's.
pub async fn blocking_reply<T>(
    wait: Duration,
    reply: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    let limit = wait + BLOCK_GRACE;
    match timeout(limit, reply).await {
        Ok(r) => r,
        Err(_) => Err(silent(limit)),
    }
}

fn silent(after: Duration) -> redis::RedisError {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("Redis did not answer within {:.0} s", after.as_secs_f64()),
    )
    .into()
}

/// A pub/sub connection subscribed to channels or patterns, checked with a `PING` whenever it
/// has been quiet for [`PING_EVERY`].
pub struct Subscription {
    sink: PubSubSink,
    stream: PubSubStream,
    ping_at: Instant,
}

impl Subscription {
    /// Subscribe to `channel` (`SUBSCRIBE`).
    pub async fn channel(settings: &RedisSettings, channel: &str) -> Result<Self> {
        Self::open(settings, channel, false).await
    }

    /// Subscribe to `pattern` (`PSUBSCRIBE`).
    pub async fn pattern(settings: &RedisSettings, pattern: &str) -> Result<Self> {
        Self::open(settings, pattern, true).await
    }

    async fn open(settings: &RedisSettings, name: &str, pattern: bool) -> Result<Self> {
        let opened = timeout(PING_WAIT, async {
            let (mut sink, stream) = settings.pubsub().await?.split();
            let r = match pattern {
                true => sink.psubscribe(name).await,
                false => sink.subscribe(name).await,
            };
            r.map_err(|e| settings.err(e))?;
            Ok((sink, stream))
        })
        .await;
        let (sink, stream) = opened.unwrap_or_else(|_| Err(settings.err(silent(PING_WAIT))))?;
        Ok(Subscription {
            sink,
            stream,
            ping_at: Instant::now() + PING_EVERY,
        })
    }

    /// The next message; `None` once the connection closed or a ping went unanswered (the
    /// caller subscribes again).
    pub async fn next(&mut self) -> Option<Msg> {
        loop {
            tokio::select! {
                m = self.stream.next() => {
                    self.ping_at = Instant::now() + PING_EVERY;
                    return m;
                }
                _ = sleep_until(self.ping_at) => {
                    match timeout(PING_WAIT, self.sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => self.ping_at = Instant::now() + PING_EVERY,
                        Ok(Err(e)) => {
                            tracing::debug!("subscription ping failed: {e}");
                            return None;
                        }
                        Err(_) => {
                            tracing::warn!(
                                "Redis did not answer a subscription ping within {} s; subscribing again",
                                PING_WAIT.as_secs()
                            );
                            return None;
                        }
                    }
                }
            }
        }
    }
}
