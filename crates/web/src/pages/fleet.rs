//! Workers (from heartbeats and `stats`), Queues (depths, unacked, ETA-held, dead letters) and
//! Beat (entries, last/next run, the leader) pages.

use axum::Extension;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::Html;
use hlbot_engine::beat::schedule::{Entry, Schedule};
use redis::AsyncCommands;
use serde_json::{Value, json};

use super::Flash;
use crate::App;
use crate::auth::Session;
use crate::html::{action, esc, flash, now, page, state, time};

pub async fn workers(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(f): Query<Flash>,
) -> Html<String> {
    let t = now();
    let mut rows = String::new();
    for w in app.monitor.workers() {
        let st = app.stats.get(&w.hostname);
        let online = w.online(t);
        let h = &w.hostname;
        let url = |a: &str| format!("/worker/{}/{a}", crate::auth::urlencode(h));
        let consumer = format!(
            r#"<form method="post" action="{}" class="inline"><input type="hidden" name="csrf" value="{}"><input name="queue" placeholder="queue" size="8"><button name="op" value="add">add consumer</button><button name="op" value="cancel">cancel consumer</button></form>"#,
            esc(&url("consumer")),
            esc(&s.csrf)
        );
        rows.push_str(&format!(
            r#"<tr id="worker-{id}" data-beat="{beat}"><td class="status">{status}</td><td>{name}</td><td class="beat num">{age:.0} s</td><td class="num">{pool}</td><td class="active num">{active}</td><td class="processed num">{processed}</td><td class="failed num">{failed}</td><td class="load">{load}</td><td class="num">{rss}</td><td>{grow} {shrink} {stop}<br>{consumer}</td></tr>"#,
            id = esc(h),
            beat = w.last_heartbeat,
            status = state(if online { "online" } else { "offline" }),
            name = esc(h),
            age = (t - w.last_heartbeat).max(0.0),
            pool = st.concurrency.map_or("—".into(), |c| c.to_string()),
            active = w.active,
            processed = w.processed,
            failed = w.failed,
            load = w
                .loadavg
                .iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
            rss = st
                .maxrss_kib
                .map_or("—".into(), |k| format!("{:.1} MB", k as f64 / 1024.0)),
            grow = action(&url("pool_grow"), "+1", &s.csrf, &[], ""),
            shrink = action(&url("pool_shrink"), "−1", &s.csrf, &[], ""),
            stop = action(&url("shutdown"), "shut down", &s.csrf, &[], "danger"),
        ));
    }
    if rows.is_empty() {
        rows = r#"<tr><td colspan="10" class="muted">No worker seen yet (heartbeats arrive every 2 s).</td></tr>"#.into();
    }
    let body = format!(
        r#"<h1>Workers</h1>{}<table id="workers"><thead><tr><th>Status</th><th>Worker</th><th class="num">Heartbeat</th><th class="num">Pool</th><th class="num">Active</th><th class="num">Processed</th><th class="num">Failed</th><th>Load</th><th class="num">RSS (peak)</th><th>Actions</th></tr></thead><tbody>{rows}</tbody></table>
<p class="muted">Live window: {} tasks; {} events received.</p>"#,
        flash(f.msg.as_deref()),
        app.monitor.window_len(),
        app.monitor.counters().events
    );
    Html(page("Workers", "/workers", &s.csrf, &body))
}

pub async fn api_workers(State(app): State<App>) -> Json<Value> {
    let t = now();
    let v: Vec<Value> = app
        .monitor
        .workers()
        .into_iter()
        .map(|w| {
            let online = w.online(t);
            let mut v = serde_json::to_value(w).unwrap_or(Value::Null);
            v["online"] = json!(online);
            v
        })
        .collect();
    Json(json!(v))
}

