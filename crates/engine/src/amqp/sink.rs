//! The AMQP side of the worker's writer: acks, rejects and publishes of AMQP deliveries, applied
//! in the order the writer queued them and only after the Redis batch that carried the same run's
//! result was written (result before ack, as acks_late needs). Publishes wait for the broker's
//! confirm and are retried until confirmed, and a run's publishes (retry, callbacks) go out before
//! its ack: a crash between the two runs the task again, it never loses the follow-up message.
//! Every ack and publish is bounded (`guard.rs`): one that stalls gives its session up instead
//! of holding up the ops behind it; a publish the broker keeps refusing (`basic.nack`, a missing
//! exchange) goes to the Redis dead-letter list with the reason instead of being retried forever. A worker that must exit while the broker is away takes the
//! unconfirmed publishes back ([`Sink::take_unsent`]) into its spill file; the next start
//! publishes them.

use hlbot_proto::Envelope;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::amqp::{Amqp, guard};

/// One AMQP operation.
#[derive(Debug)]
pub enum SinkOp {
    /// `basic.ack` the delivery with this hlbot tag.
    Ack(String),
    /// `basic.reject(requeue=True)` (reject with requeue, warm/cold shutdown restore).
    Requeue(String),
    /// Publish with confirm (retries, callbacks, chain steps, copies of early-acked messages).
    Publish(Box<Envelope>),
    /// Answered once everything before it is done.
    Flush(oneshot::Sender<()>),
}

/// Where the sink puts a publish RabbitMQ keeps refusing (`publish::is_refusal`): the worker's
/// Redis dead-letter list (`hlbot dead list` shows it with the reason).
#[derive(Clone)]
pub struct DeadLetters {
    pub conn: crate::redis::Conn,
    /// The dead-letter list's key (`Keys::dead_letter`).
    pub key: String,
}

impl DeadLetters {
    /// Record `env` with `reason`; false when Redis did not take it.
    async fn put(&self, env: &Envelope, reason: String) -> bool {
        let rec = crate::deadletter::DeadLetter {
            reason,
            queue: env.properties.delivery_info.routing_key.clone(),
            task_id: env.task_id(),
            task: env
                .headers
                .get("task")
                .and_then(|t| t.as_str())
                .map(str::to_string),
            at: crate::broker::now_secs(),
            raw: String::from_utf8_lossy(&env.to_vec()).into_owned(),
            size: None,
            truncated: false,
        };
        let cap = crate::deadletter::DEAD_LETTER_CAP as isize;
        let mut c = self.conn.clone();
        redis::pipe()
            .lpush(&self.key, rec.to_bytes())
            .ignore()
            .ltrim(&self.key, 0, cap - 1)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .is_ok()
    }
}

/// Handle to queue AMQP operations.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::UnboundedSender<Vec<SinkOp>>,
    take: mpsc::UnboundedSender<oneshot::Sender<Vec<Envelope>>>,
    give_up: CancellationToken,
}

impl Sink {
    /// Start the sink loop; it ends when every `Sink` is dropped and its queue is empty.
    /// Publishes RabbitMQ keeps refusing go to `dead` (without it they are logged and dropped).
    pub fn spawn(amqp: Amqp, dead: Option<DeadLetters>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (take, take_rx) = mpsc::unbounded_channel();
        let give_up = CancellationToken::new();
        tokio::spawn(run(amqp, dead, rx, take_rx, give_up.clone()));
        Self { tx, take, give_up }
    }

    pub fn send(&self, ops: Vec<SinkOp>) {
        if !ops.is_empty() {
            // The loop lives as long as any sender.
            let _ = self.tx.send(ops);
        }
    }

    /// Stop publishing (the worker is exiting and the broker did not confirm in time) and hand
    /// back every message not confirmed yet — the one being retried first — for the spill file.
    /// Acks and requeues still queued are dropped: RabbitMQ redelivers those messages. From now
    /// on every publish handed to this sink is given back by the next call instead.
    pub async fn take_unsent(&self) -> Vec<Envelope> {
        self.give_up.cancel();
        let (tx, rx) = oneshot::channel();
        if self.take.send(tx).is_err() {
            return vec![];
        }
        rx.await.unwrap_or_default()
    }
}

