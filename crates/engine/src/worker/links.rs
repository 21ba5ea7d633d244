//! Linked work after a task ends (reference §1.3): callbacks with the result prepended, the next
//! chain step, errbacks with the task id prepended — published as new task messages.

use hlbot_proto::{Embed, Headers, Signature, TaskMessage};
use serde_json::{Value, json};

/// A message for signature `sig`, sent by `parent` (parent_id/root_id propagated).
fn message(sig: &Signature, args: Vec<Value>, parent: &TaskMessage, embed: Embed) -> TaskMessage {
    let id = sig
        .options
        .get("task_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut h = Headers::new(&sig.task, &id);
    h.parent_id = Some(parent.id().to_string());
    h.root_id = parent
        .headers
        .root_id
        .clone()
        .or_else(|| Some(parent.id().to_string()));
    h.origin = parent.headers.origin.clone();
    if let Some(g) = sig.options.get("group_id").and_then(Value::as_str) {
        h.group = Some(g.to_string());
    }
    let queue = sig
        .options
        .get("queue")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| parent.queue().to_string());
    let priority = sig
        .options
        .get("priority")
        .and_then(Value::as_u64)
        .map_or(parent.priority(), |p| p.min(9) as u8);
    TaskMessage::new(h, args, sig.kwargs.clone(), embed, &queue, priority)
}

fn with_prefix(first: Value, sig: &Signature) -> Vec<Value> {
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

/// Callbacks (`link`) and the next chain step after a success.
pub fn callbacks(msg: &TaskMessage, result: &Value) -> Vec<TaskMessage> {
    let mut out: Vec<TaskMessage> = msg
        .embed
        .callbacks
        .iter()
        .flatten()
        .map(|sig| message(sig, with_prefix(result.clone(), sig), msg, Embed::default()))
        .collect();
    if let Some(chain) = msg.embed.chain.as_ref().filter(|c| !c.is_empty()) {
        let mut rest = chain.clone();
        if let Some(next) = rest.pop() {
            let embed = Embed {
                chain: (!rest.is_empty()).then_some(rest),
                ..Default::default()
            };
            out.push(message(
                &next,
                with_prefix(result.clone(), &next),
                msg,
                embed,
            ));
        }
    }
    out
}

/// Errbacks (`link_error`) after a failure, sent as tasks with `(task_id,)` prepended.
pub fn errbacks(msg: &TaskMessage) -> Vec<TaskMessage> {
    msg.embed
        .errbacks
        .iter()
        .flatten()
        .map(|sig| {
            message(
                sig,
                with_prefix(json!(msg.id()), sig),
                msg,
                Embed::default(),
            )
        })
        .collect()
}
