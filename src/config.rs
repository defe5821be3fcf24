//! Layered configuration: built-in defaults, then an optional file, then
//! `EVENT_HUB__SECTION__KEY` environment variables.
//!
//! Every librdkafka property is reachable through `kafka.properties` (both
//! clients), `kafka.consumer_properties` and `kafka.producer_properties`,
//! for example `EVENT_HUB__KAFKA__PROPERTIES__SECURITY__PROTOCOL=SASL_SSL`.
//! Secrets (the database URL, the signing key, properties whose name
//! mentions a password, secret or key) are typed or redacted so that
//! `Debug` output never shows them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::event::source::validate_topic_name;
use crate::{Error, Result};

/// Prefix of the environment variables read by [`Settings::load`].
pub const ENV_PREFIX: &str = "EVENT_HUB";

/// The whole configuration of the daemon and the CLI.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where triggers, actions, event sources and executions are stored.
    pub database: DatabaseSettings,
    /// Kafka connection and client properties.
    pub kafka: KafkaSettings,
    /// How records are batched, where action requests and dead letters go.
    pub pipeline: PipelineSettings,
    /// Signing of the tokens inside action requests.
    pub auth: AuthSettings,
    /// Log output.
    pub log: LogSettings,
    /// The HTTP server: admin API, webhook ingress, probes and metrics.
    pub http: HttpSettings,
    /// Handler workers built on [`crate::worker`], including `event-hub worker`.
    pub worker: WorkerSettings,
}

/// Database settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL: `sqlite://PATH?mode=rwc`, `postgres://...` or
    /// `mysql://...`. Secret because it may carry a password.
    ///
    /// Default: `sqlite://.event-hub/event-hub.db?mode=rwc`, a file under the
    /// working directory, shared with `event-hub dev`.
    pub url: SecretString,
    /// Maximum connections in the pool. Default: 10.
    pub max_connections: u32,
    /// Seconds to wait for a connection before failing. Default: 10.
    pub connect_timeout_secs: u64,
}

/// Kafka settings shared by the consumer and the producer.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list (`bootstrap.servers`).
    /// Default: `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// Consumer group shared by all replicas (`group.id`). Default: `event-hub`.
    pub group_id: String,
    /// Event topics consumed in addition to those named by active event
    /// sources. Default: none.
    pub topics: Vec<String>,
    /// librdkafka properties applied to every client, such as
    /// `security.protocol` or `sasl.mechanism`. Default: none.
    #[serde(deserialize_with = "flatten_properties")]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the event consumer only. Default: none.
    #[serde(deserialize_with = "flatten_properties")]
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for the producer only. Default: none.
    #[serde(deserialize_with = "flatten_properties")]
    pub producer_properties: BTreeMap<String, String>,
}

