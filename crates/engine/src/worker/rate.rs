//! Per-task rate limits set by `control rate_limit TASK RATE` (`"10/m"`, `"5/s"`, `"100/h"`, or a
//! bare number per second): task starts of that type are spaced evenly, per worker, as Celery does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `"10/m"` → the minimum gap between two starts (None: no limit).
pub fn interval(rate: &str) -> Option<Duration> {
    let rate = rate.trim();
    let (n, unit) = rate.split_once('/').unwrap_or((rate, "s"));
    let n: f64 = n
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)?;
    let period = match unit.trim() {
        "s" | "" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    // 1e-30/s would overflow a timer: a gap beyond MAX_SECS means "never again" anyway.
    crate::worker::limits::secs(period / n)
}

/// When each task type may start next.
#[derive(Debug, Default)]
pub struct RateGate(Mutex<HashMap<String, Instant>>);

impl RateGate {
    /// How long a start of `task` must wait under `rate`; reserves the slot.
    pub fn reserve(&self, task: &str, rate: &str) -> Duration {
        let Some(gap) = interval(rate) else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let Ok(mut next) = self.0.lock() else {
            return Duration::ZERO;
        };
        let at = next.get(task).copied().filter(|t| *t > now).unwrap_or(now);
        // A far-future gap saturates instead of overflowing the clock.
        let after = at
            .checked_add(gap)
            .unwrap_or(at + Duration::from_secs(86_400 * 365));
        next.insert(task.to_string(), after);
        at - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_spaces() {
        assert_eq!(interval("10/m"), Some(Duration::from_secs(6)));
        assert_eq!(interval("2"), Some(Duration::from_millis(500)));
        assert_eq!(interval("0"), None);
        let g = RateGate::default();
        assert_eq!(g.reserve("t", "1/s"), Duration::ZERO);
        assert!(g.reserve("t", "1/s") > Duration::from_millis(900));
        assert_eq!(g.reserve("other", "1/s"), Duration::ZERO);
        // Hostile rates: no panic, a huge gap or no limit.
        assert!(interval("1e-30/s").is_some());
        assert_eq!(interval("NaN/s"), None);
        assert_eq!(interval("inf/s"), None);
        assert_eq!(g.reserve("slow", "1e-30/s"), Duration::ZERO);
        assert!(g.reserve("slow", "1e-30/s") > Duration::from_secs(3600));
    }
}
