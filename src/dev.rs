//! `event-hub dev`: the daemon with an in-process Kafka-protocol broker.
//!
//! librdkafka's mock cluster speaks the real Kafka protocol on a loopback
//! port, so any Kafka client can produce to it, but it keeps everything in
//! memory: topics and records are gone when the process exits. The SQLite
//! database and the signing key live under the data directory and survive
//! restarts.
//!
//! The mock cluster is not `Send`; [`run`] keeps it on the calling task for
//! the lifetime of the daemon.

use std::path::{Path, PathBuf};

use rdkafka::mocking::MockCluster;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::{daemon, store, Result};

/// Options of the dev mode.
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// Directory for the SQLite database and the signing key.
    pub data_dir: PathBuf,
    /// Brokers in the mock cluster.
    pub brokers: i32,
}

/// Starts the mock cluster, prepares the data directory and runs the daemon
/// until `shutdown` is cancelled.
pub async fn run(
    mut settings: Settings,
    options: DevOptions,
    shutdown: CancellationToken,
) -> Result<()> {
    let data_dir = prepare_data_dir(&options.data_dir)?;
    let cluster = MockCluster::new(options.brokers)?;
    let bootstrap_servers = cluster.bootstrap_servers();

    settings.kafka.bootstrap_servers = bootstrap_servers.clone();
    settings
        .kafka
        .consumer_properties
        .entry("allow.auto.create.topics".to_owned())
        .or_insert_with(|| "true".to_owned());
    // The mock cluster completes a rebalance only when every member has
    // rejoined or timed out. A short session keeps a re-subscription, such
    // as for a new event source's topic, from pausing consumption for the
    // default 45 s.
    for (property, value) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "1000"),
    ] {
        settings
            .kafka
            .consumer_properties
            .entry(property.to_owned())
            .or_insert_with(|| value.to_owned());
    }
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("event-hub.db").display()
    );
    settings.database.url = SecretString::from(database_url.clone());

    let (private_path, public_path) = daemon::dev_key_paths(&data_dir);
    if settings.auth.signing_key.is_none() && settings.auth.signing_key_file.is_none() {
        settings.auth.signing_key =
            Some(daemon::load_or_generate_key(&private_path, &public_path)?);
    }

    let db = store::connect(&settings.database).await?;
    store::migrate(&db).await?;
    db.close().await?;
    cluster.create_topic(&settings.pipeline.dlq_topic, 1, 1)?;

    print_banner(
        &bootstrap_servers,
        &database_url,
        &public_path,
        &settings.http.listen,
    );
    let result = daemon::run(settings, shutdown).await;
    drop(cluster);
    result
}

/// Creates the data directory and returns its absolute path, so that the
/// database URL printed for other terminals works from any directory.
fn prepare_data_dir(data_dir: &Path) -> Result<std::path::PathBuf> {
    let failed = |error: std::io::Error| {
        crate::Error::Config(format!("--data-dir {}: {error}", data_dir.display()))
    };
    std::fs::create_dir_all(data_dir).map_err(failed)?;
    std::fs::canonicalize(data_dir).map_err(failed)
}

/// Prints what to try next. A closed stdout is not an error, so the daemon
/// keeps running when its parent stops reading.
fn print_banner(bootstrap_servers: &str, database_url: &str, public_key: &Path, http_listen: &str) {
    use std::io::Write as _;

    let _ignored = writeln!(
        std::io::stdout().lock(),
        "\
event-hub dev is running.

  Kafka bootstrap servers  {bootstrap_servers}   (in memory: lost when this process exits)
  Database                 {database_url}
  Worker public key        {public_key}
  HTTP (probes, metrics)   http://{http_listen}

In another terminal:

  export EVENT_HUB__KAFKA__BOOTSTRAP_SERVERS={bootstrap_servers}
  export EVENT_HUB__DATABASE__URL='{database_url}'
  event-hub event-source create gh --flavor github --subtype webhook --topic github-events
  event-hub action create run-pipeline --flavor builtin --subtype pipeline_run \\
      --configuration '{{\"template_id\": \"t-1\"}}' --service-account sa-ci --auth-window-minutes 60
  event-hub trigger create on-push --event-source gh --action run-pipeline \\
      --filter '{{\"repo\": \"Codertocat/Hello-World\", \"branch\": \"master\", \"event_type\": \"push\"}}'
  event-hub publish --topic github-events --header x-github-event=push --file PAYLOAD.json
      (a GitHub push body, such as tests/fixtures/github-webhooks/push/with-new-branch.payload.json
      in the event-hub repository)
  event-hub execution list

Stop with Ctrl-C.",
        public_key = public_key.display()
    );
}
