//! `run`, `dev` and `migrate`.

use crate::config::Settings;

/// Arguments of `event-hub dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {}

/// Runs the daemon.
pub async fn run(_settings: Settings) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}

/// Runs the daemon with an embedded broker.
pub async fn dev(_settings: Settings, _args: DevArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}

/// Applies migrations.
pub async fn migrate(_settings: &Settings) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
