//! Reading the library: `list` (sources, newest first), `show` (one source with its content
//! and strategies), `search` (strategies by full text — PostgreSQL `tsvector`, SQLite FTS5 —
//! and by instrument, timeframe, indicator) and `export` (JSON, CSV, Markdown).

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;

use crate::config::Backend;
use crate::{Error, Result, Store, bar_items};

/// A source as listed.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRow {
    pub id: i64,
    pub kind: String,
    pub content_key: String,
    pub uri: Option<String>,
    pub title: Option<String>,
    pub status: String,
    pub strategies: i64,
    pub cost_usd: f64,
    pub updated_at: f64,
}

/// A strategy as found.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyRow {
    pub id: i64,
    pub source_id: Option<i64>,
    pub name: String,
    pub instruments: Vec<String>,
    pub timeframes: Vec<String>,
    pub indicators: Vec<String>,
    pub style: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub confidence: Option<f64>,
    pub strategy: Value,
}

/// Filters of `hlbot library search`.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub text: String,
    pub instrument: Option<String>,
    pub timeframe: Option<String>,
    pub indicator: Option<String>,
    pub limit: i64,
}

/// kind, path, width, height, bytes, at_s.
type MediaTuple = (
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
);

const STRATEGY_COLS: &str = "s.id, s.source_id, s.name, s.instruments, s.timeframes, \
    s.indicators, s.style, s.provider, s.model, s.confidence, s.doc";

fn strategy_row(r: &sqlx::any::AnyRow) -> Result<StrategyRow, sqlx::Error> {
    let doc: String = r.try_get(10)?;
    Ok(StrategyRow {
        id: r.try_get(0)?,
        source_id: r.try_get(1)?,
        name: r.try_get(2)?,
        instruments: bar_items(&r.try_get::<String, _>(3)?),
        timeframes: bar_items(&r.try_get::<String, _>(4)?),
        indicators: bar_items(&r.try_get::<String, _>(5)?),
        style: r.try_get(6)?,
        provider: r.try_get(7)?,
        model: r.try_get(8)?,
        confidence: r.try_get(9)?,
        strategy: serde_json::from_str(&doc).unwrap_or(Value::Null),
    })
}

