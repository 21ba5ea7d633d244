//! Writing the library: a source (by kind + content key + options key) with its processed
//! content — transcript segments, PDF pages, frames and images — its strategies (the full
//! `strategy.v1` JSON plus indexed columns), chart analyses and LLM usage. Documents arrive as
//! plain structs and JSON; this module knows no domain types.

use serde_json::Value;

use crate::{Backend, Result, Store, bar_list, now};

/// Identifies a source: `kind` (`youtube`, `pdf`, `image`, `text`, `captions`, `playlist`),
/// `content_key` (video id, SHA-256 of the file) and `options_key` (what changes the result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceKey {
    pub kind: String,
    pub content_key: String,
    pub options_key: String,
}

impl SourceKey {
    pub fn new(kind: &str, content_key: &str, options_key: &str) -> Self {
        SourceKey {
            kind: kind.into(),
            content_key: content_key.into(),
            options_key: options_key.into(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SegmentRow {
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub text: String,
}

#[derive(Debug, Clone, Default)]
pub struct PageRow {
    pub page: i64,
    pub text: String,
    pub ocr: bool,
}

/// A frame or image file and its size.
#[derive(Debug, Clone, Default)]
pub struct MediaRow {
    /// `frame` or `image`.
    pub kind: String,
    pub path: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub bytes: Option<i64>,
    pub at_s: Option<f64>,
}

/// One LLM call's (or run's) tokens and cost.
#[derive(Debug, Clone, Default)]
pub struct UsageRow {
    pub task_id: Option<String>,
    pub purpose: Option<String>,
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub calls: i64,
    /// Answers served from the response cache (no tokens paid).
    pub cache_hits: i64,
    pub cost_usd: Option<f64>,
}

/// Strategies from one extraction: each a `strategy.v1` strategy object.
#[derive(Debug, Clone, Default)]
pub struct StrategySet {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub strategies: Vec<Value>,
}

/// A source's processed content (replaces what was stored for it before).
#[derive(Debug, Clone, Default)]
pub struct Content {
    pub uri: Option<String>,
    pub title: Option<String>,
    pub metadata: Option<Value>,
    pub segments: Vec<SegmentRow>,
    pub pages: Vec<PageRow>,
    pub media: Vec<MediaRow>,
}

impl Store {
    /// The id of `key`'s source row, creating it (status `done`) if missing.
    pub async fn source_id(&self, key: &SourceKey) -> Result<i64> {
        let t = now();
        let row: (i64,) = sqlx::query_as(
            "INSERT INTO sources (kind, content_key, options_key, status, created_at, updated_at) \
             VALUES ($1, $2, $3, 'done', $4, $4) \
             ON CONFLICT (kind, content_key, options_key) DO UPDATE SET updated_at = excluded.updated_at \
             RETURNING id",
        )
        .bind(key.kind.clone())
        .bind(key.content_key.clone())
        .bind(key.options_key.clone())
        .bind(t)
        .fetch_one(self.pool())
        .await?;
        Ok(row.0)
    }

    /// Store `content` for source `id`, replacing its segments, pages and media.
    pub async fn save_content(&self, id: i64, c: &Content) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE sources SET uri = COALESCE($1, uri), title = COALESCE($2, title), \
             metadata = COALESCE($3, metadata), updated_at = $4 WHERE id = $5",
        )
        .bind(c.uri.clone())
        .bind(c.title.clone())
        .bind(c.metadata.as_ref().map(Value::to_string))
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for t in ["segments", "pages", "media"] {
            sqlx::query(&format!("DELETE FROM {t} WHERE source_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for (chunk_no, chunk) in c.segments.chunks(500).enumerate() {
            let mut q = multi_insert(
                self.backend(),
                "segments (source_id, idx, start_s, end_s, text)",
                5,
                chunk.len(),
            );
            let mut b = sqlx::query(&q);
            for (i, s) in chunk.iter().enumerate() {
                b = b
                    .bind(id)
                    .bind((chunk_no * 500 + i) as i64)
                    .bind(s.start)
                    .bind(s.end)
                    .bind(s.text.clone());
            }
            b.execute(&mut *tx).await?;
            q.clear();
        }
        for chunk in c.pages.chunks(500) {
            let q = multi_insert(
                self.backend(),
                "pages (source_id, page, text, ocr)",
                4,
                chunk.len(),
            );
            let mut b = sqlx::query(&q);
            for p in chunk {
                b = b
                    .bind(id)
                    .bind(p.page)
                    .bind(p.text.clone())
                    .bind(i64::from(p.ocr));
            }
            b.execute(&mut *tx).await?;
        }
        for chunk in c.media.chunks(500) {
            let q = multi_insert(
                self.backend(),
                "media (source_id, kind, path, width, height, bytes, at_s)",
                7,
                chunk.len(),
            );
            let mut b = sqlx::query(&q);
            for m in chunk {
                b = b
                    .bind(id)
                    .bind(m.kind.clone())
                    .bind(m.path.clone())
                    .bind(m.width)
                    .bind(m.height)
                    .bind(m.bytes)
                    .bind(m.at_s);
            }
            b.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Store strategies for source `source` (None: not tied to a source); replaces the
    /// source's earlier strategies. Returns the new ids.
    pub async fn save_strategies(
        &self,
        source: Option<i64>,
        set: &StrategySet,
    ) -> Result<Vec<i64>> {
        let mut tx = self.pool().begin().await?;
        if let Some(id) = source {
            sqlx::query("DELETE FROM strategies WHERE source_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let mut ids = Vec::new();
        let t = now();
        for s in &set.strategies {
            let cols = StrategyCols::of(s);
            let row: (i64,) = sqlx::query_as(
                "INSERT INTO strategies (source_id, name, instruments, timeframes, indicators, \
                 style, provider, model, confidence, body, doc, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            )
            .bind(source)
            .bind(cols.name)
            .bind(cols.instruments)
            .bind(cols.timeframes)
            .bind(cols.indicators)
            .bind(cols.style)
            .bind(set.provider.clone())
            .bind(set.model.clone())
            .bind(cols.confidence)
            .bind(cols.body)
            .bind(s.to_string())
            .bind(t)
            .fetch_one(&mut *tx)
            .await?;
            ids.push(row.0);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Store a chart analysis (the reader's JSON).
    pub async fn save_analysis(
        &self,
        source: Option<i64>,
        path: Option<&str>,
        provider: Option<&str>,
        model: Option<&str>,
        doc: &Value,
    ) -> Result<i64> {
        let row: (i64,) = sqlx::query_as(
            "INSERT INTO analyses (source_id, path, provider, model, doc, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(source)
        .bind(path.map(str::to_string))
        .bind(provider.map(str::to_string))
        .bind(model.map(str::to_string))
        .bind(doc.to_string())
        .bind(now())
        .fetch_one(self.pool())
        .await?;
        Ok(row.0)
    }

    /// Store one LLM usage row.
    pub async fn save_usage(&self, source: Option<i64>, u: &UsageRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO llm_usage (source_id, task_id, purpose, provider, model, input_tokens, \
             output_tokens, calls, cost_usd, at, cache_hits) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(source)
        .bind(u.task_id.clone())
        .bind(u.purpose.clone())
        .bind(u.provider.clone())
        .bind(u.model.clone())
        .bind(u.input_tokens)
        .bind(u.output_tokens)
        .bind(u.calls)
        .bind(u.cost_usd)
        .bind(now())
        .bind(u.cache_hits)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// `INSERT INTO <target> VALUES (…),(…)` with `rows` groups of `cols` numbered placeholders.
pub(crate) fn multi_insert(b: Backend, target: &str, cols: usize, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {target} VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&crate::placeholder(b, r * cols + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// The indexed columns of one `strategy.v1` strategy.
struct StrategyCols {
    name: String,
    instruments: String,
    timeframes: String,
    indicators: String,
    style: Option<String>,
    confidence: Option<f64>,
    /// Searchable text: rules, filters, risk notes, evidence quotes.
    body: String,
}

impl StrategyCols {
    fn of(s: &Value) -> StrategyCols {
        let strs = |k: &str| -> Vec<String> {
            s.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let indicators: Vec<String> = s
            .get("indicators")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut body: Vec<String> = Vec::new();
        for k in ["entry_rules", "exit_rules", "risk_management", "filters"] {
            body.extend(strs(k));
        }
        for k in ["market", "stop_loss", "take_profit", "position_sizing"] {
            if let Some(v) = s.get(k).and_then(Value::as_str) {
                body.push(v.to_string());
            }
        }
        if let Some(ev) = s.get("evidence").and_then(Value::as_array) {
            body.extend(
                ev.iter()
                    .filter_map(|e| e.get("quote").and_then(Value::as_str).map(str::to_string)),
            );
        }
        StrategyCols {
            name: s
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            instruments: bar_list(&strs("instruments")),
            timeframes: bar_list(&strs("timeframes")),
            indicators: bar_list(&indicators),
            style: s.get("style").and_then(Value::as_str).map(str::to_string),
            confidence: s.get("confidence").and_then(Value::as_f64),
            body: body.join(" \n"),
        }
    }
}

impl Store {
    /// The newest source with this content key (video id, file hash), if any.
    pub async fn find_source(&self, content_key: &str) -> Result<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM sources WHERE content_key = $1 ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(content_key)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.0))
    }
}
