//! A run's outcome: `decide` turns how a run ended into what happens next (pure: success, retry,
//! failure, requeue, restore, revoked), `record` writes it — result, callbacks or errbacks, the
//! retry message, the ack, the events — through the writer, each outcome's writes in one batch.
//! The helpers here are also how the consumer and shutdown discard or give back requests.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hlbot_proto::{ExceptionInfo, ResultMeta, State, TaskMessage, event::fields, pyjson};
use serde_json::{Value, json};

use crate::runlog::RunState;
use crate::task::{RetryPolicy, TaskError};
use crate::worker::Shared;
use crate::worker::limits::Ended;
use crate::worker::state::Request;
use crate::worker::writer::Op;
use crate::worker::{chord, links, retry};

/// What happens to a request after its run.
#[derive(Debug)]
pub enum Outcome {
    /// SUCCESS with this value; callbacks published.
    Success(Value),
    /// Republished with `retries + 1`, due after `countdown`; RETRY stored.
    Retry {
        exc: ExceptionInfo,
        countdown: Duration,
    },
    /// FAILURE stored; errbacks published.
    Fail {
        exc: ExceptionInfo,
        traceback: Option<String>,
    },
    /// Back to the tail of its queue (reject with requeue, worker lost under acks_late).
    Requeue,
    /// Back to the head of its queue (cold shutdown stopped it).
    Restore,
    /// Stopped by a terminate: REVOKED.
    Terminated,
    /// Celery's `Ignore` (the task replaced itself): nothing stored, acked.
    Ignored,
}

/// The facts `decide` needs besides how the run ended.
pub struct Rules<'a> {
    pub policy: &'a RetryPolicy,
    pub retries: u32,
    pub acks_late: bool,
    pub reject_on_worker_lost: bool,
    /// A cold shutdown is under way.
    pub cold: bool,
}

/// How a run ended → what happens next. The one place a retry, a requeue or a failure is decided.
pub fn decide(ended: Ended, r: &Rules) -> Outcome {
    match ended {
        Ended::Done(Ok(value)) => Outcome::Success(value),
        Ended::Done(Err(TaskError::Retry { exc, after })) => {
            match retry::decide(r.policy, r.retries, after) {
                Some(countdown) => Outcome::Retry { exc, countdown },
                None => Outcome::Fail {
                    exc,
                    traceback: None,
                },
            }
        }
        Ended::Done(Err(e)) if e.is_ignore() => Outcome::Ignored,
        Ended::Done(Err(TaskError::Reject { requeue: true, .. })) => Outcome::Requeue,
        Ended::Done(Err(TaskError::Reject { exc, .. })) => Outcome::Fail {
            exc: ExceptionInfo::new(
                "Reject",
                "celery.exceptions",
                vec![json!(exc.display()), json!(false)],
            ),
            traceback: None,
        },
        Ended::Done(Err(TaskError::Fail { exc, traceback })) => Outcome::Fail { exc, traceback },
        Ended::HardLimit(secs) => Outcome::Fail {
            exc: ExceptionInfo::time_limit(secs),
            traceback: None,
        },
        Ended::MemoryLimit(kib) => Outcome::Fail {
            exc: ExceptionInfo::new("MemoryLimitExceeded", "hlbot.exceptions", vec![json!(kib)]),
            traceback: None,
        },
        // Cold shutdown: nothing is lost, the message goes back to the head of its queue.
        Ended::Terminated if r.cold => Outcome::Restore,
        Ended::Terminated => Outcome::Terminated,
        Ended::WorkerLost(_) if r.acks_late && r.reject_on_worker_lost => Outcome::Requeue,
        Ended::WorkerLost(why) => Outcome::Fail {
            exc: ExceptionInfo::new("WorkerLostError", "billiard.exceptions", vec![json!(why)]),
            traceback: None,
        },
    }
}

