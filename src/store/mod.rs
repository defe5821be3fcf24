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
    Database::connect(options).await.map_err(|error| {
        let (shown_url, password) = redact_url(url);
        let mut message = error.to_string();
        if let Some(password) = password.filter(|password| !password.is_empty()) {
            message = message.replace(password, "********");
        }
        message = message.replace(url, &shown_url);
        crate::Error::DatabaseConnect {
            url: shown_url,
            message,
        }
    })
}

/// Returns `url` with its password replaced by `********`, and the password.
pub fn redact_url(url: &str) -> (String, Option<&str>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    match credentials.split_once(':') {
        Some((user, password)) => (format!("{scheme}://{user}:********@{host}"), Some(password)),
        None => (url.to_owned(), None),
    }
}

/// Applies every migration that has not run yet.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    Migrator::up(db, None).await?;
    Ok(())
}

/// Returns an error naming the command to run when the database lacks migrations.
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
///
/// Unlike [`connect`], it does not create a missing SQLite file: a command
/// run in the wrong directory reports that instead of creating an empty
/// database there.
pub async fn connect_migrated(settings: &DatabaseSettings) -> Result<DatabaseConnection> {
    if let Some(path) = sqlite_file_path(settings.url.expose_secret()) {
        if !std::path::Path::new(path).exists() {
            return Err(crate::Error::Config(format!(
                "database.url: no database at {path}; run this command where `event-hub dev` runs, \
                 run `event-hub migrate` to create it, or set EVENT_HUB__DATABASE__URL"
            )));
        }
    }
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
    fn redact_url_hides_the_password() {
        let (shown, password) = super::redact_url("postgres://hub:s3cret@db:5432/hub");
        assert_eq!(shown, "postgres://hub:********@db:5432/hub");
        assert_eq!(password, Some("s3cret"));
        let (shown, password) = super::redact_url("sqlite://data/hub.db?mode=rwc");
        assert_eq!(shown, "sqlite://data/hub.db?mode=rwc");
        assert_eq!(password, None);
    }

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
