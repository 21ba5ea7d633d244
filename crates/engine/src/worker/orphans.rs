//! Chord bodies a worker left unsent when it died between the step that completed the chord and
//! the batch that sends the body: `orphans.lua` re-leases their pending records to this worker
//! once the owner's liveness key is gone, and this worker's writer sends each body — guarded by
//! the new token, so a body goes once even if the old owner was only cut off and comes back.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::broker::now_secs;
use crate::deadletter::DeadLetter;
use crate::error::Result;
use crate::redis::scripts;
use crate::worker::Shared;
use crate::worker::chord::{self, ChordPart};
use crate::worker::writer::Op;

/// How long a sent body stays noted (`hlbot.chords.sent`): a cut-off owner's late batch within
/// this window sends nothing.
pub const SENT_KEEP: Duration = Duration::from_secs(600);

/// A pending record as `batch.lua` writes it (`o`, the owner, is only read by the Lua).
#[derive(Debug, Deserialize)]
struct Record {
    /// The lease's token.
    k: String,
    /// The completing part's [`ChordPart`], JSON.
    p: String,
    /// The chord's entries in order; Lua's JSON writes an empty list as `{}`.
    #[serde(default)]
    e: Value,
}

impl Record {
    fn entries(&self) -> Vec<Vec<u8>> {
        self.e
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| s.as_bytes().to_vec())
            .collect()
    }
}

/// Take over the chord bodies of dead workers and queue them on this worker's writer. Returns how
/// many bodies were queued.
pub(crate) async fn recover(sh: &Shared) -> Result<usize> {
    let keys = sh.broker.keys();
    let mut c = sh.broker.conn();
    let lease = format!(
        "{}:{}:",
        sh.worker_id,
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..8)
            .unwrap_or("0")
    );
    let deadline = c
        .deadline()
        .await
        .map_err(|e| sh.broker.settings().err(e))?;
    let reply: Vec<Vec<u8>> = scripts::ORPHANS
        .arg(keys.chords_pending())
        .arg(keys.chords_sent())
        .arg(keys.alive(""))
        .arg(&sh.worker_id)
        .arg(&lease)
        .arg(now_secs())
        .arg(SENT_KEEP.as_secs())
        .arg(deadline)
        .invoke_async(&mut c)
        .await
        .map_err(|e| sh.broker.settings().err(e))?;
    if c.clock().stale(&reply) {
        return Ok(0);
    }
    let mut n = 0;
    for item in reply.chunks_exact(3) {
        let field = String::from_utf8_lossy(&item[0]).into_owned();
        let ops = ops_for(&field, &item[1], &item[2] == b"take");
        if ops.iter().any(|o| matches!(o, Op::ChordEnd)) {
            tracing::warn!(
                "sending the chord body of {field}: the worker that completed the chord died before it did"
            );
            n += 1;
        }
        sh.writer.send_all(ops);
    }
    Ok(n)
}

/// The writer ops for one re-leased record: the body between its take and end; a record that
/// cannot be read is dead-lettered with the reason (and its lease dropped).
fn ops_for(field: &str, raw: &[u8], taken: bool) -> Vec<Op> {
    let rec = serde_json::from_slice::<Record>(raw).map_err(|e| e.to_string());
    let part = rec.as_ref().map_err(Clone::clone).and_then(|r| {
        serde_json::from_str::<ChordPart>(&r.p).map_err(|e| format!("chord part: {e}"))
    });
    match (taken, rec, part) {
        (true, Ok(rec), Ok(part)) => {
            chord::guarded(field.to_string(), rec.k.clone(), &part, &rec.entries())
        }
        (_, rec, part) => {
            let why = part.err().unwrap_or_else(|| "not JSON".into());
            tracing::error!("chord body record of {field} cannot be read ({why}); dead-lettered");
            let dead = DeadLetter {
                reason: format!("chord body record of {field} cannot be read: {why}"),
                queue: String::new(),
                task_id: None,
                task: None,
                at: now_secs(),
                raw: String::from_utf8_lossy(raw).into_owned(),
                size: None,
                // Not a message: `dead replay` must not push it onto a queue.
                truncated: true,
            };
            let mut ops = vec![Op::DeadLetter(dead.to_bytes())];
            if let Ok(rec) = rec {
                ops.push(Op::ChordForget {
                    field: field.to_string(),
                    token: rec.k,
                });
            }
            ops
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::links::Parent;
    use serde_json::json;

    fn part() -> ChordPart {
        ChordPart {
            group: "g".into(),
            id: "a".into(),
            index: Some(0),
            entry: String::new(),
            callback: json!({"task": "cb", "args": [], "kwargs": {}, "options": {"task_id": "c"}}),
            parent: Parent {
                id: "a".into(),
                root_id: None,
                origin: None,
                queue: "default".into(),
                priority: 0,
                serializer: Default::default(),
            },
            progress: None,
        }
    }

    #[test]
    fn a_record_becomes_the_body_between_take_and_end() {
        let raw = serde_json::to_vec(&json!({"o": "w", "k": "tok", "t": 1,
            "p": serde_json::to_string(&part()).unwrap(),
            "e": ["[1, \"a\", \"SUCCESS\", 5]", "[1, \"b\", \"SUCCESS\", 6]"]}))
        .unwrap();
        let ops = ops_for("f", &raw, true);
        let [Op::ChordTake { field, token }, Op::Publish(m), Op::ChordEnd] = ops.as_slice() else {
            panic!("{ops:?}")
        };
        assert_eq!((field.as_str(), token.as_str()), ("f", "tok"));
        assert_eq!(m.id(), "c");
        assert_eq!(m.args, vec![json!([5, 6])]);
    }

    #[test]
    fn an_unreadable_record_is_dead_lettered_not_dropped() {
        let raw = br#"{"o": "w", "k": "tok", "t": 1, "p": "{broken", "e": {}}"#;
        let ops = ops_for("f", raw, true);
        let [Op::DeadLetter(d), Op::ChordForget { token, .. }] = ops.as_slice() else {
            panic!("{ops:?}")
        };
        assert_eq!(token, "tok");
        let d: DeadLetter = serde_json::from_slice(d).unwrap();
        assert!(d.reason.contains("chord part"), "{}", d.reason);
        assert!(d.truncated);
        let ops = ops_for("f", b"not json", false);
        assert!(matches!(ops.as_slice(), [Op::DeadLetter(_)]), "{ops:?}");
    }
}
