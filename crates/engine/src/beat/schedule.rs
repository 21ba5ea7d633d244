//! Beat entries: what to send (task, args, kwargs, queue, options) and when — a fixed interval or
//! a crontab in a time zone. Pure time arithmetic on unix milliseconds; no I/O.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::client::SendOptions;
use crate::error::{Error, Result};

/// When an entry is due.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every `period`, on a grid anchored at the first start.
    Every(Duration),
    /// Crontab "m h dom mon dow", read in `tz`; `expr` is the text as written.
    Cron {
        cron: Box<croner::Cron>,
        tz: chrono_tz::Tz,
        expr: String,
    },
}

/// Compact, as a user writes it: `every 300s`, `*/5 * * * *` (with ` Europe/Berlin` when the
/// zone is not UTC).
impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Every(p) => write!(f, "every {}s", p.as_secs_f64()),
            Schedule::Cron { expr, tz, .. } if *tz == chrono_tz::UTC => write!(f, "{expr}"),
            Schedule::Cron { expr, tz, .. } => write!(f, "{expr} {tz}"),
        }
    }
}

impl Schedule {
    /// The first due time strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Schedule::Every(p) => {
                let p = (p.as_millis() as i64).max(1);
                Some(after_ms + p)
            }
            Schedule::Cron { cron, tz, .. } => {
                let t = Utc.timestamp_millis_opt(after_ms).single()?;
                let local = t.with_timezone(tz);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|n| n.with_timezone(&Utc).timestamp_millis())
            }
        }
    }

    /// Roughly how far apart ticks are (for the idempotency keys' lifetime).
    pub fn period_hint(&self, from_ms: i64) -> Duration {
        match self {
            Schedule::Every(p) => *p,
            Schedule::Cron { .. } => {
                let a = self.next_after(from_ms).unwrap_or(from_ms);
                let b = self.next_after(a).unwrap_or(a + 60_000);
                Duration::from_millis((b - a).max(1000) as u64)
            }
        }
    }
}

/// One entry as written in the `[[beat.entries]]` table of the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryConfig {
    pub name: String,
    pub task: String,
    /// Seconds between runs (fractions allowed).
    pub interval: Option<f64>,
    /// "minute hour day-of-month month day-of-week".
    pub crontab: Option<String>,
    /// IANA zone for `crontab` (default UTC).
    pub timezone: Option<String>,
    #[serde(default)]
    pub args: Vec<Value>,
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    pub queue: Option<String>,
    /// Celery `apply_async` options: `priority`, `expires` (s), `countdown` (s), `time_limit`,
    /// `soft_time_limit`, `routing_key`, `exchange`.
    #[serde(default)]
    pub options: Map<String, Value>,
}

/// A validated entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub task: String,
    pub schedule: Schedule,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub options: SendOptions,
}

impl Entry {
    pub fn from_config(c: &EntryConfig) -> Result<Self> {
        let bad = |m: String| Error::Config(format!("beat entry {:?}: {m}", c.name));
        if c.name.is_empty() || c.name.contains(char::is_whitespace) {
            return Err(bad("name must be non-empty without spaces".into()));
        }
        let schedule = match (c.interval, &c.crontab) {
            (Some(s), None) if s.is_finite() && s > 0.0 => {
                Schedule::Every(Duration::from_secs_f64(s))
            }
            (None, Some(expr)) => {
                let cron = croner::Cron::from_str(expr)
                    .map_err(|e| bad(format!("crontab {expr:?}: {e}")))?;
                let tz = match c.timezone.as_deref() {
                    None => chrono_tz::UTC,
                    Some(z) => z
                        .parse::<chrono_tz::Tz>()
                        .map_err(|e| bad(format!("timezone {z:?}: {e}")))?,
                };
                Schedule::Cron {
                    cron: Box::new(cron),
                    tz,
                    expr: expr.trim().to_string(),
                }
            }
            _ => return Err(bad("set exactly one of interval (> 0 s) or crontab".into())),
        };
        let o = &c.options;
        let f = |k: &str| o.get(k).and_then(Value::as_f64);
        let options = SendOptions {
            queue: c.queue.clone(),
            priority: o
                .get("priority")
                .and_then(Value::as_u64)
                .map(|p| p.min(9) as u8),
            expires: f("expires"),
            countdown: f("countdown"),
            time_limit: f("time_limit"),
            soft_time_limit: f("soft_time_limit"),
            exchange: o
                .get("exchange")
                .and_then(Value::as_str)
                .map(str::to_string),
            routing_key: o
                .get("routing_key")
                .and_then(Value::as_str)
                .map(str::to_string),
            ..Default::default()
        };
        Ok(Self {
            name: c.name.clone(),
            task: c.task.clone(),
            schedule,
            args: c.args.clone(),
            kwargs: c.kwargs.clone(),
            options,
        })
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A unix-ms instant as a UTC time (for logs).
pub fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(interval: Option<f64>, cron: Option<&str>, tz: Option<&str>) -> Result<Entry> {
        Entry::from_config(&EntryConfig {
            name: "e".into(),
            task: "t".into(),
            interval,
            crontab: cron.map(str::to_string),
            timezone: tz.map(str::to_string),
            args: vec![],
            kwargs: Map::new(),
            queue: None,
            options: Map::new(),
        })
    }

    #[test]
    fn displayed_compactly() {
        let e = entry(None, Some("*/5 * * * *"), None).unwrap();
        assert_eq!(e.schedule.to_string(), "*/5 * * * *");
        let e = entry(None, Some("0 3 * * *"), Some("Europe/Berlin")).unwrap();
        assert_eq!(e.schedule.to_string(), "0 3 * * * Europe/Berlin");
        let e = entry(Some(300.0), None, None).unwrap();
        assert_eq!(e.schedule.to_string(), "every 300s");
    }

    #[test]
    fn interval_and_crontab_with_zone() {
        let e = entry(Some(2.5), None, None).expect("ok");
        assert_eq!(e.schedule.next_after(1000), Some(3500));
        // 03:00 in New York (EST, UTC-5) on 2026-01-10 is 08:00 UTC.
        let e = entry(None, Some("0 3 * * *"), Some("America/New_York")).expect("ok");
        let from = Utc
            .with_ymd_and_hms(2026, 1, 10, 0, 0, 0)
            .unwrap()
            .timestamp_millis();
        let next = e.schedule.next_after(from).expect("next");
        assert_eq!(
            at(next),
            Utc.with_ymd_and_hms(2026, 1, 10, 8, 0, 0).unwrap()
        );
        assert_eq!(e.schedule.period_hint(from), Duration::from_secs(86_400));
        assert!(entry(None, None, None).is_err());
        assert!(entry(Some(1.0), Some("* * * * *"), None).is_err());
        assert!(entry(None, Some("not cron"), None).is_err());
        assert!(entry(None, Some("* * * * *"), Some("Mars/Base")).is_err());
    }
}
