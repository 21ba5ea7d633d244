//! Every Redis key and pub/sub channel hlbot touches, in one table. Names follow kombu/celery
//! where Celery defines them, so Python clients, workers and Flower share them unchanged.
//!
//! `P` = the broker's `global_keyprefix` (kombu transport option, default empty), `R` = the result
//! backend's own prefix, `{db}` = the broker URL's DB number, `SEP` = `\x06\x16` and the priority
//! steps 0, 3, 6, 9 (kombu's `sep` and `priority_steps` transport options: [`Layout`], set from
//! the config's `[broker_transport_options]`).
//!
//! | key / channel | type | written by | read by |
//! |---|---|---|---|
//! | `P<queue>` (priority 0–2) | list | clients `LPUSH`, restore `RPUSH` (head) | workers `RPOP`/`BRPOP`; `hlbot peek` (`LRANGE`), `hlbot queues` (`LLEN`) |
//! | `P<queue>SEP3`, `SEP6`, `SEP9` | list | same, for priority 3–5 / 6–8 / 9 | same; lower step served first |
//! | `P_kombu.binding.<exchange>` | set `rk SEP pattern SEP queue` | queue declare (worker, client) | named-exchange publish, restore, pidbox reply lookup |
//! | `P_kombu.binding_permanent.<exchange>` | set, same members | queue declare (kombu ≥ 5.7 marker) | kombu's binding sweep |
//! | `Punacked` | hash tag → `[envelope, exchange, routing_key]` | consumer on delivery | restore, ack, reject; `hlbot queues` (count per queue, ETA-held ones) |
//! | `Punacked_index` | zset tag → delivery time (s) | consumer on delivery; hlbot refreshes held/running tags | restore (older than visibility timeout) |
//! | `Punacked_mutex` | string | kombu's restore lock (hlbot's restore is a Lua script and needs none) | kombu |
//! | `Rcelery-task-meta-<id>` | string JSON meta, TTL `result_expires` | workers (store script) | clients `GET`/`MGET` |
//! | channel `Rcelery-task-meta-<id>` | pub/sub | workers `PUBLISH` with the stored JSON | clients waiting on `get()` |
//! | `Rcelery-taskset-meta-<gid>` | string JSON `{"result": [[[id, null], null], …], "children": null}`, TTL `result_expires` | clients (`GroupResult.save`, hlbot `Backend::save_group`) | clients (`GroupResult.restore`, hlbot `Backend::restore_group`) |
//! | `Rcelery-taskset-meta-<gid>.j` | zset `[1, id, state, result]` → `group_index` (list when `result_chord_ordered` is off), TTL `result_expires` | workers as each chord header part ends (`chord.lua` in `batch.lua`) | the part that completes the count and wins the claim: reads, then deletes (kept after a failed part) |
//! | `Rcelery-taskset-meta-<gid>.t` | string: parts added after `.s` was set (Celery's `totaldiff`) | Python clients (replaced tasks) | `chord.lua` |
//! | `Rcelery-taskset-meta-<gid>.s` | string: the chord's header size | clients at send (`set_chord_size`; Python and hlbot) | `chord.lua` (no size yet: never completes) |
//! | `Rcelery-taskset-meta-<gid>.d` | set `<id>:<group_index>` of the parts counted | `chord.lua` (a redelivered part counts once) | `chord.lua` |
//! | `Rcelery-taskset-meta-<gid>.c` | string: dispatch claim token (EX 6 s), then `done` (EX 300 s) | the part completing the chord (`chord.lua`; Python's claim scripts); clients delete it in `set_chord_size` | `chord.lua`: late duplicates ignored |
//! | `Phlbot.writer.<uuid>.chords` | string JSON `[batch, [[op, entry…]…]]`, TTL 1 day | the writer's `batch.lua` when a batch completes chords | the same writer: a retried batch whose reply was lost still learns which chords it completed |
//! | `Phlbot.chords.pending` | hash: chord taskset key → JSON `{o: owner worker id, k: token, t, p: ChordPart, e: entries}` of a chord body not yet sent | the writer's `batch.lua`, in the step that completes the chord; `orphans.lua` re-leases records of dead owners | the body's batch (`take`: deleted with the publish; on RabbitMQ after the confirm, `forget`); `orphans.lua` |
//! | `Phlbot.chords.sent` | zset chord taskset key → time sent (unix s), kept 10 min | `batch.lua` as a body is sent | `batch.lua` (`take` of a record that is gone: sent already, or lost with Redis's data); trimmed by `orphans.lua` |
//! | channel `P/{db}.celery.pidbox` | pub/sub (fanout) | `inspect`/`control` clients, Flower, mingle | every worker (`PSUBSCRIBE`) |
//! | `P<oid>.reply.celery.pidbox` (+ SEP3/6/9) | list | workers `LPUSH` replies (after binding lookup) | the calling client `BRPOP` |
//! | channel `P/{db}.celeryev/<routing.key>` | pub/sub (fanout) | workers (worker/task events), clients (`task-sent`) | Flower, `celery events` |
//! | `Phlbot.dead` | list of JSON `{reason, queue, raw, task_id, at}` | hlbot worker on undecodable / unknown-task messages | `hlbot dead list/replay/delete`, `hlbot queues` (count per queue) |
//! | `Phlbot.dead.trimmed` | string counter | writer (`batch.lua`) when the capped dead-letter list drops its oldest | operators |
//! | `Phlbot.writer.<uuid>` | string: number of the last batch applied, TTL 1 day | each worker's writer (`batch.lua`) | the same writer: a retried batch whose reply was lost is not applied twice |
//! | `Phlbot.inflight.<uuid>` | list of raw messages | the idle wait (`BLMOVE` from a queue, atomically) | the same worker claims them into `unacked` (`batch.lua`); survivors give them back once the owner's liveness key is gone |
//! | `Phlbot.alive.<uuid>` | string node name, PX lease (≈ 10 s, refreshed) | every worker | workers recovering in-flight lists, held messages and chord bodies |
//! | `Phlbot.inflights` | hash in-flight list → the queue key it takes from | workers at their first idle wait (`HSET`), clean exit / recovery (`HDEL`) | workers recovering in-flight lists |
//! | `Phlbot.held` | hash delivery tag → `<uuid> <fetch n>` (`c`: claimed from the in-flight list, `r`: recorded again) | `fetch.lua` and `batch.lua` (`claim`, `unacked`) in the step that writes the `unacked` entry; removed with it (ack, requeue, restore, dead letter) | survivors (`restore.lua`): a dead holder's entries go back to their queue without waiting for the visibility timeout; the holder itself after a fetch whose reply was lost |
//! | `Phlbot.reclaimed.<uuid>` | string, TTL 1 h | a survivor, just before it gives back that worker's held messages | the worker, if it was only frozen or cut off: its vanished `unacked` entries were given back (its reserved copies are dropped unacked), not lost with Redis's data (recorded again); read and deleted |
//! | `Phlbot.holders` | hash `<uuid>` → node name | each worker at start (`HSET`), clean exit (`HDEL`) | survivors: holders whose liveness key stays gone are swept, then removed |
//! | `Phlbot.revoked` | zset task id → expiry (unix s) | `revoke` (hlbot control client and workers) | workers at dequeue, ETA fire, while running |
//! | `Phlbot.revoked.terminate` | zset task id → expiry (unix s) | `revoke --terminate` (same writers) | workers: stop the task if it runs here |
//! | `Phlbot.beat.lease` | string `<owner> <token>`, PX lease | beat leader (`beat/lease.lua`; DEL on clean exit) | beat candidates; `send.lua` checks it |
//! | `Phlbot.beat.fence` | string counter | beat (INCR on each new leadership) | beat |
//! | `Phlbot.beat.last.<entry>` | string: due time (unix ms) of the last tick sent; set NX to "now" on first start | beat leader (`send.lua`) | beat leader: next due = schedule after it (no skip, no repeat) |
//! | `Phlbot.beat.sent.<entry>.<due ms>` | string `<owner> <token>`, TTL 10 periods (1 min – 2 days) | beat (`SET NX` in `send.lua`) — idempotency key per entry and due time | beat |
//! | `Phlbot.debug.flaky.<key>` | string counter | `hlbot.debug.flaky` | same |
//! | `Phlbot.runs.<id>` | string counter | worker with `--count-runs`, in the same transaction as the SUCCESS and ack | crash drills and tests (each task committed once) |
//! | `Phlbot.llm.spend.<YYYY-MM-DD>` | string: USD spent that UTC day (`INCRBYFLOAT`), TTL 2 days | `tasks` crate's spend ledger (`llm_spend.rs`, key from `Keys::app`) before each paid call | same: the fleet's daily LLM budget |
//! | `Phlbot.llm.cache.<sha256>` | string: a provider's answer, TTL 7 days | `tasks` crate's LLM cache (`llm_cache.rs`, key from `Keys::app`) after a paid call | same, before calling the provider (a retried task is not billed twice) |

