//! Task-run rows written off the worker's path: [`RunWriter`] is the engine's `RunLog`. The
//! worker's `record` only queues the fact (never waits); a background task gathers facts into
//! batches and writes each task's facts of a batch as one merged row of `task_runs` (its state
//! changes appended to `transitions`): on PostgreSQL by COPY and one merge (`stage.rs`), on
//! SQLite by small multi-row upserts in one transaction. If the database is away it keeps a bounded buffer
//! (the oldest dropped and counted when full), logs once when writes fail and once when they
//! are back, and catches up. Nothing about a task's outcome depends on this.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hlbot_engine::runlog::{RunFact, RunLog};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

use crate::{Result, Store};

/// Tuning of the background writer.
#[derive(Debug, Clone)]
pub struct RunWriterOptions {
    /// Facts queued between the worker and the writer task.
    pub channel: usize,
    /// Facts held while the database is away; the oldest go first when it is full.
    pub max_buffer: usize,
    /// Facts per write.
    pub batch: usize,
    /// How long a partial batch waits for more facts.
    pub linger: Duration,
    /// Pause between attempts while the database is away.
    pub retry: Duration,
    /// The writer thread's nice value (Linux): above the worker's, so when the machine's cores
    /// are full the history waits in its buffer and the tasks do not.
    pub nice: i32,
}

impl Default for RunWriterOptions {
    fn default() -> Self {
        RunWriterOptions {
            channel: 200_000,
            max_buffer: 200_000,
            batch: 5_000,
            linger: Duration::from_millis(100),
            retry: Duration::from_secs(1),
            nice: 10,
        }
    }
}

enum Msg {
    Fact(Box<RunFact>),
    Flush(oneshot::Sender<bool>),
}

/// Counters the writer keeps (shown in logs and tests).
#[derive(Debug, Default)]
pub struct RunStats {
    pub written: AtomicU64,
    /// Facts lost: the queue or the buffer was full.
    pub dropped: AtomicU64,
    pub failed_writes: AtomicU64,
}

/// The store's `RunLog`: queues facts for the background writer.
#[derive(Debug)]
pub struct RunWriter {
    tx: mpsc::Sender<Msg>,
    stats: Arc<RunStats>,
}

impl RunLog for RunWriter {
    fn record(&self, fact: RunFact) {
        if self.tx.try_send(Msg::Fact(Box::new(fact))).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl RunWriter {
    /// Start the background writer for `store`'s database, on a thread of its own with its own
    /// runtime and connections: encoding and writing batches never take a turn of the worker's
    /// event loop. It runs until every `RunWriter` clone is gone and its queue is written (or
    /// given up on after one last attempt).
    pub fn start(store: Store, opts: RunWriterOptions) -> (Arc<RunWriter>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(opts.channel.max(1));
        let stats = Arc::new(RunStats::default());
        let st = stats.clone();
        let mut cfg = store.config().clone();
        cfg.max_connections = 2;
        let thread = std::thread::Builder::new()
            .name("hlbot-history".into())
            .spawn(move || {
                lower_priority(opts.nice);
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("task history: no runtime for the writer: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    match Store::connect_lazy(&cfg).await {
                        Ok(own) => background(own, opts, rx, st).await,
                        Err(e) => tracing::error!("task history: {e}"),
                    }
                });
            })
            .expect("spawn the task-history thread");
        (Arc::new(RunWriter { tx, stats }), thread)
    }

