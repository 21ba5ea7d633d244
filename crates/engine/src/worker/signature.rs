//! A signature applied from inside a worker as Celery's `sig.apply_async(args)` applies it: a
//! task is one message; a chain starts its first task with the rest as `embed.chain`; a group
//! sends each task with the group's id and index; a chord writes its header size, then sends the
//! header tasks, each carrying the body. So a chain whose next step is a group or a chord (Celery
//! turns `chain(a, group(b, c), d)` into a chord step), a chord body that is a chain, group or
//! chord, and a link that is a group go on on hlbot as they do on a Celery worker.

use hlbot_proto::{Embed, Signature};
use serde_json::{Value, json};

use super::links::{self, Parent};
use super::op::Op;

/// The ops that send `sig` with `first` prepended to its arguments (unless it is immutable), by
/// `parent`; `rest` is the enclosing chain still to run after it (Celery's `chain=` option, next
/// step last).
pub fn apply(
    sig: &Signature,
    first: Option<&Value>,
    parent: &Parent,
    rest: Vec<Signature>,
) -> Vec<Op> {
    // Celery's `chunks` signature carries no subtask_type: its task name tells it.
    let kind = match sig.task.as_str() {
        "celery.chunks" => Some("chunks"),
        _ => sig.subtask_type.as_deref(),
    };
    match kind {
        Some("chain") => chain(sig, first, parent, rest),
        Some("group") => {
            if !rest.is_empty() {
                // Celery turns a group followed by more steps into a chord; a bare one here has
                // nowhere to send its results.
                tracing::warn!(
                    "a group inside a chain with steps after it: the steps after it are not sent"
                );
            }
            group(sig, first, parent)
        }
        Some("chord") => chord(sig, first, parent, rest),
        Some("chunks") => chunked(sig, parent),
        _ => {
            let mut rest = rest;
            if rest.is_empty() {
                // A chord body carries the chain after its chord as the option `chain`.
                rest = links::signatures(sig.options.get("chain")).unwrap_or_default();
            }
            let args = match first {
                Some(v) => links::with_prefix(v.clone(), sig),
                None => sig.args.clone(),
            };
            let embed = Embed {
                chain: (!rest.is_empty()).then_some(rest),
                ..Default::default()
            };
            vec![Op::Publish(Box::new(links::message(
                sig, args, parent, embed,
            )))]
        }
    }
}

/// The group of starmaps; the `celery.chunks` task's own id (a chain waits on it) gets what
/// Celery's `celery.chunks` task returns: the group's result tuple, also as its child.
fn chunked(sig: &Signature, parent: &Parent) -> Vec<Op> {
    let g = chunks(sig);
    let mut ops = group(&g, None, parent);
    if let Some(id) = sig.options.get("task_id").and_then(Value::as_str) {
        let leaf = |s: &Signature| json!([[s.options.get("task_id"), null], null]);
        let leaves: Vec<Value> = tasks(&g, "tasks").iter().map(leaf).collect();
        let tuple = json!([[g.options.get("task_id"), null], leaves]);
        let mut m = hlbot_proto::ResultMeta::success(id, tuple.clone(), chrono::Utc::now());
        m.children = json!([tuple]);
        m.parent_id = Some(parent.id.clone());
        ops.push(Op::Store(m));
    }
    ops
}

/// `task.chunks(it, n)` as the group of `celery.starmap` signatures Celery's `chunks.group()`
/// makes: `it` cut into lists of `n` items, each run by one `celery.starmap` task, which goes to
/// the inner task's queue.
fn chunks(sig: &Signature) -> Signature {
    let task = sig.kwargs.get("task").cloned().unwrap_or(Value::Null);
    let n = sig
        .kwargs
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .max(1) as usize;
    let items = sig
        .kwargs
        .get("it")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let queue = task.pointer("/options/queue").cloned();
    let parts: Vec<Value> = items
        .chunks(n)
        .map(|part| {
            let mut options = serde_json::Map::new();
            options.insert("task_id".into(), json!(uuid::Uuid::new_v4().to_string()));
            if let Some(q) = &queue {
                options.insert("queue".into(), q.clone());
            }
            json!({"task": "celery.starmap", "args": [], "kwargs": {"task": task, "it": part},
                "options": options, "subtask_type": "xstarmap", "immutable": true})
        })
        .collect();
    let options = json!({"task_id": uuid::Uuid::new_v4().to_string()});
    serde_json::from_value(
        json!({"task": "celery.group", "args": [], "kwargs": {"tasks": parts},
        "options": options, "subtask_type": "group", "immutable": false}),
    )
    .unwrap_or_else(|_| sig.clone())
}

