//! Follow-up messages (callbacks, the next chain step) of runs on RabbitMQ. On Redis a run's
//! result, follow-ups and ack commit in one `batch.lua` step; on RabbitMQ the result goes to
//! Redis first and the follow-ups and ack to the broker after it (`amqp/sink.rs`), so a worker
//! killed in between leaves a stored SUCCESS whose follow-ups were never published. When the
//! redelivered copy is skipped (already succeeded), they are published again — unless this
//! process handed them to its sink itself (which retries until confirmed, or spills them at
//! exit): then a connection blip does not duplicate them. At least once, never lost.
//! Remembers the last [`RECENT`] such task ids only; an older one is resent (a duplicate at
//! worst).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use hlbot_proto::TaskMessage;
use serde_json::Value;

use crate::worker::Shared;
use crate::worker::links;
use crate::worker::writer::Op;

/// How many task ids with follow-ups sent by this process are remembered.
pub const RECENT: usize = 65_536;

/// Task ids whose follow-ups this process queued for publishing, most recent last.
#[derive(Debug, Default)]
pub struct Followups {
    recent: Mutex<(VecDeque<String>, HashSet<String>)>,
}

impl Followups {
    /// This process queued the follow-ups of task `id`.
    pub fn queued(&self, id: &str) {
        if let Ok(mut g) = self.recent.lock() {
            let (order, set) = &mut *g;
            if set.insert(id.to_string()) {
                order.push_back(id.to_string());
                if order.len() > RECENT {
                    if let Some(old) = order.pop_front() {
                        set.remove(&old);
                    }
                }
            }
        }
    }

    fn was_queued(&self, id: &str) -> bool {
        self.recent
            .lock()
            .map(|g| g.1.contains(id))
            .unwrap_or(false)
    }
}

/// The ops that publish `msg`'s follow-ups again for a redelivered copy skipped because the task
/// already succeeded with `result` (empty when this process queued them itself).
pub fn resend(sh: &Shared, msg: &TaskMessage, result: &Value) -> Vec<Op> {
    if sh.followups.was_queued(msg.id()) {
        return vec![];
    }
    let ops: Vec<Op> = links::callbacks(msg, result);
    if !ops.is_empty() {
        tracing::warn!(
            "Task {}[{}] redelivered after its SUCCESS: publishing its {} follow-up message(s) again",
            msg.headers.task,
            msg.id(),
            ops.len()
        );
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_most_recent_ids_only() {
        let f = Followups::default();
        for i in 0..RECENT + 10 {
            f.queued(&format!("t{i}"));
        }
        f.queued("t20"); // already known: no second entry
        assert!(!f.was_queued("t0") && !f.was_queued("t9"));
        assert!(f.was_queued("t10") && f.was_queued(&format!("t{}", RECENT + 9)));
        assert_eq!(f.recent.lock().unwrap().0.len(), RECENT);
    }
}
