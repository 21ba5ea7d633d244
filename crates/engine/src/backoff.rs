//! The reconnect pause every long-lived loop uses (consumer, pidbox, event receiver): sleep the
//! current backoff or until shutdown, then double it up to 5 s. Callers reset it to 100 ms once
//! a connection works.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The first pause after a failure.
pub const FIRST: Duration = Duration::from_millis(100);
/// The longest pause.
pub const MAX: Duration = Duration::from_secs(5);

/// Sleep `backoff` (or until `stop`), then double it, capped at [`MAX`].
pub(crate) async fn pause(stop: &CancellationToken, backoff: &mut Duration) {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = stop.cancelled() => {}
    }
    *backoff = (*backoff * 2).min(MAX);
}
