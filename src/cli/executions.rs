//! `execution` commands: read-only views of trigger executions.

use clap::{Args, Subcommand, ValueEnum};
use sea_orm::{ActiveEnum, DatabaseConnection};
use uuid::Uuid;

use super::output::OutputFormat;
use super::resources::{
    format_optional_time, format_time, optional, print_json, render_fields, write_stdout,
    ResourceNames, Table,
};
use crate::store::entity::trigger_execution::{self, ExecutionStatus};
use crate::store::executions::{self, ExecutionQuery};
use crate::store::resources;
use crate::Error;

/// Execution commands.
#[derive(Debug, Subcommand)]
pub enum ExecutionCommand {
    /// List executions, newest first.
    List(ExecutionListArgs),
    /// Show one execution.
    Show(ExecutionShowArgs),
}

/// Arguments of `execution list`.
#[derive(Debug, Args)]
pub struct ExecutionListArgs {
    /// Only executions of this trigger, by name or id.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub trigger: Option<String>,
    /// Only executions in this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// Only executions of this event id (GitHub delivery id, CloudEvents
    /// source and id, or topic/partition/offset).
    #[arg(long, value_name = "ID")]
    pub event_id: Option<String>,
    /// Maximum number of executions printed.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// Number of executions skipped, for paging.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub offset: u64,
    /// Output format: aligned columns, or a JSON array.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `execution show`.
#[derive(Debug, Args)]
pub struct ExecutionShowArgs {
    /// Id of the execution.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Output format: one field per line, or a JSON object.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// An execution status as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    /// Recorded, but the action request is not yet acknowledged by Kafka.
    #[value(name = "pending")]
    Pending,
    /// The action request is on its topic.
    #[value(name = "dispatched")]
    Dispatched,
    /// A worker reported that it started.
    #[value(name = "running")]
    Running,
    /// A worker reported success.
    #[value(name = "succeeded")]
    Succeeded,
    /// A worker reported failure.
    #[value(name = "failed")]
    Failed,
    /// Retries ran out, so the request went to the action dead letter topic.
    #[value(name = "dead_lettered")]
    DeadLettered,
}

impl From<StatusArg> for ExecutionStatus {
    fn from(status: StatusArg) -> Self {
        match status {
            StatusArg::Pending => Self::Pending,
            StatusArg::Dispatched => Self::Dispatched,
            StatusArg::Running => Self::Running,
            StatusArg::Succeeded => Self::Succeeded,
            StatusArg::Failed => Self::Failed,
            StatusArg::DeadLettered => Self::DeadLettered,
        }
    }
}

/// Runs an execution command.
pub async fn run(db: &DatabaseConnection, command: ExecutionCommand) -> anyhow::Result<()> {
    match command {
        ExecutionCommand::List(args) => list(db, args).await,
        ExecutionCommand::Show(args) => show(db, args).await,
    }
}

async fn list(db: &DatabaseConnection, args: ExecutionListArgs) -> anyhow::Result<()> {
    let trigger_id = match &args.trigger {
        Some(key) => Some(resources::find_trigger(db, key).await?.id),
        None => None,
    };
    let query = ExecutionQuery {
        trigger_id,
        status: args.status.map(ExecutionStatus::from),
        event_id: args.event_id,
        limit: args.limit,
        offset: args.offset,
    };
    let rows = executions::list(db, &query).await?;

    if args.output == OutputFormat::Json {
        return print_json(&rows);
    }

    let trigger_names = trigger_names(db).await?;
    let mut table = Table::new(&[
        "ID", "TRIGGER", "STATUS", "ATTEMPTS", "EVENT ID", "CREATED", "FINISHED",
    ]);
    for row in &rows {
        table.push(vec![
            row.id.to_string(),
            trigger_name(&trigger_names, row.trigger_id),
            row.status.to_value(),
            row.attempts.to_string(),
            row.event_id.clone(),
            format_time(row.created_at),
            format_optional_time(row.finished_at),
        ]);
    }
    write_stdout(&table.render())?;

    // The footer goes to standard error so that the table can be piped.
    let total = executions::count(db, &query).await?;
    let shown_until = args.offset + rows.len() as u64;
    if shown_until < total {
        eprintln!(
            "showing executions {} to {shown_until} of {total}; use --offset {shown_until} for more",
            args.offset + 1
        );
    }
    Ok(())
}

async fn show(db: &DatabaseConnection, args: ExecutionShowArgs) -> anyhow::Result<()> {
    let id = Uuid::parse_str(args.id.trim()).map_err(|_| {
        Error::invalid(
            "execution id",
            format!(
                "{:?} is not a UUID; take the id from `execution list`",
                args.id
            ),
        )
    })?;
    let execution = executions::find(db, id).await?;

    match args.output {
        OutputFormat::Json => print_json(&execution),
        OutputFormat::Table => {
            let trigger_names = trigger_names(db).await?;
            let names = ResourceNames::load(db).await?;
            write_stdout(&render_fields(&execution_fields(
                &execution,
                &trigger_names,
                &names,
            )))?;
            Ok(())
        }
    }
}

async fn trigger_names(
    db: &DatabaseConnection,
) -> anyhow::Result<std::collections::HashMap<Uuid, String>> {
    Ok(resources::list_triggers(db)
        .await?
        .into_iter()
        .map(|trigger| (trigger.id, trigger.name))
        .collect())
}

fn trigger_name(names: &std::collections::HashMap<Uuid, String>, id: Uuid) -> String {
    names.get(&id).cloned().unwrap_or_else(|| id.to_string())
}

fn execution_fields(
    execution: &trigger_execution::Model,
    trigger_names: &std::collections::HashMap<Uuid, String>,
    names: &ResourceNames,
) -> Vec<(&'static str, String)> {
    vec![
        ("id", execution.id.to_string()),
        (
            "trigger",
            format!(
                "{} ({})",
                trigger_name(trigger_names, execution.trigger_id),
                execution.trigger_id
            ),
        ),
        (
            "event source",
            format!(
                "{} ({})",
                names.event_source(execution.event_source_id),
                execution.event_source_id
            ),
        ),
        ("event id", execution.event_id.clone()),
        ("status", execution.status.to_value()),
        ("attempts", execution.attempts.to_string()),
        ("error", optional(execution.error.as_deref())),
        ("metadata", execution.event_metadata.to_string()),
        ("created", format_time(execution.created_at)),
        ("updated", format_time(execution.updated_at)),
        ("dispatched", format_optional_time(execution.dispatched_at)),
        ("finished", format_optional_time(execution.finished_at)),
    ]
}
