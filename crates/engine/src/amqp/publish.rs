//! Publishing with publisher confirms: every message hlbot publishes to RabbitMQ (sends, retries,
//! chain steps, callbacks, restores) is confirmed by the broker before the call returns, so a
//! publish that "succeeded" is on disk (durable queue, `delivery_mode` 2). Declares each queue's
//! exchange, queue and binding (`layout.rs`) once per connection before the first publish to it,
//! as kombu's producer does. Each attempt is bounded (`guard.rs`): a publish that stalls on a
//! half-closed connection fails and is retried on a new one. Does not consume (`consume.rs`).

use std::collections::HashSet;
use std::time::Duration;

use hlbot_proto::Envelope;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Confirmation, Connection};
use tokio::sync::Mutex;

use crate::amqp::conn::AmqpUrl;
use crate::amqp::guard;
use crate::amqp::layout::{self, Layout};
use crate::error::Result;

struct Open {
    conn: Connection,
    chan: Channel,
    declared: HashSet<String>,
}

/// How an error about a message the broker will not take begins (see [`is_refusal`]).
pub const REFUSED: &str = "refused by the broker";
/// Refusals of one message in a row after which [`Publisher::publish_until_confirmed`] stops —
/// once they have also lasted [`REFUSED_FOR`].
pub const REFUSALS: u32 = 3;
/// How long one message's refusals must go on before [`Publisher::publish_until_confirmed`]
/// stops. A quorum queue whose leader's node just crashed nacks publishes until a new leader is
/// elected (about 2 s in the cluster drill); that is not a refusal to give up on.
pub const REFUSED_FOR: Duration = Duration::from_secs(15);

/// Retries of a client's send after a failed attempt ([`Publisher::publish_retried`]): Celery's
/// `task_publish_retry_policy` (`max_retries` 3, `interval_start` 0, `interval_step` 0.2 s,
/// `interval_max` 1 s).
pub const CLIENT_RETRIES: u32 = 3;

/// Whether `e` says the broker refused the message itself (`basic.nack`, or a channel-level
/// error: `NOT_FOUND`, `ACCESS_REFUSED`, `PRECONDITION_FAILED`…) rather than being unreachable.
pub fn is_refusal(e: &crate::error::Error) -> bool {
    matches!(e, crate::error::Error::Amqp { message, .. } if message.contains(REFUSED))
}

/// How an error about a message that cannot be sent as it is begins (see [`is_bad_message`]).
const BAD_MESSAGE: &str = "bad message";

/// Whether `e` says the message itself cannot be published (no retry can help).
fn is_bad_message(e: &crate::error::Error) -> bool {
    matches!(e, crate::error::Error::Amqp { message, .. } if message.starts_with(BAD_MESSAGE))
}

/// A lapin error as text, marked [`REFUSED`] when it is a soft (channel-level) AMQP error.
fn classify(e: lapin::Error) -> String {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a)
            if matches!(a.kind(), lapin::protocol::AMQPErrorKind::Soft(_)) =>
        {
            format!("{REFUSED}: {e}")
        }
        _ => e.to_string(),
    }
}

/// A confirming publisher on its own connection, reopened on the next publish after a failure.
pub struct Publisher {
    url: AmqpUrl,
    layout: Layout,
    name: String,
    open: Mutex<Option<Open>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("url", &self.url).finish()
    }
}

impl Publisher {
    pub fn new(url: AmqpUrl, layout: Layout, name: &str) -> Self {
        Self {
            url,
            layout,
            name: name.to_string(),
            open: Mutex::new(None),
        }
    }

