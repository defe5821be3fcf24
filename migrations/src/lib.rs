//! Database schema migrations of event-hub.
//!
//! The same migrations run on SQLite, PostgreSQL and MySQL/MariaDB. They are
//! applied by `event-hub migrate`, by `event-hub dev` at start, and by the
//! test harness on each fresh database.

pub use sea_orm_migration::prelude::*;

mod m20261204_000001_create_tables;
mod m20261205_000010_action_retry_policy;
mod m20261205_000020_resource_version;

/// Lists the migrations of event-hub in the order they apply.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261204_000001_create_tables::Migration),
            Box::new(m20261205_000010_action_retry_policy::Migration),
            Box::new(m20261205_000020_resource_version::Migration),
        ]
    }
}
