//! Bounds on lapin operations: every await on RabbitMQ that the worker depends on (opening a
//! session, a publish and its confirm, an ack, a consumer's next delivery) ends when its
//! connection is no longer open or after a cap, whichever comes first. lapin can leave an
//! operation pending forever when the server closes the connection cleanly — a broker's SIGTERM
//! sends `CONNECTION_FORCED` (amqp-rs/lapin#409) — and a pending ack or publish would hold up
//! every op queued behind it in the worker's sink, so the worker stops taking work.

use std::future::Future;
use std::time::{Duration, Instant};

use lapin::{Channel, Connection};

use crate::amqp::conn::AmqpUrl;
use crate::error::Result;

/// How often an operation in flight looks at its connection.
const POLL: Duration = Duration::from_millis(100);

/// The cap on opening a connection's channels and declarations (the connect itself has its own).
pub const OPEN: Duration = Duration::from_secs(30);
/// The cap on one publish and its confirm.
pub const CONFIRM: Duration = Duration::from_secs(30);
/// The cap on one ack or reject (RabbitMQ does not answer these; only the write can stall).
pub const ACK: Duration = Duration::from_secs(10);

/// Whether `conn` and `chan` are both still open.
pub fn open(conn: &Connection, chan: &Channel) -> bool {
    conn.status().connected() && chan.status().connected()
}

/// Open something on RabbitMQ (`opening`: connect, channel, declarations, consume) within
/// [`OPEN`]; past it, an error about `url` saying what took too long.
pub async fn opening<T>(
    url: &AmqpUrl,
    what: &str,
    opening: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(OPEN, opening)
        .await
        .unwrap_or_else(|_| Err(url.err(format!("{what} took over {}s", OPEN.as_secs()))))
}

/// Close `conn` without waiting more than 2 s (a half-dead connection may never answer);
/// RabbitMQ requeues every message still unacked on it.
pub async fn close(conn: Connection) {
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        conn.close(200, "reconnecting".into()),
    )
    .await;
}

/// Await `op` until it finishes, `alive()` turns false, or `cap` passes. `Err` says which (with
/// `what` naming the operation); the caller treats it as a lost connection.
pub async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    cap: Duration,
    alive: impl Fn() -> bool,
    op: impl Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, String> {
    let end = Instant::now() + cap;
    tokio::pin!(op);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = &mut op => return r.map_err(|e| format!("{what}: {e}")),
            _ = tick.tick() => {
                if !alive() {
                    return Err(format!("{what}: the connection closed while waiting"));
                }
                if Instant::now() >= end {
                    return Err(format!(
                        "{what}: no answer from RabbitMQ in {}s",
                        cap.as_secs()
                    ));
                }
            }
        }
    }
}

/// Await `next` (a consumer's next message) until it comes or `alive()` turns false (None).
pub async fn while_open<T>(
    alive: impl Fn() -> bool,
    next: impl Future<Output = Option<T>>,
) -> Option<T> {
    tokio::pin!(next);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = &mut next => return r,
            _ = tick.tick() => {
                if !alive() {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn a_finished_operation_passes_through() {
        let r = bounded("x", Duration::from_secs(1), || true, async {
            Ok::<_, String>(7)
        })
        .await;
        assert_eq!(r, Ok(7));
        let r = bounded("basic.ack", Duration::from_secs(1), || true, async {
            Err::<(), _>("boom")
        })
        .await;
        assert_eq!(r, Err("basic.ack: boom".to_string()));
    }

    #[tokio::test]
    async fn a_pending_operation_ends_when_the_connection_closes() {
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            flag.store(false, Ordering::SeqCst);
        });
        let t0 = Instant::now();
        let r = bounded(
            "publish",
            Duration::from_secs(30),
            || up.load(Ordering::SeqCst),
            std::future::pending::<Result<(), String>>(),
        )
        .await;
        let e = r.unwrap_err();
        assert!(e.contains("publish") && e.contains("closed"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn waiting_for_a_message_ends_when_the_connection_closes() {
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        assert_eq!(while_open(|| true, async { Some(3) }).await, Some(3));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            flag.store(false, Ordering::SeqCst);
        });
        let t0 = Instant::now();
        let r = while_open(
            || up.load(Ordering::SeqCst),
            std::future::pending::<Option<u8>>(),
        )
        .await;
        assert_eq!(r, None);
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn a_pending_operation_on_an_open_connection_ends_at_the_cap() {
        let t0 = Instant::now();
        let r = bounded(
            "basic.ack",
            Duration::from_millis(300),
            || true,
            std::future::pending::<Result<(), String>>(),
        )
        .await;
        assert!(r.unwrap_err().contains("no answer"));
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2));
    }
}
