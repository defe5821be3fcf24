//! Test harness for end-to-end tests: a daemon started in-process against
//! librdkafka's mock cluster and a fresh SQLite database, with helpers to
//! produce events and read back action requests and dead letters.
//!
//! Every harness uses its own temporary directory, consumer group and
//! signing key, so tests run in parallel without seeing each other.

#![allow(dead_code)]

pub mod process;
pub mod proxy;
pub mod tansu;
pub mod workload;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use event_hub::auth::{generate_key_pair, TokenVerifier};
use event_hub::config::Settings;
use event_hub::store;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Returns a short random suffix for topic, group and database names.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Settings for a daemon under test: small, fast batches, fast refresh,
/// short session timeout, fresh group id.
pub fn test_settings(
    bootstrap_servers: &str,
    database_url: &str,
    signing_key: &SecretString,
) -> Settings {
    let env = [
        ("EVENT_HUB__DATABASE__URL", database_url.to_owned()),
        (
            "EVENT_HUB__KAFKA__BOOTSTRAP_SERVERS",
            bootstrap_servers.to_owned(),
        ),
        ("EVENT_HUB__KAFKA__GROUP_ID", unique("group")),
        ("EVENT_HUB__PIPELINE__BATCH_TIMEOUT_MS", "20".to_owned()),
        // The default batch size, pinned: a fault injected while a few
        // thousand events are processed must land mid-stream.
        ("EVENT_HUB__PIPELINE__BATCH_SIZE", "500".to_owned()),
        (
            "EVENT_HUB__PIPELINE__TRIGGER_REFRESH_INTERVAL_MS",
            "200".to_owned(),
        ),
        (
            "EVENT_HUB__PIPELINE__MAX_RETRY_BACKOFF_MS",
            "1000".to_owned(),
        ),
        (
            "EVENT_HUB__KAFKA__CONSUMER_PROPERTIES__SESSION__TIMEOUT__MS",
            "6000".to_owned(),
        ),
        (
            "EVENT_HUB__KAFKA__CONSUMER_PROPERTIES__FETCH__WAIT__MAX__MS",
            "10".to_owned(),
        ),
        (
            "EVENT_HUB__KAFKA__PRODUCER_PROPERTIES__LINGER__MS",
            "1".to_owned(),
        ),
        // Any free port, so that hubs run side by side.
        ("EVENT_HUB__HTTP__LISTEN", "127.0.0.1:0".to_owned()),
    ];
    let mut settings = Settings::load_with_env(
        None,
        env.into_iter().map(|(key, value)| (key.to_owned(), value)),
    )
    .expect("test settings are valid");
    settings.auth.signing_key = Some(signing_key.clone());
    settings
}

/// A daemon running in-process against a mock cluster.
pub struct Hub {
    /// The in-process Kafka cluster; lives as long as the hub.
    pub cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    /// The daemon's settings.
    pub settings: Settings,
    /// A connection to the daemon's database.
    pub db: DatabaseConnection,
    /// Verifies tokens with the daemon's public key.
    pub verifier: TokenVerifier,
    /// The daemon's public key, PEM.
    pub public_pem: String,
    producer: FutureProducer,
    /// Readiness reported by the running daemon.
    pub health: std::sync::Arc<event_hub::health::Health>,
    daemon: Option<(CancellationToken, JoinHandle<event_hub::Result<()>>)>,
    directory: tempfile::TempDir,
}

impl Hub {
    /// Starts a mock cluster with `topics` (6 partitions each) and a migrated
    /// SQLite database; the daemon is not started yet.
    pub async fn new(topics: &[&str]) -> Self {
        let directory = tempfile::tempdir().expect("temporary directory");
        let database_url = format!(
            "sqlite://{}?mode=rwc",
            directory.path().join("hub.db").display()
        );
        Self::with_database(topics, &database_url, directory).await
    }

    /// Same as [`Hub::new`] with the database at `database_url`.
    pub async fn with_database(
        topics: &[&str],
        database_url: &str,
        directory: tempfile::TempDir,
    ) -> Self {
        let cluster = MockCluster::new(1).expect("mock cluster starts");
        for topic in topics {
            cluster.create_topic(topic, 6, 1).expect("topic created");
        }
        let pair = generate_key_pair().expect("key pair");
        let settings = test_settings(
            &cluster.bootstrap_servers(),
            database_url,
            &pair.private_pem,
        );
        cluster
            .create_topic(&settings.pipeline.dlq_topic, 1, 1)
            .expect("dead letter topic created");

        let db = store::connect(&settings.database)
            .await
            .expect("database connects");
        store::migrate(&db).await.expect("migrations apply");

        let mut verifier = TokenVerifier::new(Some("event-hub".to_owned()));
        verifier
            .add_public_pem(&pair.public_pem)
            .expect("public key parses");

        let producer = test_producer(&cluster.bootstrap_servers());
        Self {
            health: std::sync::Arc::default(),
            producer,
            cluster,
            settings,
            db,
            verifier,
            public_pem: pair.public_pem,
            daemon: None,
            directory,
        }
    }

