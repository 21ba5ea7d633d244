//! Retries, in one place: whether a retry happens and after how long ([`decide`]: the error's own
//! wait, else the task's backoff policy, unless retries are used up), and the message a retry
//! republishes ([`next_message`], reference §7.1): same id, `retries + 1`, `eta = now + countdown`,
//! `parent_id` = the task's own id, a new delivery tag, everything else carried over.

use std::time::Duration;

use chrono::Utc;
use hlbot_proto::{TaskMessage, time};

use serde_json::json;

/// Retry with exponential backoff: `delay × 2^retries`, capped, optionally jittered (uniform in
/// `[0, countdown]` like Celery's `retry_jitter`). The seed: 3 retries, 60 s base.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: Option<u32>,
    pub delay: Duration,
    pub max_delay: Duration,
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: Some(3),
            delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(600),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// Countdown before retry number `retries + 1`.
    pub fn countdown(&self, retries: u32) -> Duration {
        let base = self.delay.as_secs_f64() * 2f64.powi(retries.min(30) as i32);
        let capped = base.min(self.max_delay.as_secs_f64());
        let secs = if self.jitter {
            rand::random::<f64>() * capped
        } else {
            capped
        };
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// A retry's countdown, or `None` when `policy`'s retries are used up. `after` is a wait the error
/// named itself (a 429's `retry-after`); otherwise the policy's backoff for retry `retries + 1`.
pub fn decide(policy: &RetryPolicy, retries: u32, after: Option<Duration>) -> Option<Duration> {
    if policy.max_retries.is_some_and(|m| retries >= m) {
        return None;
    }
    Some(after.unwrap_or_else(|| policy.countdown(retries)))
}

pub fn next_message(msg: &TaskMessage, countdown: Duration) -> TaskMessage {
    let mut next = msg.clone();
    next.headers.retries += 1;
    let countdown = countdown.min(Duration::from_secs_f64(crate::worker::limits::MAX_SECS));
    let now = Utc::now();
    let eta = chrono::Duration::from_std(countdown)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(now);
    next.headers.eta = Some(time::isoformat(eta));
    next.headers.parent_id = Some(msg.id().to_string());
    next.headers.extra.remove("redelivered");
    next.envelope
        .properties
        .delivery_info
        .extra
        .remove("redelivered");
    next.envelope.properties.delivery_tag = uuid::Uuid::new_v4().to_string();
    if let Some(origin) = &msg.headers.origin {
        next.envelope
            .properties
            .extra
            .insert("origin".into(), json!(origin));
    }
    next.sync_envelope();
    next
}
