//! The one wait every waiting command shares (`send --wait`, `result --wait`, `ingest --queue`):
//! woken by the task's result channel (as Celery's backend is) and at least every 200 ms, it
//! reads the task and the parents it knows of (given ids, then each stored meta's `parent_id`),
//! like Celery's `AsyncResult.get()` following `parent`, and stops at the first failure; stops at
//! once on Ctrl-C/SIGTERM (the task keeps running on its worker); shows a live status line —
//! state, runtime, progress — only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use hlbot_engine::Client;
use hlbot_proto::{ResultMeta, State};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Exit code of a wait stopped by Ctrl-C / SIGTERM (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// How a wait ended.
pub enum Waited {
    /// The task — or one of its parents, which then failed — is done.
    Done(Box<ResultMeta>),
    /// Still not done after the timeout (its last known state).
    TimedOut(State),
    /// Ctrl-C / SIGTERM.
    Interrupted,
}

/// Wait for `id` up to `timeout`. `parents`: ids of earlier chain steps the caller knows of.
/// Ctrl-C / SIGTERM (`stop`) ends it at any point, even inside a Redis call.
pub async fn wait(
    client: &Client,
    id: &str,
    parents: &[String],
    timeout: Duration,
    stop: &CancellationToken,
) -> anyhow::Result<Waited> {
    let mut line = StatusLine::new();
    let outcome = tokio::select! {
        _ = stop.cancelled() => Ok(Waited::Interrupted),
        w = follow(client, id, parents, timeout, &mut line) => w,
    };
    line.clear();
    if matches!(outcome, Ok(Waited::Interrupted)) {
        eprintln!(
            "interrupted: task {id} keeps running; follow it with `hlbot result {id} --wait`"
        );
    }
    outcome
}

async fn follow(
    client: &Client,
    id: &str,
    parents: &[String],
    timeout: Duration,
    line: &mut StatusLine,
) -> anyhow::Result<Waited> {
    let start = Instant::now();
    // Subscribed before the first GET, so a result stored in between wakes the loop at once.
    let mut channel = client.backend().watch(id).await.ok();
    let mut watch: Vec<String> = parents.to_vec();
    let tick = Duration::from_millis(200);
    loop {
        let meta = client.handle(id).meta().await?;
        if meta.status.is_ready() {
            return Ok(Waited::Done(Box::new(meta)));
        }
        if let Some(p) = meta.parent_id.clone().filter(|p| !watch.contains(p)) {
            watch.push(p);
        }
        if let Some(failed) = failed_parent(client, &mut watch).await? {
            line.clear();
            eprintln!(
                "an earlier step of the chain ({}) ended {}: {id} will not run",
                failed.task_id, failed.status
            );
            return Ok(Waited::Done(Box::new(failed)));
        }
        line.show(id, &meta, start.elapsed());
        if start.elapsed() >= timeout {
            return Ok(Waited::TimedOut(meta.status));
        }
        match channel.as_mut() {
            Some(c) => {
                c.changed(tick).await;
            }
            None => tokio::time::sleep(tick).await,
        }
    }
}

/// The first watched parent that ended badly (FAILURE / REVOKED); parents' own `parent_id`s are
/// added to the watch list as they appear.
async fn failed_parent(
    client: &Client,
    watch: &mut Vec<String>,
) -> anyhow::Result<Option<ResultMeta>> {
    let mut i = 0;
    while i < watch.len() {
        let m = client.handle(&watch[i]).meta().await?;
        if m.status.is_ready() && m.status != State::Success {
            return Ok(Some(m));
        }
        if let Some(p) = m.parent_id.clone().filter(|p| !watch.contains(p)) {
            watch.push(p);
        }
        i += 1;
    }
    Ok(None)
}

/// `⠋ STARTED 12.3s  pages 4/10` on stderr, redrawn in place; nothing when not a terminal.
struct StatusLine {
    on: bool,
    drawn: bool,
    tick: usize,
}

impl StatusLine {
    fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            drawn: false,
            tick: 0,
        }
    }

    fn show(&mut self, id: &str, meta: &ResultMeta, elapsed: Duration) {
        if !self.on {
            return;
        }
        const SPIN: [char; 4] = ['|', '/', '-', '\\'];
        self.tick += 1;
        let text = format!(
            "{} {} {} {:.1}s{}",
            SPIN[self.tick % SPIN.len()],
            id,
            meta.status,
            elapsed.as_secs_f64(),
            progress(&meta.result)
        );
        let mut e = std::io::stderr();
        let _ = write!(e, "\r\x1b[2K{text}");
        let _ = e.flush();
        self.drawn = true;
    }

    fn clear(&mut self) {
        if std::mem::take(&mut self.drawn) {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

/// A PROGRESS meta as `  stage 3/10`.
fn progress(meta: &Value) -> String {
    let stage = meta.get("stage").and_then(Value::as_str);
    let done = meta.get("done").or_else(|| meta.get("current"));
    let total = meta.get("total");
    let mut s = String::new();
    if let Some(st) = stage {
        s.push_str("  ");
        s.push_str(st);
    }
    if let (Some(d), Some(t)) = (done, total) {
        s.push_str(&format!("  {d}/{t}"));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_text() {
        let v = serde_json::json!({"stage": "ocr", "done": 3, "total": 10});
        assert_eq!(super::progress(&v), "  ocr  3/10");
        assert_eq!(super::progress(&serde_json::Value::Null), "");
    }
}
