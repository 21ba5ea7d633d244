//! What a worker holds right now: active, reserved and scheduled (ETA) requests, revoked ids,
//! counters. Read by inspect (`active`, `reserved`, `scheduled`, `stats`, `query_task`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use hlbot_proto::TaskMessage;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::broker::Delivery;

/// Where a request is in the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its ETA.
    Scheduled,
    /// Prefetched, waiting for a free slot.
    Reserved,
    /// Running.
    Active,
}

/// One task message the worker has taken from the broker. Each delivery is its own request
/// (its own `key`), so two messages with the same task id run and ack independently.
#[derive(Debug, Clone)]
pub struct Request {
    /// Unique per delivery within this worker process.
    pub key: u64,
    /// Shared, not copied: the request is cloned into the state table, the ready queue and the
    /// running task.
    pub msg: std::sync::Arc<TaskMessage>,
    pub delivery: std::sync::Arc<Delivery>,
    /// Cancelled on soft limit, revoke(terminate) and cold shutdown.
    pub cancel: CancellationToken,
    /// Cancelled to stop the work at once (hard limit, terminate).
    pub kill: CancellationToken,
    pub received: Instant,
    /// This delivery's ack (or hand-back) has been queued: set once, by [`WorkerState::set_acked`].
    acked: std::sync::Arc<AtomicBool>,
    /// Given up without an ack: another worker was given this message while this one was taken
    /// for dead ([`Request::abandon`]).
    abandoned: std::sync::Arc<AtomicBool>,
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

impl Request {
    pub fn new(msg: std::sync::Arc<TaskMessage>, delivery: std::sync::Arc<Delivery>) -> Self {
        Self {
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            msg,
            delivery,
            cancel: CancellationToken::new(),
            kill: CancellationToken::new(),
            received: Instant::now(),
            acked: Default::default(),
            abandoned: Default::default(),
        }
    }

    /// Never start it, ack it or give it back: its message went back to the queue while this
    /// worker was taken for dead, and that copy is the one that runs.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
    }

    pub fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    pub fn id(&self) -> &str {
        self.msg.id()
    }

    /// Whether this delivery's ack (or hand-back) is already queued.
    pub fn is_acked(&self) -> bool {
        self.acked.load(Ordering::SeqCst)
    }

    /// The flag behind [`Request::is_acked`] (the writer checks it when it builds a batch).
    pub fn acked_flag(&self) -> std::sync::Arc<AtomicBool> {
        self.acked.clone()
    }

    /// Stop it now: the kill token first, so a task that returns on its soft token still reads
    /// as killed.
    pub fn stop(&self) {
        self.kill.cancel();
        self.cancel.cancel();
    }
}

#[derive(Debug, Clone)]
struct Entry {
    req: Request,
    phase: Phase,
    time_start: Option<f64>,
    worker_pid: Option<u32>,
}

/// Shared, lock-protected bookkeeping, keyed by delivery ([`Request::key`]). Locks are never
/// held across an await.
#[derive(Debug, Default)]
pub struct WorkerState {
    entries: Mutex<HashMap<u64, Entry>>,
    revoked: Mutex<HashSet<String>>,
    terminate: Mutex<HashSet<String>>,
    total: Mutex<BTreeMap<String, u64>>,
    /// Per-task settings changed by remote control (`rate_limit`, `time_limit`).
    overrides: Mutex<BTreeMap<String, serde_json::Map<String, Value>>>,
    pub processed: AtomicU64,
    /// Messages taken and not yet acked — reserved, or running with acks_late (prefetch
    /// accounting like Celery's QoS: an early-acked running task no longer counts; ETA holds are
    /// excluded).
    pub in_flight: AtomicUsize,
    pub scheduled_count: AtomicUsize,
    /// Signalled whenever a slot frees up.
    pub freed: Notify,
}

impl WorkerState {
    pub fn insert(&self, req: Request, phase: Phase) {
        if phase == Phase::Scheduled {
            self.scheduled_count.fetch_add(1, Ordering::SeqCst);
        } else {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
        }
        let e = Entry {
            req,
            phase,
            time_start: None,
            worker_pid: None,
        };
        if let Ok(mut m) = self.entries.lock() {
            m.insert(e.req.key, e);
        }
    }

