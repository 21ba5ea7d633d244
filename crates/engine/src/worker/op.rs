//! One write the worker's writer queues ([`Op`]): what it does in `batch.lua`, and which ops go
//! to the AMQP broker instead when RabbitMQ is the broker.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use hlbot_proto::{ResultMeta, TaskMessage};
use tokio::sync::oneshot;

use crate::amqp::is_amqp_tag;
use crate::amqp::sink::SinkOp;
use crate::worker::chord::ChordPart;

/// One write. Ops are moved once into the queue; boxing the meta would only add an allocation.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Op {
    /// Drop the unacked entry.
    Ack(String),
    /// Record an unacked entry (`tag` → `[envelope, exchange, routing_key]`) for a message this
    /// worker holds whose entry vanished (Redis lost its data) — skipped if the message's ack was
    /// queued by the time the batch is built.
    Unacked {
        tag: String,
        stored: Vec<u8>,
        acked: Arc<AtomicBool>,
    },
    /// A message the idle wait moved into this worker's in-flight `list`: take it out of the
    /// list and record its unacked entry (if it has a tag) in one step. Queued before the
    /// message's ack, so it lands first.
    Claim {
        list: String,
        raw: Vec<u8>,
        tag: String,
        stored: Vec<u8>,
    },
    /// An over-size message the idle wait moved into `list`: take it out by its size (the
    /// bytes are not sent again; its dead letter keeps a truncated copy).
    Drop { list: String, size: usize },
    /// Store a result meta (never over a SUCCESS) and PUBLISH it.
    Store(ResultMeta),
    /// `reject(requeue=True)`: drop the unacked entry and LPUSH the message to `key` (tail),
    /// only if the entry still exists.
    Requeue {
        tag: String,
        key: String,
        raw: Vec<u8>,
    },
    /// Give a held message back: drop its unacked entry and RPUSH it to `key` (head), only if
    /// the entry still exists (warm shutdown, cold shutdown of acks_late work).
    Restore {
        tag: String,
        key: String,
        raw: Vec<u8>,
    },
    /// LPUSH a message to its queue (retries, callbacks).
    Publish(Box<TaskMessage>),
    /// RPUSH raw bytes to the head of a list key (shutdown restore of early-acked work).
    PushHead { key: String, raw: Vec<u8> },
    /// LPUSH a dead-letter record (the list is capped at [`DEAD_LETTER_CAP`]).
    DeadLetter(Vec<u8>),
    /// INCR a key (debug run counters).
    Incr(String),
    /// `set_chord_size`: the header size of a chord this worker sends (a chain step that is a
    /// chord), written before its header tasks are published.
    ChordSize { group: String, size: usize },
    /// Count a chord header part (`chord.lua`); the part that completes the chord has the
    /// writer send the callback (or the `ChordError`) in its next batch.
    ChordPart(Box<ChordPart>),
    /// Start of a chord body's ops: they are applied only if the body's pending record still
    /// carries `token` (nobody else sent it), and the record goes in the same step (`batch.lua`
    /// `take`). The ops up to the next [`Op::ChordEnd`] belong to it.
    ChordTake { field: String, token: String },
    /// End of the ops a [`Op::ChordTake`] guards.
    ChordEnd,
    /// Drop a chord body's pending record if it still carries `token` (RabbitMQ confirmed the
    /// body's publish).
    ChordForget { field: String, token: String },
    /// Resolve once everything queued before it is written.
    Flush(oneshot::Sender<()>),
    /// Writes nothing: the release op before it freed a prefetch slot, counted in
    /// [`WriterStats::unsent_slots`] until its batch is on the wire.
    Slot,
}

impl Op {
    /// Ops that release a prefetch slot once written.
    pub(crate) fn releases(&self) -> bool {
        matches!(self, Op::Ack(_) | Op::Requeue { .. } | Op::Restore { .. })
    }

    /// Whether the op goes to the AMQP broker (when there is one) instead of Redis.
    pub(crate) fn for_amqp(&self) -> bool {
        match self {
            Op::Ack(tag) | Op::Requeue { tag, .. } | Op::Restore { tag, .. } => is_amqp_tag(tag),
            Op::Publish(_) | Op::PushHead { .. } => true,
            _ => false,
        }
    }

    /// The AMQP operation for an op [`Op::for_amqp`] picked.
    pub(crate) fn into_sink(self) -> Option<SinkOp> {
        match self {
            Op::Ack(tag) => Some(SinkOp::Ack(tag)),
            Op::Requeue { tag, .. } | Op::Restore { tag, .. } => Some(SinkOp::Requeue(tag)),
            Op::Publish(msg) => Some(SinkOp::Publish(Box::new(msg.envelope))),
            Op::PushHead { raw, .. } => match hlbot_proto::Envelope::from_slice(&raw) {
                Ok(env) => Some(SinkOp::Publish(Box::new(env))),
                Err(e) => {
                    tracing::error!("message to give back is not an envelope ({e}); dropped");
                    None
                }
            },
            Op::Flush(tx) => Some(SinkOp::Flush(tx)),
            _ => None,
        }
    }
}
