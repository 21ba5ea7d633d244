//! A message as a consumer took it: the stored entry, its tag, its parsed envelope, and what it
//! still owes Redis (a claim out of the in-flight list; its holder record in `hlbot.held`).

use hlbot_proto::Envelope;

/// A message taken from a queue. `raw` is the entry exactly as it was stored.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub queue: String,
    pub raw: Vec<u8>,
    /// Empty when the entry was too malformed to carry one (then it is not in `unacked`).
    pub tag: String,
    pub priority: u8,
    /// The parsed envelope, or why it could not be parsed.
    pub envelope: std::result::Result<Envelope, hlbot_proto::DecodeError>,
    /// Set for a message the idle wait moved into an in-flight list (this key): the caller
    /// must claim it — `Op::Claim` on the worker's writer, ahead of its ack, or
    /// [`Consumer::claim`](crate::fetch::Consumer::claim).
    pub claim: Option<String>,
    /// This entry's holder record in `hlbot.held`: `<worker> <fetch n>` as `fetch.lua` wrote it,
    /// `<worker> c` for an idle-wait claim; `None` for RabbitMQ deliveries.
    pub holder: Option<String>,
}

impl Delivery {
    /// The `unacked` hash value kombu stores for this message: `[envelope, exchange, rk]`.
    pub fn unacked_value(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.raw.len() + 64);
        v.push(b'[');
        v.extend_from_slice(&self.raw);
        v.extend_from_slice(b", ");
        v.extend_from_slice(
            serde_json::to_string(&self.exchange())
                .unwrap_or_default()
                .as_bytes(),
        );
        v.extend_from_slice(b", ");
        v.extend_from_slice(
            serde_json::to_string(&self.routing_key())
                .unwrap_or_default()
                .as_bytes(),
        );
        v.push(b']');
        v
    }

    /// Exchange recorded with the unacked entry.
    pub fn exchange(&self) -> String {
        self.envelope
            .as_ref()
            .map(|e| e.properties.delivery_info.exchange.clone())
            .unwrap_or_default()
    }

    /// Routing key recorded with the unacked entry (falls back to the queue).
    pub fn routing_key(&self) -> String {
        self.envelope
            .as_ref()
            .map(|e| e.properties.delivery_info.routing_key.clone())
            .unwrap_or_else(|_| self.queue.clone())
    }
}
