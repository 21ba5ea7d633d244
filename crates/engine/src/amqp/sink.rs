//! The AMQP side of the worker's writer: acks, rejects and publishes of AMQP deliveries, applied
//! in the order the writer queued them and only after the Redis batch that carried the same run's
//! result was written (result before ack, as acks_late needs). Publishes wait for the broker's
//! confirm and are retried until confirmed, and a run's publishes (retry, callbacks) go out before
//! its ack: a crash between the two runs the task again, it never loses the follow-up message.

use hlbot_proto::Envelope;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::amqp::Amqp;

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
}

impl Sink {
    /// Start the sink loop; it ends when every `Sink` is dropped and its queue is empty.
    pub fn spawn(amqp: Amqp) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(amqp, rx));
        Self { tx }
    }

    pub fn send(&self, ops: Vec<SinkOp>) {
        if !ops.is_empty() {
            // The loop lives as long as any sender.
            let _ = self.tx.send(ops);
        }
    }
}

async fn run(amqp: Amqp, mut rx: mpsc::UnboundedReceiver<Vec<SinkOp>>) {
    // Publishes never give up while the worker runs: the message exists nowhere else.
    let never = CancellationToken::new();
    while let Some(ops) = rx.recv().await {
        for op in ops {
            apply(&amqp, op, &never).await;
        }
    }
}

async fn apply(amqp: &Amqp, op: SinkOp, never: &CancellationToken) {
    match op {
        SinkOp::Ack(tag) => {
            if let Some(a) = amqp.ackers.take(&tag) {
                if let Err(e) = a.ack(BasicAckOptions::default()).await {
                    tracing::warn!("ack of {tag} not sent ({e}): RabbitMQ delivers it again");
                }
            }
        }
        SinkOp::Requeue(tag) => {
            if let Some(a) = amqp.ackers.take(&tag) {
                if let Err(e) = a.reject(BasicRejectOptions { requeue: true }).await {
                    tracing::debug!("reject of {tag} not sent ({e}): requeued by RabbitMQ anyway");
                }
            }
        }
        SinkOp::Publish(env) => {
            if let Err(e) = amqp.publisher.publish_until_confirmed(&env, never).await {
                tracing::error!(
                    "message for task {} could not be published: {e}",
                    env.task_id().unwrap_or_default()
                );
            }
        }
        SinkOp::Flush(tx) => {
            let _ = tx.send(());
        }
    }
}