/// FTS5 query for words: each word quoted (no operators from user text), all required.
fn fts5_query(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric() && c != '/' && c != '_')
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"", w.replace('"', "")))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Store {
    /// Sources, newest first, with their strategy count and LLM cost.
    pub async fn list_sources(&self, limit: i64) -> Result<Vec<SourceRow>> {
        let rows = sqlx::query(
            "SELECT s.id, s.kind, s.content_key, s.uri, s.title, s.status, \
             (SELECT COUNT(*) FROM strategies t WHERE t.source_id = s.id), \
             (SELECT COALESCE(SUM(u.cost_usd), 0.0) FROM llm_usage u WHERE u.source_id = s.id), \
             s.updated_at FROM sources s ORDER BY s.updated_at DESC, s.id DESC LIMIT $1",
        )
        .bind(if limit > 0 { limit } else { 100 })
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SourceRow {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    content_key: r.try_get(2)?,
                    uri: r.try_get(3)?,
                    title: r.try_get(4)?,
                    status: r.try_get(5)?,
                    strategies: r.try_get(6)?,
                    cost_usd: r.try_get(7)?,
                    updated_at: r.try_get(8)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// One source (by id or content key) with its content, strategies, analyses and usage.
    pub async fn show_source(&self, which: &str) -> Result<Option<Value>> {
        let id: Option<(i64,)> = match which.parse::<i64>() {
            Ok(n) => {
                sqlx::query_as("SELECT id FROM sources WHERE id = $1")
                    .bind(n)
                    .fetch_optional(self.pool())
                    .await?
            }
            Err(_) => sqlx::query_as(
                "SELECT id FROM sources WHERE content_key = $1 ORDER BY updated_at DESC LIMIT 1",
            )
            .bind(which)
            .fetch_optional(self.pool())
            .await?,
        };
        let Some((id,)) = id else { return Ok(None) };
        let (kind, key, uri, title, metadata, status): (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
        ) = sqlx::query_as(
            "SELECT kind, content_key, uri, title, metadata, status FROM sources WHERE id = $1",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        let segments: Vec<(Option<f64>, Option<f64>, String)> = sqlx::query_as(
            "SELECT start_s, end_s, text FROM segments WHERE source_id = $1 ORDER BY idx",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let pages: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT page, text, ocr FROM pages WHERE source_id = $1 ORDER BY page")
                .bind(id)
                .fetch_all(self.pool())
                .await?;
        let media: Vec<MediaTuple> = sqlx::query_as(
            "SELECT kind, path, width, height, bytes, at_s FROM media WHERE source_id = $1 \
                 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let strategies = sqlx::query(&format!(
            "SELECT {STRATEGY_COLS} FROM strategies s WHERE s.source_id = $1 ORDER BY s.id"
        ))
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(strategy_row)
        .collect::<Result<Vec<_>, _>>()?;
        let analyses: Vec<(Option<String>, Option<String>, String)> = sqlx::query_as(
            "SELECT path, model, doc FROM analyses WHERE source_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let usage: Vec<(String, String, i64, i64, i64, Option<f64>)> = sqlx::query_as(
            "SELECT provider, model, input_tokens, output_tokens, calls, cost_usd FROM llm_usage \
             WHERE source_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(Some(json!({
            "id": id, "kind": kind, "content_key": key, "uri": uri, "title": title,
            "status": status,
            "metadata": metadata.and_then(|m| serde_json::from_str::<Value>(&m).ok()),
            "segments": segments.iter().map(|(s, e, t)| json!({"start": s, "end": e, "text": t})).collect::<Vec<_>>(),
            "pages": pages.iter().map(|(p, t, o)| json!({"page": p, "text": t, "ocr": *o != 0})).collect::<Vec<_>>(),
            "media": media.iter().map(|(k, p, w, h, b, a)| json!({"kind": k, "path": p, "width": w, "height": h, "bytes": b, "at": a})).collect::<Vec<_>>(),
            "strategies": strategies,
            "analyses": analyses.iter().map(|(p, m, d)| json!({"path": p, "model": m, "analysis": serde_json::from_str::<Value>(d).unwrap_or(Value::Null)})).collect::<Vec<_>>(),
            "usage": usage.iter().map(|(p, m, i, o, c, u)| json!({"provider": p, "model": m, "input_tokens": i, "output_tokens": o, "calls": c, "cost_usd": u})).collect::<Vec<_>>(),
        })))
    }

    /// Strategies matching `q`: every word of `q.text` (stemmed) and each given filter.
    /// Best matches first (text rank on PostgreSQL, bm25 on SQLite), then by confidence.
    pub async fn search(&self, q: &SearchQuery) -> Result<Vec<StrategyRow>> {
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        let text = q.text.trim();
        let mut sql;
        let mut order = String::from("s.confidence DESC, s.id DESC");
        let mut binds: Vec<String> = Vec::new();
        match (self.backend(), text.is_empty()) {
            (_, true) => sql = format!("SELECT {STRATEGY_COLS} FROM strategies s WHERE 1 = 1"),
            (Backend::Postgres, false) => {
                let p = next();
                sql = format!(
                    "SELECT {STRATEGY_COLS} FROM strategies s, plainto_tsquery('english', {p}) q \
                     WHERE s.search @@ q"
                );
                order = format!("ts_rank(s.search, q) DESC, {order}");
                binds.push(text.to_string());
            }
            (Backend::Sqlite, false) => {
                let fts = fts5_query(text);
                if fts.is_empty() {
                    return Ok(Vec::new());
                }
                let p = next();
                sql = format!(
                    "SELECT {STRATEGY_COLS} FROM strategies_fts f JOIN strategies s ON s.id = f.rowid \
                     WHERE strategies_fts MATCH {p}"
                );
                order = format!("f.rank, {order}");
                binds.push(fts);
            }
        }
        for (col, v) in [
            ("instruments", &q.instrument),
            ("timeframes", &q.timeframe),
            ("indicators", &q.indicator),
        ] {
            if let Some(v) = v {
                sql.push_str(&format!(" AND s.{col} LIKE {}", next()));
                binds.push(format!("%|{}|%", v.trim().to_uppercase()));
            }
        }
        sql.push_str(&format!(" ORDER BY {order} LIMIT {}", next()));
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        query = query.bind(if q.limit > 0 { q.limit } else { 50 });
        query
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(strategy_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Into::into)
    }

    /// Every strategy with its source, as `json`, `csv` or `md`.
    pub async fn export(&self, format: &str) -> Result<String> {
        let rows = sqlx::query(&format!(
            "SELECT {STRATEGY_COLS}, src.kind, src.content_key, src.title FROM strategies s \
             LEFT JOIN sources src ON src.id = s.source_id ORDER BY s.id"
        ))
        .fetch_all(self.pool())
        .await?;
        let mut items = Vec::new();
        for r in &rows {
            let s = strategy_row(r)?;
            let src: (Option<String>, Option<String>, Option<String>) =
                (r.try_get(11)?, r.try_get(12)?, r.try_get(13)?);
            items.push((s, src));
        }
        match format {
            "json" => {
                let v: Vec<Value> = items
                    .iter()
                    .map(|(s, (k, c, t))| {
                        let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                        v["source"] = json!({"kind": k, "content_key": c, "title": t});
                        v
                    })
                    .collect();
                Ok(serde_json::to_string_pretty(&v).unwrap_or_default())
            }
            "csv" => {
                let mut out = String::from(
                    "id,name,instruments,timeframes,indicators,style,provider,model,confidence,source_kind,source_key,source_title\n",
                );
                for (s, (k, c, t)) in &items {
                    let cells = [
                        s.id.to_string(),
                        s.name.clone(),
                        s.instruments.join(";"),
                        s.timeframes.join(";"),
                        s.indicators.join(";"),
                        s.style.clone().unwrap_or_default(),
                        s.provider.clone().unwrap_or_default(),
                        s.model.clone().unwrap_or_default(),
                        s.confidence.map(|c| c.to_string()).unwrap_or_default(),
                        k.clone().unwrap_or_default(),
                        c.clone().unwrap_or_default(),
                        t.clone().unwrap_or_default(),
                    ];
                    let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
                    out.push_str(&line.join(","));
                    out.push('\n');
                }
                Ok(out)
            }
            "md" => {
                let mut out = String::from("# Strategies\n");
                for (s, (k, c, t)) in &items {
                    out.push_str(&format!(
                        "\n## {}\n\n- Instruments: {}\n- Timeframes: {}\n- Indicators: {}\n- Style: {}\n- Confidence: {}\n- Source: {} {} {}\n",
                        s.name,
                        s.instruments.join(", "),
                        s.timeframes.join(", "),
                        s.indicators.join(", "),
                        s.style.as_deref().unwrap_or("-"),
                        s.confidence.map(|c| format!("{c:.2}")).unwrap_or("-".into()),
                        k.as_deref().unwrap_or("-"),
                        c.as_deref().unwrap_or(""),
                        t.as_deref().map(|t| format!("({t})")).unwrap_or_default(),
                    ));
                    for key in ["entry_rules", "exit_rules"] {
                        if let Some(a) = s.strategy.get(key).and_then(Value::as_array) {
                            for rule in a.iter().filter_map(Value::as_str) {
                                out.push_str(&format!("- {}: {rule}\n", key.replace('_', " ")));
                            }
                        }
                    }
                }
                Ok(out)
            }
            other => Err(Error::Invalid(format!(
                "unknown export format {other:?} (json, csv, md)"
            ))),
        }
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
