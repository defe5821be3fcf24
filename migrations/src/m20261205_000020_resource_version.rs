//! Adds `resource_version`, a one-row counter of writes to event sources,
//! actions and triggers, with the last `updated_at` given to such a write.
//!
//! Every write to those tables increments the counter in its own
//! transaction, first. The row lock makes such writes wait for one another,
//! and the trigger index polls the counter to learn that something changed.
//! Without it, the index compared row counts and `MAX(updated_at)` only,
//! and missed an update whose `updated_at` was computed before a
//! concurrent write's but committed after the index had read that write.
//!
//! `issued_at` keeps timestamps increasing after a delete. Without it, a
//! write took its `updated_at` past the newest row only, so deleting a row
//! stamped by a host whose clock is ahead let the next write take an
//! earlier timestamp than the deleted row's.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

/// The resource write counter.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000020_resource_version"
    }
}

#[derive(DeriveIden)]
enum ResourceVersion {
    Table,
    Id,
    Version,
    IssuedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A timestamp in UTC with microseconds, as in the other tables.
        let mut issued_at = ColumnDef::new(ResourceVersion::IssuedAt);
        match manager.get_database_backend() {
            DatabaseBackend::MySql => issued_at.custom(Alias::new("DATETIME(6)")),
            _ => issued_at.timestamp_with_time_zone(),
        };
        issued_at.null();

        manager
            .create_table(
                Table::create()
                    .table(ResourceVersion::Table)
                    .col(
                        ColumnDef::new(ResourceVersion::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ResourceVersion::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .col(issued_at)
                    .to_owned(),
            )
            .await?;

        // The one row, which writers lock and increment. Two columns and two
        // values: `values_panic` has nothing to panic about.
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(ResourceVersion::Table)
                    .columns([ResourceVersion::Id, ResourceVersion::Version])
                    .values_panic([1.into(), 0.into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ResourceVersion::Table).to_owned())
            .await
    }
}
