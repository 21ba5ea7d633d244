//! `hlbot`: the only binary. Parse → logging → settings → signals → dispatch → exit code.

mod args;
mod checks;
mod cmd;
mod domain;
mod health;
mod logging;
mod settings;
mod systemd;

use std::process::ExitCode;

fn main() -> ExitCode {
    let (cli, origins) = args::parse();
    let long_running = matches!(
        cli.command,
        args::Command::Worker(_) | args::Command::Beat(_) | args::Command::Dashboard(_)
    );
    let settings = match settings::Settings::load(&cli.global, origins) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            return ExitCode::from(2);
        }
    };
    logging::init(cli.global.loglevel.as_deref(), &settings, long_running);
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
    outcome.unwrap_or_else(|e| {
        eprintln!("error: {}", chain(&e));
        ExitCode::FAILURE
    })
}

/// The error and its causes, `: `-joined like `{:#}`, leaving out a cause whose text the message
/// already carries (errors that print their source would otherwise say it twice).
fn chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

/// First SIGINT/SIGTERM: warm shutdown (a waiting command stops waiting). Second: cold shutdown.
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