use std::sync::Arc;

use hlbot_proto::SEP;

/// kombu's default priority steps, served in this order.
pub const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];

/// kombu's Redis list layout: the separator of priority lists and binding members (`sep`) and
/// the priority steps (`priority_steps`), both broker transport options. Every client and worker
/// on one broker must agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub sep: String,
    pub priority_steps: Vec<u8>,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            sep: SEP.into(),
            priority_steps: PRIORITY_STEPS.to_vec(),
        }
    }
}

impl Layout {
    /// Validated: steps sorted, unique, starting at 0 and at most 255; a non-empty separator.
    pub fn new(sep: Option<&str>, steps: Option<&[u8]>) -> Result<Self, String> {
        let mut l = Self::default();
        if let Some(sep) = sep {
            if sep.is_empty() {
                return Err("sep must not be empty".into());
            }
            l.sep = sep.into();
        }
        if let Some(steps) = steps {
            if steps.first() != Some(&0) || steps.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!(
                    "priority_steps must start at 0 and increase, as kombu's do: {steps:?}"
                ));
            }
            l.priority_steps = steps.to_vec();
        }
        Ok(l)
    }
}

/// Builds every key name. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    result_prefix: String,
    db: i64,
    sep: Arc<str>,
    steps: Arc<[u8]>,
}