/// The signatures in `sig.kwargs[field]` (a chain's or group's `tasks`).
pub(super) fn tasks(sig: &Signature, field: &str) -> Vec<Signature> {
    sig.kwargs
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| serde_json::from_value(t.clone()).ok())
        .collect()
}

/// The first task runs with the chain's options; the others wait in `embed.chain` above `rest`.
fn chain(sig: &Signature, first: Option<&Value>, parent: &Parent, rest: Vec<Signature>) -> Vec<Op> {
    let mut steps = tasks(sig, "tasks");
    if steps.is_empty() {
        return vec![];
    }
    let mut head = steps.remove(0);
    for (k, v) in &sig.options {
        if k != "task_id" {
            head.options.entry(k.clone()).or_insert(v.clone());
        }
    }
    let mut stack = rest;
    stack.extend(steps.into_iter().rev());
    apply(&head, first, parent, stack)
}

/// Each task with the group id (the group's `task_id`) and its index; nested groups flattened
/// with their own indices, as Celery's `group._prepared` does.
fn group(sig: &Signature, first: Option<&Value>, parent: &Parent) -> Vec<Op> {
    let gid = group_id(sig, None);
    members(sig)
        .into_iter()
        .flat_map(|(i, mut m)| {
            mark(&mut m, &gid, i, None);
            apply(&m, first, parent, vec![])
        })
        .collect()
}

/// A group's leaf members with their indices (a nested group's members take its place).
fn members(group: &Signature) -> Vec<(usize, Signature)> {
    let mut out = Vec::new();
    for (i, m) in tasks(group, "tasks").into_iter().enumerate() {
        if m.subtask_type.as_deref() == Some("group") {
            out.extend(members(&m));
        } else {
            out.push((i, m));
        }
    }
    out
}

