//! Reading task history (`hlbot history`) and its retention: runs older than
//! `task_history_days` are deleted.

use serde::Serialize;
use sqlx::Row;

use crate::{Error, Result, Store};

/// One task run as listed.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub task_id: String,
    pub name: String,
    pub queue: Option<String>,
    pub state: String,
    pub worker: Option<String>,
    pub retries: i64,
    pub parent_id: Option<String>,
    pub root_id: Option<String>,
    pub args: Option<String>,
    pub kwargs: Option<String>,
    pub received_at: Option<f64>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub runtime: Option<f64>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub updated_at: f64,
    /// State changes in order: (state, Unix time).
    pub transitions: Vec<(String, f64)>,
}

/// `STATE@unix;…` → pairs.
fn parse_transitions(s: &str) -> Vec<(String, f64)> {
    s.split(';')
        .filter_map(|t| {
            let (state, at) = t.split_once('@')?;
            Some((state.to_string(), at.parse().ok()?))
        })
        .collect()
}

/// The columns of a `RunRow`, in `run_row`'s order.
pub(crate) const RUN_COLS: &str = "task_id, name, queue, state, worker, retries, parent_id, root_id, \
     args, kwargs, received_at, started_at, finished_at, runtime, error_type, error_message, \
     updated_at, transitions";

/// One row of `SELECT RUN_COLS`.
pub(crate) fn run_row(r: &sqlx::any::AnyRow) -> Result<RunRow, sqlx::Error> {
    Ok(RunRow {
        task_id: r.try_get(0)?,
        name: r.try_get(1)?,
        queue: r.try_get(2)?,
        state: r.try_get(3)?,
        worker: r.try_get(4)?,
        retries: r.try_get(5)?,
        parent_id: r.try_get(6)?,
        root_id: r.try_get(7)?,
        args: r.try_get(8)?,
        kwargs: r.try_get(9)?,
        received_at: r.try_get(10)?,
        started_at: r.try_get(11)?,
        finished_at: r.try_get(12)?,
        runtime: r.try_get(13)?,
        error_type: r.try_get(14)?,
        error_message: r.try_get(15)?,
        updated_at: r.try_get(16)?,
        transitions: parse_transitions(&r.try_get::<String, _>(17)?),
    })
}

/// Filters of `hlbot history`.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub state: Option<String>,
    pub task: Option<String>,
    /// Only runs updated in the last this many seconds.
    pub since_secs: Option<f64>,
    pub limit: i64,
}

/// `30s`, `15m`, `2h`, `1d`, `1w` → seconds.
pub fn parse_span(s: &str) -> Result<f64> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| Error::Invalid(format!("bad time span {s:?} (use e.g. 30m, 2h, 1d)")))?;
    let mult = match unit {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        _ => {
            return Err(Error::Invalid(format!(
                "bad time span unit in {s:?} (s, m, h, d, w)"
            )));
        }
    };
    Ok(n * mult)
}

impl Store {
    /// Task runs, newest first.
    pub async fn history(&self, q: &HistoryQuery) -> Result<Vec<RunRow>> {
        let mut sql = String::from(
            "SELECT task_id, name, queue, state, worker, retries, parent_id, root_id, args, \
             kwargs, received_at, started_at, finished_at, runtime, error_type, error_message, \
             updated_at, transitions FROM task_runs WHERE 1 = 1",
        );
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if q.state.is_some() {
            sql.push_str(&format!(" AND state = {}", next()));
        }
        if q.task.is_some() {
            sql.push_str(&format!(" AND name = {}", next()));
        }
        if q.since_secs.is_some() {
            sql.push_str(&format!(" AND updated_at >= {}", next()));
        }
        sql.push_str(&format!(" ORDER BY updated_at DESC LIMIT {}", next()));
        let mut query = sqlx::query(&sql);
        if let Some(s) = &q.state {
            query = query.bind(s.to_uppercase());
        }
        if let Some(t) = &q.task {
            query = query.bind(t.clone());
        }
        if let Some(s) = q.since_secs {
            query = query.bind(crate::now() - s);
        }
        query = query.bind(if q.limit > 0 { q.limit } else { 100 });
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter()
            .map(run_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// A task's state transitions in order: (state, Unix time).
    pub async fn transitions(&self, task_id: &str) -> Result<Vec<(String, f64)>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT transitions FROM task_runs WHERE task_id = $1")
                .bind(task_id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|r| parse_transitions(&r.0)).unwrap_or_default())
    }

    /// Delete runs last updated more than `days` ago; returns runs deleted.
    pub async fn prune_history(&self, days: u32) -> Result<u64> {
        if days == 0 {
            return Ok(0);
        }
        let cutoff = crate::now() - f64::from(days) * 86_400.0;
        let n = sqlx::query("DELETE FROM task_runs WHERE updated_at < $1")
            .bind(cutoff)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spans() {
        assert_eq!(super::parse_span("1d").unwrap(), 86_400.0);
        assert_eq!(super::parse_span("90").unwrap(), 90.0);
        assert_eq!(super::parse_span("2h").unwrap(), 7200.0);
        assert!(super::parse_span("1y").is_err());
    }
}
