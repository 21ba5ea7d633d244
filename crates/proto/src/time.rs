//! ISO-8601 dates exactly as Python's `datetime.isoformat()` writes them, and lenient parsing.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Timelike, Utc};

/// `2026-11-28T14:36:29.827490+00:00`, or without the fraction when it is zero (like Python).
pub fn isoformat(t: DateTime<Utc>) -> String {
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// `t` plus `secs` seconds, to the microsecond; beyond ±10^11 s (about 3 000 years) clamped, so
/// no countdown or expiry a client sends overflows.
pub fn after(t: DateTime<Utc>, secs: f64) -> DateTime<Utc> {
    let us = (secs.clamp(-1e11, 1e11) * 1e6) as i64;
    t.checked_add_signed(chrono::Duration::microseconds(us))
        .unwrap_or(t)
}

/// RFC 3339 with `Z`, for humans.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parse what Celery clients send for `eta`/`expires`: with an offset, with `Z`, or naive (UTC).
pub fn parse_iso(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%:z") {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

/// Unix time as a float, the way `time.time()` reports it.
pub fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_like_python() {
        let t = Utc
            .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(isoformat(t), "2030-01-01T00:00:00+00:00");
        let t = parse_iso("2026-11-28T14:36:26.886070+00:00").unwrap_or_default();
        assert_eq!(isoformat(t), "2026-11-28T14:36:26.886070+00:00");
    }

    #[test]
    fn parses_variants() {
        for s in [
            "2026-11-28T14:36:26Z",
            "2026-11-28T14:36:26",
            "2026-11-28T15:36:26+01:00",
        ] {
            let t = parse_iso(s).map(isoformat);
            assert_eq!(t.as_deref(), Some("2026-11-28T14:36:26+00:00"), "{s}");
        }
        assert!(parse_iso("tomorrow").is_none());
    }
}
