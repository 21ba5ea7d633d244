//! Reading for the dashboard: task history one page at a time by keyset pagination on the
//! indexed `updated_at` (a page costs the same at row 10 and row 1 000 000 — no OFFSET), one
//! run by id, and LLM spend per day and model. Read-only.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::history::{RUN_COLS, RunRow, run_row};
use crate::{Result, Store};

/// One page request of the history.
#[derive(Debug, Clone, Default)]
pub struct BrowseQuery {
    pub state: Option<String>,
    /// Exact task name.
    pub name: Option<String>,
    pub worker: Option<String>,
    /// Only runs last updated strictly before this Unix time (the previous page's cursor).
    pub before: Option<f64>,
    pub limit: i64,
}

/// A page and the cursor of the next one (`None`: this was the last page).
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub runs: Vec<RunRow>,
    pub next: Option<f64>,
}

/// at, provider, model, input tokens, output tokens, calls, cost.
type UsageTuple = (f64, String, String, i64, i64, i64, Option<f64>, i64);

/// LLM spend of one day and model.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DayCost {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub provider: String,
    pub model: String,
    pub cost_usd: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub calls: i64,
    pub cache_hits: i64,
}

/// One task's LLM spend.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskCost {
    pub cost_usd: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub calls: i64,
    pub cache_hits: i64,
}

impl Store {
    /// One page of task runs, newest first. Runs sharing the exact `updated_at` of a page
    /// boundary are kept together on the earlier page (the page grows past `limit` for them),
    /// so the strict `<` cursor never skips one.
    pub async fn browse(&self, q: &BrowseQuery) -> Result<Page> {
        let limit = if q.limit > 0 { q.limit.min(500) } else { 50 };
        let mut sql = format!("SELECT {RUN_COLS} FROM task_runs WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if q.state.as_deref().is_some_and(|s| !s.is_empty()) {
            sql.push_str(&format!(" AND state = {}", next()));
        }
        if q.name.as_deref().is_some_and(|s| !s.is_empty()) {
            sql.push_str(&format!(" AND name = {}", next()));
        }
        if q.worker.as_deref().is_some_and(|s| !s.is_empty()) {
            sql.push_str(&format!(" AND worker = {}", next()));
        }
        if q.before.is_some() {
            sql.push_str(&format!(" AND updated_at < {}", next()));
        }
        sql.push_str(&format!(" ORDER BY updated_at DESC LIMIT {}", next()));
        let mut query = sqlx::query(&sql);
        for v in [&q.state, &q.name, &q.worker].into_iter().flatten() {
            if !v.is_empty() {
                query = query.bind(v.clone());
            }
        }
        if let Some(b) = q.before {
            query = query.bind(b);
        }
        query = query.bind(limit + 1);
        let rows = query.fetch_all(self.pool()).await?;
        let mut runs = rows
            .iter()
            .map(run_row)
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let more = runs.len() as i64 > limit;
        runs.truncate(limit as usize);
        let next = match (more, runs.last()) {
            (true, Some(last)) => {
                let edge = last.updated_at;
                // Ties at the boundary: fetch them all onto this page.
                let ties = sqlx::query(&format!(
                    "SELECT {RUN_COLS} FROM task_runs WHERE updated_at = $1"
                ))
                .bind(edge)
                .fetch_all(self.pool())
                .await?;
                for r in ties.iter().map(run_row) {
                    let r = r?;
                    let wanted = q
                        .state
                        .as_deref()
                        .is_none_or(|s| s.is_empty() || s == r.state)
                        && q.name
                            .as_deref()
                            .is_none_or(|s| s.is_empty() || s == r.name)
                        && q.worker
                            .as_deref()
                            .is_none_or(|s| s.is_empty() || r.worker.as_deref() == Some(s));
                    if wanted && !runs.iter().any(|x| x.task_id == r.task_id) {
                        runs.push(r);
                    }
                }
                Some(edge)
            }
            _ => None,
        };
        Ok(Page { runs, next })
    }

    /// One run by task id.
    pub async fn run(&self, task_id: &str) -> Result<Option<RunRow>> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM task_runs WHERE task_id = $1"
        ))
        .bind(task_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(run_row).transpose()?)
    }

    /// Runs whose parent is `task_id` (chains, chords, playlist fan-out), at most 200.
    pub async fn children(&self, task_id: &str) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM task_runs WHERE parent_id = $1 ORDER BY updated_at LIMIT 200"
        ))
        .bind(task_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(run_row)
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    /// LLM spend per UTC day and model over the last `days` days, oldest day first.
    pub async fn costs_by_day(&self, days: u32) -> Result<Vec<DayCost>> {
        let since = crate::now() - f64::from(days) * 86_400.0;
        let rows: Vec<UsageTuple> = sqlx::query_as(
            "SELECT at, provider, model, input_tokens, output_tokens, calls, cost_usd, cache_hits \
             FROM llm_usage WHERE at >= $1",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        let mut by: BTreeMap<(i64, String, String), DayCost> = BTreeMap::new();
        for (at, provider, model, i, o, calls, cost, hits) in rows {
            let day = (at / 86_400.0).floor() as i64;
            let d = by
                .entry((day, provider.clone(), model.clone()))
                .or_insert_with(|| DayCost {
                    day: day_string(day),
                    provider,
                    model,
                    ..Default::default()
                });
            d.cost_usd += cost.unwrap_or(0.0);
            d.input_tokens += i;
            d.output_tokens += o;
            d.calls += calls;
            d.cache_hits += hits;
        }
        Ok(by.into_values().collect())
    }

    /// What one task's LLM calls cost, summed over its usage rows; None when it made none.
    pub async fn task_cost(&self, task_id: &str) -> Result<Option<TaskCost>> {
        let (rows, cost, input, output, calls, hits): (i64, Option<f64>, i64, i64, i64, i64) =
            sqlx::query_as(
                // PostgreSQL sums BIGINTs as NUMERIC: cast back for the `Any` driver.
                "SELECT COUNT(*), SUM(cost_usd), \
                 CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(calls), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(cache_hits), 0) AS BIGINT) FROM llm_usage WHERE task_id = $1",
            )
            .bind(task_id)
            .fetch_one(self.pool())
            .await?;
        Ok((rows > 0).then_some(TaskCost {
            cost_usd: cost.unwrap_or(0.0),
            input_tokens: input,
            output_tokens: output,
            calls,
            cache_hits: hits,
        }))
    }

    /// All-time LLM spend per (provider, model): `hlbot_llm_cost_usd_total`.
    pub async fn cost_totals(&self) -> Result<Vec<(String, String, f64)>> {
        let rows: Vec<(String, String, Option<f64>)> =
            sqlx::query_as("SELECT provider, model, cost_usd FROM llm_usage")
                .fetch_all(self.pool())
                .await?;
        let mut by: BTreeMap<(String, String), f64> = BTreeMap::new();
        for (p, m, c) in rows {
            *by.entry((p, m)).or_default() += c.unwrap_or(0.0);
        }
        Ok(by.into_iter().map(|((p, m), c)| (p, m, c)).collect())
    }
}

/// Days since 1970-01-01 → `YYYY-MM-DD` (UTC).
fn day_string(days: i64) -> String {
    chrono::DateTime::from_timestamp(days.saturating_mul(86_400), 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn days() {
        assert_eq!(super::day_string(0), "1970-01-01");
        assert_eq!(super::day_string(20_454), "2026-01-01");
    }
}