/// Write an outcome: each one's result, messages and ack go in one writer batch.
pub fn record(sh: &Arc<Shared>, req: &Request, outcome: Outcome, runtime: f64, ignore: bool) {
    let msg = &req.msg;
    let id = msg.id();
    match outcome {
        Outcome::Success(value) => {
            let mut ops: Vec<Op> = links::callbacks(msg, &value);
            if !ops.is_empty() && crate::amqp::is_amqp_tag(&req.delivery.tag) {
                sh.followups.queued(id);
            }
            if !ignore {
                ops.push(Op::Store(meta_for(sh, msg, State::Success, value.clone())));
            }
            ops.extend(chord::ops(msg, &State::Success, &value));
            if sh.opts.count_runs {
                ops.push(Op::Incr(sh.broker.keys().runs(id)));
            }
            ops.extend(ack_op(sh, req));
            sh.writer.send_all(ops);
            sh.run_fact(msg, RunState::Succeeded, |f| f.runtime = Some(runtime));
            let result = pyjson::repr_bounded(&value, 1024);
            tracing::info!(
                task_id = %id,
                task_name = %msg.headers.task,
                "Task {}[{id}] succeeded in {runtime:.3}s: {}",
                msg.headers.task,
                pyjson::repr_bounded(&value, 200)
            );
            sh.events.task(
                "task-succeeded",
                id,
                fields([("result", json!(result)), ("runtime", json!(runtime))]),
            );
        }
        Outcome::Retry { exc, countdown } => {
            tracing::info!(
                task_id = %id,
                task_name = %msg.headers.task,
                "Task {}[{id}] retry in {:.0}s: {}",
                msg.headers.task,
                countdown.as_secs_f64(),
                exc.repr()
            );
            let next = retry::next_message(msg, countdown);
            let mut ops = vec![Op::Publish(Box::new(next))];
            if !ignore {
                let mut m = meta_for(sh, msg, State::Retry, exc_value(&exc));
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
            sh.run_fact(msg, RunState::Retried, |f| {
                f.runtime = Some(runtime);
                error_fields(f, &exc);
            });
            sh.events.task(
                "task-retried",
                id,
                fields([("exception", json!(exc.repr())), ("traceback", json!(""))]),
            );
        }
        Outcome::Fail { exc, traceback } => {
            if exc.exc_type == "TimeLimitExceeded" {
                tracing::error!("Hard time limit exceeded for {}[{id}]", msg.headers.task);
            }
            sh.run_fact(msg, RunState::Failed, |f| {
                f.runtime = Some(runtime);
                error_fields(f, &exc);
            });
            fail(sh, req, &exc, traceback, ignore);
        }
        Outcome::Requeue => {
            tracing::warn!(
                task_id = %id,
                task_name = %msg.headers.task,
                "Task {}[{id}] requeued (rejected with requeue, or its process died under acks_late)",
                msg.headers.task
            );
            sh.events
                .task("task-rejected", id, fields([("requeue", json!(true))]));
            requeue_request(sh, req);
        }
        Outcome::Restore => restore_request(sh, req, false),
        Outcome::Ignored => {
            tracing::info!(task_id = %id, "ignored (replaced by another task)");
            ack(sh, req);
        }
        Outcome::Terminated => {
            let exc = exc_value(&ExceptionInfo::revoked("terminated"));
            let mut ops = chord::ops(msg, &State::Revoked, &exc);
            if !ignore {
                ops.push(Op::Store(meta_for(sh, msg, State::Revoked, exc)));
            }
            if !ops.is_empty() {
                sh.writer.send_all(ops);
            }
            sh.run_fact(msg, RunState::Revoked, |f| {
                f.runtime = Some(runtime);
                f.error_type = Some("Terminated".into());
            });
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
    }
}

/// A failure's exception type and message on a run fact.
fn error_fields(f: &mut crate::runlog::RunFact, exc: &ExceptionInfo) {
    f.error_type = Some(exc.exc_type.clone());
    f.error_message = Some(exc.display());
}

/// A meta for `req` carrying its parent/group ids like Celery's, and with `result_extended`
/// the request's name, args, kwargs, worker, retries and queue.
pub fn meta_for(sh: &Shared, msg: &TaskMessage, status: State, result: Value) -> ResultMeta {
    let mut m = ResultMeta::new(msg.id(), status, result, Utc::now());
    m.parent_id = msg.headers.parent_id.clone();
    m.group_id = msg.headers.group.clone();
    if sh.opts.result_extended {
        let queue = Some(msg.queue()).filter(|q| !q.is_empty());
        m.extended.extend([
            ("name".into(), json!(msg.headers.task)),
            ("args".into(), json!(msg.args)),
            ("kwargs".into(), json!(msg.kwargs)),
            ("worker".into(), json!(sh.hostname)),
            ("retries".into(), json!(msg.headers.retries)),
            ("queue".into(), json!(queue)),
        ]);
    }
    m
}

pub(crate) fn exc_value(e: &ExceptionInfo) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

pub(crate) fn ignores_result(sh: &Shared, msg: &TaskMessage) -> bool {
    let task_default = sh
        .registry
        .get(&msg.headers.task)
        .is_some_and(|t| t.options().ignore_result);
    msg.headers.ignore_result.unwrap_or(false) || task_default
}

/// Drop a request without running it (revoked or expired): REVOKED, `task-revoked`, ack.
pub fn discard(sh: &Shared, req: &Request, expired: bool) {
    let id = req.id().to_string();
    tracing::info!(
        task_id = %id,
        task_name = %req.msg.headers.task,
        "Discarding {} task {}[{id}]",
        if expired { "expired" } else { "revoked" },
        req.msg.headers.task
    );
    if expired {
        sh.state.revoke(std::slice::from_ref(&id), false);
    }
    let reason = if expired { "expired" } else { "revoked" };
    let exc = exc_value(&ExceptionInfo::revoked(reason));
    let mut ops = chord::ops(&req.msg, &State::Revoked, &exc);
    if !ignores_result(sh, &req.msg) {
        ops.push(Op::Store(meta_for(sh, &req.msg, State::Revoked, exc)));
    }
    if !ops.is_empty() {
        sh.writer.send_all(ops);
    }
    sh.run_fact(&req.msg, RunState::Revoked, |f| {
        f.error_type = Some(if expired { "Expired" } else { "Revoked" }.into());
    });
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

pub(crate) fn ack(sh: &Shared, req: &Request) {
    let ops = ack_op(sh, req);
    if !ops.is_empty() {
        sh.writer.send_all(ops);
    }
}

/// The ack of `req`, if it still needs one (marks it acked), with the prefetch slot it frees.
pub(crate) fn ack_op(sh: &Shared, req: &Request) -> Vec<Op> {
    if req.delivery.tag.is_empty() {
        return vec![];
    }
    match sh.state.set_acked(req, &sh.writer.stats().unsent_slots) {
        None => vec![],
        Some(slot) => release(Op::Ack(req.delivery.tag.clone()), slot),
    }
}

/// A release op, followed by the slot marker when it frees a prefetch slot.
pub(crate) fn release(op: Op, slot: bool) -> Vec<Op> {
    if slot { vec![op, Op::Slot] } else { vec![op] }
}

pub fn is_expired(msg: &TaskMessage) -> bool {
    msg.headers.expires_time().is_some_and(|e| e <= Utc::now())
}

pub(crate) fn fail(
    sh: &Arc<Shared>,
    req: &Request,
    exc: &ExceptionInfo,
    traceback: Option<String>,
    ignore: bool,
) {
    let msg = &req.msg;
    tracing::error!(
        task_id = %msg.id(),
        task_name = %msg.headers.task,
        "Task {}[{}] failed: {}",
        msg.headers.task,
        msg.id(),
        exc.repr()
    );
    if let Some(tb) = traceback.as_deref().filter(|t| !t.is_empty()) {
        tracing::debug!("Task {}[{}] traceback:\n{tb}", msg.headers.task, msg.id());
    }
    let mut ops: Vec<Op> = links::errbacks(msg)
        .into_iter()
        .map(|m| Op::Publish(Box::new(m)))
        .collect();
    if !ignore {
        let mut m = meta_for(sh, msg, State::Failure, exc_value(exc));
        m.traceback = traceback.clone();
        ops.push(Op::Store(m));
        // Like Celery's `mark_as_failure`: the chain's later steps fail too, so whoever waits
        // on the last id learns of the failure at once instead of waiting forever.
        for step_id in links::chain_ids(msg) {
            let mut m = ResultMeta::new(&step_id, State::Failure, exc_value(exc), Utc::now());
            m.traceback = traceback.clone();
            ops.push(Op::Store(m));
        }
    }
    ops.extend(chord::ops(msg, &State::Failure, &exc_value(exc)));
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
pub(crate) fn requeue_request(sh: &Arc<Shared>, req: &Request) {
    if req.is_acked() || req.delivery.tag.is_empty() {
        sh.writer
            .send(Op::Publish(Box::new(TaskMessage::clone(&req.msg))));
    } else {
        // Through the ordered writer: after the entry's own unacked write (idle wake-up), and
        // flushed before the worker exits (a cold shutdown requeues this way).
        let slot = sh
            .state
            .set_acked(req, &sh.writer.stats().unsent_slots)
            .unwrap_or(false);
        let op = Op::Requeue {
            tag: req.delivery.tag.clone(),
            key: sh
                .broker
                .keys()
                .queue_for(&req.delivery.queue, req.delivery.priority),
            raw: req.delivery.raw.clone(),
        };
        sh.writer.send_all(release(op, slot));
    }
}

/// Put a request back at the head of its queue, flagged redelivered (shutdown). A message still
/// in `unacked` moves back only if its entry is still there (no duplicate with a restorer); an
/// early-acked one, or one whose entry is known to be `gone` (Redis lost its data), exists
/// nowhere else, so it is pushed.
pub fn restore_request(sh: &Arc<Shared>, req: &Request, gone: bool) {
    let mut env = req.msg.envelope.clone();
    env.mark_redelivered();
    let key = sh
        .broker
        .keys()
        .queue_for(&req.delivery.queue, req.delivery.priority);
    let raw = env.to_vec();
    let acked = if req.delivery.tag.is_empty() {
        None
    } else {
        sh.state.set_acked(req, &sh.writer.stats().unsent_slots)
    };
    let slot = acked.unwrap_or(false);
    let op = if acked.is_some() && !gone {
        Op::Restore {
            tag: req.delivery.tag.clone(),
            key,
            raw,
        }
    } else {
        Op::PushHead { key, raw }
    };
    sh.writer.send_all(release(op, slot));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(policy: &RetryPolicy, retries: u32, acks_late: bool, cold: bool) -> Rules<'_> {
        Rules {
            policy,
            retries,
            acks_late,
            reject_on_worker_lost: true,
            cold,
        }
    }

    #[test]
    fn decisions() {
        let p = RetryPolicy {
            max_retries: Some(2),
            jitter: false,
            ..Default::default()
        };
        let retry = || {
            Ended::Done(Err(TaskError::Retry {
                exc: ExceptionInfo::builtin("IOError", "x"),
                after: None,
            }))
        };
        assert!(matches!(
            decide(retry(), &rules(&p, 0, false, false)),
            Outcome::Retry { countdown, .. } if countdown == Duration::from_secs(60)
        ));
        // Retries used up: a failure with the last exception.
        assert!(matches!(
            decide(retry(), &rules(&p, 2, false, false)),
            Outcome::Fail { .. }
        ));
        assert!(matches!(
            decide(Ended::Terminated, &rules(&p, 0, false, true)),
            Outcome::Restore
        ));
        assert!(matches!(
            decide(Ended::Terminated, &rules(&p, 0, false, false)),
            Outcome::Terminated
        ));
        assert!(matches!(
            decide(Ended::WorkerLost("x".into()), &rules(&p, 0, true, false)),
            Outcome::Requeue
        ));
        assert!(matches!(
            decide(Ended::WorkerLost("x".into()), &rules(&p, 0, false, false)),
            Outcome::Fail { .. }
        ));
        assert!(matches!(
            decide(Ended::HardLimit(1.0), &rules(&p, 0, true, false)),
            Outcome::Fail { exc, .. } if exc.exc_type == "TimeLimitExceeded"
        ));
    }
}