/// Pipeline settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// Maximum records per batch. Default: 5000.
    ///
    /// Each batch waits for a few database round trips and for the broker
    /// to acknowledge its action requests, whatever its size, so larger
    /// batches drain a backlog faster. At 1% matching, batches of 5000
    /// drained a backlog 2.1 to 2.6 times as fast as batches of 500 (see
    /// docs/e2e-benchmark.md). A batch's offsets are stored once every
    /// record of it is finished. A batch that is retried stays in
    /// memory, and `batch_max_bytes` bounds its size. The executions of a
    /// batch are recorded in transactions of at most
    /// `transaction_max_executions` each.
    pub batch_size: usize,
    /// Most bytes of payloads, keys and headers in one batch, checked after
    /// each record is added. Default: 8388608 (8 MiB).
    ///
    /// It matters when `batch_size` is raised: with 12 KB GitHub webhooks,
    /// 8 MiB is about 700 records.
    pub batch_max_bytes: usize,
    /// Maximum executions recorded in one database transaction. Default: 500.
    ///
    /// A batch's matched events are recorded, published and marked
    /// dispatched in groups of whole events, each group with its own
    /// transaction. A group contains at most this many executions, unless one
    /// event alone matches more triggers, and then that event forms a group
    /// by itself. The bound does not depend on `batch_size`, so larger
    /// batches do not lengthen transactions.
    pub transaction_max_executions: usize,
    /// Milliseconds to wait for more records before processing a partial
    /// batch. Default: 50.
    pub batch_timeout_ms: u64,
    /// Prefix of the action topics; the topic of an action is
    /// `<prefix><flavor>.<subtype>`. Default: `event-hub.actions.`.
    pub actions_topic_prefix: String,
    /// Topic for records that cannot be decoded. Default: `event-hub.dlq`.
    pub dlq_topic: String,
    /// Milliseconds between checks of the database for changed triggers,
    /// actions and event sources. Default: 1000.
    pub trigger_refresh_interval_ms: u64,
    /// Milliseconds allowed for finishing in-flight work and committing
    /// offsets after SIGTERM. Default: 8000.
    pub shutdown_timeout_ms: u64,
    /// Cap of the backoff between retries of a failed database or broker
    /// call, in milliseconds. Default: 30000.
    pub max_retry_backoff_ms: u64,
    /// Topic on which workers report the status of executions, keyed by
    /// execution id. Default: `event-hub.execution-status`.
    pub status_topic: String,
    /// Topic for action requests whose attempts or event age ran out.
    /// Default: `event-hub.actions.dlq`.
    pub actions_dlq_topic: String,
    /// Milliseconds between sweeps of the database for failed executions
    /// whose next attempt is due. Default: 5000.
    pub retry_sweep_interval_ms: u64,
    /// Milliseconds between sweeps for executions left `pending` by a crash.
    /// Default: 30000.
    pub pending_sweep_interval_ms: u64,
    /// Age in milliseconds after which a `pending` execution is republished
    /// by the sweep. It must exceed the longest time a batch can take, or a
    /// healthy batch's executions may be published twice. Default: 120000.
    pub pending_sweep_age_ms: u64,
}

impl PipelineSettings {
    /// Returns [`Self::batch_timeout_ms`] as a duration.
    pub fn batch_timeout(&self) -> Duration {
        Duration::from_millis(self.batch_timeout_ms)
    }

    /// Returns [`Self::trigger_refresh_interval_ms`] as a duration.
    pub fn trigger_refresh_interval(&self) -> Duration {
        Duration::from_millis(self.trigger_refresh_interval_ms)
    }

    /// Returns [`Self::shutdown_timeout_ms`] as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// Returns the action topic for `(flavor, subtype)`.
    pub fn action_topic(&self, flavor: &str, subtype: &str) -> String {
        format!("{}{flavor}.{subtype}", self.actions_topic_prefix)
    }

    /// Returns [`Self::retry_sweep_interval_ms`] as a duration.
    pub fn retry_sweep_interval(&self) -> Duration {
        Duration::from_millis(self.retry_sweep_interval_ms)
    }
}

/// Token signing settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// PKCS#8 PEM file with the Ed25519 signing key, as written by
    /// `event-hub keys generate`. Default: none.
    pub signing_key_file: Option<PathBuf>,
    /// The same key inline, for secrets injected as environment variables.
    /// Takes precedence over the file. Default: none.
    pub signing_key: Option<SecretString>,
    /// Key id (`kid`) put in each token header, so workers can pick the
    /// right public key after a rotation. Default: derived from the public key.
    pub key_id: Option<String>,
    /// Issuer (`iss`) of the tokens. Default: `event-hub`.
    pub issuer: String,
    /// Public keys (SubjectPublicKeyInfo PEM files) published besides the
    /// signing key's, such as the previous key during a rotation, so that
    /// workers keep accepting tokens it signed (comma-separated in the
    /// environment). Default: none.
    pub public_key_files: Vec<PathBuf>,
}

