//! Tasks: the live list (the monitor's window, updated over SSE), one task (live view, else
//! the stored run) with its actions and parent/children, and History (the store, one keyset
//! page at a time).

use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use hlbot_engine::monitor::{TaskFilter, TaskView};
use hlbot_store::browse::BrowseQuery;
use hlbot_store::history::RunRow;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;
use crate::auth::Session;
use crate::html::{action, esc, flash, page, secs, state, time};

/// Filters of the Tasks and History pages.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    pub state: Option<String>,
    pub name: Option<String>,
    pub worker: Option<String>,
    pub before: Option<f64>,
    pub msg: Option<String>,
}

impl Filters {
    fn task_filter(&self) -> TaskFilter {
        TaskFilter {
            state: self.state.clone(),
            name: self.name.clone(),
            worker: self.worker.clone(),
        }
    }
}

const STATES: [&str; 9] = [
    "", "PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REVOKED", "REJECTED",
];

fn filter_form(action: &str, f: &Filters) -> String {
    let opts: String = STATES
        .iter()
        .map(|s| {
            let sel = if f.state.as_deref().unwrap_or("").eq_ignore_ascii_case(s) {
                " selected"
            } else {
                ""
            };
            format!(
                r#"<option value="{s}"{sel}>{}</option>"#,
                if s.is_empty() { "any state" } else { s }
            )
        })
        .collect();
    format!(
        r#"<form id="filters" class="filters" method="get" action="{action}"><select name="state">{opts}</select><input name="name" placeholder="task name" value="{}"><input name="worker" placeholder="worker" value="{}"><button>Filter</button></form>"#,
        esc(f.name.as_deref().unwrap_or("")),
        esc(f.worker.as_deref().unwrap_or(""))
    )
}

fn live_row(t: &TaskView) -> String {
    format!(
        r#"<tr id="task-{id}" data-state="{st}"><td><a href="/task/{id}">{id}</a></td><td>{}</td><td class="state">{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td></tr>"#,
        esc(&t.name),
        state(&t.state),
        esc(&t.hostname),
        esc(&t.args),
        time(t.received.or(t.sent)),
        secs(t.runtime),
        id = esc(&t.uuid),
        st = esc(&t.state),
    )
}

pub async fn live(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(f): Query<Filters>,
) -> Html<String> {
    let rows: String = app
        .monitor
        .tasks(&f.task_filter(), 200)
        .iter()
        .map(live_row)
        .collect();
    let body = format!(
        r#"<h1>Tasks <span class="muted">(live, newest 200 of the last {} seen)</span></h1>{}{}
<table id="tasks"><thead><tr><th>Task id</th><th>Name</th><th>State</th><th>Worker</th><th>Args</th><th>Received</th><th class="num">Runtime</th></tr></thead><tbody>{rows}</tbody></table>"#,
        app.opts.max_tasks,
        flash(f.msg.as_deref()),
        filter_form("/tasks", &f)
    );
    Html(page("Tasks", "/tasks", &s.csrf, &body))
}

pub async fn api_tasks(State(app): State<App>, Query(f): Query<Filters>) -> Json<Value> {
    Json(json!(app.monitor.tasks(&f.task_filter(), 1000)))
}

fn kv(k: &str, v: &str) -> String {
    format!("<dt>{}</dt><dd>{v}</dd>", esc(k))
}