    /// Wait until everything queued so far is written; false if the database refused.
    pub async fn flush(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    pub fn stats(&self) -> &RunStats {
        &self.stats
    }
}

async fn background(
    store: Store,
    opts: RunWriterOptions,
    mut rx: mpsc::Receiver<Msg>,
    stats: Arc<RunStats>,
) {
    let mut buf: VecDeque<RunFact> = VecDeque::new();
    let mut waiting: Vec<oneshot::Sender<bool>> = Vec::new();
    let mut down = false;
    let mut closed = false;
    loop {
        // Gather: block for the first message (unless facts are waiting), then linger on a
        // timer, not on the channel: a receiver parked in `recv` is woken by every send — a
        // futex call on the worker's thread per fact, three per task — while one asleep on
        // a timer costs the sender nothing. What came meanwhile is taken in one sweep.
        if buf.is_empty() && waiting.is_empty() {
            match rx.recv().await {
                Some(m) => take(m, &mut buf, &mut waiting, &opts, &stats),
                None => return,
            }
            if waiting.is_empty() {
                tokio::time::sleep(opts.linger).await;
            }
        }
        loop {
            match rx.try_recv() {
                Ok(m) => take(m, &mut buf, &mut waiting, &opts, &stats),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        // Write: batches until the buffer is empty or a write fails; the queue is emptied into
        // the buffer between batches, so a burst waits in the buffer, not in a full queue.
        let mut ok = true;
        while !buf.is_empty() {
            while let Ok(m) = rx.try_recv() {
                take(m, &mut buf, &mut waiting, &opts, &stats);
            }
            let n = buf.len().min(opts.batch);
            let batch: Vec<RunFact> = buf.iter().take(n).cloned().collect();
            match write_batch(&store, &batch).await {
                Ok(()) => {
                    buf.drain(..n);
                    stats.written.fetch_add(n as u64, Ordering::Relaxed);
                    if down {
                        down = false;
                        tracing::info!(
                            "task history: database {} is back; writing the {} buffered runs",
                            store.redacted_url(),
                            buf.len() + n
                        );
                    }
                }
                Err(e) => {
                    stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                    if !down {
                        down = true;
                        tracing::warn!(
                            "task history: cannot write to {} ({e}); buffering up to {} runs and retrying",
                            store.redacted_url(),
                            opts.max_buffer
                        );
                    }
                    ok = false;
                    break;
                }
            }
        }
        for w in waiting.drain(..) {
            let _ = w.send(ok);
        }
        if closed && (ok || buf.is_empty()) {
            return;
        }
        if closed {
            // Shutting down with the database away: one more try after the pause, then give up.
            tokio::time::sleep(opts.retry).await;
            if write_batch(&store, &buf.iter().cloned().collect::<Vec<_>>())
                .await
                .is_err()
            {
                tracing::warn!("task history: {} runs not written at exit", buf.len());
            }
            return;
        }
        if !ok {
            tokio::time::sleep(opts.retry).await;
        }
    }
}

/// Give the calling thread `nice` (Linux per-thread priority; a no-op elsewhere or when the
/// kernel refuses).
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        let me = rustix::thread::gettid();
        let now = rustix::process::getpriority_process(Some(me)).unwrap_or(0);
        if let Err(e) = rustix::process::setpriority_process(Some(me), now.max(nice)) {
            tracing::debug!("task history: writer priority unchanged ({e})");
        }
    }
}

fn take(
    m: Msg,
    buf: &mut VecDeque<RunFact>,
    waiting: &mut Vec<oneshot::Sender<bool>>,
    opts: &RunWriterOptions,
    stats: &RunStats,
) {
    match m {
        Msg::Fact(f) => {
            if buf.len() >= opts.max_buffer {
                buf.pop_front();
                let n = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!("task history: buffer full, {n} oldest runs dropped so far");
                }
            }
            buf.push_back(*f);
        }
        Msg::Flush(w) => waiting.push(w),
    }
}

pub(crate) const RUN_COLS: &str = "task_id, name, queue, state, worker, retries, parent_id, root_id, args, \
    kwargs, received_at, started_at, finished_at, runtime, error_type, error_message, updated_at, \
    transitions";