/// Settings of handler workers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Consumer group of the worker. Default:
    /// `event-hub-worker-<flavor>.<subtype>`; required when one worker
    /// subscribes to several `(flavor, subtype)` pairs.
    pub group_id: Option<String>,
    /// Most action requests handled at the same time. Default: 4.
    pub concurrency: usize,
    /// Public key PEM files of the hub that tokens may be signed with
    /// (comma-separated in the environment). Default: none.
    pub public_key_files: Vec<PathBuf>,
    /// A JWKS file of the hub's public keys, as written by `event-hub keys
    /// export`. Default: none. With neither this nor
    /// `worker.public_key_files`, the worker uses `auth.public_key_files`
    /// and the public half of the configured signing key.
    pub jwks_file: Option<PathBuf>,
    /// Topic the worker reports statuses to. Default: `pipeline.status_topic`.
    pub status_topic: Option<String>,
    /// Completed execution ids remembered to drop duplicate requests.
    /// Default: 10000.
    pub completed_cache_size: usize,
}

impl WorkerSettings {
    /// Returns the status topic: [`Self::status_topic`] if set, else
    /// `pipeline.status_topic`.
    pub fn status_topic<'a>(&'a self, pipeline: &'a PipelineSettings) -> &'a str {
        self.status_topic
            .as_deref()
            .unwrap_or(pipeline.status_topic.as_str())
    }
}

/// Log output settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` for people, `json` for log collectors. Default: `text`.
    pub format: LogFormat,
    /// `tracing` filter directive, such as `info` or
    /// `event_hub=debug,rdkafka=warn`. `RUST_LOG` overrides it. Default: `info`.
    pub filter: String,
}

/// HTTP server settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Socket address (`IP:PORT`) the server listens on. Port 0 picks a free
    /// port. Default: `127.0.0.1:8080`, reachable from this host only;
    /// containers set `0.0.0.0:8080`.
    pub listen: String,
    /// Bearer tokens accepted by the admin API (comma-separated in the
    /// environment). Each must be at least [`MIN_ADMIN_TOKEN_CHARS`]
    /// characters long. With none, the admin API returns 401 to every
    /// request. Default: none.
    pub admin_tokens: Vec<SecretString>,
    /// Maximum size of a request body in bytes, for the admin API and the
    /// webhook ingress. Default: 1048576 (1 MiB).
    pub max_body_bytes: usize,
    /// Address that the daemon reports once it has bound the server, so
    /// that a test or an embedding program using port 0 can find it. Not a
    /// configuration key.
    #[serde(skip)]
    pub bound_address: BoundAddress,
}

/// Shortest accepted admin token, in characters.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// Largest accepted `http.max_body_bytes`: 100 MiB.
pub const MAX_BODY_BYTES_LIMIT: usize = 100 * 1024 * 1024;

impl HttpSettings {
    /// Parses [`Self::listen`]; [`Settings::validate`] has checked it.
    pub fn listen_address(&self) -> Result<std::net::SocketAddr> {
        self.listen.parse().map_err(|error| {
            Error::Config(format!(
                "http.listen: {:?} is not an IP:PORT socket address: {error}",
                self.listen
            ))
        })
    }
}

/// The address the HTTP server bound, set once by the daemon and shared by
/// every clone of the settings.
#[derive(Clone, Debug, Default)]
pub struct BoundAddress(std::sync::Arc<std::sync::OnceLock<std::net::SocketAddr>>);

impl BoundAddress {
    /// Records the bound address; later calls keep the first one.
    pub fn set(&self, address: std::net::SocketAddr) {
        let _first_wins = self.0.set(address);
    }

