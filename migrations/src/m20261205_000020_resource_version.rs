//! Adds `resource_version`, a one-row counter of writes to event sources,
//! actions and triggers.
//!
//! Every write to those tables increments the counter in its own
//! transaction, first. The row lock makes such writes wait for one another,
//! and the trigger index polls the counter to learn that something changed.
//! Without it, the index compared row counts and `MAX(updated_at)` only,
//! and missed an update whose `updated_at` was computed before a
//! concurrent write's but committed after the index had read that write.

use sea_orm_migration::prelude::*;

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
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
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
