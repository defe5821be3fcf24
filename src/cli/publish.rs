//! `publish`.
use crate::config::Settings;

/// Arguments of `event-hub publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {}

/// Produces one record.
pub async fn run(_settings: &Settings, _args: PublishArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
