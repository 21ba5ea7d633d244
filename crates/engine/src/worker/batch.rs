//! One writer batch as one `batch.lua` call: the script's arguments for each op (which stores
//! are worth writing, chord tokens), and what the reply says (per-op errors, chords completed,
//! chord bodies someone else sent).

use std::sync::atomic::Ordering;

use hlbot_proto::Serializer;

use crate::redis::Conn;

use crate::deadletter::DEAD_LETTER_CAP;
use crate::redis::scripts;
use crate::worker::op::Op;
use crate::worker::writer::Ctx;

/// A chord body's token: unique per writer, batch and op, the same when a batch is retried.
pub(super) fn token(me: &str, seq: u64, op: usize) -> String {
    format!("{me}:{seq}:{op}")
}

/// What a written batch reported.
#[derive(Default)]
pub(super) struct Applied {
    /// Per-op errors (a wrong-type key): reported, not retried.
    pub(super) errs: Vec<String>,
    /// The chords the batch completed: (index of the chord op, ordered entries).
    pub(super) done: Vec<(usize, Vec<Vec<u8>>)>,
    /// Indices of [`Op::ChordTake`]s whose body someone else sent: their ops were not applied.
    pub(super) skipped: Vec<usize>,
}

/// Run one batch. Ok carries per-op errors (a wrong-type key): reported, not retried. A batch
/// that reached Redis past its deadline wrote nothing: sent once more on Redis's clock.
pub(super) async fn apply(
    ctx: &Ctx,
    conn: &mut Conn,
    batch: &[Op],
    seq: u64,
) -> Result<Applied, String> {
    for _ in 0..2 {
        match apply_once(ctx, conn, batch, seq).await? {
            Some(a) => return Ok(a),
            None => continue,
        }
    }
    Err("Redis's clock: the batch arrived past its deadline twice".into())
}