    /// Returns the bootstrap servers of the mock cluster.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Returns the temporary directory of this hub.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Waits up to 10 s for the running daemon's HTTP server and returns
    /// its base URL, such as `http://127.0.0.1:41234`.
    pub async fn http_url(&self) -> String {
        let bound = &self.settings.http.bound_address;
        let started = wait_until(Duration::from_secs(10), || async { bound.get().is_some() }).await;
        assert!(started, "the HTTP server did not start within 10 s");
        format!("http://{}", bound.get().expect("address reported"))
    }

    /// Returns the database URL, for the CLI.
    pub fn database_url(&self) -> String {
        self.settings.database.url.expose_secret().to_owned()
    }

    /// Starts the daemon in-process.
    pub fn start(&mut self) {
        assert!(self.daemon.is_none(), "daemon already running");
        let shutdown = CancellationToken::new();
        self.health = std::sync::Arc::default();
        let handle = tokio::spawn(event_hub::daemon::run_with_health(
            self.settings.clone(),
            shutdown.clone(),
            std::sync::Arc::clone(&self.health),
        ));
        self.daemon = Some((shutdown, handle));
    }

    /// Stops the daemon gracefully and returns its result.
    pub async fn stop(&mut self) -> event_hub::Result<()> {
        let (shutdown, handle) = self.daemon.take().expect("daemon running");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), handle)
            .await
            .expect("daemon stops within 15 s")
            .expect("daemon task does not panic")
    }

    /// Kills the daemon task without a graceful shutdown.
    pub async fn abort(&mut self) {
        let (_shutdown, handle) = self.daemon.take().expect("daemon running");
        handle.abort();
        let _ = handle.await;
    }

    /// Produces one record and waits for its acknowledgement.
    pub async fn produce(
        &self,
        topic: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) {
        produce(&self.producer, topic, key, headers, payload).await;
    }
}

/// Creates a producer for test records.
pub fn test_producer(bootstrap_servers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

/// Produces one record and waits for its acknowledgement.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    payload: &[u8],
) {
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |headers, (name, value)| {
            headers.insert(Header {
                key: name,
                value: Some(*value),
            })
        });
    let mut record = FutureRecord::to(topic).payload(payload).headers(headers);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer
        .send(record, Timeout::After(Duration::from_secs(10)))
        .await
        .map_err(|(error, _)| error)
        .expect("record acknowledged");
}

/// Reads `topic` from the beginning until `expected` records arrived, then
/// for `settle` more to catch extra ones, or until `timeout`.
pub fn read_topic(
    bootstrap_servers: &str,
    topic: &str,
    expected: usize,
    settle: Duration,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "true")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("reader consumer");
    consumer.subscribe(&[topic]).expect("subscribe");

    let started = std::time::Instant::now();
    let mut reached_at: Option<std::time::Instant> = None;
    let mut messages = Vec::new();
    loop {
        if let Some(reached) = reached_at {
            if reached.elapsed() >= settle {
                break;
            }
        }
        if started.elapsed() >= timeout {
            break;
        }
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            messages.push(message.detach());
        }
        if reached_at.is_none() && messages.len() >= expected {
            reached_at = Some(std::time::Instant::now());
        }
    }
    messages
}

/// Returns the headers of `message` as a map of UTF-8 strings.
pub fn headers_of(message: &OwnedMessage) -> BTreeMap<String, String> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    let value = header
                        .value
                        .map(|value| String::from_utf8_lossy(value).into_owned());
                    (header.key.to_owned(), value.unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Returns the directory of the GitHub webhook fixtures.
pub fn fixtures_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-webhooks")
}

/// Lists every fixture as (event name, file path), sorted.
pub fn github_fixtures() -> Vec<(String, std::path::PathBuf)> {
    let mut fixtures = Vec::new();
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures directory") {
        let entry = entry.expect("directory entry");
        if !entry.path().is_dir() {
            continue;
        }
        let event = entry.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(entry.path()).expect("event directory") {
            let path = file.expect("fixture").path();
            if path
                .extension()
                .is_some_and(|extension| extension == "json")
            {
                fixtures.push((event.clone(), path));
            }
        }
    }
    fixtures.sort();
    fixtures
}

/// Reads every record of `topic` from the beginning to its current end,
/// without a consumer group: deterministic where [`read_topic`] waits for
/// a count.
pub fn read_to_end(bootstrap_servers: &str, topic: &str) -> Vec<OwnedMessage> {
    use rdkafka::{Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut assignment = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for partition in metadata
        .topics()
        .iter()
        .flat_map(|topic| topic.partitions())
    {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(partition.id(), high);
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");

    let mut positions: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    let done = |positions: &std::collections::HashMap<i32, i64>| {
        ends.iter().all(|(partition, end)| {
            *end == 0 || positions.get(partition).is_some_and(|next| next >= end)
        })
    };
    let mut messages = Vec::new();
    let started = std::time::Instant::now();
    while !done(&positions) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "reading {topic} timed out"
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            positions.insert(message.partition(), message.offset() + 1);
            if message.offset() < ends[&message.partition()] {
                messages.push(message.detach());
            }
        }
    }
    messages
}
