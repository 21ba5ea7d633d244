//! Runs one request: last checks (revoked, expired, already done), ack-on-start, STARTED, the
//! run under its limits, then the outcome — SUCCESS with callbacks, RETRY republished, FAILURE with
//! errbacks, REVOKED, requeue on worker loss — written through the batched writer.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use hlbot_proto::{ExceptionInfo, ResultMeta, State, TaskMessage, event::fields, pyjson};
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;

use crate::task::{Isolation, ProgressSink, TaskContext, TaskError};
use crate::worker::Shared;
use crate::worker::limits::{self, Ended, run_in_process};
use crate::worker::state::Request;
use crate::worker::writer::Op;
use crate::worker::{links, retry};

/// A meta for `req` carrying its parent/group ids like Celery's.
pub fn meta_for(msg: &TaskMessage, status: State, result: Value) -> ResultMeta {
    let mut m = ResultMeta::new(msg.id(), status, result, Utc::now());
    m.parent_id = msg.headers.parent_id.clone();
    m.group_id = msg.headers.group.clone();
    m
}

fn exc_value(e: &ExceptionInfo) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

fn ignores_result(sh: &Shared, msg: &TaskMessage) -> bool {
    let task_default = sh
        .registry
        .get(&msg.headers.task)
        .is_some_and(|t| t.options().ignore_result);
    msg.headers.ignore_result.unwrap_or(false) || task_default
}

/// Drop a request without running it (revoked or expired): REVOKED, `task-revoked`, ack.
pub fn discard(sh: &Shared, req: &Request, expired: bool) {
    let id = req.id().to_string();
    tracing::info!(task_id = %id, "Discarding {} task", if expired { "expired" } else { "revoked" });
    if expired {
        sh.state.revoke(std::slice::from_ref(&id), false);
    }
    if !ignores_result(sh, &req.msg) {
        let reason = if expired { "expired" } else { "revoked" };
        let meta = meta_for(
            &req.msg,
            State::Revoked,
            exc_value(&ExceptionInfo::revoked(reason)),
        );
        sh.writer.send(Op::Store(meta));
    }
    sh.events.task(
        "task-revoked",
        &id,
        fields([
            ("terminated", json!(false)),
            ("signum", Value::Null),
            ("expired", json!(expired)),
        ]),
    );
    ack(sh, req);
    sh.state.remove(req);
}

fn ack(sh: &Shared, req: &Request) {
    if let Some(op) = ack_op(sh, req) {
        sh.writer.send(op);
    }
}

/// The ack of `req`, if it still needs one (marks it acked).
fn ack_op(sh: &Shared, req: &Request) -> Option<Op> {
    if req.delivery.tag.is_empty() || !sh.state.set_acked(req) {
        return None;
    }
    Some(Op::Ack(req.delivery.tag.clone()))
}

pub fn is_expired(msg: &TaskMessage) -> bool {
    msg.headers.expires_time().is_some_and(|e| e <= Utc::now())
}

/// Stores PROGRESS/custom states and emits `task-progress`.
struct Progress {
    sh: Arc<Shared>,
    msg: Arc<TaskMessage>,
    ignore: bool,
}

impl ProgressSink for Progress {
    fn progress(&self, task_id: &str, state: &str, meta: Value) {
        if !self.ignore {
            let m = meta_for(&self.msg, State::parse(state), meta.clone());
            self.sh.writer.send(Op::Store(m));
        }
        self.sh.events.task(
            "task-progress",
            task_id,
            fields([("state", json!(state)), ("meta", meta)]),
        );
    }
}

