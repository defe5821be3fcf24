//! `execution` commands.

use clap::Subcommand;
use sea_orm::DatabaseConnection;

/// Execution commands.
#[derive(Debug, Subcommand)]
pub enum ExecutionCommand {
    /// List executions.
    List,
}

/// Runs an execution command.
pub async fn run(_db: &DatabaseConnection, _command: ExecutionCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
