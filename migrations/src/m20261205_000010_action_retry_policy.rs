//! Adds the retry policy of each action and the retry state of each
//! execution.
//!
//! `actions` gains `max_attempts`, `backoff`, `initial_delay_ms`,
//! `max_delay_ms` and `max_event_age_secs`, with defaults so that existing
//! rows keep working: three attempts, exponential backoff from 1 s up to
//! 60 s, no age limit. `trigger_executions` gains `next_attempt_at`, when a
//! failed execution is due for its next attempt, and the Kafka position of
//! the last action request a worker reported on, from which the hub reads
//! the request back to publish it again or dead-letter it.
//!
//! Each column is added by its own `ALTER TABLE`, because SQLite accepts
//! only one change per statement.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

/// The retry policy of actions and the retry state of executions.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000010_action_retry_policy"
    }
}

#[derive(DeriveIden)]
enum Actions {
    Table,
    MaxAttempts,
    Backoff,
    InitialDelayMs,
    MaxDelayMs,
    MaxEventAgeSecs,
}

#[derive(DeriveIden)]
enum TriggerExecutions {
    Table,
    Status,
    NextAttemptAt,
    RequestTopic,
    RequestPartition,
    RequestOffset,
}

/// Builds a nullable timestamp column in UTC with microsecond precision,
/// as the first migration does: `DATETIME(6)` on MySQL, `TIMESTAMP WITH
/// TIME ZONE` elsewhere.
fn nullable_timestamp(backend: DatabaseBackend, column: impl IntoIden) -> ColumnDef {
    let mut definition = ColumnDef::new(column);
    match backend {
        DatabaseBackend::MySql => definition.custom(Alias::new("DATETIME(6)")),
        _ => definition.timestamp_with_time_zone(),
    };
    definition.null();
    definition
}

fn action_columns() -> Vec<ColumnDef> {
    vec![
        ColumnDef::new(Actions::MaxAttempts)
            .integer()
            .not_null()
            .default(3)
            .to_owned(),
        ColumnDef::new(Actions::Backoff)
            .string_len(16)
            .not_null()
            .default("exponential")
            .to_owned(),
        ColumnDef::new(Actions::InitialDelayMs)
            .big_integer()
            .not_null()
            .default(1000)
            .to_owned(),
        ColumnDef::new(Actions::MaxDelayMs)
            .big_integer()
            .not_null()
            .default(60_000)
            .to_owned(),
        ColumnDef::new(Actions::MaxEventAgeSecs)
            .big_integer()
            .null()
            .to_owned(),
    ]
}

fn execution_columns(backend: DatabaseBackend) -> Vec<ColumnDef> {
    vec![
        nullable_timestamp(backend, TriggerExecutions::NextAttemptAt),
        ColumnDef::new(TriggerExecutions::RequestTopic)
            .string_len(255)
            .null()
            .to_owned(),
        ColumnDef::new(TriggerExecutions::RequestPartition)
            .integer()
            .null()
            .to_owned(),
        ColumnDef::new(TriggerExecutions::RequestOffset)
            .big_integer()
            .null()
            .to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();

        for column in action_columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Actions::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in execution_columns(backend) {
            manager
                .alter_table(
                    Table::alter()
                        .table(TriggerExecutions::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }

        // The retry sweep looks for failed executions whose next attempt is due.
        manager
            .create_index(
                Index::create()
                    .name("ix_trigger_executions_status_next_attempt")
                    .table(TriggerExecutions::Table)
                    .col(TriggerExecutions::Status)
                    .col(TriggerExecutions::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_trigger_executions_status_next_attempt")
                    .table(TriggerExecutions::Table)
                    .to_owned(),
            )
            .await?;
        let execution_columns = [
            TriggerExecutions::NextAttemptAt,
            TriggerExecutions::RequestTopic,
            TriggerExecutions::RequestPartition,
            TriggerExecutions::RequestOffset,
        ];
        for column in execution_columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(TriggerExecutions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        let action_columns = [
            Actions::MaxAttempts,
            Actions::Backoff,
            Actions::InitialDelayMs,
            Actions::MaxDelayMs,
            Actions::MaxEventAgeSecs,
        ];
        for column in action_columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Actions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
