//! The log on stderr: level from `-l` / `HLBOT_LOGLEVEL` in Celery's names (default INFO for the
//! long-running `worker` and `beat`, WARNING for one-shot commands); format from `--log-format`
//! / `HLBOT_LOG_FORMAT` / `log_format`: `human` text (colour only on a terminal without
//! `NO_COLOR`; a task line's `task_id`/`task_name` fields are not repeated when its message
//! already names them) or `json`, one object per line with `timestamp`, `level`, `target`,
//! `message` and the event's fields as members. What each line says is the engine's.

use std::fmt;
use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::args::LogFormat;

/// Install the subscriber, then log the warnings found while loading the settings (the format
/// is a setting). `level`: `-l`/`HLBOT_LOGLEVEL` if given; `long_running`: worker/beat.
pub fn init(level: Option<&str>, s: &crate::settings::Settings, long_running: bool) {
    install(level, s.log_format, long_running);
    for w in &s.warnings {
        tracing::warn!("{w}");
    }
}

fn install(level: Option<&str>, format: LogFormat, long_running: bool) {
    let default = if long_running { "info" } else { "warn" };
    let level = normalize(level.unwrap_or(default));
    let mut filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // sqlx's pool logs each failed connect attempt at ERROR (a dozen lines a second while the
    // database is away or the disk full); the store's own warnings say it once. Shown at debug.
    if !level.contains("debug") && !level.contains("trace") {
        if let Ok(quiet) = "sqlx_core::pool=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder
            .with_ansi(color())
            .with_target(false)
            .fmt_fields(HumanFields)
            .init(),
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).init(),
    }
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

/// Fields that exist for machines: in human text they are left out when the message already
/// says them (`Task add[ID] received` carries `task_id`/`task_name` for the JSON log).
const QUIET: [&str; 2] = ["task_id", "task_name"];

/// The human field format: the message, then ` name=value` for each other field.
struct HumanFields;

impl<'w> FormatFields<'w> for HumanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut w: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut c = Collect::default();
        fields.record(&mut c);
        let message = c.message.unwrap_or_default();
        let mut first = message.is_empty();
        w.write_str(&message)?;
        for (name, value) in c.fields {
            let text = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if QUIET.contains(&name) && message.contains(&text) {
                continue;
            }
            if !first {
                w.write_char(' ')?;
            }
            first = false;
            write!(w, "{name}={text}")?;
        }
        Ok(())
    }
}

/// One JSON object per event, fields as members.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut c = Collect::default();
        event.record(&mut c);
        let mut obj = Map::new();
        obj.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        obj.insert("level".into(), meta.level().as_str().into());
        obj.insert("target".into(), meta.target().into());
        obj.insert("message".into(), c.message.unwrap_or_default().into());
        for (name, value) in c.fields {
            obj.insert(name.to_string(), value);
        }
        writeln!(w, "{}", Value::Object(obj))
    }
}

/// An event's message and its other fields, in order, as JSON values.
#[derive(Default)]
struct Collect {
    message: Option<String>,
    fields: Vec<(&'static str, Value)>,
}

impl Collect {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.push((field.name(), value));
        }
    }
}

impl Visit for Collect {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
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
