//! Subcommand dispatch: each arm calls one library entry point.

pub mod beat;
pub mod config;
mod control;
mod dashboard;
mod doctor;
mod ingest;
pub mod library;
mod operator;
mod playlist;
mod producer;
mod progress;
mod wait;
pub mod worker;

use std::process::ExitCode;

use hlbot_engine::{Backend, Broker, BrokerOptions, Client, Shutdown};

use crate::args::Command;
use crate::settings::Settings;

pub async fn dispatch(cmd: Command, s: Settings, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Send(a) => producer::send(&client(&s).await?, &s, a, &shutdown.warm).await,
        Command::Result(a) => producer::result(&client(&s).await?, a, &shutdown.warm).await,
        Command::Purge(a) => producer::purge(&client(&s).await?, &s, a).await,
        Command::Peek(a) => producer::peek(&client(&s).await?, a).await,
        Command::Worker(a) => worker::run(&s, a, shutdown).await,
        Command::Call(a) => worker::call(&s, a, shutdown).await,
        Command::Dead(a) => worker::dead(&client(&s).await?, a).await,
        Command::WorkerChild => worker::child(&s).await,
        Command::PdfChild => Ok(hlbot_tasks::pdf_child_main()),
        Command::Ingest(a) => ingest::ingest(&s, a, shutdown).await,
        Command::Captions(a) => ingest::captions(a),
        Command::Library(c) => library::library(&s, c).await,
        Command::History(a) => library::history(&s, a).await,
        Command::Db(c) => library::db(&s, c).await,
        Command::Inspect(a) => control::run(&s, a, true).await,
        Command::Control(a) => control::run(&s, a, false).await,
        Command::Beat(a) => beat::run(&s, a.lease, shutdown.warm).await,
        Command::Health(a) => worker::health(a).await,
        Command::Dashboard(a) => dashboard::run(&s, a, shutdown.warm).await,
        Command::Doctor(a) => doctor::run(&s, a).await,
        Command::Config(crate::args::ConfigCommand::Show { json }) => config::show(&s, json),
        Command::Queues(a) => operator::queues(&s, a).await,
        Command::Tasks(a) => operator::tasks(&s, a),
        Command::Completions { shell } => operator::completions(shell),
        Command::Man => operator::man(),
    }
}

pub async fn client(s: &Settings) -> anyhow::Result<Client> {
    let broker = Broker::connect(
        &s.broker,
        BrokerOptions {
            visibility_timeout: s.visibility_timeout,
            max_message_bytes: s.max_message_bytes,
        },
    )
    .await?;
    let backend = Backend::connect(&s.backend, s.result_expires).await?;
    let client = Client::new(broker, backend, s.router.clone());
    Ok(match &s.amqp {
        Some(url) => client.with_amqp(hlbot_engine::amqp::Amqp::new(
            url.clone(),
            s.amqp_layout,
            &format!("hlbot {}", std::process::id()),
        )),
        None => client,
    })
}
