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

use crate::deadletter::DeadLetter;
use crate::fetch::{Consumer, Delivery};
use crate::runlog::RunState;
use crate::worker::Shared;
use crate::worker::outcome::{discard, is_expired, meta_for};
use crate::worker::state::{Phase, Request};
use crate::worker::writer::Op;

/// Fetch until `stop`; hand reserved requests to the pool through `ready`. Returns whether every
/// fetch is accounted for (false: one whose reply was lost still has its messages in `unacked`).
pub async fn run(
    sh: Arc<Shared>,
    ready: mpsc::UnboundedSender<Request>,
    stop: CancellationToken,
) -> bool {
    if let Some(amqp) = sh.amqp.clone() {
        run_amqp(sh, amqp, ready, stop).await;
        return true;
    }
    let mut consumer: Option<Consumer> = None;
    let mut queues_seen = sh.queues();
    let mut backoff = Duration::from_millis(100);
    let mut down = false;
    // After a failed wait a message may sit in our in-flight list unseen: look once it is safe.
    let mut orphans = false;
    while !stop.is_cancelled() {
        let limit = sh.prefetch_limit();
        // Registered before the counts are read: a slot freed in between still wakes us.
        let freed = sh.state.freed.notified();
        let sent = sh.writer.stats().sent.notified();
        let written = sh.writer.stats().written.notified();
        tokio::pin!(freed, sent, written);
        freed.as_mut().enable();
        sent.as_mut().enable();
        written.as_mut().enable();
        // Like Celery's QoS, plus slots whose acks are not yet sent: the fetch below goes out
        // on the writer's connection behind the batch carrying them, so Redis applies those acks
        // first (never more than `limit` unacked) and no reply is awaited in between. While the
        // writer is backed up (Redis refusing writes) nothing more is fetched.
        let in_flight = sh.state.in_flight.load(Ordering::SeqCst)
            + sh.writer.stats().unsent_slots.load(Ordering::SeqCst);
        if in_flight >= limit || sh.writer.stats().failing.load(Ordering::SeqCst) {
            tokio::select! {
                _ = freed => {}
                _ = sent => {}
                _ = written => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.cancelled() => break,
            }
            continue;
        }
        let queues = sh.queues();
        if consumer.is_none() {
            match sh.broker.consumer(&queues, &sh.worker_id).await {
                Ok(c) => consumer = Some(c),
                Err(e) => {
                    if !down {
                        tracing::error!("consumer: broker unreachable: {e}; retrying with backoff");
                        down = true;
                    }
                    crate::backoff::pause(&stop, &mut backoff).await;
                    continue;
                }
            }
        }
        let Some(c) = consumer.as_mut() else { continue };
        if queues != queues_seen {
            c.set_queues(queues.clone());
            queues_seen = queues;
        }
        if orphans {
            // Every claim queued so far must be written first, or its message would be taken twice.
            if sh.writer.flush_within(Duration::from_secs(5)).await {
                match c.orphans().await {
                    Ok(found) => {
                        orphans = false;
                        if !found.is_empty() {
                            tracing::warn!(
                                "consumer: {} message(s) found in this worker's in-flight list after a failed wait",
                                found.len()
                            );
                        }
                        for d in found {
                            dispatch(&sh, d, &ready, &stop);
                        }
                    }
                    Err(e) => tracing::debug!("consumer: in-flight check failed: {e}"),
                }
            }
        }
        match c.fetch(limit - in_flight, Duration::from_secs(1)).await {
            Ok(deliveries) => {
                if down {
                    tracing::warn!("consumer: connection to the broker restored; consuming again");
                    down = false;
                    sh.reconnected.notify_waiters();
                }
                backoff = Duration::from_millis(100);
                for dl in c.dead.drain(..) {
                    tracing::error!("dead-lettered message: {}", dl.0);
                }
                for d in deliveries {
                    dispatch(&sh, d, &ready, &stop);
                }
            }
            Err(e) => {
                orphans = true;
                if !down {
                    // A restarted Redis drops the blocking connections once: retry at once before
                    // calling the broker lost.
                    tracing::warn!("consumer: {e}; reconnecting");
                    down = true;
                    continue;
                }
                crate::backoff::pause(&stop, &mut backoff).await;
            }
        }
    }
    let Some(mut c) = consumer else { return true };
    if let Err(e) = c.unregister().await {
        tracing::debug!("consumer: unregistering in-flight lists failed: {e}");
    }
    !c.unsettled()
}