    /// Move a scheduled request to reserved (its ETA fired).
    pub fn eta_fired(&self, req: &Request) {
        let mut moved = false;
        if let Ok(mut m) = self.entries.lock() {
            if let Some(e) = m.get_mut(&req.key).filter(|e| e.phase == Phase::Scheduled) {
                e.phase = Phase::Reserved;
                moved = true;
            }
        }
        if moved {
            self.scheduled_count.fetch_sub(1, Ordering::SeqCst);
            if !req.is_acked() {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    pub fn start(&self, req: &Request, pid: Option<u32>) {
        let now = hlbot_proto::time::unix(chrono::Utc::now());
        if let Ok(mut m) = self.entries.lock() {
            if let Some(e) = m.get_mut(&req.key) {
                e.phase = Phase::Active;
                e.time_start = Some(now);
                e.worker_pid = pid.or(Some(std::process::id()));
            }
        }
        if let Ok(mut t) = self.total.lock() {
            *t.entry(req.msg.headers.task.clone()).or_default() += 1;
        }
        self.processed.fetch_add(1, Ordering::SeqCst);
    }

    /// The message is acked (or handed back): it no longer counts in `in_flight`. `None` if it
    /// already was. `Some(true)`: it held a prefetch slot, now moved to `unsent` (the writer's
    /// count of releases not yet on the wire) before it leaves `in_flight`, so the consumer never
    /// sees the slot free before the release is ordered ahead of its next fetch; the caller
    /// queues [`Op::Slot`](crate::worker::writer::Op::Slot) with the release.
    pub fn set_acked(&self, req: &Request, unsent: &AtomicUsize) -> Option<bool> {
        if req.acked.swap(true, Ordering::SeqCst) {
            return None;
        }
        let counted = self
            .entries
            .lock()
            .ok()
            .and_then(|m| m.get(&req.key).map(|e| e.phase != Phase::Scheduled))
            .unwrap_or(false);
        if counted {
            unsent.fetch_add(1, Ordering::SeqCst);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.freed.notify_waiters();
        }
        Some(counted)
    }

    pub fn set_pid(&self, key: u64, pid: u32) {
        if let Ok(mut m) = self.entries.lock() {
            if let Some(e) = m.get_mut(&key) {
                e.worker_pid = Some(pid);
            }
        }
    }

    /// Forget a request (finished or discarded) and free its slot.
    pub fn remove(&self, req: &Request) {
        let removed = self
            .entries
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&req.key));
        if let Some(e) = removed {
            if e.phase == Phase::Scheduled {
                self.scheduled_count.fetch_sub(1, Ordering::SeqCst);
            } else if !req.is_acked() {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let id = req.id();
        if !self.holds(id) {
            if let Ok(mut t) = self.terminate.lock() {
                t.remove(id);
            }
        }
        self.freed.notify_waiters();
    }

    fn holds(&self, id: &str) -> bool {
        self.entries
            .lock()
            .map(|m| m.values().any(|e| e.req.id() == id))
            .unwrap_or(false)
    }

    /// Requests in a phase, oldest delivery first.
    pub fn requests(&self, phase: Phase) -> Vec<Request> {
        let mut v: Vec<Request> = self
            .entries
            .lock()
            .map(|m| {
                m.values()
                    .filter(|e| e.phase == phase)
                    .map(|e| e.req.clone())
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|r| r.key);
        v
    }

    /// Every request held for task `id` (duplicate ids are separate deliveries), with its phase.
    pub fn by_id(&self, id: &str) -> Vec<(Request, Phase)> {
        let mut v: Vec<(Request, Phase)> = self
            .entries
            .lock()
            .map(|m| {
                m.values()
                    .filter(|e| e.req.id() == id)
                    .map(|e| (e.req.clone(), e.phase))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|(r, _)| r.key);
        v
    }

    /// Running requests of task `id`.
    pub fn active_with_id(&self, id: &str) -> Vec<Request> {
        self.by_id(id)
            .into_iter()
            .filter(|(_, p)| *p == Phase::Active)
            .map(|(r, _)| r)
            .collect()
    }

    /// Held requests that still own an `unacked` entry (refreshed so no restore re-queues them).
    pub fn held(&self) -> Vec<Request> {
        self.entries
            .lock()
            .map(|m| {
                m.values()
                    .filter(|e| !e.req.is_acked() && !e.req.delivery.tag.is_empty())
                    .map(|e| e.req.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Delivery tags of everything held (refreshed so no restore re-queues them).
    pub fn held_tags(&self) -> Vec<String> {
        self.held()
            .into_iter()
            .map(|r| r.delivery.tag.clone())
            .collect()
    }

    pub fn active_count(&self) -> usize {
        self.entries
            .lock()
            .map(|m| m.values().filter(|e| e.phase == Phase::Active).count())
            .unwrap_or(0)
    }

    pub fn revoke(&self, ids: &[String], terminate: bool) {
        if let Ok(mut r) = self.revoked.lock() {
            r.extend(ids.iter().cloned());
        }
        if terminate {
            if let Ok(mut t) = self.terminate.lock() {
                t.extend(ids.iter().cloned());
            }
        }
    }

    pub fn is_revoked(&self, id: &str) -> bool {
        self.revoked.lock().map(|r| r.contains(id)).unwrap_or(false)
    }

    pub fn should_terminate(&self, id: &str) -> bool {
        self.terminate
            .lock()
            .map(|r| r.contains(id))
            .unwrap_or(false)
    }

    pub fn revoked_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .revoked
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Record a per-task setting changed by remote control.
    pub fn set_override(&self, task: &str, key: &str, value: Value) {
        if let Ok(mut o) = self.overrides.lock() {
            o.entry(task.to_string())
                .or_default()
                .insert(key.to_string(), value);
        }
    }

    /// Settings changed by remote control for `task`.
    pub fn overrides(&self, task: &str) -> serde_json::Map<String, Value> {
        self.overrides
            .lock()
            .ok()
            .and_then(|o| o.get(task).cloned())
            .unwrap_or_default()
    }

    pub fn totals(&self) -> BTreeMap<String, u64> {
        self.total.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Celery's `Request.info()` for inspect replies.
    pub fn info(&self, req: &Request, hostname: &str, safe: bool) -> Option<Value> {
        let m = self.entries.lock().ok()?;
        let e = m.get(&req.key)?;
        let msg = &e.req.msg;
        let (args, kwargs) = if safe {
            (json!(msg.headers.argsrepr), json!(msg.headers.kwargsrepr))
        } else {
            (json!(msg.args), json!(msg.kwargs))
        };
        Some(json!({
            "id": msg.id(),
            "name": msg.headers.display_name(),
            "args": args,
            "kwargs": kwargs,
            "type": msg.headers.task,
            "hostname": hostname,
            "time_start": e.time_start,
            "acknowledged": e.req.is_acked(),
            "delivery_info": {
                "exchange": msg.envelope.properties.delivery_info.exchange,
                "routing_key": msg.envelope.properties.delivery_info.routing_key,
                "priority": msg.priority(),
                "redelivered": msg.headers.redelivered(),
            },
            "worker_pid": if e.phase == Phase::Active { json!(e.worker_pid) } else { Value::Null },
        }))
    }
}
