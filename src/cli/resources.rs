//! `event-source`, `action` and `trigger` commands.

use clap::Subcommand;
use sea_orm::DatabaseConnection;

/// Event source commands.
#[derive(Debug, Subcommand)]
pub enum EventSourceCommand {
    /// List event sources.
    List,
}

/// Action commands.
#[derive(Debug, Subcommand)]
pub enum ActionCommand {
    /// List actions.
    List,
}

/// Trigger commands.
#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// List triggers.
    List,
}

/// Runs an event source command.
pub async fn run_event_source(
    _db: &DatabaseConnection,
    _command: EventSourceCommand,
) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}

/// Runs an action command.
pub async fn run_action(_db: &DatabaseConnection, _command: ActionCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}

/// Runs a trigger command.
pub async fn run_trigger(_db: &DatabaseConnection, _command: TriggerCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
