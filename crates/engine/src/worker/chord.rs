//! Chord accounting on the worker side (Celery's `on_chord_part_return`, Redis backend): which
//! parts a finished request counts for ([`parts`]), and what the part that completes a chord
//! does with the ordered results ([`complete`]): publish the callback with the results prepended,
//! or — when a part failed — store a `ChordError` on the callback's id and send its errbacks.
//! The counting itself is `redis/chord.lua`, run inside the writer's batch; this module does not
//! touch Redis.

use chrono::Utc;
use hlbot_proto::{ExceptionInfo, ResultMeta, Signature, State, TaskMessage, pyjson};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::worker::links::{self, Parent};
use crate::worker::writer::Op;

/// Body option (hlbot): run the body even when parts failed, each part given as
/// `{"id", "state", "result"}`.
pub const PARTIAL: &str = "hlbot_partial";
/// Body option (hlbot): each finished part stores PROGRESS `{"done", "total"}` on the body's id.
pub const PROGRESS: &str = "hlbot_progress";

fn body_flag(body: &Value, name: &str) -> bool {
    body.pointer(&format!("/options/{name}"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// One chord header part to count: the `.j` entry `[1, id, state, result]` at `index`, and
/// everything the completing part needs to send the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChordPart {
    pub group: String,
    /// The part's task id (`.d` membership `<id>:<index>`).
    pub id: String,
    /// `group_index`; `None` sorts last (`+inf`), as in Celery.
    pub index: Option<i64>,
    /// The encoded entry, kombu's JSON (see [`ChordPart::entry_in`] for other serializers).
    pub entry: String,
    /// The chord body (`embed.chord` / a chain link's `options.chord`).
    pub callback: Value,
    /// The part's own message (the callback's parent).
    pub parent: Parent,
    /// The body's id when it asked for progress ([`PROGRESS`]).
    #[serde(default)]
    pub progress: Option<String>,
}

impl ChordPart {
    /// The entry as `result_serializer` writes it (Celery's `backend.encode`).
    pub fn entry_in(&self, s: hlbot_proto::Serializer) -> Vec<u8> {
        match s {
            hlbot_proto::Serializer::Json => self.entry.as_bytes().to_vec(),
            s => s.encode_result(&serde_json::from_str(&self.entry).unwrap_or(Value::Null)),
        }
    }
}

/// Celery's `PROPAGATE_STATES`: a part in one of these fails the chord.
fn propagates(state: &str) -> bool {
    matches!(state, "FAILURE" | "REVOKED")
}

fn part(
    group: &str,
    index: Option<i64>,
    id: &str,
    state: &State,
    result: &Value,
    callback: &Value,
    parent: &Parent,
) -> ChordPart {
    ChordPart {
        group: group.to_string(),
        id: id.to_string(),
        index,
        entry: pyjson::to_string(&json!([1, id, state.as_str(), result])),
        callback: callback.clone(),
        parent: parent.clone(),
        progress: body_flag(callback, PROGRESS)
            .then(|| {
                callback
                    .pointer("/options/task_id")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .flatten(),
    }
}

/// The writes a request's final `state` adds for chords (Celery's `mark_as_done/failure/revoked`):
/// its own part if its message carries `group` + `embed.chord`; after a FAILURE also, for every
/// later link of its chain, the FAILURE meta on the link's id and the link's part if the link is
/// a chord header's last (`options.chord`), so a chain in a header never leaves its chord hanging.
/// RETRY never counts; `ignore_result` does not matter here.
pub fn ops(msg: &TaskMessage, state: &State, result: &Value) -> Vec<Op> {
    let mut out = Vec::new();
    let parent = Parent::of(msg);
    if let (Some(cb), Some(g)) = (
        msg.embed.chord.as_ref().filter(|c| !c.is_null()),
        msg.headers.group.as_deref(),
    ) {
        out.push(Op::ChordPart(Box::new(part(
            g,
            msg.headers.group_index,
            msg.id(),
            state,
            result,
            cb,
            &parent,
        ))));
    }
    if *state == State::Failure {
        for link in msg.embed.chain.iter().flatten() {
            let o = &link.options;
            let Some(id) = o.get("task_id").and_then(Value::as_str) else {
                continue;
            };
            let mut m = ResultMeta::new(id, State::Failure, result.clone(), Utc::now());
            m.parent_id = Some(msg.id().to_string());
            m.group_id = o.get("group_id").and_then(Value::as_str).map(String::from);
            out.push(Op::Store(m));
            if let (Some(cb), Some(g)) = (
                o.get("chord").filter(|c| !c.is_null()),
                o.get("group_id").and_then(Value::as_str),
            ) {
                let index = o.get("group_index").and_then(Value::as_i64);
                out.push(Op::ChordPart(Box::new(part(
                    g, index, id, state, result, cb, &parent,
                ))));
            }
        }
    }
    out
}

/// A chord body's ops ([`complete`]) between the [`Op::ChordTake`] of its pending record
/// (`field`, `token`) and [`Op::ChordEnd`]: applied only if that record is still this writer's.
pub fn guarded(field: String, token: String, part: &ChordPart, entries: &[Vec<u8>]) -> Vec<Op> {
    let mut ops = vec![Op::ChordTake { field, token }];
    ops.extend(complete(part, entries));
    ops.push(Op::ChordEnd);
    ops
}

/// `[1, id, state, result]` decoded (compressed by Python's `result_compression` or not).
fn decode(entry: &[u8]) -> Option<(String, String, Value)> {
    let v: Value = hlbot_proto::compression::read_stored(entry).ok()?;
    let a = v.as_array()?;
    Some((
        a.get(1)?.as_str()?.to_string(),
        a.get(2)?.as_str()?.to_string(),
        a.get(3).cloned().unwrap_or(Value::Null),
    ))
}

/// The `ChordError` for the first failed part, as `_unpack_chord_result` raises it.
fn chord_error(entries: &[(String, String, Value)]) -> Option<ExceptionInfo> {
    let (id, _, result) = entries.iter().find(|(_, s, _)| propagates(s))?;
    let repr = ExceptionInfo::from_value(result).map_or_else(|| pyjson::repr(result), |e| e.repr());
    Some(chord_failure(format!("Dependency {id} raised {repr}")))
}

fn chord_failure(message: String) -> ExceptionInfo {
    ExceptionInfo::new("ChordError", "celery.exceptions", vec![json!(message)])
}

/// What the part that completed a chord writes, given the entries in order.
pub fn complete(part: &ChordPart, entries: &[Vec<u8>]) -> Vec<Op> {
    let Ok(body) = serde_json::from_value::<Signature>(part.callback.clone()) else {
        tracing::error!(group = %part.group, "chord body is not a signature; callback not sent");
        return vec![];
    };
    let decoded: Vec<_> = entries.iter().filter_map(|e| decode(e)).collect();
    if decoded.len() != entries.len() {
        let exc = chord_failure(format!(
            "Join error: {} of {} chord results could not be decoded",
            entries.len() - decoded.len(),
            entries.len()
        ));
        return fail_body(&body, &exc, &part.parent);
    }
    if body_flag(&part.callback, PARTIAL) {
        let parts = decoded
            .into_iter()
            .map(|(id, state, result)| json!({"id": id, "state": state, "result": result}))
            .collect();
        return send_body(&body, Value::Array(parts), &part.parent);
    }
    if let Some(exc) = chord_error(&decoded) {
        tracing::warn!(group = %part.group, "chord failed: {}", exc.display());
        return fail_body(&body, &exc, &part.parent);
    }
    let results = Value::Array(decoded.into_iter().map(|(_, _, r)| r).collect());
    send_body(&body, results, &part.parent)
}

/// The tasks of a chord body that get its failure: one signature, or each task of a group body.
fn body_tasks(body: &Signature) -> Vec<Signature> {
    match body.subtask_type.as_deref() {
        Some("group") => super::signature::tasks(body, "tasks"),
        _ => vec![body.clone()],
    }
}

/// `callback.delay(results)`: the body with the results prepended (unless immutable), applied
/// as Celery applies it — a chain body starts its first task with the rest as `embed.chain`, a
/// group body sends each task, a chord body sends its own header.
pub fn send_body(body: &Signature, results: Value, parent: &Parent) -> Vec<Op> {
    super::signature::apply(body, Some(&results), parent, vec![])
}

/// `chord_error_from_stack`: FAILURE with `exc` on each body task's id, its errbacks sent with
/// that id.
pub fn fail_body(body: &Signature, exc: &ExceptionInfo, parent: &Parent) -> Vec<Op> {
    let mut out = Vec::new();
    for s in body_tasks(body) {
        let id = s
            .options
            .get("task_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let errbacks = links::signatures(s.options.get("link_error")).unwrap_or_default();
        let p = Parent {
            id: id.clone(),
            root_id: parent.root_id.clone(),
            ..parent.clone()
        };
        for m in links::errbacks_of(errbacks.iter(), &id, &p) {
            out.push(Op::Publish(Box::new(m)));
        }
        let mut m = ResultMeta::new(
            &id,
            State::Failure,
            serde_json::to_value(exc).unwrap_or(Value::Null),
            Utc::now(),
        );
        m.traceback = Some(format!("celery.exceptions.ChordError: {}", exc.display()));
        out.push(Op::Store(m));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, state: &str, r: Value) -> Vec<u8> {
        pyjson::to_vec(&json!([1, id, state, r]))
    }

    fn parent() -> Parent {
        Parent::for_test()
    }

    fn chord_part(cb: Value) -> ChordPart {
        ChordPart {
            group: "g".into(),
            id: "a".into(),
            index: Some(0),
            entry: String::new(),
            callback: cb,
            parent: parent(),
            progress: None,
        }
    }

    #[test]
    fn callback_gets_results_first() {
        let cb = json!({"task": "cb", "args": [9], "kwargs": {}, "options": {"task_id": "c", "queue": "q",
            "link_error": {"task": "eb", "args": [], "kwargs": {}, "options": {}, "immutable": false}}});
        let ops = complete(
            &chord_part(cb),
            &[
                entry("a", "SUCCESS", json!(1)),
                entry("b", "SUCCESS", json!("x")),
            ],
        );
        let [Op::Publish(m)] = ops.as_slice() else {
            panic!("{ops:?}")
        };
        assert_eq!(m.id(), "c");
        assert_eq!(m.queue(), "q");
        assert_eq!(m.args, vec![json!([1, "x"]), json!(9)]);
        assert_eq!(m.headers.parent_id.as_deref(), Some("p"));
        assert_eq!(m.embed.errbacks.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn failed_part_is_a_chord_error_on_the_callback() {
        let cb = json!({"task": "cb", "options": {"task_id": "c",
            "link_error": [{"task": "eb", "args": [], "kwargs": {}, "options": {}, "immutable": false}]}});
        let exc =
            json!({"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"});
        let ops = complete(
            &chord_part(cb),
            &[entry("a", "SUCCESS", json!(1)), entry("b", "FAILURE", exc)],
        );
        let [Op::Publish(eb), Op::Store(meta)] = ops.as_slice() else {
            panic!("{ops:?}")
        };
        assert_eq!(eb.args, vec![json!("c")]);
        assert_eq!(meta.task_id, "c");
        assert_eq!(meta.status, State::Failure);
        assert_eq!(
            meta.result,
            json!({"exc_type": "ChordError", "exc_message": ["Dependency b raised ValueError('boom')"],
                   "exc_module": "celery.exceptions"})
        );
    }
}