impl Keys {
    pub fn new(prefix: &str, result_prefix: &str, db: i64) -> Self {
        Self {
            prefix: prefix.into(),
            result_prefix: result_prefix.into(),
            db,
            sep: SEP.into(),
            steps: PRIORITY_STEPS.into(),
        }
    }

    /// With kombu's `sep` and `priority_steps` transport options.
    pub fn with_layout(mut self, l: &Layout) -> Self {
        self.sep = l.sep.as_str().into();
        self.steps = l.priority_steps.as_slice().into();
        self
    }

    /// The priority steps, served in this order.
    pub fn priority_steps(&self) -> &[u8] {
        &self.steps
    }

    /// The step a message of priority `priority` goes to (kombu's `priority()`: the highest step
    /// not above it).
    pub fn step_of(&self, priority: u8) -> u8 {
        let i = self.steps.partition_point(|s| *s <= priority);
        self.steps[i.saturating_sub(1)]
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The list holding `queue`'s messages of priority bucket `step`.
    pub fn queue_step(&self, queue: &str, step: u8) -> String {
        if step == 0 {
            format!("{}{queue}", self.prefix)
        } else {
            format!("{}{queue}{}{step}", self.prefix, self.sep)
        }
    }

    /// The list a message of raw priority `priority` goes to.
    pub fn queue_for(&self, queue: &str, priority: u8) -> String {
        self.queue_step(queue, self.step_of(priority))
    }

    /// BRPOP key order: for each priority step, for each queue.
    pub fn consume_order(&self, queues: &[String]) -> Vec<String> {
        self.steps
            .iter()
            .flat_map(|s| queues.iter().map(move |q| self.queue_step(q, *s)))
            .collect()
    }

    /// The queue name of a list key (everything from the last SEP stripped, prefix removed).
    pub fn queue_of_key<'a>(&self, key: &'a str) -> &'a str {
        let k = key.strip_prefix(self.prefix.as_str()).unwrap_or(key);
        k.rsplit_once(&*self.sep).map_or(k, |(q, _)| q)
    }

    pub fn binding(&self, exchange: &str) -> String {
        format!("{}_kombu.binding.{exchange}", self.prefix)
    }
    pub fn binding_permanent(&self, exchange: &str) -> String {
        format!("{}_kombu.binding_permanent.{exchange}", self.prefix)
    }
    /// Binding member `rk SEP pattern SEP queue` (direct exchange: empty pattern).
    pub fn binding_member(&self, routing_key: &str, queue: &str) -> String {
        let sep = &self.sep;
        format!("{routing_key}{sep}{sep}{queue}")
    }

    /// A binding member split into `(routing key, pattern, queue)`.
    pub fn parse_binding_member<'a>(&self, m: &'a str) -> Option<(&'a str, &'a str, &'a str)> {
        let mut parts = m.split(&*self.sep);
        let t = (parts.next()?, parts.next()?, parts.next()?);
        parts.next().is_none().then_some(t)
    }

    pub fn unacked(&self) -> String {
        format!("{}unacked", self.prefix)
    }
    pub fn unacked_index(&self) -> String {
        format!("{}unacked_index", self.prefix)
    }
    pub fn unacked_mutex(&self) -> String {
        format!("{}unacked_mutex", self.prefix)
    }

    /// Result key; the result's pub/sub channel has the same name.
    pub fn result(&self, task_id: &str) -> String {
        format!("{}celery-task-meta-{task_id}", self.result_prefix)
    }
    pub fn taskset(&self, group_id: &str) -> String {
        format!("{}celery-taskset-meta-{group_id}", self.result_prefix)
    }
    /// A chord's counters beside its group's taskset key: `.j` (parts), `.t` (size delta), `.s`
    /// (size).
    pub fn chord_part(&self, group_id: &str, suffix: &str) -> String {
        format!(
            "{}celery-taskset-meta-{group_id}{suffix}",
            self.result_prefix
        )
    }

    /// Fanout channel of an exchange: `P/{db}.<exchange>[/<routing_key>]`.
    pub fn fanout(&self, exchange: &str, routing_key: &str) -> String {
        if routing_key.is_empty() {
            format!("{}/{}.{exchange}", self.prefix, self.db)
        } else {
            format!("{}/{}.{exchange}/{routing_key}", self.prefix, self.db)
        }
    }
    pub fn pidbox_channel(&self) -> String {
        self.fanout(hlbot_proto::control::CONTROL_EXCHANGE, "")
    }
    /// Queue name of a control reply list for caller `oid` (before prefix).
    pub fn reply_queue_name(oid: &str) -> String {
        format!("{oid}.reply.celery.pidbox")
    }
    pub fn event_channel(&self, routing_key: &str) -> String {
        self.fanout("celeryev", routing_key)
    }
    /// PSUBSCRIBE pattern of every event channel; the prefix's own glob metacharacters are
    /// escaped so they match literally.
    pub fn event_pattern(&self) -> String {
        glob_escape(&self.fanout("celeryev", "*"))
    }

    pub fn dead_letter(&self) -> String {
        format!("{}hlbot.dead", self.prefix)
    }
    pub fn dead_trimmed(&self) -> String {
        format!("{}hlbot.dead.trimmed", self.prefix)
    }
    /// The writer's exactly-once marker (`batch.lua`).
    pub fn writer_marker(&self, writer: &str) -> String {
        format!("{}hlbot.writer.{writer}", self.prefix)
    }
    /// The chords a writer's last completing batch finished (`batch.lua`).
    pub fn writer_chords(&self, writer: &str) -> String {
        format!("{}hlbot.writer.{writer}.chords", self.prefix)
    }
    /// Chord bodies a completing step recorded and no batch has sent yet (`batch.lua`).
    pub fn chords_pending(&self) -> String {
        format!("{}hlbot.chords.pending", self.prefix)
    }
    /// Chord bodies sent lately (`batch.lua`), so a late `take` of a re-leased one sends nothing.
    pub fn chords_sent(&self) -> String {
        format!("{}hlbot.chords.sent", self.prefix)
    }
    /// A worker's in-flight list: messages its idle wait moved out of a queue.
    pub fn inflight(&self, worker: &str) -> String {
        format!("{}hlbot.inflight.{worker}", self.prefix)
    }
    /// A worker's liveness key (its in-flight list is recovered once this is gone).
    pub fn alive(&self, worker: &str) -> String {
        format!("{}hlbot.alive.{worker}", self.prefix)
    }
    /// Hash of the in-flight lists (list → the queue key it takes from).
    pub fn inflights(&self) -> String {
        format!("{}hlbot.inflights", self.prefix)
    }
    /// Hash delivery tag → `<worker id> <fetch>`: which hlbot worker holds each unacked entry
    /// it took (survivors give back a dead holder's messages without waiting for the
    /// visibility timeout).
    pub fn held(&self) -> String {
        format!("{}hlbot.held", self.prefix)
    }
    /// Set by a survivor about to give back a worker's held messages: the worker, if it was only
    /// frozen or cut off, learns that its vanished entries were given back, not lost.
    pub fn reclaimed(&self, worker: &str) -> String {
        format!("{}hlbot.reclaimed.{worker}", self.prefix)
    }
    /// Hash worker id → node name of the workers that may hold entries in `hlbot.held`.
    pub fn holders(&self) -> String {
        format!("{}hlbot.holders", self.prefix)
    }
    pub fn revoked(&self) -> String {
        format!("{}hlbot.revoked", self.prefix)
    }
    pub fn revoked_terminate(&self) -> String {
        format!("{}hlbot.revoked.terminate", self.prefix)
    }
    pub fn beat_lease(&self) -> String {
        format!("{}hlbot.beat.lease", self.prefix)
    }
    pub fn beat_fence(&self) -> String {
        format!("{}hlbot.beat.fence", self.prefix)
    }
    pub fn beat_last(&self, entry: &str) -> String {
        format!("{}hlbot.beat.last.{entry}", self.prefix)
    }
    pub fn beat_sent(&self, entry: &str, due: i64) -> String {
        format!("{}hlbot.beat.sent.{entry}.{due}", self.prefix)
    }
    /// Committed-run counter of a task id (`--count-runs`).
    pub fn runs(&self, task_id: &str) -> String {
        format!("{}hlbot.runs.{task_id}", self.prefix)
    }
    /// A key the app's tasks own, `P hlbot.<name>` (the engine does not know what it holds; its
    /// row in the table above says).
    pub fn app(&self, name: &str) -> String {
        format!("{}hlbot.{name}", self.prefix)
    }
    pub fn flaky(&self, key: &str) -> String {
        format!("{}hlbot.debug.flaky.{key}", self.prefix)
    }
}

