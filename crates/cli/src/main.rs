//! `hlbot`: the only binary. Parse → tracing → settings → signals → dispatch → exit code.

mod args;
mod cmd;
mod domain;
mod health;
mod settings;
mod systemd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let level = match cli.global.loglevel.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_string(),
        "critical" | "fatal" => "error".to_string(),
        other => other.to_string(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(level).unwrap_or_default())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let settings = match settings::Settings::load(&cli.global) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let args::Command::Worker(w) = &cli.command {
        builder.worker_threads(usize::from(w.threads));
    }
    let Ok(runtime) = builder.enable_all().build() else {
        eprintln!("error: cannot start the async runtime");
        return ExitCode::FAILURE;
    };
    let shutdown = hlbot_engine::Shutdown::default();
    runtime.spawn(signals(shutdown.clone()));
    let outcome = runtime.block_on(cmd::dispatch(cli.command, settings, shutdown));
    // Blocking work still running (a native call that ignores cancellation) cannot hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// First SIGINT/SIGTERM: warm shutdown. Second: cold shutdown.
async fn signals(shutdown: hlbot_engine::Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    for token in [shutdown.warm, shutdown.cold] {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        token.cancel();
    }
}
