//! Taking messages: the fetch loop (prefetch limit, reconnect with backoff) and dispatch of each
//! delivery — dead-letter what cannot run, discard revoked/expired, hold ETAs, reserve the rest.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use hlbot_proto::{ExceptionInfo, State, TaskMessage, event::fields};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::broker::{Consumer, Delivery};
use crate::deadletter::DeadLetter;
use crate::worker::Shared;
use crate::worker::executor::{discard, is_expired, meta_for};
use crate::worker::state::{Phase, Request};
use crate::worker::writer::Op;

/// Fetch until `stop`; hand reserved requests to the pool through `ready`.
pub async fn run(sh: Arc<Shared>, ready: mpsc::UnboundedSender<Request>, stop: CancellationToken) {
    let mut consumer: Option<Consumer> = None;
    let mut queues_seen = sh.queues();
    let mut backoff = Duration::from_millis(100);
    let mut down = false;
    while !stop.is_cancelled() {
        let limit = sh.prefetch_limit();
        let in_flight = sh.state.in_flight.load(Ordering::SeqCst);
        if in_flight >= limit {
            tokio::select! {
                _ = sh.state.freed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.cancelled() => break,
            }
            continue;
        }
        let queues = sh.queues();
        if consumer.is_none() {
            match sh.broker.consumer(&queues).await {
                Ok(mut c) => {
                    // An idle wake-up starts the task without waiting for the unacked write; the
                    // writer records it ahead of the ack (see `dispatch`).
                    c.defer_unacked(true);
                    consumer = Some(c);
                }
                Err(e) => {
                    if !down {
                        tracing::error!("consumer: broker unreachable: {e}; retrying with backoff");
                        down = true;
                    }
                    pause(&stop, &mut backoff).await;
                    continue;
                }
            }
        }
        let Some(c) = consumer.as_mut() else { continue };
        if queues != queues_seen {
            c.set_queues(queues.clone());
            queues_seen = queues;
        }
        match c.fetch(limit - in_flight, Duration::from_secs(1)).await {
            Ok(deliveries) => {
                if down {
                    tracing::warn!("consumer: connection to the broker restored; consuming again");
                    down = false;
                    sh.reconnected.notify_waiters();
                }
                backoff = Duration::from_millis(100);
                for d in deliveries {
                    dispatch(&sh, d, &ready, &stop);
                }
            }
            Err(e) => {
                if !down {
                    tracing::error!("consumer: lost the broker: {e}; reconnecting with backoff");
                    down = true;
                }
                pause(&stop, &mut backoff).await;
            }
        }
    }
}

async fn pause(stop: &CancellationToken, backoff: &mut Duration) {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = stop.cancelled() => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
}

/// Decide what happens to one delivery.
pub fn dispatch(
    sh: &Arc<Shared>,
    mut d: Delivery,
    ready: &mpsc::UnboundedSender<Request>,
    stop: &CancellationToken,
) {
    if let Some(stored) = d.unacked.take() {
        sh.writer.send(Op::Unacked {
            tag: d.tag.clone(),
            stored,
        });
    }
    // Take the parsed envelope out of the delivery (no copy); `raw` stays for requeue/dead letters.
    let placeholder = Err(hlbot_proto::DecodeError::new(
        hlbot_proto::DecodeErrorKind::NoHeaders,
        b"",
    ));
    let env = match std::mem::replace(&mut d.envelope, placeholder) {
        Ok(env) => env,
        Err(e) => return dead_letter(sh, &d, &e.kind.to_string(), e.task_id.clone(), None),
    };
    let msg = match TaskMessage::from_envelope(env, &d.raw) {
        Ok(m) => m,
        Err(e) => {
            if let Some(id) = &e.task_id {
                let exc = ExceptionInfo::new(
                    "DecodeError",
                    "hlbot.exceptions",
                    vec![json!(e.kind.to_string())],
                );
                let mut m = hlbot_proto::ResultMeta::failure(id, &exc, None, Utc::now());
                m.traceback = None;
                sh.writer.send(Op::Store(m));
            }
            return dead_letter(sh, &d, &e.kind.to_string(), e.task_id.clone(), None);
        }
    };
    if sh.registry.get(&msg.headers.task).is_none() {
        let name = msg.headers.task.clone();
        tracing::error!(task_id = %msg.id(), "Received unregistered task of type {name:?}; moved to the dead-letter list");
        if !msg.headers.ignore_result.unwrap_or(false) {
            let exc = ExceptionInfo::not_registered(&name);
            sh.writer.send(Op::Store(meta_for(
                &msg,
                State::Failure,
                serde_json::to_value(&exc).unwrap_or(Value::Null),
            )));
        }
        sh.events.task(
            "task-failed",
            msg.id(),
            fields([
                ("exception", json!(format!("NotRegistered('{name}')"))),
                ("traceback", json!("")),
            ]),
        );
        return dead_letter(
            sh,
            &d,
            &format!("task not registered: {name}"),
            Some(msg.id().to_string()),
            Some(name),
        );
    }
    let req = Request {
        msg: std::sync::Arc::new(msg),
        delivery: std::sync::Arc::new(d),
        cancel: CancellationToken::new(),
        kill: CancellationToken::new(),
        received: std::time::Instant::now(),
    };
    let eta = req.msg.headers.eta_time().filter(|t| *t > Utc::now());
    sh.state.insert(
        req.clone(),
        if eta.is_some() {
            Phase::Scheduled
        } else {
            Phase::Reserved
        },
    );
    if sh.state.is_revoked(req.id()) {
        return discard(sh, &req, false);
    }
    if is_expired(&req.msg) {
        return discard(sh, &req, true);
    }
    let h = &req.msg.headers;
    sh.events.task(
        "task-received",
        req.id(),
        fields([
            ("name", json!(h.display_name())),
            ("args", json!(h.argsrepr)),
            ("kwargs", json!(h.kwargsrepr)),
            ("root_id", json!(h.root_id)),
            ("parent_id", json!(h.parent_id)),
            ("retries", json!(h.retries)),
            ("eta", json!(h.eta)),
            ("expires", json!(h.expires)),
        ]),
    );
    match eta {
        None => {
            let _ = ready.send(req);
        }
        Some(at) => {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            let ready = ready.clone();
            let sh = sh.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {
                        sh.state.eta_fired(req.id());
                        let _ = ready.send(req);
                    }
                    // Warm shutdown: the message stays held and is restored to its queue.
                    _ = stop.cancelled() => {}
                }
            });
        }
    }
}

/// Move an entry that cannot run to the dead-letter list; the list push and the ack of the
/// unacked entry are written in the same transaction, so the message is never lost.
fn dead_letter(
    sh: &Shared,
    d: &Delivery,
    reason: &str,
    task_id: Option<String>,
    task: Option<String>,
) {
    tracing::error!(queue = %d.queue, task_id = ?task_id, "dead-lettered message: {reason}");
    let rec = DeadLetter {
        reason: reason.to_string(),
        queue: d.queue.clone(),
        task_id,
        task,
        at: hlbot_proto::time::unix(Utc::now()),
        raw: String::from_utf8_lossy(&d.raw).into_owned(),
    };
    let mut ops = vec![Op::DeadLetter(rec.to_bytes())];
    if !d.tag.is_empty() {
        ops.push(Op::Ack(d.tag.clone()));
    }
    sh.writer.send_all(ops);
}