/// Escape Redis glob metacharacters (`[`, `]`, `?`, `\\`) in a literal; `*` is left to the caller.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '[' | ']' | '?' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kombu_names() {
        let k = Keys::new("", "", 0);
        assert_eq!(k.queue_for("celery", 7), "celery\x06\x166");
        assert_eq!(k.queue_for("celery", 2), "celery");
        assert_eq!(
            k.consume_order(&["celery".into(), "other".into()]),
            [
                "celery",
                "other",
                "celery\x06\x163",
                "other\x06\x163",
                "celery\x06\x166",
                "other\x06\x166",
                "celery\x06\x169",
                "other\x06\x169"
            ]
        );
        assert_eq!(k.queue_of_key("celery\x06\x169"), "celery");
        assert_eq!(k.pidbox_channel(), "/0.celery.pidbox");
        assert_eq!(
            k.event_channel("worker.heartbeat"),
            "/0.celeryev/worker.heartbeat"
        );
        let p = Keys::new("pfx", "", 3);
        assert_eq!(p.pidbox_channel(), "pfx/3.celery.pidbox");
        assert_eq!(p.queue_of_key("pfxdefault\x06\x163"), "default");
        assert_eq!(
            k.binding_member("celery", "celery"),
            "celery\x06\x16\x06\x16celery"
        );
    }

    #[test]
    fn kombus_transport_options_rename_lists_and_members() {
        let d = Keys::new("", "", 0);
        let steps: Vec<u8> = (0..=9).map(|p| d.step_of(p)).collect();
        assert_eq!(steps, [0, 0, 0, 3, 3, 3, 6, 6, 6, 9]);
        assert_eq!(d.step_of(200), 9);
        let all: Vec<u8> = (0..=9).collect();
        let l = Layout::new(Some(":"), Some(&all)).expect("valid");
        let k = Keys::new("p:", "", 0).with_layout(&l);
        assert_eq!(k.queue_for("celery", 4), "p:celery:4");
        assert_eq!(k.queue_for("celery", 0), "p:celery");
        assert_eq!(k.consume_order(&["a".into()]).len(), 10);
        assert_eq!(k.queue_of_key("p:celery:4"), "celery");
        assert_eq!(k.binding_member("rk", "q"), "rk::q");
        assert_eq!(k.parse_binding_member("rk::q"), Some(("rk", "", "q")));
        let sparse =
            Keys::new("", "", 0).with_layout(&Layout::new(None, Some(&[0, 5])).expect("ok"));
        assert_eq!(
            (sparse.step_of(4), sparse.step_of(5), sparse.step_of(9)),
            (0, 5, 5)
        );
        assert!(Layout::new(None, Some(&[1, 2])).is_err());
        assert!(Layout::new(None, Some(&[0, 3, 3])).is_err());
        assert!(Layout::new(Some(""), None).is_err());
    }
}