/// Execute a reserved request; the permit is one concurrency slot. Whatever happens inside —
/// even a panic in the worker's own code — the request ends with an outcome written, its ack
/// queued and its slot freed: the event loop and shutdown never wait on it.
pub async fn execute(sh: Arc<Shared>, req: Request, permit: OwnedSemaphorePermit) {
    use futures::FutureExt;
    let run = std::panic::AssertUnwindSafe(run(sh.clone(), req.clone()));
    if let Err(p) = run.catch_unwind().await {
        let why = panic_text(&p);
        tracing::error!(task_id = %req.id(), "worker code panicked running {}: {why}", req.msg.headers.task);
        let exc = ExceptionInfo::new(
            "RuntimeError",
            "builtins",
            vec![json!(format!("panic: {why}"))],
        );
        let ignore = ignores_result(&sh, &req.msg);
        fail(&sh, &req, &exc, None, ignore);
        sh.state.remove(&req);
    }
    drop(permit);
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

async fn run(sh: Arc<Shared>, req: Request) {
    let id = req.id().to_string();
    let msg = req.msg.clone();
    if sh.state.is_revoked(&id) {
        return discard(&sh, &req, false);
    }
    if is_expired(&msg) {
        return discard(&sh, &req, true);
    }
    let Some(task) = sh.registry.get(&msg.headers.task) else {
        return discard(&sh, &req, false);
    };
    // A redelivered copy of a task that already succeeded is not run again.
    if msg.headers.redelivered() {
        if let Ok(Some(m)) = sh.backend.get(&id).await {
            if m.status == State::Success {
                tracing::info!(task_id = %id, "redelivered task already succeeded; not running it again");
                ack(&sh, &req);
                sh.state.remove(&req);
                return;
            }
        }
    }
    let opts = task.options();
    // Limits changed by remote control (`control rate_limit` / `time_limit`).
    let overrides = sh.state.overrides(&msg.headers.task);
    if let Some(rate) = overrides.get("rate_limit").and_then(Value::as_str) {
        let wait = sh.rate_gate.reserve(&msg.headers.task, rate);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    let secs = |k: &str| {
        overrides
            .get(k)
            .and_then(Value::as_f64)
            .and_then(limits::secs)
    };
    let acks_late = opts.acks_late.unwrap_or(sh.opts.acks_late);
    let ignore = ignores_result(&sh, &msg);
    sh.state.start(&req, None);
    if !acks_late {
        ack(&sh, &req);
    }
    if sh.opts.track_started && !ignore {
        let started = meta_for(
            &msg,
            State::Started,
            json!({"pid": std::process::id(), "hostname": sh.hostname}),
        );
        sh.writer.send(Op::Store(started));
    }
    sh.events.task("task-started", &id, Default::default());
    let soft = msg
        .headers
        .soft_limit()
        .and_then(limits::secs)
        .or(secs("soft_time_limit"))
        .or(opts.soft_time_limit)
        .or(sh.opts.soft_time_limit);
    let hard = msg
        .headers
        .hard_limit()
        .and_then(limits::secs)
        .or(secs("time_limit"))
        .or(opts.time_limit)
        .or(sh.opts.time_limit);
    let progress: Arc<dyn ProgressSink> = Arc::new(Progress {
        sh: sh.clone(),
        msg: msg.clone(),
        ignore,
    });
    let ctx = TaskContext::new(
        &id,
        &msg.headers.task,
        msg.headers.retries,
        &sh.hostname,
        req.cancel.clone(),
    )
    .with_progress(progress.clone())
    .with_services(sh.services.clone());
    if sh.state.should_terminate(&id) {
        req.kill.cancel();
    }
    let t0 = Instant::now();
    let ended = match (&sh.children, opts.isolation) {
        (Some(pool), Isolation::Process) => {
            let state = sh.state.clone();
            let key = req.key;
            pool.run(
                &ctx,
                msg.args.clone(),
                msg.kwargs.clone(),
                soft,
                hard,
                req.kill.clone(),
                Some(progress),
                move |pid| state.set_pid(key, pid),
            )
            .await
        }
        _ => {
            run_in_process(
                task,
                ctx,
                msg.args.clone(),
                msg.kwargs.clone(),
                soft,
                hard,
                req.kill.clone(),
            )
            .await
        }
    };
    let runtime = t0.elapsed().as_secs_f64();
    finish(&sh, &req, ended, runtime, acks_late, ignore, &opts.retry);
    sh.state.remove(&req);
}

fn finish(
    sh: &Arc<Shared>,
    req: &Request,
    ended: Ended,
    runtime: f64,
    acks_late: bool,
    ignore: bool,
    policy: &crate::task::RetryPolicy,
) {
    let msg = &req.msg;
    let id = msg.id();
    match ended {
        Ended::Done(Ok(value)) => {
            // Callbacks, result, run counter and ack commit in one transaction.
            let mut ops: Vec<Op> = links::callbacks(msg, &value)
                .into_iter()
                .map(|m| Op::Publish(Box::new(m)))
                .collect();
            if !ignore {
                ops.push(Op::Store(meta_for(msg, State::Success, value.clone())));
            }
            if sh.opts.count_runs {
                ops.push(Op::Incr(sh.broker.keys().runs(id)));
            }
            ops.extend(ack_op(sh, req));
            sh.writer.send_all(ops);
            let result = pyjson::repr_bounded(&value, 1024);
            sh.events.task(
                "task-succeeded",
                id,
                fields([("result", json!(result)), ("runtime", json!(runtime))]),
            );
        }
        Ended::Done(Err(TaskError::Retry { exc, after })) => {
            let used_up = policy.max_retries.is_some_and(|m| msg.headers.retries >= m);
            if used_up {
                fail(sh, req, &exc, None, ignore);
            } else {
                let countdown = after.unwrap_or_else(|| policy.countdown(msg.headers.retries));
                let next = retry::next_message(msg, countdown);
                let mut ops = vec![Op::Publish(Box::new(next))];
                if !ignore {
                    let mut m = meta_for(msg, State::Retry, exc_value(&exc));
                    m.children = json!([[[id, null], null]]);
                    m.traceback = Some(format!(
                        "Retry in {:.0}s: {}",
                        countdown.as_secs_f64(),
                        exc.repr()
                    ));
                    ops.push(Op::Store(m));
                }
                ops.extend(ack_op(sh, req));
                sh.writer.send_all(ops);
                sh.events.task(
                    "task-retried",
                    id,
                    fields([("exception", json!(exc.repr())), ("traceback", json!(""))]),
                );
            }
        }
        Ended::Done(Err(TaskError::Reject { exc, requeue })) => {
            sh.events
                .task("task-rejected", id, fields([("requeue", json!(requeue))]));
            if requeue {
                requeue_request(sh, req);
            } else {
                let reject = ExceptionInfo::new(
                    "Reject",
                    "celery.exceptions",
                    vec![json!(exc.display()), json!(false)],
                );
                fail(sh, req, &reject, None, ignore);
            }
        }
        Ended::Done(Err(TaskError::Fail { exc, traceback })) => {
            fail(sh, req, &exc, traceback, ignore)
        }
        Ended::HardLimit(secs) => {
            tracing::error!(task_id = %id, "Hard time limit ({secs}s) exceeded for {}", msg.headers.task);
            fail(sh, req, &ExceptionInfo::time_limit(secs), None, ignore);
        }
        Ended::MemoryLimit(kib) => {
            tracing::error!(task_id = %id, "child went over the memory cap ({kib} KiB); killed");
            let exc =
                ExceptionInfo::new("MemoryLimitExceeded", "hlbot.exceptions", vec![json!(kib)]);
            fail(sh, req, &exc, None, ignore);
        }
        Ended::Terminated if sh.cold.is_cancelled() => {
            // Cold shutdown: nothing is lost, the message goes back to the head of its queue.
            restore_request(sh, req);
        }
        Ended::Terminated => {
            if !ignore {
                sh.writer.send(Op::Store(meta_for(
                    msg,
                    State::Revoked,
                    exc_value(&ExceptionInfo::revoked("terminated")),
                )));
            }
            sh.events.task(
                "task-revoked",
                id,
                fields([
                    ("terminated", json!(true)),
                    ("signum", json!(9)),
                    ("expired", json!(false)),
                ]),
            );
            ack(sh, req);
        }
        Ended::WorkerLost(why) => {
            if acks_late && sh.opts.reject_on_worker_lost {
                tracing::warn!(task_id = %id, "{why}; requeued (acks_late, reject_on_worker_lost)");
                requeue_request(sh, req);
            } else {
                let exc =
                    ExceptionInfo::new("WorkerLostError", "billiard.exceptions", vec![json!(why)]);
                fail(sh, req, &exc, None, ignore);
            }
        }
    }
}

fn fail(
    sh: &Arc<Shared>,
    req: &Request,
    exc: &ExceptionInfo,
    traceback: Option<String>,
    ignore: bool,
) {
    let msg = &req.msg;
    let mut ops: Vec<Op> = links::errbacks(msg)
        .into_iter()
        .map(|m| Op::Publish(Box::new(m)))
        .collect();
    if !ignore {
        let mut m = meta_for(msg, State::Failure, exc_value(exc));
        m.traceback = traceback.clone();
        ops.push(Op::Store(m));
    }
    ops.extend(ack_op(sh, req));
    sh.writer.send_all(ops);
    sh.events.task(
        "task-failed",
        msg.id(),
        fields([
            ("exception", json!(exc.repr())),
            ("traceback", json!(traceback.unwrap_or_default())),
        ]),
    );
}

/// `reject(requeue=True)`: to the tail of its queue. If the message was already acked (early
/// ack), a copy is published instead, so the work is not lost.
fn requeue_request(sh: &Arc<Shared>, req: &Request) {
    if req.is_acked() || req.delivery.tag.is_empty() {
        sh.writer
            .send(Op::Publish(Box::new(TaskMessage::clone(&req.msg))));
    } else {
        // Through the ordered writer: after the entry's own unacked write (idle wake-up), and
        // flushed before the worker exits (a cold shutdown requeues this way).
        sh.state.set_acked(req);
        sh.writer.send(Op::Requeue {
            tag: req.delivery.tag.clone(),
            key: sh
                .broker
                .keys()
                .queue_for(&req.delivery.queue, req.delivery.priority),
            raw: req.delivery.raw.clone(),
        });
    }
}

/// Put a request back at the head of its queue, flagged redelivered (shutdown). A message still
/// in `unacked` moves back only if its entry is still there (no duplicate with a restorer); an
/// early-acked one exists nowhere else, so it is pushed.
pub fn restore_request(sh: &Arc<Shared>, req: &Request) {
    let mut env = req.msg.envelope.clone();
    env.mark_redelivered();
    let key = sh
        .broker
        .keys()
        .queue_for(&req.delivery.queue, req.delivery.priority);
    let raw = env.to_vec();
    if !req.delivery.tag.is_empty() && sh.state.set_acked(req) {
        sh.writer.send(Op::Restore {
            tag: req.delivery.tag.clone(),
            key,
            raw,
        });
    } else {
        sh.writer.send(Op::PushHead { key, raw });
    }
}
