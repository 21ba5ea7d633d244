//! `hlbot dashboard`: build the dashboard's options from the settings and run it; or, with
//! `--hash-password`, print an argon2 hash for `[dashboard] password_hash`.

use std::io::BufRead;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::args::DashboardArgs;
use crate::settings::Settings;

pub async fn run(
    s: &Settings,
    a: DashboardArgs,
    stop: CancellationToken,
) -> anyhow::Result<ExitCode> {
    if a.hash_password {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let pw = line.trim_end_matches(['\n', '\r']);
        anyhow::ensure!(!pw.is_empty(), "no password on standard input");
        println!("{}", hlbot_web::hash_password(pw)?);
        return Ok(ExitCode::SUCCESS);
    }
    let client = super::client(s).await?;
    let store = super::library::open_in_background(s).await;
    let beat = s
        .beat
        .entries
        .clone()
        .unwrap_or_else(hlbot_tasks::beat_entries);
    let opts = hlbot_web::DashboardOptions {
        address: a.address,
        port: a.port,
        client,
        store,
        queues: s.queues.clone(),
        beat,
        auth: hlbot_web::AuthConfig {
            token: a.token.filter(|t| !t.is_empty()),
            user: s.dashboard.user.clone(),
            password_hash: s.dashboard.password_hash.clone(),
        },
        max_tasks: a.max_tasks.max(100),
    };
    hlbot_web::run(opts, stop).await?;
    Ok(ExitCode::SUCCESS)
}
