//! The message a retry republishes (reference §7.1): same id, `retries + 1`, `eta = now + countdown`,
//! `parent_id` = the task's own id, a new delivery tag, everything else carried over.

use std::time::Duration;

use chrono::Utc;
use hlbot_proto::{TaskMessage, time};
use serde_json::json;

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
