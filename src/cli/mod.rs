//! The `event-hub` command line.
//!
//! `main` parses the arguments with clap, loads the [`Settings`], runs the
//! command on a multi-threaded tokio runtime and turns an error into one
//! line on stderr and exit status 1. clap itself exits with status 2 on a
//! usage error.

mod consume;
mod daemon;
mod executions;
mod keys;
mod output;
mod publish;
mod resources;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::telemetry;

/// Relays events from Kafka topics to action requests through triggers.
#[derive(Debug, Parser)]
#[command(name = "event-hub", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML, YAML or JSON), layered over the built-in
    /// defaults and under EVENT_HUB__SECTION__KEY environment variables.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "EVENT_HUB_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: consume event topics, match triggers, record
    /// executions and publish action requests.
    Run,
    /// Run the daemon with an embedded Kafka-protocol broker (in memory) and
    /// a SQLite database, for a first try without installing anything.
    Dev(daemon::DevArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage event sources: where events come from and how to decode them.
    #[command(subcommand)]
    EventSource(resources::EventSourceCommand),
    /// Manage actions: what a trigger asks a handler worker to do.
    #[command(subcommand)]
    Action(resources::ActionCommand),
    /// Manage triggers: an event filter on one source that requests one action.
    #[command(subcommand)]
    Trigger(resources::TriggerCommand),
    /// Inspect trigger executions.
    #[command(subcommand)]
    Execution(executions::ExecutionCommand),
    /// Produce one record to a Kafka topic, for example a webhook payload.
    Publish(publish::PublishArgs),
    /// Print the records of a topic as JSON lines, for example action
    /// requests or dead letters.
    Consume(consume::ConsumeArgs),
    /// Manage the key pair that signs the tokens in action requests.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Run a handler worker for one action flavor and subtype: verify each
    /// request, log it or run a command with it, and report the status.
    Worker(worker::WorkerArgs),
}

/// Log filter of the one-shot Kafka commands: librdkafka logs every failed
/// connection attempt, while the command reports the outcome in one line.
const CLIENT_LOG_FILTER: &str = "warn,rdkafka=off,librdkafka=off";

/// Parses the command line, runs the command and returns the exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };

    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// Joins an error and its causes into one line, leaving out a cause whose
/// text the line already contains (the library's errors embed their source).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;

    match cli.command {
        Command::Run => {
            telemetry::init(&settings.log, None);
            daemon::run(settings).await
        }
        Command::Dev(args) => {
            telemetry::init(&settings.log, None);
            daemon::dev(settings, args).await
        }
        Command::Migrate => {
            telemetry::init(&settings.log, Some("warn"));
            daemon::migrate(&settings).await
        }
        Command::EventSource(command) => {
            telemetry::init(&settings.log, Some("warn"));
            let db = crate::store::connect_migrated(&settings.database).await?;
            resources::run_event_source(&db, command).await
        }
        Command::Action(command) => {
            telemetry::init(&settings.log, Some("warn"));
            let db = crate::store::connect_migrated(&settings.database).await?;
            resources::run_action(&db, command).await
        }
        Command::Trigger(command) => {
            telemetry::init(&settings.log, Some("warn"));
            let db = crate::store::connect_migrated(&settings.database).await?;
            resources::run_trigger(&db, command).await
        }
        Command::Execution(command) => {
            telemetry::init(&settings.log, Some("warn"));
            let db = crate::store::connect_migrated(&settings.database).await?;
            executions::run(&db, command).await
        }
        Command::Publish(args) => {
            telemetry::init(&settings.log, Some(CLIENT_LOG_FILTER));
            publish::run(&settings, args).await
        }
        Command::Consume(args) => {
            telemetry::init(&settings.log, Some(CLIENT_LOG_FILTER));
            consume::run(&settings, args).await
        }
        Command::Keys(command) => keys::run(command, &settings),
        Command::Worker(args) => {
            telemetry::init(&settings.log, None);
            worker::run(settings, args).await
        }
    }
}
