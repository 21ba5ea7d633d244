//! The log on stderr: level from `-l` / `HLBOT_LOGLEVEL` in Celery's names (default INFO for the
//! long-running `worker` and `beat`, WARNING for one-shot commands), colour only on a terminal
//! without `NO_COLOR`, fields printed as plain values. What each line says is the engine's.

use std::io::IsTerminal;

/// Install the subscriber. `level`: `-l`/`HLBOT_LOGLEVEL` if given; `long_running`: worker/beat.
pub fn init(level: Option<&str>, long_running: bool) {
    let default = if long_running { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_new(normalize(level.unwrap_or(default)))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color())
        .with_target(false)
        .init();
}

/// Colour only on a terminal, and never with `NO_COLOR` set (https://no-color.org).
pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Celery's level names → tracing's (`WARNING` → `warn`, `CRITICAL`/`FATAL` → `error`).
fn normalize(level: &str) -> String {
    match level.to_ascii_lowercase().as_str() {
        "warning" => "warn".into(),
        "critical" | "fatal" => "error".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn celery_level_names() {
        assert_eq!(super::normalize("WARNING"), "warn");
        assert_eq!(super::normalize("CRITICAL"), "error");
        assert_eq!(super::normalize("DEBUG"), "debug");
    }
}
