//! librdkafka client configuration built from [`KafkaSettings`], the event
//! consumer's client context, and [`leave_group`], which a subscribed
//! consumer runs before it is dropped.
//!
//! The hub's own defaults come first, then `kafka.properties`, then the
//! client-specific property map, so an operator can override any of them.
//!
//! Concurrency: librdkafka calls the context from its own threads (logs)
//! and from the task that polls the consumer (rebalances and commits), so
//! the context shares its state through atomics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::config::KafkaSettings;
use crate::health::Health;

/// Builds the configuration of the event consumer.
///
/// The pipeline stores an offset only after the record's executions are
/// dispatched (`enable.auto.offset.store=false`). The periodic auto-commit
/// then commits only stored offsets, and the pipeline commits synchronously
/// on shutdown. A new consumer group starts at the earliest offset so that
/// events produced before the first replica started are not skipped.
pub fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("group.id", &settings.group_id)
        .set("client.id", "event-hub")
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Cooperative rebalancing moves only the partitions that change
        // owner, so the other replicas keep consuming. Set "range,roundrobin"
        // in kafka.consumer_properties for eager rebalancing.
        // NOTE: librdkafka 2.12.1 can abort the process (assert in
        // rd_kafka_cgrp_terminated) when a cooperative consumer is closed
        // while a rebalance is in progress. Call `leave_group` before
        // dropping a subscribed consumer, so that the drop closes an idle
        // one.
        .set("partition.assignment.strategy", "cooperative-sticky")
        // Notice topics created after the subscription within seconds
        // instead of librdkafka's default five minutes.
        .set("topic.metadata.refresh.interval.ms", "5000")
        // Per-partition consumer lag for the metrics, every 10 s.
        .set("statistics.interval.ms", "10000");
    apply(&mut config, settings, &settings.consumer_properties);
    config
}

/// Builds the configuration of the producer of action requests and dead letters.
///
/// The producer is idempotent with `acks=all`, so a retried send neither
/// duplicates nor reorders records within a partition.
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("client.id", "event-hub")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // The pipeline waits for the acknowledgement of every request of a
        // batch before it moves on, so lingering would only lengthen each
        // batch. With 5 ms, a backlog drained at two thirds of the speed.
        // Requests queued while a produce request is in flight still go out
        // together.
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000");
    apply(&mut config, settings, &settings.producer_properties);
    config
}

fn apply(
    config: &mut ClientConfig,
    settings: &KafkaSettings,
    specific: &std::collections::BTreeMap<String, String>,
) {
    for (name, value) in settings.properties.iter().chain(specific) {
        config.set(name, value);
    }
}

/// A record to produce, owned so that a batch can be sent concurrently.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundRecord {
    /// Destination topic.
    pub topic: String,
    /// Record key; records with the same key go to the same partition.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub payload: Vec<u8>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Produces `records` concurrently and waits until the broker acknowledged
/// every one of them.
///
/// Returns the first delivery error; the other records may or may not have
/// been written, so a caller that retries must tolerate duplicates.
pub async fn produce_all(
    producer: &rdkafka::producer::FutureProducer,
    records: &[OutboundRecord],
) -> Result<(), rdkafka::error::KafkaError> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    use rdkafka::util::Timeout;

    let deliveries = records.iter().map(|record| {
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value),
                })
            },
        );
        let mut future_record = FutureRecord::to(&record.topic)
            .payload(&record.payload)
            .headers(headers);
        if let Some(key) = &record.key {
            future_record = future_record.key(key);
        }
        producer.send(future_record, Timeout::Never)
    });

    for delivery in futures::future::join_all(deliveries).await {
        delivery.map_err(|(error, _message)| error)?;
    }
    Ok(())
}

/// Client context of the event consumer: routes librdkafka's logs and
/// errors to `tracing`, commits stored offsets before partitions are
/// revoked, and reports the assignment to [`Health`].
///
/// librdkafka runs the rebalance callbacks on the thread that polls the
/// consumer. [`leave_group`] reads the atomics below from the same task.
#[derive(Clone, Debug, Default)]
pub struct EventConsumerContext {
    health: Arc<Health>,
    /// Flag that [`leave_group`] sets, after which the consumer stores no
    /// more offsets.
    leaving: Arc<AtomicBool>,
    /// Number of rebalance callbacks served, so that [`leave_group`] can
    /// tell when the group stopped changing.
    rebalance_count: Arc<AtomicU64>,
}

impl EventConsumerContext {
    /// Creates a context that reports to `health`.
    pub fn new(health: Arc<Health>) -> Self {
        Self {
            health,
            ..Self::default()
        }
    }
}

