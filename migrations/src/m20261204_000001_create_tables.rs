//! Creates `event_sources`, `actions`, `triggers` and `trigger_executions`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

/// The first schema: the three resources and the execution log.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000001_create_tables"
    }
}

#[derive(DeriveIden)]
enum EventSources {
    Table,
    Id,
    Name,
    Flavor,
    PluginSubtype,
    Description,
    Configuration,
    IsActive,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Actions {
    Table,
    Id,
    Name,
    Flavor,
    PluginSubtype,
    Description,
    Configuration,
    ServiceAccount,
    AuthWindowMinutes,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Triggers {
    Table,
    Id,
    Name,
    Description,
    EventSourceId,
    ActionId,
    EventFilter,
    IsActive,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TriggerExecutions {
    Table,
    Id,
    TriggerId,
    EventSourceId,
    EventId,
    EventMetadata,
    Status,
    Attempts,
    Error,
    CreatedAt,
    UpdatedAt,
    DispatchedAt,
    FinishedAt,
}

/// Builds a timestamp column in UTC with microsecond precision on every backend.
///
/// MySQL's `TIMESTAMP`, which sea-query emits for `timestamp_with_time_zone`,
/// keeps whole seconds and ends in 2038, so MySQL gets `DATETIME(6)` instead.
/// The trigger index compares `MAX(updated_at)` between polls, which needs
/// sub-second precision to notice two changes within one second.
fn timestamp(backend: DatabaseBackend, column: impl IntoIden) -> ColumnDef {
    let mut definition = ColumnDef::new(column);
    match backend {
        DatabaseBackend::MySql => definition.custom(Alias::new("DATETIME(6)")),
        _ => definition.timestamp_with_time_zone(),
    };
    definition
}

/// Starts a CREATE TABLE statement.
///
/// On MySQL the tables use a binary collation without padding, so that
/// names and event ids compare byte for byte as on SQLite and PostgreSQL.
/// With MySQL's default collation the unique index on
/// `(trigger_id, event_id)` would treat `order-a1`, `order-A1` and
/// `order-a1 ` as one event and drop all but the first.
fn create_table(collation: Option<&str>) -> TableCreateStatement {
    let mut statement = Table::create();
    if let Some(collation) = collation {
        statement.character_set("utf8mb4").collate(collation);
    }
    statement
}

/// Returns the binary, no-pad collation of a MySQL-family server, or `None`
/// on other backends. MariaDB and MySQL name it differently.
async fn binary_collation(manager: &SchemaManager<'_>) -> Result<Option<&'static str>, DbErr> {
    if manager.get_database_backend() != DatabaseBackend::MySql {
        return Ok(None);
    }
    let version = manager
        .get_connection()
        .query_one(Statement::from_string(
            DatabaseBackend::MySql,
            "SELECT VERSION() AS version",
        ))
        .await?
        .map(|row| row.try_get::<String>("", "version"))
        .transpose()?
        .unwrap_or_default();
    Ok(Some(if version.contains("MariaDB") {
        "utf8mb4_nopad_bin"
    } else {
        "utf8mb4_0900_bin"
    }))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let collation = binary_collation(manager).await?;

        manager
            .create_table(
                create_table(collation)
                    .table(EventSources::Table)
                    .col(
                        ColumnDef::new(EventSources::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(EventSources::Name)
                            .string_len(255)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(EventSources::Flavor)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EventSources::PluginSubtype)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(EventSources::Description).text().null())
                    .col(
                        ColumnDef::new(EventSources::Configuration)
                            .json_binary()
                            .not_null(),
                    )
                    .col(ColumnDef::new(EventSources::IsActive).boolean().not_null())
                    .col(timestamp(backend, EventSources::CreatedAt).not_null())
                    .col(timestamp(backend, EventSources::UpdatedAt).not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                create_table(collation)
                    .table(Actions::Table)
                    .col(ColumnDef::new(Actions::Id).uuid().not_null().primary_key())
                    .col(
                        ColumnDef::new(Actions::Name)
                            .string_len(255)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Actions::Flavor).string_len(64).not_null())
                    .col(
                        ColumnDef::new(Actions::PluginSubtype)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Actions::Description).text().null())
                    .col(
                        ColumnDef::new(Actions::Configuration)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Actions::ServiceAccount)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Actions::AuthWindowMinutes)
                            .integer()
                            .not_null(),
                    )
                    .col(timestamp(backend, Actions::CreatedAt).not_null())
                    .col(timestamp(backend, Actions::UpdatedAt).not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                create_table(collation)
                    .table(Triggers::Table)
                    .col(ColumnDef::new(Triggers::Id).uuid().not_null().primary_key())
                    .col(
                        ColumnDef::new(Triggers::Name)
                            .string_len(255)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Triggers::Description).text().null())
                    .col(ColumnDef::new(Triggers::EventSourceId).uuid().not_null())
                    .col(ColumnDef::new(Triggers::ActionId).uuid().not_null())
                    .col(
                        ColumnDef::new(Triggers::EventFilter)
                            .json_binary()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Triggers::IsActive).boolean().not_null())
                    .col(timestamp(backend, Triggers::CreatedAt).not_null())
                    .col(timestamp(backend, Triggers::UpdatedAt).not_null())
                    // RESTRICT: an event source or action that a trigger still
                    // uses cannot be deleted.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_triggers_event_source")
                            .from(Triggers::Table, Triggers::EventSourceId)
                            .to(EventSources::Table, EventSources::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_triggers_action")
                            .from(Triggers::Table, Triggers::ActionId)
                            .to(Actions::Table, Actions::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                create_table(collation)
                    .table(TriggerExecutions::Table)
                    .col(
                        ColumnDef::new(TriggerExecutions::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(TriggerExecutions::TriggerId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TriggerExecutions::EventSourceId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TriggerExecutions::EventId)
                            .string_len(512)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TriggerExecutions::EventMetadata)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TriggerExecutions::Status)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TriggerExecutions::Attempts)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(TriggerExecutions::Error).text().null())
                    .col(timestamp(backend, TriggerExecutions::CreatedAt).not_null())
                    .col(timestamp(backend, TriggerExecutions::UpdatedAt).not_null())
                    .col(timestamp(backend, TriggerExecutions::DispatchedAt).null())
                    .col(timestamp(backend, TriggerExecutions::FinishedAt).null())
                    // Deleting a trigger deletes its execution history with it.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_trigger_executions_trigger")
                            .from(TriggerExecutions::Table, TriggerExecutions::TriggerId)
                            .to(Triggers::Table, Triggers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_trigger_executions_event_source")
                            .from(TriggerExecutions::Table, TriggerExecutions::EventSourceId)
                            .to(EventSources::Table, EventSources::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // One execution per (trigger, event): a redelivered record finds its
        // execution already recorded instead of adding a second one.
        manager
            .create_index(
                Index::create()
                    .name("ux_trigger_executions_trigger_event")
                    .table(TriggerExecutions::Table)
                    .col(TriggerExecutions::TriggerId)
                    .col(TriggerExecutions::EventId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name("ix_trigger_executions_status_created")
                    .table(TriggerExecutions::Table)
                    .col(TriggerExecutions::Status)
                    .col(TriggerExecutions::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name("ix_triggers_event_source")
                    .table(Triggers::Table)
                    .col(Triggers::EventSourceId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name("ix_triggers_action")
                    .table(Triggers::Table)
                    .col(Triggers::ActionId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TriggerExecutions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Triggers::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Actions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(EventSources::Table).to_owned())
            .await
    }
}
