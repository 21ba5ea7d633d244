//! [`Conn`], the self-healing connection every ordinary command goes through: redis-rs's
//! `ConnectionManager` (reconnects when the connection drops) that is also replaced when Redis
//! stops answering on it. The manager treats a response time-out as a passing error and keeps
//! the connection, so a peer that went silent without closing (a partition, a NAT or load
//! balancer that forgot the flow, a fail-over behind one address) would time every command out
//! for as long as the kernel keeps the socket — a quarter of an hour. Here the first time-out
//! opens a new connection in the background and the commands after it use that one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::clock::{DEADLINE, ServerClock, local_now};

/// A command Redis has not answered in this long counts as a silent connection.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A cheaply cloned handle; every clone follows the replacement.
#[derive(Clone)]
pub struct Conn(Arc<Shared>);

struct Shared {
    current: Mutex<ConnectionManager>,
    clock: ServerClock,
    replacing: AtomicBool,
    client: redis::Client,
    db: i64,
}

fn config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2))
}

impl Conn {
    /// Connect with `client`.
    pub async fn connect(client: redis::Client) -> redis::RedisResult<Conn> {
        let manager = client.get_connection_manager_with_config(config()).await?;
        Ok(Conn(Arc::new(Shared {
            current: Mutex::new(manager),
            clock: ServerClock::default(),
            replacing: AtomicBool::new(false),
            db: client.get_connection_info().redis_settings().db(),
            client,
        })))
    }

    /// Redis's clock, for the deadline a call carries (`clock` module).
    pub fn clock(&self) -> &ServerClock {
        &self.0.clock
    }

    /// The deadline for a call sent now, in Redis's clock (`TIME` on first use).
    pub async fn deadline(&mut self) -> redis::RedisResult<f64> {
        let off = match self.0.clock.offset() {
            Some(o) => o,
            None => {
                let (secs, micros): (f64, f64) = redis::cmd("TIME").query_async(self).await?;
                let o = secs + micros / 1e6 - local_now();
                self.0.clock.set(o);
                o
            }
        };
        Ok(local_now() + off + DEADLINE.as_secs_f64())
    }

    fn current(&self) -> ConnectionManager {
        self.0
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a time-out: open a new connection in the background (one at a time) and use it
    /// from then on. A failed attempt leaves the old one; the next time-out tries again.
    fn on_error(&self, e: &RedisError) {
        if !e.is_timeout() || self.0.replacing.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::warn!(
            "Redis did not answer within {} s; opening a new connection",
            RESPONSE_TIMEOUT.as_secs()
        );
        let weak: Weak<Shared> = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let Some(sh) = weak.upgrade() else { return };
            match sh.client.get_connection_manager_with_config(config()).await {
                Ok(m) => *sh.current.lock().unwrap_or_else(|p| p.into_inner()) = m,
                Err(e) => tracing::debug!("new Redis connection failed: {e}"),
            }
            sh.replacing.store(false, Ordering::SeqCst);
        });
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut m = self.current();
        Box::pin(async move {
            let r = m.req_packed_command(cmd).await;
            if let Err(e) = &r {
                self.on_error(e);
            }
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut m = self.current();
        Box::pin(async move {
            let r = m.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &r {
                self.on_error(e);
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.0.db
    }
}
