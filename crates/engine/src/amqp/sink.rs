//! The AMQP side of the worker's writer: acks, rejects and publishes of AMQP deliveries, applied
//! in the order the writer queued them and only after the Redis batch that carried the same run's
//! result was written (result before ack, as acks_late needs). Publishes wait for the broker's
//! confirm and are retried until confirmed, and a run's publishes (retry, callbacks) go out before
//! its ack: a crash between the two runs the task again, it never loses the follow-up message.
//! Every ack and publish is bounded (`guard.rs`): one that stalls gives its session up instead
//! of holding up the ops behind it. A worker that must exit while the broker is away takes the
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

/// Handle to queue AMQP operations.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::UnboundedSender<Vec<SinkOp>>,
    take: mpsc::UnboundedSender<oneshot::Sender<Vec<Envelope>>>,
    give_up: CancellationToken,
}

impl Sink {
    /// Start the sink loop; it ends when every `Sink` is dropped and its queue is empty.
    pub fn spawn(amqp: Amqp) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (take, take_rx) = mpsc::unbounded_channel();
        let give_up = CancellationToken::new();
        tokio::spawn(run(amqp, rx, take_rx, give_up.clone()));
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
                        apply(&amqp, op, &give_up, &mut unsent).await;
                    }
                }
                let _ = reply.send(std::mem::take(&mut unsent));
            }
            ops = rx.recv() => {
                let Some(ops) = ops else { break };
                for op in ops {
                    apply(&amqp, op, &give_up, &mut unsent).await;
                }
            }
        }
    }
}

async fn apply(amqp: &Amqp, op: SinkOp, give_up: &CancellationToken, unsent: &mut Vec<Envelope>) {
    let stopped = give_up.is_cancelled();
    match op {
        SinkOp::Ack(tag) => {
            if let Some(a) = amqp.ackers.take(&tag) {
                if stopped {
                    return;
                }
                let ackers = &amqp.ackers;
                let alive = || !a.poisoned() && ackers.alive(&tag);
                let sent = guard::bounded("basic.ack", guard::ACK, alive, async {
                    a.ack(BasicAckOptions::default()).await
                })
                .await;
                if let Err(e) = sent {
                    tracing::warn!("ack of {tag} not sent ({e}): RabbitMQ delivers it again");
                    ackers.give_up_on(&tag);
                }
            }
        }
        SinkOp::Requeue(tag) => {
            if let Some(a) = amqp.ackers.take(&tag) {
                if stopped {
                    return;
                }
                let ackers = &amqp.ackers;
                let alive = || !a.poisoned() && ackers.alive(&tag);
                let sent = guard::bounded("basic.reject", guard::ACK, alive, async {
                    a.reject(BasicRejectOptions { requeue: true }).await
                })
                .await;
                if let Err(e) = sent {
                    tracing::debug!("reject of {tag} not sent ({e}): requeued by RabbitMQ anyway");
                    ackers.give_up_on(&tag);
                }
            }
        }
        SinkOp::Publish(env) => {
            if stopped {
                unsent.push(*env);
                return;
            }
            if let Err(e) = amqp.publisher.publish_until_confirmed(&env, give_up).await {
                if give_up.is_cancelled() {
                    unsent.push(*env);
                } else {
                    tracing::error!(
                        "message for task {} could not be published: {e}",
                        env.task_id().unwrap_or_default()
                    );
                }
            }
        }
        SinkOp::Flush(tx) => {
            let _ = tx.send(());
        }
    }
}