/// Leaves the consumer group and serves the rebalance that follows, so that
/// dropping `consumer` afterwards closes a consumer without an assignment.
///
/// Call it after the last offsets were stored and committed. It
/// unsubscribes and then polls until the assignment is empty and no
/// rebalance callback ran for [`REBALANCE_QUIET_PERIOD`], or until
/// `timeout` passes. Records that still arrive are dropped without storing
/// their offsets, so the next owner reads them again. Keep `timeout`
/// shorter than `session.timeout.ms`, because the group waits that long for
/// a member that stops polling.
///
/// Returns `false` if `timeout` passed first; the drop then closes a
/// consumer that may still be rebalancing.
///
/// NOTE: librdkafka 2.12.1 reports neither an in-flight JoinGroup or
/// SyncGroup nor a pending LeaveGroup to the application. The quiet period
/// is a proxy for that state, so a broker that takes longer to respond can
/// still leave a rebalance step for the close.
pub async fn leave_group(consumer: &EventConsumer, timeout: Duration) -> bool {
    use rdkafka::consumer::Consumer as _;

    let context = consumer.context();
    context.leaving.store(true, Ordering::SeqCst);
    consumer.unsubscribe();

    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut seen_rebalances = context.rebalance_count.load(Ordering::SeqCst);
    let mut quiet_since = started;
    let mut dropped_records: u64 = 0;
    loop {
        let now = tokio::time::Instant::now();
        let unassigned = consumer
            .assignment()
            .is_ok_and(|assignment| assignment.count() == 0);
        if unassigned && now.duration_since(quiet_since) >= REBALANCE_QUIET_PERIOD {
            tracing::info!(
                elapsed_ms = now.duration_since(started).as_millis() as u64,
                dropped_records,
                "left the consumer group"
            );
            return true;
        }
        if now >= deadline {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                unassigned,
                "leaving the consumer group timed out; closing anyway"
            );
            return false;
        }

        // Polling serves the rebalance callbacks of the unsubscribe.
        let poll = tokio::time::timeout(LEAVE_POLL_INTERVAL.min(deadline - now), consumer.recv());
        match poll.await {
            Ok(Ok(_message)) => dropped_records += 1,
            Ok(Err(error)) => tracing::debug!(%error, "consumer error while leaving the group"),
            Err(_elapsed) => {}
        }
        let rebalances = context.rebalance_count.load(Ordering::SeqCst);
        if rebalances != seen_rebalances {
            seen_rebalances = rebalances;
            quiet_since = tokio::time::Instant::now();
        }
    }
}

/// Maximum wait for the rebalance that follows leaving the group at
/// shutdown. It stays below librdkafka's default `session.timeout.ms` of
/// 45 s and below the daemon's default shutdown budget of 8 s.
pub const LEAVE_GROUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Time without a rebalance callback after which [`leave_group`] considers
/// the group settled. It covers a JoinGroup or SyncGroup round trip to a
/// local broker, because librdkafka does not report those to the application.
pub const REBALANCE_QUIET_PERIOD: Duration = Duration::from_millis(500);

/// Maximum wait of one poll in [`leave_group`].
const LEAVE_POLL_INTERVAL: Duration = Duration::from_millis(50);

impl rdkafka::ClientContext for EventConsumerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as Level;
        match level {
            // A failed connection is logged here and reported again through
            // `error`; log it once, there.
            Level::Error if facility == "FAIL" => {
                tracing::debug!(facility, "librdkafka: {message}")
            }
            Level::Emerg | Level::Alert | Level::Critical | Level::Error => {
                tracing::error!(facility, "librdkafka: {message}");
            }
            Level::Warning => tracing::warn!(facility, "librdkafka: {message}"),
            Level::Notice | Level::Info => tracing::info!(facility, "librdkafka: {message}"),
            Level::Debug => tracing::debug!(facility, "librdkafka: {message}"),
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        // librdkafka reports -1 for partitions it does not consume.
        for (topic_name, topic) in &statistics.topics {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    crate::metrics::set_consumer_lag(topic_name, *partition, stats.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as Code;
        match error.rdkafka_error_code() {
            // Expected until a topic named by an event source is created.
            Some(Code::UnknownTopicOrPartition | Code::UnknownTopic) => {
                tracing::warn!(%error, "librdkafka: {reason}");
            }
            // librdkafka reconnects by itself; the pipeline retries its calls.
            Some(Code::BrokerTransportFailure | Code::AllBrokersDown) => {
                tracing::warn!(%error, "librdkafka: {reason}");
            }
            _ => tracing::error!(%error, "librdkafka: {reason}"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EventConsumerContext {
    fn pre_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::{CommitMode, Consumer as _, Rebalance};
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode;

        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions revoked");
                // `leave_group` runs after the final commit and stores no
                // offsets, so nothing is left to commit. Skipping the
                // request keeps the close short.
                if self.leaving.load(Ordering::SeqCst) {
                    return;
                }
                // Stored offsets cover finished records only (the consumer
                // loop never processes while it polls), so they can be
                // committed now, before the new owner starts reading.
                match consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                    Err(error) => {
                        tracing::warn!(%error, "commit before revoke failed; the new owner re-reads uncommitted records")
                    }
                }
            }
            Rebalance::Error(error) => tracing::error!(%error, "rebalance failed"),
        }
    }

    fn post_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        _rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::Consumer as _;
        self.rebalance_count.fetch_add(1, Ordering::SeqCst);
        match consumer.assignment() {
            Ok(assignment) => self.health.set_assigned_partitions(assignment.count()),
            Err(error) => tracing::warn!(%error, "cannot read the partition assignment"),
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &rdkafka::TopicPartitionList,
    ) {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode;
        match result {
            Ok(()) => tracing::debug!(offsets = %describe(offsets), "offsets committed"),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                tracing::warn!(%error, offsets = %describe(offsets), "offset commit failed")
            }
        }
    }
}

/// Formats a partition list as `topic/partition@offset, ...` for logs.
fn describe(partitions: &rdkafka::TopicPartitionList) -> String {
    partitions
        .elements()
        .iter()
        .map(|element| match element.offset() {
            rdkafka::Offset::Offset(offset) => {
                format!("{}/{}@{offset}", element.topic(), element.partition())
            }
            _ => format!("{}/{}", element.topic(), element.partition()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The event consumer type used by the daemon.
pub type EventConsumer = rdkafka::consumer::StreamConsumer<EventConsumerContext>;