    /// Returns the bound address once the server is listening.
    pub fn get(&self) -> Option<std::net::SocketAddr> {
        self.0.get().copied()
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

const DEFAULTS: &str = r#"
[database]
url = "sqlite://.event-hub/event-hub.db?mode=rwc"
max_connections = 10
connect_timeout_secs = 10

[kafka]
bootstrap_servers = "127.0.0.1:9092"
group_id = "event-hub"
topics = []
properties = {}
consumer_properties = {}
producer_properties = {}

[pipeline]
batch_size = 5000
batch_max_bytes = 8388608
transaction_max_executions = 500
batch_timeout_ms = 50
actions_topic_prefix = "event-hub.actions."
dlq_topic = "event-hub.dlq"
trigger_refresh_interval_ms = 1000
shutdown_timeout_ms = 8000
max_retry_backoff_ms = 30000
status_topic = "event-hub.execution-status"
actions_dlq_topic = "event-hub.actions.dlq"
retry_sweep_interval_ms = 5000
pending_sweep_interval_ms = 30000
pending_sweep_age_ms = 120000

[auth]
issuer = "event-hub"
public_key_files = []

[worker]
concurrency = 4
public_key_files = []
completed_cache_size = 10000

[log]
format = "text"
filter = "info,sqlx=warn,sea_orm_migration=warn"

[http]
listen = "127.0.0.1:8080"
admin_tokens = []
max_body_bytes = 1048576
"#;

impl Settings {
    /// Loads the defaults, then `file` if given, then the environment, and
    /// validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Same as [`Self::load`], with the environment passed in (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Error::Config(format!(
                    "configuration file {} does not exist",
                    file.display()
                )));
            }
            builder = builder.add_source(config::File::from(file));
        }
        let env: config::Map<String, String> = env.into_iter().collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("kafka.topics")
                .with_list_parse_key("auth.public_key_files")
                .with_list_parse_key("worker.public_key_files")
                .with_list_parse_key("http.admin_tokens")
                .try_parsing(true)
                .source(Some(env)),
        );

        let mut settings: Settings = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|error| Error::Config(error.to_string()))?;
        // An empty EVENT_HUB__HTTP__ADMIN_TOKENS, as a deployment template
        // leaves it, means no token rather than one empty token.
        settings
            .http
            .admin_tokens
            .retain(|token| !token.expose_secret().is_empty());
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that deserialize but cannot work, naming the key.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key: &str, message: &str| Err(Error::Config(format!("{key}: {message}")));

        let url = self.database.url.expose_secret();
        if !["sqlite:", "postgres:", "postgresql:", "mysql:", "mariadb:"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return invalid(
                "database.url",
                "expected a sqlite://, postgres:// or mysql:// URL",
            );
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return invalid("kafka.bootstrap_servers", "must not be empty");
        }
        if self.kafka.group_id.trim().is_empty() {
            return invalid("kafka.group_id", "must not be empty");
        }
        for topic in &self.kafka.topics {
            if let Err(message) = validate_topic_name(topic) {
                return invalid("kafka.topics", &message);
            }
        }
        if !(1..=100_000).contains(&self.pipeline.batch_size) {
            return invalid("pipeline.batch_size", "must be between 1 and 100000");
        }
        if !(1024..=1_073_741_824).contains(&self.pipeline.batch_max_bytes) {
            return invalid(
                "pipeline.batch_max_bytes",
                "must be between 1024 (1 KiB) and 1073741824 (1 GiB)",
            );
        }
        if !(1..=100_000).contains(&self.pipeline.transaction_max_executions) {
            return invalid(
                "pipeline.transaction_max_executions",
                "must be between 1 and 100000",
            );
        }
        if self.pipeline.trigger_refresh_interval_ms == 0 {
            return invalid("pipeline.trigger_refresh_interval_ms", "must be at least 1");
        }
        if self.pipeline.pending_sweep_interval_ms == 0 {
            return invalid("pipeline.pending_sweep_interval_ms", "must be at least 1");
        }
        if self.pipeline.max_retry_backoff_ms == 0 {
            return invalid("pipeline.max_retry_backoff_ms", "must be at least 1");
        }
        if let Err(message) = validate_topic_name(&self.pipeline.dlq_topic) {
            return invalid("pipeline.dlq_topic", &message);
        }
        if let Err(message) = validate_topic_name(&self.pipeline.action_topic("flavor", "subtype"))
        {
            return invalid("pipeline.actions_topic_prefix", &message);
        }
        if self
            .pipeline
            .dlq_topic
            .starts_with(&self.pipeline.actions_topic_prefix)
        {
            return invalid(
                "pipeline.dlq_topic",
                "must not start with pipeline.actions_topic_prefix",
            );
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return invalid(
                "log.filter",
                &format!("not a tracing filter directive: {error}"),
            );
        }
        self.validate_http()?;
        self.validate_worker()
    }

    /// Checks the status, retry and worker settings.
    fn validate_worker(&self) -> Result<()> {
        let invalid = |key: &str, message: &str| Err(Error::Config(format!("{key}: {message}")));

        if let Err(message) = validate_topic_name(&self.pipeline.status_topic) {
            return invalid("pipeline.status_topic", &message);
        }
        if let Err(message) = validate_topic_name(&self.pipeline.actions_dlq_topic) {
            return invalid("pipeline.actions_dlq_topic", &message);
        }
        if self.pipeline.retry_sweep_interval_ms == 0 {
            return invalid("pipeline.retry_sweep_interval_ms", "must be at least 1");
        }
        if let Some(group_id) = &self.worker.group_id {
            if group_id.trim().is_empty() {
                return invalid("worker.group_id", "must not be empty when set");
            }
        }
        if !(1..=1024).contains(&self.worker.concurrency) {
            return invalid("worker.concurrency", "must be between 1 and 1024");
        }
        if self.worker.completed_cache_size == 0 {
            return invalid("worker.completed_cache_size", "must be at least 1");
        }
        if let Some(topic) = &self.worker.status_topic {
            if let Err(message) = validate_topic_name(topic) {
                return invalid("worker.status_topic", &message);
            }
        }
        Ok(())
    }

    fn validate_http(&self) -> Result<()> {
        let invalid = |key: &str, message: &str| Err(Error::Config(format!("{key}: {message}")));

        self.http.listen_address()?;
        for (position, token) in self.http.admin_tokens.iter().enumerate() {
            let length = token.expose_secret().chars().count();
            if length < MIN_ADMIN_TOKEN_CHARS {
                return invalid(
                    "http.admin_tokens",
                    &format!(
                        "token {} has {length} characters; use at least {MIN_ADMIN_TOKEN_CHARS}, \
                         for example the output of `openssl rand -hex 32`",
                        position + 1
                    ),
                );
            }
            if token.expose_secret().trim() != token.expose_secret() {
                return invalid(
                    "http.admin_tokens",
                    &format!("token {} starts or ends with whitespace", position + 1),
                );
            }
        }
        if !(1024..=MAX_BODY_BYTES_LIMIT).contains(&self.http.max_body_bytes) {
            return invalid(
                "http.max_body_bytes",
                &format!("must be between 1024 and {MAX_BODY_BYTES_LIMIT}"),
            );
        }
        Ok(())
    }
}

