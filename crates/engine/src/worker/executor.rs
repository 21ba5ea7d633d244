//! Runs one request, as named steps: `admit` (revoked, expired, unknown, already succeeded, rate
//! limit) → `begin` (ack-on-start, STARTED, event) → `run_limited` (in-process or in a child, under
//! its time limits) → `outcome::decide` → `outcome::record`. `execute` wraps them so that even a
//! panic in the worker's own code ends as a FAILURE with its slot freed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hlbot_proto::{ExceptionInfo, State, TaskMessage, event::fields};
use serde_json::{Map, Value, json};
use tokio::sync::OwnedSemaphorePermit;

use crate::runlog::RunState;
use crate::task::{Isolation, ProgressSink, Task, TaskContext, TaskOptions};
use crate::worker::Shared;
use crate::worker::limits::{self, Ended, run_in_process};
use crate::worker::outcome::{self, Rules, ack, discard, ignores_result, is_expired, meta_for};
use crate::worker::state::{Phase, Request};
use crate::worker::writer::Op;

/// Stores PROGRESS/custom states and emits `task-progress`.
struct Progress {
    sh: Arc<Shared>,
    msg: Arc<TaskMessage>,
    ignore: bool,
}

impl ProgressSink for Progress {
    fn progress(&self, task_id: &str, state: &str, meta: Value) {
        if !self.ignore {
            let m = meta_for(&self.sh, &self.msg, State::parse(state), meta.clone());
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
        tracing::error!(
            "worker code panicked running {}[{}]: {why}",
            req.msg.headers.task,
            req.id()
        );
        let exc = ExceptionInfo::new(
            "RuntimeError",
            "builtins",
            vec![json!(format!("panic: {why}"))],
        );
        let ignore = ignores_result(&sh, &req.msg);
        sh.run_fact(&req.msg, RunState::Failed, |f| {
            f.error_type = Some(exc.exc_type.clone());
            f.error_message = Some(exc.display());
        });
        outcome::fail(&sh, &req, &exc, None, ignore);
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

/// A request that may run: its task, options and remote-control overrides.
struct Admitted {
    task: Arc<dyn Task>,
    opts: TaskOptions,
    overrides: Map<String, Value>,
}

async fn run(sh: Arc<Shared>, req: Request) {
    let Some(a) = admit(&sh, &req).await else {
        return;
    };
    let acks_late = a.opts.acks_late.unwrap_or(sh.opts.acks_late);
    let ignore = ignores_result(&sh, &req.msg);
    begin(&sh, &req, acks_late, ignore);
    let t0 = Instant::now();
    let ended = run_limited(&sh, &req, &a, ignore).await;
    let rules = Rules {
        policy: &a.opts.retry,
        retries: req.msg.headers.retries,
        acks_late,
        reject_on_worker_lost: sh.opts.reject_on_worker_lost,
        cold: sh.cold.is_cancelled(),
    };
    let decided = outcome::decide(ended, &rules);
    outcome::record(&sh, &req, decided, t0.elapsed().as_secs_f64(), ignore);
    sh.state.remove(&req);
}

/// Last checks before a run: revoked, expired, unknown task, a redelivered copy of a task that
/// already succeeded; then the rate limit's wait. `None`: the request was discarded.
async fn admit(sh: &Arc<Shared>, req: &Request) -> Option<Admitted> {
    if req.is_abandoned() {
        // Already out of the state table; the copy given back to the queue runs instead.
        return None;
    }
    let msg = &req.msg;
    let id = req.id();
    if sh.state.is_revoked(id) {
        discard(sh, req, false);
        return None;
    }
    if is_expired(msg) {
        discard(sh, req, true);
        return None;
    }
    let Some(task) = sh.registry.get(&msg.headers.task) else {
        discard(sh, req, false);
        return None;
    };
    if msg.headers.redelivered() {
        earlier_copy_settled(sh, req).await;
        if let Ok(Some(m)) = sh.backend.get(id).await {
            if m.status == State::Success {
                tracing::info!(
                    "Task {}[{id}] redelivered but already succeeded; not running it again",
                    msg.headers.task
                );
                if crate::amqp::is_amqp_tag(&req.delivery.tag) {
                    let ops = crate::worker::followups::resend(sh, msg, &m.result);
                    sh.writer.send_all(ops);
                }
                ack(sh, req);
                sh.state.remove(req);
                return None;
            }
        }
    }
    // Limits changed by remote control (`control rate_limit` / `time_limit`).
    let overrides = sh.state.overrides(&msg.headers.task);
    if let Some(rate) = overrides.get("rate_limit").and_then(Value::as_str) {
        let wait = sh.rate_gate.reserve(&msg.headers.task, rate);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    Some(Admitted {
        opts: task.options(),
        task,
        overrides,
    })
}

/// A redelivered copy can arrive while this worker still holds an earlier one: on RabbitMQ after a
/// lost connection or a broker restart (RabbitMQ requeues every unacked message, the worker keeps
/// running what it had); on Redis when a copy was given back (a restore, a lost fetch's
/// settlement, a dead worker's sweep) while this worker ran it, or ran it with its SUCCESS still
/// in the writer because Redis was away. Wait until earlier copies of the same task id held here
/// have finished and everything written so far (their SUCCESS) is in Redis, so the check that
/// follows sees their result instead of running the task a second time.
async fn earlier_copy_settled(sh: &Arc<Shared>, req: &Request) {
    // A reserved earlier copy is normally ahead of this one for a slot (the pool is FIFO) and
    // about to start; one that is not (its ETA fired later) could wait for the slot this copy
    // holds, so reserved copies are waited for only briefly. Running ones always finish.
    let reserved_until = Instant::now() + Duration::from_secs(2);
    let mut waited = false;
    loop {
        let freed = sh.state.freed.notified();
        let reserved_too = Instant::now() < reserved_until;
        let earlier = sh.state.by_id(req.id()).into_iter().any(|(r, p)| {
            r.key < req.key && (p == Phase::Active || (reserved_too && p == Phase::Reserved))
        });
        if !earlier {
            break;
        }
        waited = true;
        tokio::select! {
            _ = freed => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    // Also when no earlier copy is held any more: one that finished may still have its SUCCESS
    // among the writer's unwritten ops.
    let unwritten = sh
        .writer
        .stats()
        .backlog
        .load(std::sync::atomic::Ordering::SeqCst)
        > 0;
    if (waited || unwritten) && !sh.writer.flush_within(Duration::from_secs(10)).await {
        tracing::warn!(
            "Task {}[{}]: the earlier copy's writes are not in Redis yet",
            req.msg.headers.task,
            req.id()
        );
    }
}

/// The task starts: ack now unless acks_late, STARTED, `task-started`.
fn begin(sh: &Arc<Shared>, req: &Request, acks_late: bool, ignore: bool) {
    sh.state.start(req, None);
    if !acks_late {
        ack(sh, req);
    }
    if sh.opts.track_started && !ignore {
        let started = meta_for(
            sh,
            &req.msg,
            State::Started,
            json!({"pid": std::process::id(), "hostname": sh.hostname}),
        );
        sh.writer.send(Op::Store(started));
    }
    sh.run_fact(&req.msg, RunState::Started, |_| {});
    sh.events.task("task-started", req.id(), Default::default());
}

/// Run the task under its limits: in a child process for `Isolation::Process` tasks (the hard
/// limit and terminate kill it), else in-process (aborted at its next await).
async fn run_limited(sh: &Arc<Shared>, req: &Request, a: &Admitted, ignore: bool) -> Ended {
    let msg = &req.msg;
    let (soft, hard): (Option<Duration>, Option<Duration>) =
        limits::resolve(msg, &a.overrides, &a.opts, &sh.opts);
    let progress: Arc<dyn ProgressSink> = Arc::new(Progress {
        sh: sh.clone(),
        msg: msg.clone(),
        ignore,
    });
    let ctx = TaskContext::new(
        req.id(),
        &msg.headers.task,
        msg.headers.retries,
        &sh.hostname,
        req.cancel.clone(),
    )
    .with_progress(progress.clone())
    .with_services(sh.services.clone());
    if sh.state.should_terminate(req.id()) {
        req.kill.cancel();
    }
    match (&sh.children, a.opts.isolation) {
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
                a.task.clone(),
                ctx,
                msg.args.clone(),
                msg.kwargs.clone(),
                soft,
                hard,
                req.kill.clone(),
            )
            .await
        }
    }
}
