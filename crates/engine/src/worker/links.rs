//! Linked work after a task ends (reference §1.3): callbacks with the result prepended, the next
//! chain step, errbacks with the task id prepended — published as new task messages. A
//! signature's options travel with it as Celery's `apply_async` would apply them: `task_id`,
//! `queue`, `priority`, `group_id`/`group_index`, `chord` (a chain link inside a chord header),
//! `link`/`link_error`.

use hlbot_proto::{Embed, Headers, Signature, TaskMessage};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a linked message takes from the task that sends it: parent/root ids, origin, the
/// queue and priority it defaults to (a route for the task's name wins over the queue:
/// `writer::route`), and its body format.
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

/// Marks a message built from a signature without a `queue` option until the writer routes it
/// (never written to Redis or RabbitMQ).
pub(crate) const UNROUTED: &str = "x-hlbot-unrouted";

/// A message for signature `sig`, sent by `parent` (parent_id/root_id propagated).
pub fn message(sig: &Signature, args: Vec<Value>, parent: &Parent, embed: Embed) -> TaskMessage {
    let o = &sig.options;
    let id = o
        .get("task_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut h = Headers::new(&sig.task, &id);
    timing(&mut h, o);
    h.parent_id = Some(parent.id.clone());
    h.root_id = parent.root_id.clone().or_else(|| Some(parent.id.clone()));
    h.origin = parent.origin.clone();
    if let Some(g) = o.get("group_id").and_then(Value::as_str) {
        h.group = Some(g.to_string());
        h.group_index = o.get("group_index").and_then(Value::as_i64);
    }
    let explicit = o.get("queue").and_then(Value::as_str).map(str::to_string);
    let unrouted = explicit.is_none();
    let queue = explicit.unwrap_or_else(|| parent.queue.clone());
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
    if unrouted {
        // Routed by task name when written (`writer::route`), as Celery's worker routes
        // `sig.apply_async()`; the sender's queue stays when no route names one.
        m.envelope
            .properties
            .delivery_info
            .extra
            .insert(UNROUTED.into(), Value::Bool(true));
    }
    m.set_serializer(parent.serializer);
    m
}

/// The `apply_async` options a signature carries that a worker applies when it sends it (a
/// chain step `.set(countdown=60, time_limit=30)`): `countdown`/`eta` (a number, an ISO date or
/// kombu's datetime marker), `expires` (seconds or a date), `time_limit`, `soft_time_limit`,
/// `ignore_result`, `shadow`.
fn timing(h: &mut Headers, o: &serde_json::Map<String, Value>) {
    use hlbot_proto::time;
    let now = chrono::Utc::now();
    let date = |v: &Value| -> Option<String> {
        let text = v
            .as_str()
            .or_else(|| v.get("__value__").and_then(Value::as_str));
        match (v.as_f64(), text) {
            (Some(secs), _) => Some(time::isoformat(time::after(now, secs))),
            (None, Some(t)) => time::parse_iso(t).map(time::isoformat),
            _ => None,
        }
    };
    if let Some(c) = o.get("countdown").and_then(Value::as_f64) {
        h.eta = Some(time::isoformat(time::after(now, c)));
    } else if let Some(eta) = o.get("eta").and_then(date) {
        h.eta = Some(eta);
    }
    if let Some(exp) = o.get("expires").and_then(date) {
        h.expires = Some(exp);
    }
    let limit = |k: &str| o.get(k).and_then(Value::as_f64).filter(|s| *s > 0.0);
    if limit("time_limit").is_some() || limit("soft_time_limit").is_some() {
        h.timelimit = [limit("time_limit"), limit("soft_time_limit")];
    }
    if let Some(b) = o.get("ignore_result").and_then(Value::as_bool) {
        h.ignore_result = Some(b);
    }
    if let Some(s) = o.get("shadow").and_then(Value::as_str) {
        h.shadow = Some(s.to_string());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(options: Value) -> Signature {
        serde_json::from_value(json!({"task": "t", "args": [], "kwargs": {}, "options": options}))
            .expect("signature")
    }

    #[test]
    fn a_signatures_apply_async_options_reach_the_headers() {
        let before = chrono::Utc::now();
        let m = message(
            &sig(
                json!({"countdown": 5, "time_limit": 3, "soft_time_limit": 2, "expires": 60,
                        "ignore_result": true, "shadow": "alias"}),
            ),
            vec![],
            &Parent::for_test(),
            Embed::default(),
        );
        let h = &m.headers;
        let eta = h.eta_time().expect("eta");
        assert!(eta >= before + chrono::Duration::seconds(5), "{eta}");
        assert!(eta <= chrono::Utc::now() + chrono::Duration::seconds(5));
        let expires = h.expires.as_deref().and_then(hlbot_proto::time::parse_iso);
        assert!(expires.expect("expires") >= before + chrono::Duration::seconds(60));
        assert_eq!(h.timelimit, [Some(3.0), Some(2.0)]);
        assert_eq!(
            (h.ignore_result, h.shadow.as_deref()),
            (Some(true), Some("alias"))
        );
        // The eta kombu's JSON writes for a datetime, and an ISO string.
        for eta in [
            json!({"__type__": "datetime", "__value__": "2030-01-01T00:00:00+00:00"}),
            json!("2030-01-01T00:00:00Z"),
        ] {
            let m = message(
                &sig(json!({"eta": eta})),
                vec![],
                &Parent::for_test(),
                Embed::default(),
            );
            assert_eq!(m.headers.eta.as_deref(), Some("2030-01-01T00:00:00+00:00"));
            assert_eq!(m.headers.timelimit, [None, None]);
        }
        // No queue option: the sender's queue, marked for the writer to route by name.
        assert_eq!(m.queue(), "default");
        assert!(
            m.envelope
                .properties
                .delivery_info
                .extra
                .contains_key(UNROUTED)
        );
    }
}