/// Write one batch: one upsert statement per 1 000 tasks, each task's facts merged into its
/// row (a statement may not upsert a key twice) and its transitions appended.
pub async fn write_batch(store: &Store, facts: &[RunFact]) -> Result<()> {
    if facts.is_empty() {
        return Ok(());
    }
    // One row per task id: a statement may not upsert the same key twice.
    let mut order: Vec<&str> = Vec::new();
    let mut rows: HashMap<&str, Row> = HashMap::new();
    for f in facts {
        rows.entry(f.task_id.as_str())
            .or_insert_with(|| {
                order.push(&f.task_id);
                Row::default()
            })
            .apply(f);
    }
    match store.backend() {
        // PostgreSQL: COPY into a staging table, then one merging INSERT … SELECT — about
        // half the server CPU per row of a 1 000-row upsert with binds (docs/store.md).
        crate::Backend::Postgres => match store.pg_pool() {
            Some(pg) => crate::stage::write(pg, &order, &rows).await?,
            None => {
                for ids in order.chunks(1000) {
                    upsert(store.pool(), store.backend(), ids, &rows).await?;
                }
            }
        },
        // SQLite: sqlx's SQLite driver costs O(parameters²) per statement — 1 000 rows per
        // statement measured 320 µs of CPU per row, 25 rows 22 µs — so small statements,
        // all in one transaction (one commit per batch).
        crate::Backend::Sqlite => {
            let mut tx = store.pool().begin().await?;
            for ids in order.chunks(SQLITE_ROWS_PER_STATEMENT) {
                upsert(&mut *tx, store.backend(), ids, &rows).await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Rows per upsert statement on SQLite (see `write_batch`).
const SQLITE_ROWS_PER_STATEMENT: usize = 25;

async fn upsert<'c, E>(
    db: E,
    backend: crate::Backend,
    order: &[&str],
    rows: &HashMap<&str, Row<'_>>,
) -> Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let mut sql = format!("INSERT INTO task_runs ({RUN_COLS}) VALUES ");
    let mut n = 0;
    for (i, _) in order.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..RUN_COL_COUNT {
            if c > 0 {
                sql.push(',');
            }
            n += 1;
            sql.push_str(&crate::placeholder(backend, n));
        }
        sql.push(')');
    }
    sql.push_str(UPSERT_SET);
    let mut q = sqlx::query(&sql);
    for id in order {
        for cell in rows[id].cells() {
            q = match cell {
                Cell::Text(v) => q.bind(v),
                Cell::Int(v) => q.bind(v),
                Cell::Real(v) => q.bind(v),
            };
        }
    }
    q.execute(db).await?;
    Ok(())
}

/// How a written row merges into the one already there: the newest state and times win, the
/// first receipt time stays, transitions are appended, an error is cleared by a later SUCCESS.
pub(crate) const UPSERT_SET: &str = " ON CONFLICT (task_id) DO UPDATE SET name = excluded.name, \
     queue = COALESCE(excluded.queue, task_runs.queue), state = excluded.state, \
     worker = COALESCE(excluded.worker, task_runs.worker), retries = excluded.retries, \
     parent_id = COALESCE(excluded.parent_id, task_runs.parent_id), \
     root_id = COALESCE(excluded.root_id, task_runs.root_id), \
     args = COALESCE(excluded.args, task_runs.args), \
     kwargs = COALESCE(excluded.kwargs, task_runs.kwargs), \
     received_at = COALESCE(task_runs.received_at, excluded.received_at), \
     started_at = COALESCE(excluded.started_at, task_runs.started_at), \
     finished_at = COALESCE(excluded.finished_at, task_runs.finished_at), \
     runtime = COALESCE(excluded.runtime, task_runs.runtime), \
     error_type = CASE WHEN excluded.state = 'SUCCESS' THEN NULL \
         ELSE COALESCE(excluded.error_type, task_runs.error_type) END, \
     error_message = CASE WHEN excluded.state = 'SUCCESS' THEN NULL \
         ELSE COALESCE(excluded.error_message, task_runs.error_message) END, \
     updated_at = excluded.updated_at, \
     transitions = task_runs.transitions || excluded.transitions";

/// Number of columns in [`RUN_COLS`].
pub(crate) const RUN_COL_COUNT: usize = 18;

/// One column value of a written row, in [`RUN_COLS`] order.
pub(crate) enum Cell {
    Text(Option<String>),
    Int(i64),
    Real(Option<f64>),
}

/// The merged columns of one task's facts in a batch (later facts win, times kept per state).
#[derive(Default)]
pub(crate) struct Row<'a> {
    last: Option<&'a RunFact>,
    parent_id: Option<String>,
    root_id: Option<String>,
    args: Option<String>,
    kwargs: Option<String>,
    received_at: Option<f64>,
    started_at: Option<f64>,
    finished_at: Option<f64>,
    runtime: Option<f64>,
    error_type: Option<String>,
    error_message: Option<String>,
    /// `STATE@unix;` per fact, in order.
    transitions: String,
}