/// Names of librdkafka properties whose values are hidden in `Debug` output.
fn is_secret_property(name: &str) -> bool {
    ["password", "secret", "key", "token"]
        .iter()
        .any(|word| name.contains(word))
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |properties: &BTreeMap<String, String>| {
            properties
                .iter()
                .map(|(name, value)| {
                    let shown = if is_secret_property(name) {
                        "[REDACTED]"
                    } else {
                        value.as_str()
                    };
                    (name.clone(), shown.to_owned())
                })
                .collect::<BTreeMap<_, _>>()
        };
        formatter
            .debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("properties", &redact(&self.properties))
            .field("consumer_properties", &redact(&self.consumer_properties))
            .field("producer_properties", &redact(&self.producer_properties))
            .finish()
    }
}

/// Deserializes a map of librdkafka properties, joining nested keys with `.`.
///
/// The `config` crate splits keys on `.` and environment variables on `__`,
/// so `security.protocol` arrives as `{security: {protocol: ...}}`; this
/// puts the dotted name back together.
fn flatten_properties<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    fn flatten(prefix: &str, value: serde_json::Value, properties: &mut BTreeMap<String, String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    let name = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&name, value, properties);
                }
            }
            serde_json::Value::String(text) => {
                properties.insert(prefix.to_owned(), text);
            }
            serde_json::Value::Null => {}
            other => {
                properties.insert(prefix.to_owned(), other.to_string());
            }
        }
    }

    let value = serde_json::Value::deserialize(deserializer)?;
    let mut properties = BTreeMap::new();
    flatten("", value, &mut properties);
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let settings = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(settings.kafka.group_id, "event-hub");
        assert_eq!(settings.pipeline.dlq_topic, "event-hub.dlq");
        assert_eq!(settings.pipeline.batch_size, 5000);
        assert_eq!(settings.pipeline.transaction_max_executions, 500);
        assert_eq!(
            settings.pipeline.action_topic("builtin", "pipeline_run"),
            "event-hub.actions.builtin.pipeline_run"
        );
    }

    #[test]
    fn env_reaches_nested_librdkafka_properties() {
        let settings = Settings::load_with_env(
            None,
            env(&[
                (
                    "EVENT_HUB__KAFKA__PROPERTIES__SECURITY__PROTOCOL",
                    "SASL_SSL",
                ),
                ("EVENT_HUB__KAFKA__PROPERTIES__SASL__PASSWORD", "hunter2"),
                ("EVENT_HUB__KAFKA__TOPICS", "a,b"),
                ("EVENT_HUB__PIPELINE__BATCH_SIZE", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.kafka.properties["security.protocol"], "SASL_SSL");
        assert_eq!(settings.kafka.topics, vec!["a", "b"]);
        assert_eq!(settings.pipeline.batch_size, 7);

        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "secret printed: {printed}");
    }

    #[test]
    fn file_layer_sits_between_defaults_and_env() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("event-hub.toml");
        std::fs::write(
            &path,
            "[kafka]\ngroup_id = \"from-file\"\nbootstrap_servers = \"file:9092\"\n[kafka.properties]\n\"client.id\" = \"hub\"\n",
        )
        .unwrap();
        let settings = Settings::load_with_env(
            Some(&path),
            env(&[("EVENT_HUB__KAFKA__GROUP_ID", "from-env")]),
        )
        .unwrap();
        assert_eq!(settings.kafka.group_id, "from-env");
        assert_eq!(settings.kafka.bootstrap_servers, "file:9092");
        assert_eq!(settings.kafka.properties["client.id"], "hub");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            (
                "EVENT_HUB__PIPELINE__BATCH_SIZE",
                "0",
                "pipeline.batch_size",
            ),
            ("EVENT_HUB__PIPELINE__BATCH_SIZE", "many", "batch_size"),
            (
                "EVENT_HUB__PIPELINE__TRANSACTION_MAX_EXECUTIONS",
                "0",
                "pipeline.transaction_max_executions",
            ),
            ("EVENT_HUB__DATABASE__URL", "oracle://x", "database.url"),
            (
                "EVENT_HUB__PIPELINE__DLQ_TOPIC",
                "bad topic",
                "pipeline.dlq_topic",
            ),
            (
                "EVENT_HUB__KAFKA__BOOTSTRAP_SERVERS",
                " ",
                "kafka.bootstrap_servers",
            ),
            ("EVENT_HUB__LOG__FILTER", "info,[", "log.filter"),
            ("EVENT_HUB__LOG__FORMAT", "xml", "format"),
        ];
        for (key, value, expected) in cases {
            let error = Settings::load_with_env(None, env(&[(key, value)])).unwrap_err();
            assert!(
                error.to_string().contains(expected),
                "{key}={value}: {error} does not name {expected}"
            );
        }
    }

    #[test]
    fn http_defaults_and_env() {
        let settings = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(settings.http.listen, "127.0.0.1:8080");
        assert!(settings.http.admin_tokens.is_empty());
        assert_eq!(settings.http.max_body_bytes, 1024 * 1024);

        let settings = Settings::load_with_env(
            None,
            env(&[
                ("EVENT_HUB__HTTP__LISTEN", "0.0.0.0:9000"),
                (
                    "EVENT_HUB__HTTP__ADMIN_TOKENS",
                    "first-token-0123456789,second-token-0123456789",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(settings.http.listen_address().unwrap().port(), 9000);
        let tokens: Vec<&str> = settings
            .http
            .admin_tokens
            .iter()
            .map(|token| token.expose_secret())
            .collect();
        assert_eq!(
            tokens,
            ["first-token-0123456789", "second-token-0123456789"]
        );
        let printed = format!("{settings:?}");
        assert!(!printed.contains("first-token"), "token printed: {printed}");
    }

    #[test]
    fn empty_admin_tokens_variable_means_none() {
        let settings =
            Settings::load_with_env(None, env(&[("EVENT_HUB__HTTP__ADMIN_TOKENS", "")])).unwrap();
        assert!(settings.http.admin_tokens.is_empty());
    }

    #[test]
    fn invalid_http_values_name_their_key() {
        let cases = [
            ("EVENT_HUB__HTTP__LISTEN", "localhost", "http.listen"),
            (
                "EVENT_HUB__HTTP__ADMIN_TOKENS",
                "short",
                "http.admin_tokens",
            ),
            (
                "EVENT_HUB__HTTP__MAX_BODY_BYTES",
                "10",
                "http.max_body_bytes",
            ),
        ];
        for (key, value, expected) in cases {
            let error = Settings::load_with_env(None, env(&[(key, value)])).unwrap_err();
            assert!(
                error.to_string().contains(expected),
                "{key}={value}: {error} does not name {expected}"
            );
        }
    }

    #[test]
    fn worker_defaults_and_env() {
        let settings = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(settings.pipeline.status_topic, "event-hub.execution-status");
        assert_eq!(settings.pipeline.actions_dlq_topic, "event-hub.actions.dlq");
        assert_eq!(settings.worker.group_id, None);
        assert_eq!(settings.worker.concurrency, 4);
        assert_eq!(
            settings.worker.status_topic(&settings.pipeline),
            "event-hub.execution-status"
        );

        let settings = Settings::load_with_env(
            None,
            env(&[
                ("EVENT_HUB__WORKER__GROUP_ID", "deployers"),
                (
                    "EVENT_HUB__WORKER__PUBLIC_KEY_FILES",
                    "/keys/a.pem,/keys/b.pem",
                ),
                ("EVENT_HUB__WORKER__STATUS_TOPIC", "statuses"),
                ("EVENT_HUB__AUTH__PUBLIC_KEY_FILES", "/keys/old.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.worker.group_id.as_deref(), Some("deployers"));
        assert_eq!(
            settings.worker.public_key_files,
            [PathBuf::from("/keys/a.pem"), PathBuf::from("/keys/b.pem")]
        );
        assert_eq!(settings.worker.status_topic(&settings.pipeline), "statuses");
        assert_eq!(
            settings.auth.public_key_files,
            [PathBuf::from("/keys/old.pem")]
        );
    }

    #[test]
    fn invalid_worker_values_name_their_key() {
        let cases = [
            ("EVENT_HUB__WORKER__CONCURRENCY", "0", "worker.concurrency"),
            ("EVENT_HUB__WORKER__GROUP_ID", " ", "worker.group_id"),
            (
                "EVENT_HUB__WORKER__COMPLETED_CACHE_SIZE",
                "0",
                "worker.completed_cache_size",
            ),
            (
                "EVENT_HUB__WORKER__STATUS_TOPIC",
                "bad topic",
                "worker.status_topic",
            ),
            (
                "EVENT_HUB__PIPELINE__STATUS_TOPIC",
                "bad topic",
                "pipeline.status_topic",
            ),
            (
                "EVENT_HUB__PIPELINE__ACTIONS_DLQ_TOPIC",
                "",
                "pipeline.actions_dlq_topic",
            ),
            (
                "EVENT_HUB__PIPELINE__RETRY_SWEEP_INTERVAL_MS",
                "0",
                "pipeline.retry_sweep_interval_ms",
            ),
        ];
        for (key, value, expected) in cases {
            let error = Settings::load_with_env(None, env(&[(key, value)])).unwrap_err();
            assert!(
                error.to_string().contains(expected),
                "{key}={value}: {error} does not name {expected}"
            );
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let error = Settings::load_with_env(Some(Path::new("/nonexistent/hub.toml")), env(&[]))
            .unwrap_err();
        assert!(error.to_string().contains("/nonexistent/hub.toml"));
    }

    #[test]
    fn database_url_is_not_printed() {
        let settings = Settings::load_with_env(
            None,
            env(&[("EVENT_HUB__DATABASE__URL", "postgres://hub:s3cret@db/hub")]),
        )
        .unwrap();
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}
