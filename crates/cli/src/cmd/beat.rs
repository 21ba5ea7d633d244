//! `hlbot beat` (and the beat embedded by `hlbot worker -B`): entries from the config file's
//! `[[beat.entries]]`, or the seed's daily cache cleanups, run by the engine's fenced beat.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hlbot_engine::beat::{Beat, BeatOptions, Entry};
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;

/// The beat the settings describe, ready to run.
pub async fn build(s: &Settings, lease: Option<f64>) -> anyhow::Result<Beat> {
    let configs = s
        .beat
        .entries
        .clone()
        .unwrap_or_else(hlbot_tasks::beat_entries);
    let entries = configs
        .iter()
        .map(Entry::from_config)
        .collect::<Result<Vec<_>, _>>()
        .context("beat schedule")?;
    let mut opts = BeatOptions::new(entries);
    if let Some(l) = lease.or(s.beat.lease) {
        anyhow::ensure!(l.is_finite() && l > 0.0, "beat lease must be > 0 seconds");
        opts.lease = Duration::from_secs_f64(l);
    }
    let json = s.log_format == crate::args::LogFormat::Json;
    for e in &opts.entries {
        if json {
            tracing::info!(entry = %e.name, task = %e.task, schedule = %e.schedule, "beat entry");
        } else {
            eprintln!("beat entry {}: {} ({})", e.name, e.task, e.schedule);
        }
    }
    Ok(Beat::new(super::client(s).await?, opts))
}

pub async fn run(
    s: &Settings,
    lease: Option<f64>,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let beat = build(s, lease).await?;
    if s.log_format == crate::args::LogFormat::Json {
        tracing::info!(broker = %s.broker_display(), "hlbot beat starting");
    } else {
        eprintln!("hlbot beat — broker {}", s.broker_display());
    }
    beat.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
