//! Groups and chords sent from Rust, laid out as Celery's canvas sends them, so Python and hlbot
//! workers run and join them alike: a group is its tasks with `group` + `group_index` headers
//! (and, saved, a `GroupResult` at `celery-taskset-meta-<gid>`); a chord adds the body as
//! `embed.chord` on every header task and the header size at `.s` (`set_chord_size`). The join
//! itself happens in the workers (`worker/chord.rs`). Does not run tasks.

use serde_json::{Map, Value, json};

use crate::client::{AsyncResult, Client, TaskCall};
use crate::error::Result;

/// A sent group: its id and one handle per task, in order.
pub struct GroupResult {
    pub id: String,
    pub results: Vec<AsyncResult>,
}

impl GroupResult {
    pub fn ids(&self) -> Vec<String> {
        self.results.iter().map(|r| r.id.clone()).collect()
    }
}

/// A signature (`{"task", "args", "kwargs", "options", "subtask_type", "immutable"}`) for
/// `call`, its queue resolved by `client`'s router.
pub fn signature(client: &Client, call: &TaskCall, task_id: &str, group_id: &str) -> Value {
    let o = &call.options;
    let mut opts = Map::new();
    opts.insert("task_id".into(), json!(task_id));
    opts.insert("group_id".into(), json!(group_id));
    let queue = o
        .queue
        .clone()
        .unwrap_or_else(|| client.router().queue_for(&call.name).to_string());
    opts.insert("queue".into(), json!(queue));
    if let Some(p) = o.priority {
        opts.insert("priority".into(), json!(p));
    }
    if !o.link.is_empty() {
        opts.insert("link".into(), json!(o.link));
    }
    if !o.link_error.is_empty() {
        opts.insert("link_error".into(), json!(o.link_error));
    }
    json!({
        "task": call.name, "args": call.args, "kwargs": call.kwargs, "options": opts,
        "subtask_type": null, "immutable": false,
    })
}

impl Client {
    /// `group(calls).apply_async()`: every task with the group id and its index; the
    /// `GroupResult` saved so `GroupResult.restore(gid)` (Python) or
    /// [`crate::Backend::restore_group`] finds it.
    pub async fn send_group(&self, calls: Vec<TaskCall>) -> Result<GroupResult> {
        let gid = uuid::Uuid::new_v4().to_string();
        let results = self.send_members(&gid, calls, None).await?;
        let g = GroupResult { id: gid, results };
        self.backend().save_group(&g.id, &g.ids()).await?;
        Ok(g)
    }

    /// `chord(header)(body)`: the header as a group whose tasks carry `body`; the worker whose
    /// task completes the header sends `body` with the header's results (in header order)
    /// prepended. Returns the body's handle. An empty header sends the body at once with `[]`,
    /// as Celery does.
    pub async fn send_chord(&self, header: Vec<TaskCall>, body: TaskCall) -> Result<AsyncResult> {
        self.send_chord_with(header, body, Map::new()).await
    }

    /// [`Client::send_chord`] with extra body options (hlbot's `hlbot_partial`,
    /// `hlbot_progress`: see `worker/chord.rs`).
    pub async fn send_chord_with(
        &self,
        header: Vec<TaskCall>,
        body: TaskCall,
        extra: Map<String, Value>,
    ) -> Result<AsyncResult> {
        let body_id = body
            .options
            .task_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if header.is_empty() {
            let mut args = vec![json!([])];
            args.extend(body.args);
            let mut o = body.options;
            o.task_id = Some(body_id);
            return self.send_task(&body.name, args, body.kwargs, o).await;
        }
        let gid = uuid::Uuid::new_v4().to_string();
        let mut sig = signature(self, &body, &body_id, &gid);
        if let Some(o) = sig.get_mut("options").and_then(Value::as_object_mut) {
            o.extend(extra);
        }
        self.backend().set_chord_size(&gid, header.len()).await?;
        self.send_members(&gid, header, Some(sig)).await?;
        Ok(self.handle(&body_id))
    }

    async fn send_members(
        &self,
        gid: &str,
        calls: Vec<TaskCall>,
        chord: Option<Value>,
    ) -> Result<Vec<AsyncResult>> {
        let calls = calls
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                c.options.group_id = Some(gid.to_string());
                c.options.group_index = Some(i as i64);
                c.options.chord = chord.clone();
                c
            })
            .collect();
        self.send_many(calls).await
    }
}
