//! Fresh, migrated databases for integration tests: SQLite always, and
//! PostgreSQL and MySQL/MariaDB when their servers are reachable.
//!
//! Each call of [`fresh_databases`] creates new databases named
//! `eh_<random>`, so tests can run in parallel. The servers are reached
//! through an admin URL that names an existing database. The helpers connect
//! there to create and drop the test databases:
//!
//! | backend | environment variable | default |
//! |---|---|---|
//! | PostgreSQL | `EVENT_HUB_TEST_POSTGRES_URL` | `postgres://postgres@127.0.0.1:5432/test`, then user `root` |
//! | MySQL/MariaDB | `EVENT_HUB_TEST_MYSQL_URL` | `mysql://root@127.0.0.1:3306/test` |
//!
//! An unreachable server is skipped with a note on stderr, unless
//! `EVENT_HUB_TEST_REQUIRE_DATABASES=1`, which makes it a test failure.
//! A test that panics before [`TestDatabase::drop_database`] leaves its
//! `eh_*` database behind.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use tempfile::TempDir;

/// Set to `1` to fail, rather than skip, when a database server is unreachable.
pub const REQUIRE_DATABASES_ENV: &str = "EVENT_HUB_TEST_REQUIRE_DATABASES";

/// Admin URL of the PostgreSQL server.
pub const POSTGRES_URL_ENV: &str = "EVENT_HUB_TEST_POSTGRES_URL";

/// Admin URL of the MySQL/MariaDB server.
pub const MYSQL_URL_ENV: &str = "EVENT_HUB_TEST_MYSQL_URL";

const DEFAULT_POSTGRES_URLS: [&str; 2] = [
    "postgres://postgres@127.0.0.1:5432/test",
    "postgres://root@127.0.0.1:5432/test",
];
const DEFAULT_MYSQL_URLS: [&str; 1] = ["mysql://root@127.0.0.1:3306/test"];

/// Connection timeout, short so that a missing server costs a test little time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A new database with all migrations applied.
pub struct TestDatabase {
    /// `sqlite`, `postgres` or `mysql`.
    pub backend: &'static str,
    /// Connection URL of the database, for example for a daemon under test.
    pub url: String,
    /// A connection pool to the database.
    pub db: DatabaseConnection,
    cleanup: Cleanup,
}

enum Cleanup {
    /// The directory containing the SQLite file, deleted when dropped.
    Sqlite(TempDir),
    /// A database on a server, dropped through the admin URL.
    Server { admin_url: String, name: String },
}

impl TestDatabase {
    /// Closes the connection pool and deletes the database. Failures are
    /// printed, not raised, because they only leave garbage behind.
    pub async fn drop_database(self) {
        let Self {
            backend,
            db,
            cleanup,
            ..
        } = self;
        if let Err(error) = db.close().await {
            eprintln!("note: closing the {backend} test database failed: {error}");
        }
        match cleanup {
            Cleanup::Sqlite(directory) => drop(directory),
            Cleanup::Server { admin_url, name } => {
                if let Err(error) = drop_server_database(backend, &admin_url, &name).await {
                    eprintln!("note: dropping {backend} test database {name} failed: {error}");
                }
            }
        }
    }
}

/// Creates a fresh, migrated database on every available backend.
///
/// # Panics
///
/// When SQLite fails, when migrations fail, or when a server is unreachable
/// and [`REQUIRE_DATABASES_ENV`] is `1`.
pub async fn fresh_databases() -> Vec<TestDatabase> {
    let mut databases = vec![fresh_sqlite().await];
    let (postgres, mysql) = tokio::join!(
        fresh_server_database("postgres", POSTGRES_URL_ENV, &DEFAULT_POSTGRES_URLS),
        fresh_server_database("mysql", MYSQL_URL_ENV, &DEFAULT_MYSQL_URLS),
    );
    databases.extend(postgres);
    databases.extend(mysql);
    databases
}

/// Creates a fresh, migrated SQLite database in a temporary directory.
pub async fn fresh_sqlite() -> TestDatabase {
    let directory = tempfile::tempdir().expect("create a temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        directory.path().join("event-hub.db").display()
    );
    let db = connect(&url).await.expect("open a SQLite database");
    event_hub::store::migrate(&db)
        .await
        .expect("migrate the SQLite database");
    TestDatabase {
        backend: "sqlite",
        url,
        db,
        cleanup: Cleanup::Sqlite(directory),
    }
}

/// Creates a fresh, migrated database on the server of `backend`, or returns
/// `None` when the server is unreachable and not required.
pub async fn fresh_server_database(
    backend: &'static str,
    url_env: &str,
    default_urls: &[&str],
) -> Option<TestDatabase> {
    let candidates: Vec<String> = match std::env::var(url_env) {
        Ok(url) if !url.is_empty() => vec![url],
        _ => default_urls.iter().map(|url| (*url).to_owned()).collect(),
    };

    let mut failures = Vec::new();
    let mut admin = None;
    for url in candidates {
        match connect(&url).await {
            Ok(connection) => {
                admin = Some((url, connection));
                break;
            }
            Err(error) => failures.push(format!("{}: {error}", redact_password(&url))),
        }
    }
    let Some((admin_url, admin_db)) = admin else {
        let message = format!(
            "{backend} is unreachable ({}); set {url_env} to its admin URL",
            failures.join("; ")
        );
        if std::env::var(REQUIRE_DATABASES_ENV).as_deref() == Ok("1") {
            panic!("{message}, or unset {REQUIRE_DATABASES_ENV} to skip it");
        }
        eprintln!("note: skipping {backend}: {message}");
        return None;
    };

    let name = format!("eh_{}", uuid::Uuid::new_v4().simple());
    let create = match backend {
        "mysql" => format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
        _ => format!("CREATE DATABASE \"{name}\""),
    };
    admin_db
        .execute_unprepared(&create)
        .await
        .unwrap_or_else(|error| panic!("{backend}: {create} failed: {error}"));
    let _ = admin_db.close().await;

    let url = with_database(&admin_url, &name);
    let db = connect(&url)
        .await
        .unwrap_or_else(|error| panic!("{backend}: connecting to {name} failed: {error}"));
    event_hub::store::migrate(&db)
        .await
        .unwrap_or_else(|error| panic!("{backend}: migrating {name} failed: {error}"));

    Some(TestDatabase {
        backend,
        url,
        db,
        cleanup: Cleanup::Server { admin_url, name },
    })
}

async fn connect(url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(5)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(false);
    Database::connect(options).await
}

async fn drop_server_database(
    backend: &str,
    admin_url: &str,
    name: &str,
) -> Result<(), sea_orm::DbErr> {
    let admin_db = connect(admin_url).await?;
    let result = match backend {
        "mysql" => {
            admin_db
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS `{name}`"))
                .await
        }
        // FORCE (PostgreSQL 13 and later) ends sessions still connected.
        _ => {
            admin_db
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
        }
    };
    let _ = admin_db.close().await;
    result.map(|_| ())
}

/// Returns `url` with its database name, the path, replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// Hides the password of a URL in messages.
fn redact_password(url: &str) -> String {
    let Some(authority_start) = url.find("://").map(|index| index + 3) else {
        return url.to_owned();
    };
    let Some(at) = url[authority_start..].find('@') else {
        return url.to_owned();
    };
    let credentials = &url[authority_start..authority_start + at];
    match credentials.split_once(':') {
        Some((user, _)) => format!(
            "{}{user}:***{}",
            &url[..authority_start],
            &url[authority_start + at..]
        ),
        None => url.to_owned(),
    }
}