impl<'a> Row<'a> {
    /// The row's values in [`RUN_COLS`] order (argument summaries scrubbed, messages capped):
    /// the one mapping both the bind and the COPY paths write.
    pub(crate) fn cells(&self) -> [Cell; RUN_COL_COUNT] {
        let f = self.last.expect("a row has a fact");
        [
            Cell::Text(Some(f.task_id.clone())),
            Cell::Text(Some(f.name.clone())),
            Cell::Text(Some(f.queue.clone()).filter(|s| !s.is_empty())),
            Cell::Text(Some(f.state.as_str().to_string())),
            Cell::Text(Some(f.worker.clone())),
            Cell::Int(i64::from(f.retries)),
            Cell::Text(self.parent_id.clone()),
            Cell::Text(self.root_id.clone()),
            Cell::Text(self.args.as_deref().map(scrub)),
            Cell::Text(self.kwargs.as_deref().map(scrub)),
            Cell::Real(self.received_at),
            Cell::Real(self.started_at),
            Cell::Real(self.finished_at),
            Cell::Real(self.runtime),
            Cell::Text(self.error_type.clone()),
            Cell::Text(
                self.error_message
                    .as_deref()
                    .map(|m| cap(&crate::redact_text(m), 2000)),
            ),
            Cell::Real(Some(f.at)),
            Cell::Text(Some(self.transitions.clone())),
        ]
    }

    fn apply(&mut self, f: &'a RunFact) {
        use hlbot_engine::runlog::RunState::*;
        self.last = Some(f);
        self.transitions
            .push_str(&format!("{}@{:.3};", f.state.as_str(), f.at));
        self.parent_id = f.parent_id.clone().or(self.parent_id.take());
        self.root_id = f.root_id.clone().or(self.root_id.take());
        self.args = f.args.clone().or(self.args.take());
        self.kwargs = f.kwargs.clone().or(self.kwargs.take());
        match f.state {
            Received => self.received_at = self.received_at.or(Some(f.at)),
            Started => self.started_at = Some(f.at),
            _ => self.finished_at = Some(f.at),
        }
        self.runtime = f.runtime.or(self.runtime);
        if f.error_type.is_some() {
            self.error_type = f.error_type.clone();
            self.error_message = f.error_message.clone();
        }
    }
}

/// An argument summary as stored: secrets scrubbed, then capped at 1 KiB.
pub fn scrub(s: &str) -> String {
    static SECRET: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = SECRET.get_or_init(|| {
        regex::Regex::new(
            r#"(?i)(['"]?[a-z0-9_\-]*(?:password|passwd|secret|token|api_?key|cookie|authorization|credential)[a-z0-9_\-]*['"]?\s*[:=]\s*)('[^']*'|"[^"]*"|[^,}\s)]+)"#,
        )
        .expect("valid regex")
    });
    let s = re.replace_all(s, "$1'***'");
    cap(&crate::redact_text(&s), 1024)
}

fn cap(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_lose_secrets_and_length() {
        let s = scrub("{'url': 'x', 'api_key': 'sk-123', \"password\": \"hunter2\", token=abc}");
        assert!(
            !s.contains("sk-123") && !s.contains("hunter2") && !s.contains("abc"),
            "{s}"
        );
        assert!(s.contains("'url': 'x'"), "{s}");
        assert!(!scrub("['postgres://u:pw@h/db']").contains("pw@"));
        assert!(scrub(&"x".repeat(5000)).len() < 1100);
    }
}