fn link(id: Option<&str>) -> String {
    match id {
        Some(i) if !i.is_empty() => format!(r#"<a href="/task/{0}">{0}</a>"#, esc(i)),
        _ => "—".into(),
    }
}

pub async fn task(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
    Query(f): Query<Filters>,
) -> Html<String> {
    let live = app.monitor.task(&id);
    let stored = match &app.opts.store {
        Some(st) => st.run(&id).await.ok().flatten(),
        None => None,
    };
    let cost = match &app.opts.store {
        Some(st) => st.task_cost(&id).await.ok().flatten(),
        None => None,
    };
    let Some(view) = live.or_else(|| stored.as_ref().map(from_run)) else {
        // Not seen yet: the state cell is there so live events fill it in.
        let body = format!(
            r#"<h1>Task <code>{0}</code></h1><dl class="kv"><dt>State</dt><dd id="task-state" data-uuid="{0}" data-state="UNKNOWN">{1}</dd></dl><p class="muted">Not in the live window nor in the history (yet): this page follows its events.</p>"#,
            esc(&id),
            state("UNKNOWN")
        );
        return Html(page("Task", "/task", &s.csrf, &body));
    };
    let mut children: Vec<(String, String, String)> = app
        .monitor
        .children(&id)
        .into_iter()
        .map(|c| (c.uuid, c.name, c.state))
        .collect();
    if let Some(st) = &app.opts.store {
        for c in st.children(&id).await.unwrap_or_default() {
            if !children.iter().any(|x| x.0 == c.task_id) {
                children.push((c.task_id, c.name, c.state));
            }
        }
    }
    let kids: String = children
        .iter()
        .map(|(i, n, st)| format!("<li>{} {} {}</li>", link(Some(i)), esc(n), state(st)))
        .collect();
    let timeline: String = stored
        .as_ref()
        .map(|r| {
            r.transitions
                .iter()
                .map(|(st, at)| format!("<li>{} {}</li>", time(Some(*at)), state(st)))
                .collect()
        })
        .unwrap_or_default();
    let base = format!("/task/{}", crate::auth::urlencode(&id));
    let actions = [
        action(&format!("{base}/revoke"), "revoke", &s.csrf, &[], ""),
        action(
            &format!("{base}/terminate"),
            "terminate",
            &s.csrf,
            &[],
            "danger",
        ),
        action(&format!("{base}/retry"), "retry", &s.csrf, &[], ""),
    ]
    .join(" ");
    let dl = [
        kv("Name", &esc(&view.name)),
        format!(
            r#"<dt>State</dt><dd id="task-state" data-uuid="{}" data-state="{}">{}</dd>"#,
            esc(&view.uuid),
            esc(&view.state),
            state(&view.state)
        ),
        kv("Worker", &esc(&view.hostname)),
        kv("Queue", &esc(view.queue.as_deref().unwrap_or("—"))),
        kv("Args", &format!("<code>{}</code>", esc(&view.args))),
        kv("Kwargs", &format!("<code>{}</code>", esc(&view.kwargs))),
        kv("Retries", &view.retries.to_string()),
        kv("ETA", &esc(view.eta.as_deref().unwrap_or("—"))),
        kv("Sent", &time(view.sent)),
        kv("Received", &time(view.received)),
        kv("Started", &time(view.started)),
        kv("Finished", &time(view.finished)),
        kv("Runtime", &secs(view.runtime)),
        kv("Parent", &link(view.parent_id.as_deref())),
        kv("Root", &link(view.root_id.as_deref())),
        kv(
            "LLM cost",
            &match &cost {
                Some(c) => format!(
                    r#"<span id="task-cost">${:.4}</span> ({} call(s), {} cache hit(s), {} + {} tokens)"#,
                    c.cost_usd, c.calls, c.cache_hits, c.input_tokens, c.output_tokens
                ),
                None => "—".to_string(),
            },
        ),
    ]
    .concat();
    let body = format!(
        r#"<h1>Task <code>{id}</code></h1>{}<p>{actions}</p><dl class="kv">{dl}</dl>
<h2>Result</h2><pre id="task-result">{}</pre>
<h2>Exception</h2><pre id="task-traceback">{}</pre>
<h2>Retries timeline</h2><ul>{}</ul><h2>Children</h2><ul id="children">{}</ul>"#,
        flash(f.msg.as_deref()),
        esc(view.result.as_deref().unwrap_or("")),
        esc(view
            .traceback
            .as_deref()
            .or(view.exception.as_deref())
            .unwrap_or("")),
        if timeline.is_empty() {
            r#"<li class="muted">not in the history yet</li>"#.to_string()
        } else {
            timeline
        },
        if kids.is_empty() {
            r#"<li class="muted">none</li>"#.to_string()
        } else {
            kids
        },
        id = esc(&id),
    );
    Html(page("Task", "/task", &s.csrf, &body))
}

/// A stored run shown like a live task.
pub(crate) fn from_run(r: &RunRow) -> TaskView {
    TaskView {
        uuid: r.task_id.clone(),
        name: r.name.clone(),
        state: r.state.clone(),
        hostname: r.worker.clone().unwrap_or_default(),
        args: r.args.clone().unwrap_or_default(),
        kwargs: r.kwargs.clone().unwrap_or_default(),
        result: None,
        exception: r
            .error_type
            .as_ref()
            .map(|t| format!("{t}: {}", r.error_message.as_deref().unwrap_or_default())),
        traceback: None,
        retries: r.retries,
        parent_id: r.parent_id.clone(),
        root_id: r.root_id.clone(),
        queue: r.queue.clone(),
        eta: None,
        sent: None,
        received: r.received_at,
        started: r.started_at,
        finished: r.finished_at,
        runtime: r.runtime,
        timestamp: r.updated_at,
    }
}

pub async fn history(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(f): Query<Filters>,
) -> Html<String> {
    let Some(store) = &app.opts.store else {
        let body = r#"<h1>History</h1><p class="muted">No store configured (DATABASE_URL or the data directory).</p>"#;
        return Html(page("History", "/history", &s.csrf, body));
    };
    let q = BrowseQuery {
        state: f.state.clone().map(|s| s.to_uppercase()),
        name: f.name.clone(),
        worker: f.worker.clone(),
        before: f.before,
        limit: 50,
    };
    let t0 = Instant::now();
    let page_res = store.browse(&q).await;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let body = match page_res {
        Err(e) => format!(
            r#"<h1>History</h1><p class="flash bad">{}</p>"#,
            esc(&e.to_string())
        ),
        Ok(p) => {
            let rows: String = p
                .runs
                .iter()
                .map(|r| {
                    format!(
                        r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
                        link(Some(&r.task_id)),
                        esc(&r.name),
                        state(&r.state),
                        esc(r.worker.as_deref().unwrap_or("")),
                        r.retries,
                        secs(r.runtime),
                        time(Some(r.updated_at)),
                    )
                })
                .collect();
            let keep = |k: &str, v: &Option<String>| {
                v.as_deref()
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("&{k}={}", crate::auth::urlencode(v)))
                    .unwrap_or_default()
            };
            let filters = format!(
                "{}{}{}",
                keep("state", &f.state),
                keep("name", &f.name),
                keep("worker", &f.worker)
            );
            let older = p
                .next
                .map(|n| {
                    format!(r#"<a id="older" href="/history?before={n}{filters}">Older →</a>"#)
                })
                .unwrap_or_default();
            format!(
                r#"<h1>History</h1>{}<p><a href="/history?{}">Newest</a> · {older} <span class="muted" id="answered">answered in {ms:.1} ms</span></p>
<table id="history"><thead><tr><th>Task id</th><th>Name</th><th>State</th><th>Worker</th><th class="num">Retries</th><th class="num">Runtime</th><th>Updated</th></tr></thead><tbody>{rows}</tbody></table>"#,
                filter_form("/history", &f),
                filters.trim_start_matches('&'),
            )
        }
    };
    Html(page("History", "/history", &s.csrf, &body))
}