async fn run(
    amqp: Amqp,
    dead: Option<DeadLetters>,
    mut rx: mpsc::UnboundedReceiver<Vec<SinkOp>>,
    mut take: mpsc::UnboundedReceiver<oneshot::Sender<Vec<Envelope>>>,
    give_up: CancellationToken,
) {
    // Publishes are retried until confirmed while the worker runs (the message exists nowhere
    // else), and given back for the spill file once it gives up.
    let mut unsent: Vec<Envelope> = Vec::new();
    loop {
        tokio::select! {
            biased;
            Some(reply) = take.recv() => {
                while let Ok(ops) = rx.try_recv() {
                    for op in ops {
                        apply(&amqp, dead.as_ref(), op, &give_up, &mut unsent).await;
                    }
                }
                let _ = reply.send(std::mem::take(&mut unsent));
            }
            ops = rx.recv() => {
                let Some(ops) = ops else { break };
                for op in ops {
                    apply(&amqp, dead.as_ref(), op, &give_up, &mut unsent).await;
                }
            }
        }
    }
}

async fn apply(
    amqp: &Amqp,
    dead: Option<&DeadLetters>,
    op: SinkOp,
    give_up: &CancellationToken,
    unsent: &mut Vec<Envelope>,
) {
    let stopped = give_up.is_cancelled();
    match op {
        SinkOp::Ack(tag) => {
            if let Some(Err(e)) = answer(amqp, &tag, stopped, false).await {
                tracing::warn!("ack of {tag} not sent ({e}): RabbitMQ delivers it again");
            }
        }
        SinkOp::Requeue(tag) => {
            if let Some(Err(e)) = answer(amqp, &tag, stopped, true).await {
                tracing::debug!("reject of {tag} not sent ({e}): requeued by RabbitMQ anyway");
            }
        }
        SinkOp::Publish(env) => {
            if stopped {
                unsent.push(*env);
                return;
            }
            if let Err(e) = amqp.publisher.publish_until_confirmed(&env, give_up).await {
                let id = env.task_id().unwrap_or_default();
                if give_up.is_cancelled() {
                    unsent.push(*env);
                } else if crate::amqp::publish::is_refusal(&e) {
                    let reason = format!(
                        "RabbitMQ kept refusing the message for {} s: {e}",
                        crate::amqp::publish::REFUSED_FOR.as_secs()
                    );
                    let kept = match dead {
                        Some(d) => d.put(&env, reason).await,
                        None => false,
                    };
                    if kept {
                        tracing::error!(
                            "message for task {id} refused by RabbitMQ ({e}); dead-lettered"
                        );
                    } else {
                        tracing::error!("message for task {id} refused by RabbitMQ ({e}); dropped");
                    }
                } else {
                    tracing::error!("message for task {id} could not be published: {e}");
                }
            }
        }
        SinkOp::Flush(tx) => {
            let _ = tx.send(());
        }
    }
}

/// Ack the delivery `tag`, or reject it with requeue, bounded (`guard.rs`). None: nothing was
/// sent (already answered, its session gone, or the sink is giving up); `Some(Err)`: it was not
/// sent, and its session is given up ([`Ackers::give_up_on`](crate::amqp::Ackers::give_up_on)).
async fn answer(
    amqp: &Amqp,
    tag: &str,
    stopped: bool,
    requeue: bool,
) -> Option<Result<(), String>> {
    let a = amqp.ackers.take(tag)?;
    if stopped {
        return None;
    }
    let alive = || !a.poisoned() && amqp.ackers.alive(tag);
    let sent = if requeue {
        let reject = a.reject(BasicRejectOptions { requeue: true });
        guard::bounded("basic.reject", guard::ACK, alive, reject).await
    } else {
        let ack = a.ack(BasicAckOptions::default());
        guard::bounded("basic.ack", guard::ACK, alive, ack).await
    };
    if sent.is_err() {
        amqp.ackers.give_up_on(tag);
    }
    Some(sent.map(drop))
}
