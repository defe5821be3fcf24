//! `run`, `dev` and `migrate`.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::dev::DevOptions;
use crate::shutdown::spawn_signal_handler;

/// Arguments of `event-hub dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Directory for the SQLite database and the generated signing key.
    #[arg(long, default_value = ".event-hub", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Brokers in the embedded mock cluster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=5))]
    pub brokers: i32,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), settings.pipeline.shutdown_timeout());
    crate::daemon::run(settings, shutdown).await?;
    Ok(())
}

/// Runs the daemon with an embedded broker until SIGTERM or SIGINT.
pub async fn dev(settings: Settings, args: DevArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), settings.pipeline.shutdown_timeout());
    let options = DevOptions {
        data_dir: args.data_dir,
        brokers: args.brokers,
    };
    crate::dev::run(settings, options, shutdown).await?;
    Ok(())
}

/// Applies pending migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = crate::store::connect(&settings.database).await?;
    crate::store::migrate(&db).await?;
    println!("database is up to date");
    Ok(())
}