    pub fn url(&self) -> &AmqpUrl {
        &self.url
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Publish `env` and wait for the broker's confirm. Errors (connection lost, nack) leave the
    /// connection to be reopened by the next call; the message may or may not have arrived.
    pub async fn publish(&self, env: &Envelope) -> Result<()> {
        let out = layout::outgoing(env).map_err(|k| self.url.err(format!("{BAD_MESSAGE}: {k}")))?;
        let mut slot = self.open.lock().await;
        let healthy = slot.as_ref().is_some_and(|o| guard::open(&o.conn, &o.chan));
        if !healthy {
            if let Some(old) = slot.take() {
                guard::close(old.conn).await;
            }
            let conn = self.url.connect(&self.name).await?;
            let ready = guard::bounded(
                "opening a confirming channel",
                guard::OPEN,
                || conn.status().connected(),
                async {
                    let chan = conn.create_channel().await?;
                    chan.confirm_select(ConfirmSelectOptions::default()).await?;
                    Ok::<_, lapin::Error>(chan)
                },
            )
            .await;
            let chan = match ready {
                Ok(c) => c,
                Err(e) => {
                    guard::close(conn).await;
                    return Err(self.url.err(e));
                }
            };
            *slot = Some(Open {
                conn,
                chan,
                declared: HashSet::new(),
            });
        }
        let Some(open) = slot.as_mut() else {
            return Err(self.url.err("no channel"));
        };
        let (conn, chan) = (&open.conn, &open.chan);
        let alive = || guard::open(conn, chan);
        // Only the default exchange routes by queue name; other exchanges are declared by whoever
        // owns them.
        let declare = out.exchange.is_empty() && !open.declared.contains(&out.routing_key);
        let declared = declare.then(|| out.routing_key.clone());
        let res = guard::bounded("publish", guard::CONFIRM, alive, async {
            if declare {
                super::declare(chan, &self.layout.declaration(&out.routing_key))
                    .await
                    .map_err(classify)?;
            }
            super::basic_publish(chan, out)
                .await
                .map_err(classify)?
                .await
                .map_err(classify)
        })
        .await;
        match res {
            Ok(Confirmation::Nack(_)) => {
                // A fresh channel for the next try: a channel that published to a quorum queue
                // whose leader's node crashed kept being nacked for minutes (cluster drill) while
                // a new one was served at once.
                if let Some(old) = slot.take() {
                    guard::close(old.conn).await;
                }
                Err(self.url.err(format!("{REFUSED} (basic.nack)")))
            }
            Ok(_) => {
                if let Some(queue) = declared {
                    open.declared.insert(queue);
                }
                Ok(())
            }
            Err(e) => {
                if let Some(old) = slot.take() {
                    guard::close(old.conn).await;
                }
                Err(self.url.err(e))
            }
        }
    }

    /// A client's send (`Client::send_task`, `hlbot send`, canvas): [`Publisher::publish`] retried
    /// as Celery's `task_publish_retry` does — a dropped or silent connection is tried again on a
    /// new one up to [`CLIENT_RETRIES`] times, 0, 0.2 and 0.4 s apart; so is a nack (each retry on
    /// a new channel), which Celery raises at once. A confirm lost on the way may mean the
    /// message arrives twice, as with Celery.
    pub async fn publish_retried(&self, env: &Envelope) -> Result<()> {
        let mut wait = Duration::ZERO;
        let mut tries = 0;
        loop {
            match self.publish(env).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if is_bad_message(&e) || tries >= CLIENT_RETRIES {
                        return Err(e);
                    }
                    tracing::warn!("send not confirmed ({e}); retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait + Duration::from_millis(200)).min(Duration::from_secs(1));
                    tries += 1;
                }
            }
        }
    }

    /// Publish until the broker confirms (backoff 50 ms doubling to 2 s): for messages that
    /// exist nowhere else (retries, callbacks, restores). Gives up when `give_up` says so (at
    /// once, even mid-attempt; the message may or may not have reached the broker), or when the
    /// broker refused this message [`REFUSALS`] times in a row over at least [`REFUSED_FOR`]
    /// ([`is_refusal`]: a `basic.nack`, or a channel error such as `NOT_FOUND` for an exchange
    /// that does not exist) — retrying it would hold up everything queued behind it for good;
    /// the caller dead-letters it. Refusals that stop sooner (a quorum queue electing a new
    /// leader) are ridden out.
    pub async fn publish_until_confirmed(
        &self,
        env: &Envelope,
        give_up: &tokio_util::sync::CancellationToken,
    ) -> Result<()> {
        let mut backoff = Duration::from_millis(50);
        let mut logged = false;
        let mut refusals = 0;
        let mut refused_since: Option<std::time::Instant> = None;
        loop {
            // An attempt can take up to the connect timeout; giving up does not wait for it.
            let attempt = tokio::select! {
                r = self.publish(env) => r,
                _ = give_up.cancelled() => Err(self.url.err("not confirmed before giving up")),
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if is_bad_message(&e) {
                        return Err(e);
                    }
                    if is_refusal(&e) {
                        refusals += 1;
                        let since = *refused_since.get_or_insert_with(std::time::Instant::now);
                        if refusals >= REFUSALS && since.elapsed() >= REFUSED_FOR {
                            return Err(e);
                        }
                    } else {
                        refusals = 0;
                        refused_since = None;
                    }
                    if !logged {
                        tracing::warn!("publish not confirmed: {e}; retrying");
                        logged = true;
                    }
                    if give_up.is_cancelled() {
                        return Err(e);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = give_up.cancelled() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}
