//! Linked work after a task ends (reference §1.3): callbacks with the result prepended, the next
//! chain step, errbacks with the task id prepended — published as new task messages. A
//! signature's options travel with it as Celery's `apply_async` would apply them: `task_id`,
//! `queue`, `priority`, `group_id`/`group_index`, `chord` (a chain link inside a chord header),
//! `link`/`link_error`.

use hlbot_proto::{Embed, Headers, Signature, TaskMessage};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a linked message takes from the task that sends it: parent/root ids, origin, the
/// priority it defaults to and its body format; `queue` is the sender's own (kept in chord
/// records; a linked message without a `queue` option is routed by its task name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parent {
    pub id: String,
    pub root_id: Option<String>,
    pub origin: Option<String>,
    pub queue: String,
    pub priority: u8,
    /// The parent message's body format: what its follow-ups are written in, so an app that
    /// accepts only its own serializer (`accept_content = ['pickle']`) can read them.
    #[serde(default)]
    pub serializer: hlbot_proto::Serializer,
}

impl Parent {
    /// A parent for unit tests: id `p`, root `r`, queue `default`.
    #[cfg(test)]
    pub(crate) fn for_test() -> Self {
        Self {
            id: "p".into(),
            root_id: Some("r".into()),
            origin: None,
            queue: "default".into(),
            priority: 0,
            serializer: hlbot_proto::Serializer::Json,
        }
    }

    pub fn of(msg: &TaskMessage) -> Self {
        Self {
            id: msg.id().to_string(),
            root_id: msg.headers.root_id.clone(),
            origin: msg.headers.origin.clone(),
            queue: msg.queue().to_string(),
            priority: msg.priority(),
            serializer: msg.serializer,
        }
    }
}

/// Signatures in an option that holds one signature or a list of them (`link`, `link_error`).
pub fn signatures(v: Option<&Value>) -> Option<Vec<Signature>> {
    let sigs: Vec<Signature> = match v? {
        Value::Array(a) => a
            .iter()
            .filter_map(|s| serde_json::from_value(s.clone()).ok())
            .collect(),
        v @ Value::Object(_) => serde_json::from_value(v.clone()).ok().into_iter().collect(),
        _ => vec![],
    };
    (!sigs.is_empty()).then_some(sigs)
}

/// A message for signature `sig`, sent by `parent` (parent_id/root_id propagated).
pub fn message(sig: &Signature, args: Vec<Value>, parent: &Parent, embed: Embed) -> TaskMessage {
    let o = &sig.options;
    let id = o
        .get("task_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut h = Headers::new(&sig.task, &id);
    h.parent_id = Some(parent.id.clone());
    h.root_id = parent.root_id.clone().or_else(|| Some(parent.id.clone()));
    h.origin = parent.origin.clone();
    if let Some(g) = o.get("group_id").and_then(Value::as_str) {
        h.group = Some(g.to_string());
        h.group_index = o.get("group_index").and_then(Value::as_i64);
    }
    // No `queue` option: routed by task name when written (`writer::route`), as Celery routes
    // a worker's `apply_async` — not to the sender's queue.
    let queue = o
        .get("queue")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_default();
    let priority = o
        .get("priority")
        .and_then(Value::as_u64)
        .map_or(parent.priority, |p| p.min(9) as u8);
    let mut embed = embed;
    if embed.callbacks.is_none() {
        embed.callbacks = signatures(o.get("link"));
    }
    if embed.errbacks.is_none() {
        embed.errbacks = signatures(o.get("link_error"));
    }
    if embed.chord.is_none() {
        embed.chord = o.get("chord").filter(|c| !c.is_null()).cloned();
    }
    let mut m = TaskMessage::new(h, args, sig.kwargs.clone(), embed, &queue, priority);
    if parent.serializer != m.serializer {
        m.serializer = parent.serializer;
        m.sync_envelope();
    }
    m
}

/// `sig`'s arguments with `first` prepended (unless the signature is immutable).
pub fn with_prefix(first: Value, sig: &Signature) -> Vec<Value> {
    if sig.immutable {
        sig.args.clone()
    } else {
        std::iter::once(first)
            .chain(sig.args.iter().cloned())
            .collect()
    }
}

/// The task ids the chain's later steps were given (`options.task_id`), in order.
pub fn chain_ids(msg: &TaskMessage) -> Vec<String> {
    msg.embed
        .chain
        .iter()
        .flatten()
        .filter_map(|sig| sig.options.get("task_id")?.as_str().map(str::to_string))
        .collect()
}

/// Callbacks (`link`) and the next chain step after a success, each applied as Celery applies
/// it (a group or chord step fans out: [`super::signature::apply`]).
pub fn callbacks(msg: &TaskMessage, result: &Value) -> Vec<super::op::Op> {
    use super::signature::apply;
    let parent = Parent::of(msg);
    let mut out: Vec<super::op::Op> = msg
        .embed
        .callbacks
        .iter()
        .flatten()
        .flat_map(|sig| apply(sig, Some(result), &parent, vec![]))
        .collect();
    if let Some(chain) = msg.embed.chain.as_ref().filter(|c| !c.is_empty()) {
        let mut rest = chain.clone();
        if let Some(next) = rest.pop() {
            out.extend(apply(&next, Some(result), &parent, rest));
        }
    }
    out
}

/// Errbacks (`link_error`) after a failure, sent as tasks with `(task_id,)` prepended.
pub fn errbacks(msg: &TaskMessage) -> Vec<TaskMessage> {
    errbacks_of(
        msg.embed.errbacks.iter().flatten(),
        msg.id(),
        &Parent::of(msg),
    )
}

/// Errbacks `sigs` for the failed task `failed`, sent by `parent` (Celery sends them as a group
/// with `(failed,)` prepended, parent_id = the failed task).
pub fn errbacks_of<'a>(
    sigs: impl Iterator<Item = &'a Signature>,
    failed: &str,
    parent: &Parent,
) -> Vec<TaskMessage> {
    sigs.map(|sig| {
        message(
            sig,
            with_prefix(json!(failed), sig),
            parent,
            Embed::default(),
        )
    })
    .collect()
}