fn group_id(sig: &Signature, or: Option<&Signature>) -> String {
    [Some(sig), or]
        .into_iter()
        .flatten()
        .find_map(|s| s.options.get("task_id").and_then(Value::as_str))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

/// Make `sig` the `index`-th part of group `gid` (of a chord with `body`): the options go on the
/// task whose result is the part — a chain's last task, a chord's body.
fn mark(sig: &mut Signature, gid: &str, index: usize, body: Option<&Value>) {
    let field = match sig.subtask_type.as_deref() {
        Some("chain") => "tasks",
        Some("chord") => "body",
        _ => {
            sig.options.insert("group_id".into(), json!(gid));
            sig.options.insert("group_index".into(), json!(index));
            if let Some(b) = body {
                sig.options.insert("chord".into(), b.clone());
            }
            return;
        }
    };
    let inner = match sig.kwargs.get_mut(field) {
        Some(Value::Array(a)) => a.last_mut(),
        Some(v @ Value::Object(_)) => Some(v),
        _ => None,
    };
    let Some(inner) = inner else { return };
    if let Ok(mut s) = serde_json::from_value::<Signature>(inner.clone()) {
        mark(&mut s, gid, index, body);
        *inner = serde_json::to_value(&s).unwrap_or(Value::Null);
    }
}

/// The header size first, then the header tasks carrying the body (which carries `rest` as its
/// `chain` option); an empty header sends the body at once with `[]`, as Celery does.
fn chord(sig: &Signature, first: Option<&Value>, parent: &Parent, rest: Vec<Signature>) -> Vec<Op> {
    let Some(mut body) = sig
        .kwargs
        .get("body")
        .and_then(|b| serde_json::from_value::<Signature>(b.clone()).ok())
    else {
        tracing::error!("a chord without a body signature: not sent");
        return vec![];
    };
    if !rest.is_empty() {
        body.options.insert("chain".into(), json!(rest));
    }
    let header = match sig.kwargs.get("header") {
        Some(Value::Array(a)) => serde_json::from_value::<Signature>(json!({
            "task": "celery.group", "kwargs": {"tasks": a}, "subtask_type": "group"
        })),
        Some(h) => serde_json::from_value(h.clone()),
        None => serde_json::from_value(json!({"task": "celery.group", "subtask_type": "group"})),
    };
    let Ok(header) = header else {
        tracing::error!("a chord whose header is not a group signature: not sent");
        return vec![];
    };
    let parts = members(&header);
    if parts.is_empty() {
        return apply(&body, Some(&json!([])), parent, vec![]);
    }
    let gid = group_id(&header, Some(sig));
    let extra = sig.kwargs.get("kwargs").and_then(Value::as_object);
    let body_value = serde_json::to_value(&body).unwrap_or(Value::Null);
    let mut ops = vec![Op::ChordSize {
        group: gid.clone(),
        size: parts.len(),
    }];
    for (i, mut m) in parts {
        if let Some(kw) = extra {
            for (k, v) in kw {
                m.kwargs.entry(k.clone()).or_insert(v.clone());
            }
        }
        mark(&mut m, &gid, i, Some(&body_value));
        ops.extend(apply(&m, first, parent, vec![]));
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> Parent {
        Parent::for_test()
    }

    fn sig(v: Value) -> Signature {
        serde_json::from_value(v).expect("signature")
    }

    /// The chord step Celery 5.7 embeds for `chain(a, group(b, c), d)` (captured), applied with
    /// a's result: the size first, then b and c with the result prepended, each carrying d.
    #[test]
    fn a_chord_step_writes_its_size_then_its_header() {
        let t = |id: &str, i: u64| json!({"task": "t", "args": [], "kwargs": {}, "options": {"task_id": id, "group_index": i}, "subtask_type": null, "immutable": false});
        let step = sig(
            json!({"task": "celery.chord", "args": [], "kwargs": {"kwargs": {},
            "header": {"task": "celery.group", "args": [], "kwargs": {"tasks": [t("b", 0), t("c", 1)]},
                "options": {"task_id": "g"}, "subtask_type": "group", "immutable": false},
            "body": {"task": "t", "args": [], "kwargs": {}, "options": {"task_id": "d"}, "subtask_type": null, "immutable": false}},
            "options": {"task_id": "g"}, "subtask_type": "chord", "immutable": false}),
        );
        let more = vec![sig(t("e", 0))];
        let ops = apply(&step, Some(&json!(1)), &parent(), more);
        assert!(matches!(&ops[0], Op::ChordSize { group, size: 2 } if group == "g"));
        let msgs: Vec<_> = ops[1..]
            .iter()
            .map(|o| match o {
                Op::Publish(m) => m.clone(),
                _ => panic!("not a publish"),
            })
            .collect();
        assert_eq!(msgs.len(), 2);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.args, vec![json!(1)]);
            assert_eq!(m.headers.group.as_deref(), Some("g"));
            assert_eq!(m.headers.group_index, Some(i as i64));
            assert_eq!(m.headers.parent_id.as_deref(), Some("p"));
            let body = m.embed.chord.as_ref().expect("body");
            assert_eq!(body["options"]["task_id"], "d");
            // The chain after the chord rides on the body.
            assert_eq!(body["options"]["chain"][0]["options"]["task_id"], "e");
        }
    }

    #[test]
    fn an_empty_chord_header_sends_the_body_with_an_empty_list() {
        let step = sig(json!({"task": "celery.chord", "kwargs": {"header": [],
            "body": {"task": "t", "args": [3], "options": {"task_id": "d"}}}, "subtask_type": "chord"}));
        let ops = apply(&step, Some(&json!(1)), &parent(), vec![]);
        let [Op::Publish(m)] = ops.as_slice() else {
            panic!("one publish")
        };
        assert_eq!(m.args, vec![json!([]), json!(3)]);
    }
}
