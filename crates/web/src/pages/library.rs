//! Library (sources and their strategies), one source (its text beside the extracted
//! strategies and their evidence) and Costs (LLM spend per day and model: an inline SVG chart
//! and the table).

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Html;
use hlbot_store::search::SearchQuery;
use serde_json::Value;

use crate::App;
use crate::auth::Session;
use crate::html::{esc, page, time};

fn no_store(title: &str, active: &str, csrf: &str) -> Html<String> {
    let body = format!(
        r#"<h1>{title}</h1><p class="muted">No store configured (DATABASE_URL or the data directory).</p>"#
    );
    Html(page(title, active, csrf, &body))
}

pub async fn library(State(app): State<App>, Extension(s): Extension<Session>) -> Html<String> {
    let Some(store) = &app.opts.store else {
        return no_store("Library", "/library", &s.csrf);
    };
    let sources = store.list_sources(200).await.unwrap_or_default();
    let strategies = store
        .search(&SearchQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    let srows: String = sources
        .iter()
        .map(|r| {
            format!(
                r#"<tr><td><a href="/source/{id}">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">${:.4}</td><td>{}</td></tr>"#,
                esc(&r.kind),
                esc(r.title.as_deref().unwrap_or(&r.content_key)),
                esc(&r.status),
                r.strategies,
                r.cost_usd,
                time(Some(r.updated_at)),
                id = r.id,
            )
        })
        .collect();
    let trows: String = strategies
        .iter()
        .map(|t| {
            format!(
                r#"<tr class="strategy"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td></tr>"#,
                esc(&t.name),
                esc(&t.instruments.join(", ")),
                esc(&t.timeframes.join(", ")),
                esc(&t.indicators.join(", ")),
                t.source_id
                    .map(|i| format!(r#"<a href="/source/{i}">source {i}</a>"#))
                    .unwrap_or_default(),
                t.confidence.map_or("—".into(), |c| format!("{c:.2}")),
            )
        })
        .collect();
    let body = format!(
        r#"<h1>Library</h1><h2>Sources ({})</h2><table id="sources"><thead><tr><th>Id</th><th>Kind</th><th>Title</th><th>Status</th><th class="num">Strategies</th><th class="num">LLM cost</th><th>Updated</th></tr></thead><tbody>{srows}</tbody></table>
<h2>Strategies ({})</h2><table id="strategies"><thead><tr><th>Name</th><th>Instruments</th><th>Timeframes</th><th>Indicators</th><th>Source</th><th class="num">Confidence</th></tr></thead><tbody>{trows}</tbody></table>"#,
        sources.len(),
        strategies.len()
    );
    Html(page("Library", "/library", &s.csrf, &body))
}

fn strs(v: &Value, k: &str) -> String {
    v[k].as_array()
        .map(|a| {
            a.iter()
                .map(|x| match x.as_str() {
                    Some(s) => s.to_string(),
                    None => x["name"]
                        .as_str()
                        .map_or_else(|| x.to_string(), str::to_string),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn strategy_card(t: &Value) -> String {
    let doc = &t["strategy"];
    let list = |k: &str| -> String {
        doc[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| format!("<li>{}</li>", esc(s)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let evidence: String = doc["evidence"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let at = e["at"]
                        .as_f64()
                        .or(e["start"].as_f64())
                        .map(|s| format!("{s:.0} s"))
                        .or(e["page"].as_i64().map(|p| format!("p. {p}")))
                        .unwrap_or_default();
                    format!(
                        "<li><q>{}</q> <span class=\"muted\">{}</span></li>",
                        esc(e["quote"].as_str().unwrap_or("")),
                        esc(&at)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        r#"<section class="strategy"><h3>{}</h3><dl class="kv"><dt>Instruments</dt><dd>{}</dd><dt>Timeframes</dt><dd>{}</dd><dt>Indicators</dt><dd>{}</dd><dt>Style</dt><dd>{}</dd><dt>Model</dt><dd>{}</dd></dl>
<h4>Entry</h4><ul>{}</ul><h4>Exit</h4><ul>{}</ul><h4>Evidence</h4><ul class="evidence">{evidence}</ul></section>"#,
        esc(t["name"].as_str().unwrap_or("unnamed")),
        esc(&strs(t, "instruments")),
        esc(&strs(t, "timeframes")),
        esc(&strs(t, "indicators")),
        esc(t["style"].as_str().unwrap_or("—")),
        esc(t["model"].as_str().unwrap_or("—")),
        list("entry_rules"),
        list("exit_rules"),
    )
}

pub async fn source(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Html<String> {
    let Some(store) = &app.opts.store else {
        return no_store("Source", "/library", &s.csrf);
    };
    let Ok(Some(src)) = store.show_source(&id).await else {
        let body = format!(
            "<h1>Source {}</h1><p class=\"muted\">Not found.</p>",
            esc(&id)
        );
        return Html(page("Source", "/library", &s.csrf, &body));
    };
    let mut text = String::new();
    for seg in src["segments"].as_array().into_iter().flatten() {
        let at = seg["start"]
            .as_f64()
            .map(|s| format!("[{s:.0}s] "))
            .unwrap_or_default();
        text.push_str(&format!("{at}{}\n", seg["text"].as_str().unwrap_or("")));
    }
    for p in src["pages"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "— page {} —\n{}\n",
            p["page"],
            p["text"].as_str().unwrap_or("")
        ));
    }
    if text.is_empty() {
        text = "(no text stored for this source)".into();
    }
    let media: String = src["media"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "<li>{} <code>{}</code> {}×{}</li>",
                esc(m["kind"].as_str().unwrap_or("")),
                esc(m["path"].as_str().unwrap_or("")),
                m["width"],
                m["height"]
            )
        })
        .collect();
    let cards: String = src["strategies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(strategy_card)
        .collect();
    let body = format!(
        r#"<h1>{}</h1><p class="muted">{} · {} · {}</p><div class="grid2"><div><h2>Text</h2><pre id="source-text">{}</pre><h2>Frames and images</h2><ul>{}</ul></div><div><h2>Strategies</h2>{}</div></div>"#,
        esc(src["title"]
            .as_str()
            .or(src["content_key"].as_str())
            .unwrap_or("source")),
        esc(src["kind"].as_str().unwrap_or("")),
        esc(src["uri"].as_str().unwrap_or("")),
        esc(src["status"].as_str().unwrap_or("")),
        esc(&text),
        if media.is_empty() {
            "<li class=\"muted\">none</li>".into()
        } else {
            media
        },
        if cards.is_empty() {
            "<p class=\"muted\">none extracted</p>".into()
        } else {
            cards
        },
    );
    Html(page("Source", "/library", &s.csrf, &body))
}

pub async fn costs(State(app): State<App>, Extension(s): Extension<Session>) -> Html<String> {
    let Some(store) = &app.opts.store else {
        return no_store("Costs", "/costs", &s.csrf);
    };
    let rows = store.costs_by_day(30).await.unwrap_or_default();
    // Per day total for the chart.
    let mut days: Vec<(String, f64)> = Vec::new();
    for r in &rows {
        match days.last_mut() {
            Some((d, v)) if *d == r.day => *v += r.cost_usd,
            _ => days.push((r.day.clone(), r.cost_usd)),
        }
    }
    let max = days.iter().map(|d| d.1).fold(0.0_f64, f64::max).max(1e-9);
    let (w, h, bar) = (720.0, 200.0, 22.0);
    let bars: String = days
        .iter()
        .enumerate()
        .map(|(i, (d, v))| {
            let bh = v / max * (h - 40.0);
            let x = 40.0 + i as f64 * (bar + 4.0);
            format!(
                r##"<rect x="{x:.1}" y="{:.1}" width="{bar}" height="{bh:.1}" fill="#2563eb"><title>{} ${v:.4}</title></rect><text x="{x:.1}" y="{:.1}">{}</text>"##,
                h - 20.0 - bh,
                esc(d),
                h - 5.0,
                esc(d.get(5..).unwrap_or(d)),
            )
        })
        .collect();
    let chart = format!(
        r#"<svg class="chart" id="cost-chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="LLM spend per day"><text x="4" y="14">${max:.4}</text>{bars}</svg>"#
    );
    let trows: String = rows
        .iter()
        .rev()
        .map(|r| {
            format!(
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">${:.4}</td></tr>"#,
                esc(&r.day),
                esc(&r.provider),
                esc(&r.model),
                r.calls,
                r.cache_hits,
                r.input_tokens,
                r.output_tokens,
                r.cost_usd
            )
        })
        .collect();
    let total: f64 = rows.iter().map(|r| r.cost_usd).sum();
    let body = format!(
        r#"<h1>Costs <span class="muted">(last 30 days: ${total:.4})</span></h1>{chart}
<table id="costs"><thead><tr><th>Day</th><th>Provider</th><th>Model</th><th class="num">Calls</th><th class="num">Cache hits</th><th class="num">Input tokens</th><th class="num">Output tokens</th><th class="num">Cost</th></tr></thead><tbody>{trows}</tbody></table>"#
    );
    Html(page("Costs", "/costs", &s.csrf, &body))
}