pub async fn queues(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(f): Query<Flash>,
) -> Html<String> {
    let broker = app.opts.client.broker();
    let body = match hlbot_engine::queues::stats(broker, &app.opts.queues).await {
        Err(e) => format!(
            r#"<h1>Queues</h1><p class="flash bad">{}</p>"#,
            esc(&e.to_string())
        ),
        Ok(qs) => {
            let mut rows = String::new();
            for q in &qs {
                let prio = q
                    .by_priority
                    .iter()
                    .map(|(p, n)| format!("{p}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let purge = action(
                    &format!("/queue/{}/purge", crate::auth::urlencode(&q.queue)),
                    "purge",
                    &s.csrf,
                    &[],
                    "danger",
                );
                rows.push_str(&format!(
                    r#"<tr id="queue-{n}"><td>{n}</td><td class="num">{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{purge}</td></tr>"#,
                    q.waiting,
                    esc(&prio),
                    q.unacked,
                    q.scheduled,
                    q.dead,
                    n = esc(&q.queue),
                ));
            }
            let dead = hlbot_engine::deadletter::list(broker, 20)
                .await
                .unwrap_or_default();
            let mut drows = String::new();
            for d in &dead {
                drows.push_str(&format!(
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(d.task_id.as_deref().unwrap_or("—")),
                    esc(&d.queue),
                    esc(&d.reason),
                    time(Some(d.at)),
                ));
            }
            let replay = action("/dead/replay", "replay all dead letters", &s.csrf, &[], "");
            format!(
                r#"<h1>Queues</h1>{}<table id="queues"><thead><tr><th>Queue</th><th class="num">Waiting</th><th>By priority</th><th class="num">Unacked</th><th class="num">ETA-held</th><th class="num">Dead</th><th></th></tr></thead><tbody>{rows}</tbody></table>
<h2>Dead letters (newest {})</h2><p>{replay}</p><table><thead><tr><th>Task</th><th>Queue</th><th>Reason</th><th>At</th></tr></thead><tbody>{drows}</tbody></table>"#,
                flash(f.msg.as_deref()),
                dead.len()
            )
        }
    };
    Html(page("Queues", "/queues", &s.csrf, &body))
}

pub async fn beat(State(app): State<App>, Extension(s): Extension<Session>) -> Html<String> {
    let broker = app.opts.client.broker();
    let keys = broker.keys();
    let mut c = broker.conn();
    let lease: Option<String> = c.get(keys.beat_lease()).await.unwrap_or(None);
    let leader = lease
        .as_deref()
        .and_then(|l| l.split_whitespace().next())
        .map_or("none (no beat running)".to_string(), str::to_string);
    let mut rows = String::new();
    for cfg in &app.opts.beat {
        let last: Option<i64> = c.get(keys.beat_last(&cfg.name)).await.unwrap_or(None);
        let entry = Entry::from_config(cfg);
        let sched = match entry.as_ref().map(|e| &e.schedule) {
            Ok(Schedule::Every(d)) => format!("every {:.1} s", d.as_secs_f64()),
            Ok(_) => cfg.crontab.clone().unwrap_or_default(),
            Err(e) => format!("invalid: {e}"),
        };
        let next = entry.ok().and_then(|e| {
            e.schedule
                .next_after(last.unwrap_or_else(hlbot_engine::beat::schedule::now_ms))
        });
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&cfg.name),
            esc(&cfg.task),
            esc(&sched),
            time(last.map(|ms| ms as f64 / 1e3)),
            time(next.map(|ms| ms as f64 / 1e3)),
        ));
    }
    if rows.is_empty() {
        rows = r#"<tr><td colspan="5" class="muted">No [beat] entries in the config.</td></tr>"#
            .into();
    }
    let body = format!(
        r#"<h1>Beat</h1><dl class="kv"><dt>Leader</dt><dd id="leader">{}</dd></dl>
<table><thead><tr><th>Entry</th><th>Task</th><th>Schedule</th><th>Last run</th><th>Next run</th></tr></thead><tbody>{rows}</tbody></table>"#,
        esc(&leader)
    );
    Html(page("Beat", "/beat", &s.csrf, &body))
}
