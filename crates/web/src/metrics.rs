//! Prometheus text exposition (format 0.0.4) with celery-exporter's metric names and labels, so
//! existing Grafana dashboards work: task counters by `name`,`hostname`, the runtime histogram,
//! worker gauges, queue lengths; plus hlbot's LLM spend, dead letters and writer backlog.
//! Labels are bounded sets (task names, node names, queues, models) — never a task id.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hlbot_engine::monitor::{COUNTED, Monitor, RUNTIME_BUCKETS};

use crate::App;

/// The text-format content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escape a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "NaN".into()
    }
}

/// The event-derived metrics of `m` (what a worker's own `/metrics` serves).
pub fn render_monitor(m: &Monitor, now: f64) -> String {
    let mut out = String::with_capacity(4096);
    let c = m.counters();
    for kind in COUNTED {
        let name = format!("celery_task_{kind}_total");
        head(
            &mut out,
            &name,
            "counter",
            &format!("Task events of type task-{kind}."),
        );
        let mut rows: Vec<_> = c.tasks.iter().filter(|((k, _, _), _)| k == kind).collect();
        rows.sort();
        for ((_, task, host), n) in rows {
            let _ = writeln!(
                out,
                "{name}{{name=\"{}\",hostname=\"{}\"}} {n}",
                label(task),
                label(host)
            );
        }
    }
    head(
        &mut out,
        "celery_task_runtime",
        "histogram",
        "Seconds a task ran (task-succeeded runtime).",
    );
    let mut hs: Vec<_> = c.runtime.iter().collect();
    hs.sort_by(|a, b| a.0.cmp(b.0));
    for ((task, host), h) in hs {
        let l = format!("name=\"{}\",hostname=\"{}\"", label(task), label(host));
        for (i, b) in RUNTIME_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "celery_task_runtime_bucket{{{l},le=\"{b}\"}} {}",
                h.buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "celery_task_runtime_bucket{{{l},le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "celery_task_runtime_sum{{{l}}} {}", num(h.sum));
        let _ = writeln!(out, "celery_task_runtime_count{{{l}}} {}", h.count);
    }
    let workers = m.workers();
    head(
        &mut out,
        "celery_worker_up",
        "gauge",
        "1 while the worker's heartbeats arrive.",
    );
    for w in &workers {
        let up = u8::from(w.online(now));
        let _ = writeln!(
            out,
            "celery_worker_up{{hostname=\"{}\"}} {up}",
            label(&w.hostname)
        );
    }
    head(
        &mut out,
        "celery_worker_tasks_active",
        "gauge",
        "Tasks running on the worker (its last heartbeat).",
    );
    for w in &workers {
        let _ = writeln!(
            out,
            "celery_worker_tasks_active{{hostname=\"{}\"}} {}",
            label(&w.hostname),
            if w.online(now) { w.active } else { 0 }
        );
    }
    head(
        &mut out,
        "celery_active_worker_count",
        "gauge",
        "Workers whose heartbeats arrive.",
    );
    let online = workers.iter().filter(|w| w.online(now)).count();
    let _ = writeln!(out, "celery_active_worker_count {online}");
    out
}

/// The dashboard's fleet view: the monitor's metrics plus queues, dead letters, LLM spend and
/// writer backlogs.
pub(crate) async fn render_fleet(app: &App) -> String {
    let mut out = render_monitor(&app.monitor, crate::html::now());
    let broker = app.opts.client.broker();
    match hlbot_engine::queues::stats(broker, &app.opts.queues).await {
        Ok(qs) => {
            head(
                &mut out,
                "celery_queue_length",
                "gauge",
                "Messages waiting in the queue (all priority lists).",
            );
            for q in &qs {
                let _ = writeln!(
                    out,
                    "celery_queue_length{{queue_name=\"{}\"}} {}",
                    label(&q.queue),
                    q.waiting
                );
            }
            head(
                &mut out,
                "hlbot_dead_letters",
                "gauge",
                "Messages in the dead-letter list, by the queue they came from.",
            );
            for q in &qs {
                let _ = writeln!(
                    out,
                    "hlbot_dead_letters{{queue_name=\"{}\"}} {}",
                    label(&q.queue),
                    q.dead
                );
            }
        }
        Err(e) => tracing::warn!("metrics: queue lengths: {e}"),
    }
    if let Some(store) = &app.opts.store {
        match store.cost_totals().await {
            Ok(rows) => {
                head(
                    &mut out,
                    "hlbot_llm_cost_usd_total",
                    "counter",
                    "LLM spend recorded in the store, US dollars.",
                );
                for (provider, model, usd) in rows {
                    let _ = writeln!(
                        out,
                        "hlbot_llm_cost_usd_total{{provider=\"{}\",model=\"{}\"}} {}",
                        label(&provider),
                        label(&model),
                        num(usd)
                    );
                }
            }
            Err(e) => tracing::warn!("metrics: LLM cost: {e}"),
        }
    }
    head(
        &mut out,
        "hlbot_writer_backlog",
        "gauge",
        "Result/ack writes a worker has not yet applied to Redis.",
    );
    for (node, n) in app.stats.backlog() {
        let _ = writeln!(
            out,
            "hlbot_writer_backlog{{hostname=\"{}\"}} {n}",
            label(&node)
        );
    }
    out
}

/// `GET /metrics`.
pub(crate) async fn endpoint(State(app): State<App>) -> Response {
    let body = render_fleet(&app).await;
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlbot_engine::monitor::MonitorOptions;
    use serde_json::json;

    #[test]
    fn counters_and_histogram() {
        let m = Monitor::new(MonitorOptions::default());
        m.apply(&json!({"type": "task-received", "uuid": "a", "name": "t\"x", "hostname": "w@h", "timestamp": 1.0}));
        m.apply(&json!({"type": "task-succeeded", "uuid": "a", "runtime": 0.3, "hostname": "w@h", "timestamp": 2.0}));
        let text = render_monitor(&m, 3.0);
        assert!(
            text.contains("celery_task_received_total{name=\"t\\\"x\",hostname=\"w@h\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "celery_task_runtime_bucket{name=\"t\\\"x\",hostname=\"w@h\",le=\"0.5\"} 1"
            )
        );
        assert!(text.contains(
            "celery_task_runtime_bucket{name=\"t\\\"x\",hostname=\"w@h\",le=\"0.25\"} 0"
        ));
        assert!(!text.contains("\"a\""), "no task ids in labels");
    }
}