/// The RabbitMQ consumer: RabbitMQ holds the prefetch (`basic.qos`, Celery's concurrency ×
/// multiplier plus one per held ETA message, [`Shared::qos`]) and the unacked messages, so each delivery goes straight to [`dispatch`]. A lost
/// connection is reopened with backoff; RabbitMQ gives every unacked message of the old one back
/// to its queue.
async fn run_amqp(
    sh: Arc<Shared>,
    amqp: crate::amqp::Amqp,
    ready: mpsc::UnboundedSender<Request>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut down = false;
    while !stop.is_cancelled() {
        let prefetch = sh.qos();
        let queues = sh.queues();
        let opening = crate::amqp::Session::open(
            &amqp.url,
            amqp.layout,
            &queues,
            prefetch,
            &sh.hostname,
            &amqp.ackers,
        );
        let opened =
            crate::amqp::guard::opening(&amqp.url, "opening the consuming channel", opening).await;
        let mut session = match opened {
            Ok(s) => s,
            Err(e) => {
                if !down {
                    tracing::error!("consumer: {e}; retrying with backoff");
                    down = true;
                }
                crate::backoff::pause(&stop, &mut backoff).await;
                continue;
            }
        };
        if down {
            tracing::warn!("consumer: connection to the broker restored; consuming again");
            down = false;
            sh.reconnected.notify_waiters();
        }
        backoff = Duration::from_millis(100);
        // Remote control changes the queues (`add_consumer`/`cancel_consumer`) and the pool
        // (c × m), ETA holds the QoS: looked at a few times a second, applied on the open channel.
        let mut follow = tokio::time::interval(Duration::from_millis(200));
        follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = follow.tick() => {
                    // lapin may not end the stream of a connection the server closed cleanly
                    // (amqp-rs/lapin#409), and an ack that stalled leaves the channel unusable.
                    if !session.usable(&amqp.ackers) {
                        tracing::warn!(
                            "consumer: the connection to {} is closed or stalled; reconnecting",
                            amqp.url
                        );
                        down = true;
                        break;
                    }
                    let queues = sh.queues();
                    let prefetch = sh.qos();
                    if !session.follows(&queues, prefetch)
                        && let Err(e) = session.update(&queues, prefetch).await
                    {
                        tracing::warn!("consumer: {}; reconnecting", amqp.url.err(e));
                        down = true;
                        break;
                    }
                }
                d = session.next(&amqp.ackers) => match d {
                    Some(Ok(d)) => dispatch(&sh, d, &ready, &stop),
                    Some(Err(e)) => {
                        tracing::warn!("consumer: {}; reconnecting", amqp.url.err(e));
                        down = true;
                        break;
                    }
                    None => {
                        tracing::warn!("consumer: the broker cancelled consuming; reconnecting");
                        down = true;
                        break;
                    }
                },
                _ = stop.cancelled() => {
                    session.cancel().await;
                    break;
                }
            }
        }
        if stop.is_cancelled() {
            // The acks and requeues of what this session delivered still go out on its channel
            // while the worker drains: it stays open as long as the worker.
            amqp.keep(session);
            break;
        }
        session.abandon().await;
        crate::backoff::pause(&stop, &mut backoff).await;
    }
}

