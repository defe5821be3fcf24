//! Assembly of the running daemon: database, trigger index, Kafka clients
//! and the consumer loop.
//!
//! [`run`] returns when `shutdown` is cancelled and the consumer has
//! committed its offsets, or when a component fails to start. Tests start
//! it in-process with their own settings and token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::util::Timeout;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, TokenSigner};
use crate::config::Settings;
use crate::consumer::{Consumer, ConsumerOptions, Pipeline};
use crate::dispatch::Dispatcher;
use crate::health::Health;
use crate::matching::refresh;
use crate::{kafka, store, Result};

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    let db = store::connect_migrated(&settings.database).await?;

    let signer = TokenSigner::from_settings(&settings.auth)?;
    let producer: FutureProducer = kafka::producer_config(&settings.kafka).create()?;
    let health = Arc::new(Health::default());
    let consumer: kafka::EventConsumer = kafka::consumer_config(&settings.kafka)
        .create_with_context(kafka::EventConsumerContext::new(Arc::clone(&health)))?;

    let (index_sender, fingerprint) = refresh::initial_index(&db).await?;
    let index = index_sender.subscribe();
    let refresher = tokio::spawn(refresh::refresh_loop(
        db.clone(),
        index_sender,
        fingerprint,
        settings.pipeline.trigger_refresh_interval(),
        shutdown.clone(),
    ));

    let pipeline = Pipeline::new(
        db.clone(),
        Dispatcher::new(
            producer.clone(),
            signer.clone(),
            settings.pipeline.actions_topic_prefix.clone(),
        ),
        producer.clone(),
        settings.pipeline.dlq_topic.clone(),
    );
    let options = ConsumerOptions {
        batch_size: settings.pipeline.batch_size,
        batch_timeout: settings.pipeline.batch_timeout(),
        static_topics: settings.kafka.topics.clone(),
        max_retry_backoff: std::time::Duration::from_millis(settings.pipeline.max_retry_backoff_ms),
    };

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
    // Every action request was awaited already; this only drains librdkafka.
    if let Err(error) = producer.flush(Timeout::After(std::time::Duration::from_secs(5))) {
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