/// One `batch.lua` call; `None` when it arrived past its deadline (the clock follows Redis's).
async fn apply_once(
    ctx: &Ctx,
    conn: &mut Conn,
    batch: &[Op],
    seq: u64,
) -> Result<Option<Applied>, String> {
    let deadline = conn
        .deadline()
        .await
        .map_err(|e| ctx.settings.err(e).to_string())?;
    let plan = Plan::of(batch);
    let keys = &ctx.keys;
    let mut inv = scripts::BATCH.prepare_invoke();
    inv.arg(&ctx.marker)
        .arg(seq)
        .arg(ctx.ttl)
        .arg(keys.unacked())
        .arg(keys.unacked_index())
        .arg(crate::broker::now_secs())
        .arg(keys.dead_letter())
        .arg(DEAD_LETTER_CAP)
        .arg(keys.dead_trimmed())
        .arg(&ctx.chords)
        .arg(keys.chords_pending())
        .arg(keys.chords_sent())
        .arg(&ctx.owner)
        .arg(deadline)
        .arg(keys.held());
    let mut n = 0usize;
    let amqp = ctx.sink.is_some();
    for (i, op) in batch.iter().enumerate() {
        if amqp && op.for_amqp() {
            continue;
        }
        match op {
            Op::Flush(_) | Op::Slot => continue,
            Op::Ack(tag) => {
                inv.arg("ack").arg(tag);
            }
            Op::Store(meta) => {
                if !plan.keep[i] {
                    continue;
                }
                inv.arg("store")
                    .arg(keys.result(&meta.task_id))
                    .arg(meta.encode(ctx.settings.result_serializer));
            }
            Op::Unacked { tag, stored, acked } => {
                if acked.load(Ordering::SeqCst) {
                    continue;
                }
                inv.arg("unacked").arg(tag).arg(stored);
            }
            Op::Claim {
                list,
                raw,
                tag,
                stored,
            } => {
                inv.arg("claim").arg(list).arg(raw).arg(tag).arg(stored);
            }
            Op::Drop { list, size } => {
                inv.arg("drop").arg(list).arg(*size);
            }
            Op::Requeue { tag, key, raw } => {
                inv.arg("requeue").arg(tag).arg(key).arg(raw);
            }
            Op::Restore { tag, key, raw } => {
                inv.arg("restore").arg(tag).arg(key).arg(raw);
            }
            Op::Publish(msg) => {
                inv.arg("lpush")
                    .arg(keys.queue_for(msg.queue(), msg.priority()))
                    .arg(msg.envelope.to_vec());
            }
            Op::PushHead { key, raw } => {
                inv.arg("rpush").arg(key).arg(raw);
            }
            Op::DeadLetter(rec) => {
                inv.arg("dead").arg(rec);
            }
            Op::Incr(key) => {
                inv.arg("incr").arg(key);
            }
            Op::ChordSize { group, size } => {
                inv.arg("size")
                    .arg(keys.chord_part(group, ".c"))
                    .arg(keys.chord_part(group, ".s"))
                    .arg(*size);
            }
            Op::ChordPart(p) => {
                let index = p
                    .index
                    .map_or_else(|| "+inf".to_string(), |i| i.to_string());
                // Progress metas are JSON: written only where results are JSON.
                let json = ctx.settings.result_serializer == Serializer::Json;
                let progress = p.progress.as_deref().filter(|_| json);
                inv.arg("chord")
                    .arg(i)
                    .arg(keys.taskset(&p.group))
                    .arg(&p.id)
                    .arg(p.entry_in(ctx.settings.result_serializer))
                    .arg(index)
                    .arg(if ctx.settings.chord_ordered { "1" } else { "0" })
                    .arg(progress.map_or(String::new(), |b| keys.result(b)))
                    .arg(progress.unwrap_or(""))
                    .arg(serde_json::to_string(&**p).unwrap_or_default())
                    .arg(token(&ctx.me, seq, i));
            }
            Op::ChordTake { field, token } => {
                inv.arg("take")
                    .arg(i)
                    .arg(field)
                    .arg(token)
                    .arg(if amqp { "1" } else { "0" });
            }
            Op::ChordEnd => {
                inv.arg("end");
            }
            Op::ChordForget { field, token } => {
                inv.arg("forget").arg(field).arg(token);
            }
        }
        n += 1;
    }
    if n == 0 {
        return Ok(Some(Applied::default()));
    }
    let reply: Vec<redis::Value> = inv
        .invoke_async(conn)
        .await
        .map_err(|e| ctx.settings.err(e).to_string())?;
    if conn.clock().stale_values(&reply) {
        return Ok(None);
    }
    let mut out = Applied::default();
    for v in reply.into_iter().skip(1) {
        match v {
            redis::Value::BulkString(b) => out.errs.push(String::from_utf8_lossy(&b).into_owned()),
            redis::Value::SimpleString(s) => out.errs.push(s),
            redis::Value::ServerError(e) => out.errs.push(format!("{e:?}")),
            redis::Value::Array(items) => {
                let mut it = items.into_iter();
                match it.next() {
                    Some(redis::Value::Int(i)) => {
                        let entries = it
                            .filter_map(|e| match e {
                                redis::Value::BulkString(b) => Some(b),
                                _ => None,
                            })
                            .collect();
                        out.done.push((i as usize, entries));
                    }
                    Some(redis::Value::BulkString(tag)) if tag == b"skip" => {
                        if let Some(redis::Value::Int(i)) = it.next() {
                            out.skipped.push(i as usize);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(Some(out))
}

/// Which stores of a batch are written: a store followed by a later store of the same task in the
/// batch is skipped (STARTED, PROGRESS, RETRY, FAILURE then another state: the later one is what
/// the atomic batch leaves anyway, and its SETEX and PUBLISH are saved). A SUCCESS is always kept:
/// `batch.lua` never writes over it, so a later store of the same task must still meet it.
struct Plan {
    keep: Vec<bool>,
}

impl Plan {
    fn of(batch: &[Op]) -> Self {
        let mut keep = vec![true; batch.len()];
        let mut later: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (i, op) in batch.iter().enumerate().rev() {
            if let Op::Store(m) = op {
                if m.status != hlbot_proto::State::Success && later.contains(m.task_id.as_str()) {
                    keep[i] = false;
                }
                later.insert(m.task_id.as_str());
            }
        }
        Self { keep }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use hlbot_proto::{ResultMeta, State};
    use serde_json::json;

    fn store(id: &str, s: State) -> Op {
        Op::Store(ResultMeta::new(id, s, json!(null), Utc::now()))
    }

    #[test]
    fn plan_drops_superseded_stores_but_never_a_success() {
        let batch = vec![
            store("a", State::Started),
            Op::Ack("t-a".into()),
            store("b", State::Started),
            store("a", State::Success),
            Op::Ack("t-b".into()),
            store("c", State::Custom("PROGRESS".into())),
            store("c", State::Started),
            store("d", State::Success),
            store("d", State::Failure),
            store("e", State::Retry),
            store("e", State::Started),
            store("e", State::Failure),
        ];
        let plan = Plan::of(&batch);
        // a's STARTED is overwritten in the same batch; b is still running; c's PROGRESS is
        // overwritten by its STARTED; d's SUCCESS stays (batch.lua then skips the FAILURE over
        // it); e's RETRY and STARTED are overwritten by its FAILURE.
        assert_eq!(
            plan.keep,
            vec![
                false, true, true, true, true, false, true, true, true, false, false, true
            ]
        );
    }
}