/// Decide what happens to one delivery.
pub fn dispatch(
    sh: &Arc<Shared>,
    mut d: Delivery,
    ready: &mpsc::UnboundedSender<Request>,
    stop: &CancellationToken,
) {
    // An idle-wait delivery is claimed (out of the in-flight list, into `unacked`) ahead of
    // everything else about it on the ordered writer; a dead letter carries the claim along.
    let max = sh.broker.options.max_message_bytes;
    let claim = d.claim.take().map(|list| {
        if max > 0 && d.raw.len() > max {
            Op::Drop {
                list,
                size: d.raw.len(),
            }
        } else {
            Op::Claim {
                list,
                raw: d.raw.clone(),
                tag: d.tag.clone(),
                stored: if d.tag.is_empty() {
                    Vec::new()
                } else {
                    d.unacked_value()
                },
            }
        }
    });
    if d.raw.len() >= 1 << 20 {
        // Give a large message's memory back to the system once it is handled.
        defer_trim(sh.writer.clone());
    }
    // Take the parsed envelope out of the delivery (no copy); `raw` stays for requeue/dead letters.
    let placeholder = Err(hlbot_proto::DecodeError::new(
        hlbot_proto::DecodeErrorKind::NoHeaders,
        b"",
    ));
    let env = match std::mem::replace(&mut d.envelope, placeholder) {
        Ok(env) => env,
        Err(e) => {
            return dead_letter(sh, claim, &d, &e.kind.to_string(), e.task_id.clone(), None);
        }
    };
    let msg = match TaskMessage::from_envelope_accepting(env, &d.raw, &sh.opts.accept_content) {
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
            return dead_letter(sh, claim, &d, &e.kind.to_string(), e.task_id.clone(), None);
        }
    };
    if let Some(c) = claim {
        sh.writer.send(c);
    }
    if sh.registry.get(&msg.headers.task).is_none() {
        let name = msg.headers.task.clone();
        tracing::error!(
            "Received unregistered task of type {name:?} (id {}); moved to the dead-letter list",
            msg.id()
        );
        if !msg.headers.ignore_result.unwrap_or(false) {
            let exc = ExceptionInfo::not_registered(&name);
            sh.writer.send(Op::Store(meta_for(
                sh,
                &msg,
                State::Failure,
                serde_json::to_value(&exc).unwrap_or(Value::Null),
            )));
        }
        sh.run_fact(&msg, RunState::Failed, |f| {
            f.error_type = Some("NotRegistered".into());
            f.error_message = Some(name.clone());
        });
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
            None,
            &d,
            &format!("task not registered: {name}"),
            Some(msg.id().to_string()),
            Some(name),
        );
    }
    let req = Request::new(std::sync::Arc::new(msg), std::sync::Arc::new(d));
    let eta = req.msg.headers.eta_time().filter(|t| *t > Utc::now());
    let eta_pending = eta.is_some();
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
    sh.run_fact(&req.msg, RunState::Received, |_| {});
    let h = &req.msg.headers;
    match &h.eta {
        Some(eta) if eta_pending => {
            tracing::info!(task_id = %req.id(), task_name = %h.task, "Task {}[{}] received (eta {eta})", h.task, req.id())
        }
        _ => {
            tracing::info!(task_id = %req.id(), task_name = %h.task, "Task {}[{}] received", h.task, req.id())
        }
    }
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
                        sh.state.eta_fired(&req);
                        let _ = ready.send(req);
                    }
                    // Warm shutdown: the message stays held and is restored to its queue.
                    _ = stop.cancelled() => {}
                }
            });
        }
    }
}

/// Move an entry that cannot run to the dead-letter list; the claim (idle wait), the list push
/// and the ack of the unacked entry are written in the same batch, so the message is never lost.
/// An entry over the size cap keeps its first 4 KiB and its size.
fn dead_letter(
    sh: &Shared,
    claim: Option<Op>,
    d: &Delivery,
    reason: &str,
    task_id: Option<String>,
    task: Option<String>,
) {
    tracing::error!(
        "dead-lettered message from queue {} (task id {}): {reason}",
        d.queue,
        task_id.as_deref().unwrap_or("unknown")
    );
    let max = sh.broker.options.max_message_bytes;
    let over = max > 0 && d.raw.len() > max;
    let raw = if over {
        &d.raw[..d.raw.len().min(4096)]
    } else {
        &d.raw[..]
    };
    let rec = DeadLetter {
        reason: reason.to_string(),
        queue: d.queue.clone(),
        task_id,
        task,
        at: hlbot_proto::time::unix(Utc::now()),
        raw: String::from_utf8_lossy(raw).into_owned(),
        size: over.then_some(d.raw.len() as u64),
        truncated: over,
    };
    let mut ops: Vec<Op> = claim.into_iter().collect();
    ops.push(Op::DeadLetter(rec.to_bytes()));
    if !d.tag.is_empty() {
        ops.push(Op::Ack(d.tag.clone()));
    }
    sh.writer.send_all(ops);
}

/// Return freed heap to the system once a large message is handled and its writes (which carry
/// copies of it) are in Redis — glibc keeps large freed blocks in the heap otherwise: 20 MB
/// messages would leave the RSS at 100+ MB.
fn defer_trim(writer: crate::worker::writer::Writer) {
    tokio::spawn(async move {
        writer.flush_within(Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        trim();
    });
}

#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim only gives free heap pages back to the system; callable at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(target_env = "gnu"))]
fn trim() {}
