//! Redis's clock as this process sees it, for the deadline `fetch.lua`, `batch.lua` and
//! `orphans.lua` carry (checked by `deadline.lua`, prepended to each). A call that reaches Redis
//! after its deadline does nothing and answers `'!stale', <Redis time>`:
//! its caller stopped waiting for the reply at the response time-out (a Redis paused by `SIGSTOP`
//! or a frozen VM, a connection whose bytes arrive long after) and has retried or moved on, so a
//! late fetch would record messages as unacked for a reply nobody reads, and a late writer batch
//! would apply after the batches that followed it. The offset is measured with `TIME` on first
//! use and follows a `!stale` answer that arrives on a live connection (Redis's clock moved).

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::manager::RESPONSE_TIMEOUT;

/// A call that reaches Redis this long after it was sent does nothing (5 s short of the response
/// time-out, for clock error).
pub const DEADLINE: Duration = RESPONSE_TIMEOUT.saturating_sub(Duration::from_secs(5));

/// Redis's clock minus ours, in seconds, once measured.
#[derive(Default)]
pub struct ServerClock(Mutex<Option<f64>>);

/// Our clock, unix seconds.
pub fn local_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl ServerClock {
    pub fn offset(&self) -> Option<f64> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, offset: f64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(offset);
    }

    /// Whether `reply` is a `'!stale', <Redis time>` answer (the call did nothing); if so the
    /// clock follows the Redis time it reported.
    pub fn stale<B: AsRef<[u8]>>(&self, reply: &[B]) -> bool {
        match reply {
            [tag, t] if tag.as_ref() == b"!stale" => {
                self.follow(String::from_utf8_lossy(t.as_ref()).parse().unwrap_or(0.0));
                true
            }
            _ => false,
        }
    }

    /// [`ServerClock::stale`] of a reply read as values (`batch.lua`'s).
    pub fn stale_values(&self, reply: &[redis::Value]) -> bool {
        match reply {
            [redis::Value::BulkString(tag), redis::Value::BulkString(t)] => self.stale(&[tag, t]),
            _ => false,
        }
    }

    fn follow(&self, server_now: f64) {
        let off = server_now - local_now();
        tracing::warn!(
            "Redis's clock is {off:.1} s off this host's: a call arrived past its deadline and did nothing; deadlines follow Redis's clock now"
        );
        self.set(off);
    }
}
