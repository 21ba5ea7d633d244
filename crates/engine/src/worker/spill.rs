//! The spill file: writes a worker could not hand to Redis before it had to exit (Redis away at
//! shutdown) are saved as JSON lines and applied by the next worker started with the same file,
//! through its writer, before it fetches anything. Messages held back (reserved, ETA) are spilled
//! as conditional restores (applied only if their `unacked` entry is still there, so a message
//! another worker restored meanwhile is not duplicated); retries, callbacks and early-acked work
//! are spilled as plain pushes (they exist nowhere else). [`save_pending`] and [`replay`] are the
//! worker's two uses: at exit and at start.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hlbot_proto::ResultMeta;
use serde::{Deserialize, Serialize};

use crate::redis::Keys;
use crate::worker::Shared;
use crate::worker::chord::ChordPart;
use crate::worker::writer::Op;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one line at a time, written once at exit
enum Spilled {
    Ack {
        tag: String,
    },
    Unacked {
        tag: String,
        stored: String,
    },
    Claim {
        list: String,
        raw: String,
        tag: String,
        stored: String,
    },
    Drop {
        list: String,
        size: usize,
    },
    Store {
        meta: ResultMeta,
    },
    Requeue {
        tag: String,
        key: String,
        raw: String,
    },
    Restore {
        tag: String,
        key: String,
        raw: String,
    },
    Lpush {
        key: String,
        raw: String,
    },
    Rpush {
        key: String,
        raw: String,
    },
    Dead {
        rec: String,
    },
    Incr {
        key: String,
    },
    ChordSize {
        group: String,
        size: usize,
    },
    Chord {
        part: ChordPart,
    },
    ChordTake {
        field: String,
        token: String,
    },
    ChordEnd,
    ChordForget {
        field: String,
        token: String,
    },
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Spilled {
    fn of(op: Op, keys: &Keys) -> Option<Self> {
        Some(match op {
            Op::Ack(tag) => Spilled::Ack { tag },
            Op::Unacked { tag, stored, acked } => {
                if acked.load(std::sync::atomic::Ordering::SeqCst) {
                    return None;
                }
                Spilled::Unacked {
                    tag,
                    stored: text(&stored),
                }
            }
            Op::Claim {
                list,
                raw,
                tag,
                stored,
            } => Spilled::Claim {
                list,
                raw: text(&raw),
                tag,
                stored: text(&stored),
            },
            Op::Drop { list, size } => Spilled::Drop { list, size },
            Op::Store(meta) => Spilled::Store { meta },
            Op::Requeue { tag, key, raw } => Spilled::Requeue {
                tag,
                key,
                raw: text(&raw),
            },
            Op::Restore { tag, key, raw } => Spilled::Restore {
                tag,
                key,
                raw: text(&raw),
            },
            Op::Publish(msg) => Spilled::Lpush {
                key: keys.queue_for(msg.queue(), msg.priority()),
                raw: text(&msg.envelope.to_vec()),
            },
            Op::PushHead { key, raw } => Spilled::Rpush {
                key,
                raw: text(&raw),
            },
            Op::DeadLetter(rec) => Spilled::Dead { rec: text(&rec) },
            Op::Incr(key) => Spilled::Incr { key },
            Op::ChordSize { group, size } => Spilled::ChordSize { group, size },
            Op::ChordPart(part) => Spilled::Chord { part: *part },
            Op::ChordTake { field, token } => Spilled::ChordTake { field, token },
            Op::ChordEnd => Spilled::ChordEnd,
            Op::ChordForget { field, token } => Spilled::ChordForget { field, token },
            Op::Flush(_) | Op::Slot => return None,
        })
    }

    fn into_op(self) -> Op {
        match self {
            Spilled::Ack { tag } => Op::Ack(tag),
            Spilled::Unacked { tag, stored } => Op::Unacked {
                tag,
                stored: stored.into_bytes(),
                acked: Arc::new(AtomicBool::new(false)),
            },
            Spilled::Claim {
                list,
                raw,
                tag,
                stored,
            } => Op::Claim {
                list,
                raw: raw.into_bytes(),
                tag,
                stored: stored.into_bytes(),
            },
            Spilled::Drop { list, size } => Op::Drop { list, size },
            Spilled::Store { meta } => Op::Store(meta),
            Spilled::Requeue { tag, key, raw } => Op::Requeue {
                tag,
                key,
                raw: raw.into_bytes(),
            },
            Spilled::Restore { tag, key, raw } => Op::Restore {
                tag,
                key,
                raw: raw.into_bytes(),
            },
            Spilled::Lpush { key, raw } | Spilled::Rpush { key, raw } => Op::PushHead {
                key,
                raw: raw.into_bytes(),
            },
            Spilled::Dead { rec } => Op::DeadLetter(rec.into_bytes()),
            Spilled::Incr { key } => Op::Incr(key),
            Spilled::ChordSize { group, size } => Op::ChordSize { group, size },
            Spilled::Chord { part } => Op::ChordPart(Box::new(part)),
            Spilled::ChordTake { field, token } => Op::ChordTake { field, token },
            Spilled::ChordEnd => Op::ChordEnd,
            Spilled::ChordForget { field, token } => Op::ChordForget { field, token },
        }
    }
}

/// Append `ops` to the spill file at `path` (synced to disk). Returns how many were written.
pub fn write(path: &Path, ops: Vec<Op>, keys: &Keys) -> std::io::Result<usize> {
    let lines: Vec<Spilled> = ops
        .into_iter()
        .filter_map(|o| Spilled::of(o, keys))
        .collect();
    if lines.is_empty() {
        return Ok(0);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for l in &lines {
        serde_json::to_writer(&mut f, l)?;
        f.write_all(b"\n")?;
    }
    f.sync_all()?;
    Ok(lines.len())
}

/// A spill file being replayed: its ops, and the file to delete once they are written.
pub struct Replay {
    pub ops: Vec<Op>,
    taken: PathBuf,
}

impl Replay {
    /// The ops are in Redis: forget the file.
    pub fn done(self) {
        let _ = std::fs::remove_file(&self.taken);
    }
}

/// Take the spill file at `path` for replay (renamed first, so a second worker started on the same
/// file does not replay it twice). Lines that do not parse are logged and skipped.
pub fn take(path: &Path) -> std::io::Result<Option<Replay>> {
    let taken = path.with_extension(format!("replaying.{}", std::process::id()));
    match std::fs::rename(path, &taken) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let f = std::io::BufReader::new(std::fs::File::open(&taken)?);
    let mut ops = Vec::new();
    for (n, line) in f.lines().enumerate() {
        let line = line?;
        match serde_json::from_str::<Spilled>(&line) {
            Ok(s) => ops.push(s.into_op()),
            Err(e) => tracing::error!("spill file line {}: {e}; skipped", n + 1),
        }
    }
    Ok(Some(Replay { ops, taken }))
}

/// Redis did not take the last writes in time: keep them in the spill file for the next start.
pub(crate) async fn save_pending(sh: &Shared) {
    let mut pending = sh.writer.take_pending().await;
    if let Some(sink) = &sh.sink {
        // Publishes the broker has not confirmed (RabbitMQ away): spilled as plain messages, sent
        // again by the next start (a message the broker did take before it went away is then
        // published twice: at least once, never lost).
        let unsent = tokio::time::timeout(Duration::from_secs(3), sink.take_unsent())
            .await
            .unwrap_or_else(|_| {
                tracing::error!("the AMQP sink did not hand back its unsent publishes in 3 s");
                vec![]
            });
        if !unsent.is_empty() {
            tracing::warn!(
                "RabbitMQ did not confirm {} publish(es) in time",
                unsent.len()
            );
        }
        let ops = unsent.into_iter().map(|env| Op::PushHead {
            key: String::new(),
            raw: env.to_vec(),
        });
        pending.splice(0..0, ops);
    }
    if pending.is_empty() {
        return;
    }
    let n = pending.len();
    match &sh.opts.spill_file {
        Some(path) => match write(path, pending, sh.broker.keys()) {
            Ok(k) => tracing::warn!(
                "Redis did not take the last {k} write(s): saved to {} for the next start",
                path.display()
            ),
            Err(e) => tracing::error!(
                "Redis did not take the last {n} write(s) and the spill file {} failed: {e}",
                path.display()
            ),
        },
        None => tracing::error!(
            "Redis did not take the last {n} write(s) and no spill file is set: held messages come back after the visibility timeout"
        ),
    }
}

/// Apply what an earlier run spilled, before fetching anything.
pub(crate) async fn replay(sh: &Shared) {
    let Some(path) = &sh.opts.spill_file else {
        return;
    };
    match take(path) {
        Ok(Some(mut r)) => {
            let ops = std::mem::take(&mut r.ops);
            let n = ops.len();
            if sh.amqp.is_some() {
                // Spilled follow-ups of runs whose redelivered copies will be skipped: they are
                // sent here, not resent then.
                for op in &ops {
                    if let Op::PushHead { raw, .. } = op {
                        let parent = hlbot_proto::Envelope::from_slice(raw)
                            .ok()
                            .and_then(|e| e.headers.get("parent_id")?.as_str().map(str::to_string));
                        if let Some(p) = parent {
                            sh.followups.queued(&p);
                        }
                    }
                }
            }
            sh.writer.send_all(ops);
            if sh.writer.flush_within(Duration::from_secs(30)).await {
                tracing::warn!("replayed {n} write(s) spilled by an earlier run");
                r.done();
            } else {
                tracing::error!(
                    "replaying the spill file: Redis did not take the writes yet (kept queued; file kept)"
                );
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!("spill file {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ops_survive_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.spill.jsonl");
        let keys = Keys::new("p:", "", 0);
        let ops = vec![
            Op::Ack("t1".into()),
            Op::Restore {
                tag: "t2".into(),
                key: "p:q".into(),
                raw: b"{\"a\":1}".to_vec(),
            },
            Op::Store(ResultMeta::new(
                "id",
                hlbot_proto::State::Success,
                json!(1),
                chrono::Utc::now(),
            )),
            Op::Flush(tokio::sync::oneshot::channel().0),
            Op::ChordTake {
                field: "g".into(),
                token: "w:1:0".into(),
            },
            Op::ChordEnd,
        ];
        assert_eq!(write(&path, ops, &keys).expect("write"), 5);
        let r = take(&path).expect("take").expect("file");
        assert!(!path.exists());
        assert_eq!(r.ops.len(), 5);
        assert!(matches!(&r.ops[1], Op::Restore { tag, .. } if tag == "t2"));
        assert!(
            matches!(&r.ops[3], Op::ChordTake { field, token } if field == "g" && token == "w:1:0")
        );
        assert!(matches!(&r.ops[4], Op::ChordEnd));
        r.done();
        assert!(take(&path).expect("take again").is_none());
    }
}
