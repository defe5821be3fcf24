//! Persistence through sea-orm: connection, migrations, resources and
//! trigger executions.
//!
//! The database is the source of truth for event sources, actions and
//! triggers; every replica reads them from here. SQLite, PostgreSQL and
//! MySQL/MariaDB are supported, chosen by the URL scheme.

pub mod entity;
pub mod executions;
pub mod resources;

use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use secrecy::ExposeSecret;

use crate::config::DatabaseSettings;
use crate::Result;

/// Opens a connection pool to the configured database.
///
/// For a SQLite file URL, the file's directory is created first, so the
/// default `sqlite://.event-hub/event-hub.db?mode=rwc` works in a fresh
/// working directory.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection> {
    let url = settings.url.expose_secret();
    if let Some(path) = sqlite_file_path(url) {
        if let Some(directory) = std::path::Path::new(path).parent() {
            if !directory.as_os_str().is_empty() {
                std::fs::create_dir_all(directory)?;
            }
        }
    }

    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(settings.max_connections)
        .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .acquire_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .sqlx_logging(false);
    Ok(Database::connect(options).await?)
}

/// Applies every migration that has not run yet.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    Migrator::up(db, None).await?;
    Ok(())
}

/// Fails with an error that says what to run when the database lacks migrations.
pub async fn ensure_migrated(db: &DatabaseConnection) -> Result<()> {
    let pending = Migrator::get_pending_migrations(db).await?;
    if pending.is_empty() {
        return Ok(());
    }
    Err(crate::Error::Config(format!(
        "database.url: the database lacks {} migration(s); run `event-hub migrate` first",
        pending.len()
    )))
}

/// Opens the configured database and checks that it is migrated.
pub async fn connect_migrated(settings: &DatabaseSettings) -> Result<DatabaseConnection> {
    let db = connect(settings).await?;
    ensure_migrated(&db).await?;
    Ok(db)
}

/// Returns the file path of a `sqlite://` URL, or `None` for other URLs and
/// for in-memory SQLite.
fn sqlite_file_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::sqlite_file_path;

    #[test]
    fn sqlite_file_path_of_urls() {
        assert_eq!(
            sqlite_file_path("sqlite://data/hub.db?mode=rwc"),
            Some("data/hub.db")
        );
        assert_eq!(sqlite_file_path("sqlite:hub.db"), Some("hub.db"));
        assert_eq!(sqlite_file_path("sqlite::memory:"), None);
        assert_eq!(sqlite_file_path("postgres://localhost/test"), None);
    }
}
