//! Assembly of the running daemon: database, trigger index, Kafka clients
//! and the consumer loop.
//!
//! [`run`] returns when `shutdown` is cancelled and the consumer has
//! committed its offsets, or when a component fails to start. Tests start
//! it in-process with their own settings and token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::util::Timeout;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, TokenSigner};
use crate::config::Settings;
use crate::consumer::{sweep, Consumer, ConsumerOptions, Pipeline};
use crate::dispatch::Dispatcher;
use crate::health::Health;
use crate::matching::refresh;
use crate::{kafka, store, Result};

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    run_with_health(settings, shutdown, Arc::new(Health::default())).await
}

/// Runs the daemon until `shutdown` is cancelled, reporting its readiness
/// into `health`.
pub async fn run_with_health(
    settings: Settings,
    shutdown: CancellationToken,
    health: Arc<Health>,
) -> Result<()> {
    let db = store::connect_migrated(&settings.database).await?;

    let signer = TokenSigner::from_settings(&settings.auth)?;
    let producer: FutureProducer = kafka::producer_config(&settings.kafka).create()?;
    let consumer: kafka::EventConsumer = kafka::consumer_config(&settings.kafka)
        .create_with_context(kafka::EventConsumerContext::new(Arc::clone(&health)))?;
    // Bind before the consumer starts, so that a port in use fails the start.
    let http_server = crate::api::HttpServer::bind(&settings.http).await?;

    let (index_sender, fingerprint) = refresh::initial_index(&db).await?;
    let index = index_sender.subscribe();
    // Worker status reports, retries and action dead letters.
    let status_tasks = crate::status::spawn(
        &settings,
        db.clone(),
        producer.clone(),
        signer.clone(),
        shutdown.clone(),
    )?;
    let refresher = tokio::spawn(refresh::refresh_loop(
        db.clone(),
        index_sender,
        fingerprint,
        settings.pipeline.trigger_refresh_interval(),
        shutdown.clone(),
    ));

    let dispatcher = Dispatcher::new(
        producer.clone(),
        signer.clone(),
        settings.pipeline.actions_topic_prefix.clone(),
    );
    let sweeper = tokio::spawn(sweep::sweep_loop(
        db.clone(),
        dispatcher.clone(),
        Duration::from_millis(settings.pipeline.pending_sweep_interval_ms),
        Duration::from_millis(settings.pipeline.pending_sweep_age_ms),
        shutdown.clone(),
    ));
    let pipeline = Pipeline::new(
        db.clone(),
        dispatcher,
        producer.clone(),
        settings.pipeline.dlq_topic.clone(),
        settings.pipeline.transaction_max_executions,
    );
    let options = ConsumerOptions {
        batch_size: settings.pipeline.batch_size,
        batch_max_bytes: settings.pipeline.batch_max_bytes,
        batch_timeout: settings.pipeline.batch_timeout(),
        static_topics: settings.kafka.topics.clone(),
        max_retry_backoff: Duration::from_millis(settings.pipeline.max_retry_backoff_ms),
    };

    let http = http_server.spawn(
        crate::api::ApiState::new(
            db.clone(),
            producer.clone(),
            Arc::clone(&health),
            &signer,
            &settings.http,
        )?,
        shutdown.clone(),
    );

    tracing::info!(
        bootstrap_servers = %settings.kafka.bootstrap_servers,
        group_id = %settings.kafka.group_id,
        key_id = signer.key_id(),
        "event-hub started"
    );
    let result = Consumer::new(consumer, pipeline, options, index, Arc::clone(&health))
        .run(shutdown.clone())
        .await;

    // Stop the refresher too when the consumer ended on its own.
    shutdown.cancel();
    if let Err(error) = refresher.await {
        tracing::warn!(%error, "trigger index refresher ended abnormally");
    }
    if let Err(error) = sweeper.await {
        tracing::warn!(%error, "pending execution sweep ended abnormally");
    }
    status_tasks.join().await;
    http.stopped().await;
    // Every action request was awaited already; this only drains librdkafka.
    if let Err(error) = producer.flush(Timeout::After(Duration::from_secs(5))) {
        tracing::warn!(%error, "producer flush failed");
    }
    if let Err(error) = db.close().await {
        tracing::warn!(%error, "closing the database pool failed");
    }
    tracing::info!("event-hub stopped");
    result
}

/// Paths of the signing key pair that `dev` keeps under its data directory.
pub fn dev_key_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (
        data_dir.join("signing-key.pem"),
        data_dir.join("signing-key.pub.pem"),
    )
}

/// Returns the private key at `private_path`, generating and writing a new
/// pair first if the file does not exist.
pub fn load_or_generate_key(private_path: &Path, public_path: &Path) -> Result<SecretString> {
    if private_path.exists() {
        return Ok(SecretString::from(std::fs::read_to_string(private_path)?));
    }
    let pair = auth::generate_key_pair()?;
    write_private_file(
        private_path,
        secrecy::ExposeSecret::expose_secret(&pair.private_pem),
    )?;
    std::fs::write(public_path, &pair.public_pem)?;
    Ok(pair.private_pem)
}

/// Writes a file readable by its owner only.
pub fn write_private_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
