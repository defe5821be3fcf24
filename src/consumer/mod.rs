//! The event consumer: reads batches from the event topics and runs them
//! through the [`Pipeline`].
//!
//! One task owns the Kafka consumer and processes one batch at a time, so
//! every record of a batch is finished (dispatched, skipped or
//! dead-lettered) before its offset is stored. librdkafka's auto-commit then
//! commits only stored offsets, and [`Consumer::run`] commits synchronously
//! when it stops and then leaves the consumer group before the consumer is
//! dropped. A crash between dispatch and commit redelivers records
//! whose executions exist already; they are not recorded twice.
//!
//! The subscription follows the trigger index: the configured topics plus
//! every topic named by an active event source, re-subscribed when that set
//! changes.

mod batch;
pub mod dead_letter;
pub mod sweep;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use batch::{BatchOutcome, Pipeline};

use crate::event::InboundRecord;
use crate::health::Health;
use crate::kafka::{self, EventConsumer};
use crate::matching::TriggerIndex;
use crate::{Error, Result};

/// Batching and retry limits of the consumer loop.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Maximum records per batch.
    pub batch_size: usize,
    /// Maximum bytes of payloads, keys and headers per batch; the record
    /// that reaches it is the last one added.
    pub batch_max_bytes: usize,
    /// Maximum wait for more records once a batch has its first one.
    pub batch_timeout: Duration,
    /// Topics consumed in addition to those of active event sources.
    pub static_topics: Vec<String>,
    /// Cap of the backoff between retries of a failed batch.
    pub max_retry_backoff: Duration,
}

/// Reads event topics and feeds the pipeline.
pub struct Consumer {
    consumer: EventConsumer,
    pipeline: Pipeline,
    options: ConsumerOptions,
    index: watch::Receiver<Arc<TriggerIndex>>,
    subscribed: BTreeSet<String>,
    health: Arc<Health>,
}

impl Consumer {
    /// Creates the consumer loop; nothing is subscribed until [`Self::run`].
    pub fn new(
        consumer: EventConsumer,
        pipeline: Pipeline,
        options: ConsumerOptions,
        index: watch::Receiver<Arc<TriggerIndex>>,
        health: Arc<Health>,
    ) -> Self {
        Self {
            consumer,
            pipeline,
            options,
            index,
            subscribed: BTreeSet::new(),
            health,
        }
    }

    /// Consumes until `shutdown` is cancelled, then commits the stored
    /// offsets and leaves the consumer group.
    ///
    /// A batch that is being processed when `shutdown` fires is finished
    /// first. Only a batch stuck in retries is abandoned, uncommitted, to be
    /// redelivered to another replica.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        self.follow_index();
        self.health.set_consuming(true);
        let mut index_open = true;
        let mut consecutive_errors: u32 = 0;

        loop {
            // `biased`: check shutdown first so that a busy topic cannot
            // starve a stop request, then index changes, then records.
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                changed = self.index.changed(), if index_open => {
                    if changed.is_err() {
                        // A closed channel would fire again at once: stop watching it.
                        tracing::warn!("trigger index refresher stopped; keeping the last index");
                        index_open = false;
                    }
                    self.follow_index();
                    continue;
                }
                message = self.consumer.recv(), if !self.subscribed.is_empty() => message,
            };

            let first = match first {
                Ok(message) => {
                    consecutive_errors = 0;
                    InboundRecord::from_message(&message)
                }
                Err(error) => {
                    // Log the first error of a run and then one in fifty, and
                    // back off up to 5 s, so an outage does not flood the log.
                    consecutive_errors = consecutive_errors.saturating_add(1);
                    if consecutive_errors == 1 || consecutive_errors.is_multiple_of(50) {
                        log_consumer_error(&error, consecutive_errors);
                    }
                    let delay = Duration::from_millis(200)
                        .saturating_mul(consecutive_errors.min(25))
                        .min(Duration::from_secs(5));
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            let mut batch = self.fill_batch(first).await;

            match self.process_with_retries(&mut batch, &shutdown).await {
                Ok(true) => self.store_offsets(&batch),
                Ok(false) => break,
                Err(fatal) => {
                    self.health.set_consuming(false);
                    self.close().await;
                    return Err(fatal);
                }
            }
        }

        self.health.set_consuming(false);
        self.close().await;
        Ok(())
    }

    /// Commits the stored offsets and leaves the consumer group, so that the
    /// drop of the consumer that follows never runs a rebalance step.
    ///
    /// With cooperative rebalancing, librdkafka 2.12.1 could abort the
    /// process when a consumer was dropped during a rebalance.
    async fn close(&self) {
        self.commit_on_shutdown();
        if !self.subscribed.is_empty() {
            kafka::leave_group(&self.consumer, kafka::LEAVE_GROUP_TIMEOUT).await;
        }
    }

    /// Reads more records after `first` until the batch reaches
    /// `batch_size` records or `batch_max_bytes` bytes, or the batch
    /// timeout passes.
    async fn fill_batch(&self, first: InboundRecord) -> Vec<InboundRecord> {
        let mut bytes = first.size();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.options.batch_timeout;
        while batch.len() < self.options.batch_size && bytes < self.options.batch_max_bytes {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => {
                    let record = InboundRecord::from_message(&message);
                    bytes += record.size();
                    batch.push(record);
                }
                Ok(Err(error)) => {
                    log_consumer_error(&error, 1);
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        batch
    }

    /// Runs the batch until it succeeds, retrying with capped exponential
    /// backoff and jitter. Returns `Ok(false)` if shutdown interrupted the
    /// retries, and an error if the producer can never send again.
    ///
    /// While it retries, every assigned partition is paused and the consumer
    /// keeps polling, so the replica stays in its group without reading
    /// ahead. Records that still arrive (from partitions assigned during the
    /// wait) join the batch.
    ///
    /// Records of a partition revoked meanwhile stay in the batch and are
    /// processed. Storing their offset then fails, and the new owner finds
    /// their executions recorded. Dropping them instead lost records: when
    /// the assignment read back lacked a partition the consumer still held,
    /// its fetch position had already moved past them.
    async fn process_with_retries(
        &self,
        batch: &mut Vec<InboundRecord>,
        shutdown: &CancellationToken,
    ) -> Result<bool> {
        let mut attempt: u32 = 0;
        loop {
            if batch.is_empty() {
                self.resume_all();
                return Ok(true);
            }
            let index = self.index.borrow().clone();
            let mut result = self.pipeline.process(&index, batch).await;
            if let Err(error) = &result {
                if error.is_permanent() {
                    tracing::warn!(%error, records = batch.len(), "batch failed with an error that retrying cannot fix; processing its records one by one");
                    result = self.pipeline.process_isolating(&index, batch).await;
                }
            }
            self.report_health(&result);
            match result {
                Ok(outcome) => {
                    if attempt > 0 {
                        tracing::info!(
                            attempts = attempt + 1,
                            "batch succeeded after retries; resuming consumption"
                        );
                        self.resume_all();
                    }
                    tracing::debug!(?outcome, "batch processed");
                    if outcome.published > 0 || outcome.dead_lettered > 0 {
                        tracing::info!(
                            records = outcome.records,
                            executions = outcome.executions,
                            transactions = outcome.transactions,
                            action_requests = outcome.published,
                            dead_letters = outcome.dead_lettered,
                            "batch processed"
                        );
                    }
                    return Ok(true);
                }
                Err(error) => {
                    if let Some((code, reason)) = self.pipeline.fatal_producer_error() {
                        // An idempotent producer that lost its state (for
                        // example after the broker lost its data) cannot send
                        // again; a new process gets a new producer.
                        tracing::error!(?code, reason, "the producer hit a fatal error; stopping so that the replica is restarted");
                        return Err(Error::Kafka(rdkafka::error::KafkaError::MessageProduction(
                            code,
                        )));
                    }
                    attempt = attempt.saturating_add(1);
                    let delay = backoff(attempt, self.options.max_retry_backoff);
                    let first = &batch[0];
                    tracing::warn!(
                        %error,
                        attempt,
                        retry_in_ms = delay.as_millis() as u64,
                        records = batch.len(),
                        topic = %first.topic,
                        partition = first.partition,
                        offset = first.offset,
                        "batch failed; retrying"
                    );
                    if attempt == 1 {
                        self.pause_all();
                    }
                    if !self.wait_paused(delay, batch, shutdown).await {
                        tracing::warn!(records = batch.len(), "shutdown during retries; the batch stays uncommitted and will be redelivered");
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Polls the paused consumer for `delay`, adding any record that still
    /// arrives to `batch`. Returns `false` if shutdown was requested.
    async fn wait_paused(
        &self,
        delay: Duration,
        batch: &mut Vec<InboundRecord>,
        shutdown: &CancellationToken,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep_until(deadline) => return true,
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        batch.push(InboundRecord::from_message(&message));
                        // A partition assigned during the wait is not paused yet.
                        self.pause_all();
                    }
                    Err(error) => log_consumer_error(&error, 1),
                },
            }
        }
    }

    /// Pauses every assigned partition and reports the replica not consuming.
    fn pause_all(&self) {
        self.health.set_consuming(false);
        match self.consumer.assignment() {
            Ok(assignment) => {
                if let Err(error) = self.consumer.pause(&assignment) {
                    tracing::warn!(%error, "cannot pause partitions");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the partition assignment to pause it")
            }
        }
    }

    /// Resumes every assigned partition.
    fn resume_all(&self) {
        match self.consumer.assignment() {
            Ok(assignment) => {
                if let Err(error) = self.consumer.resume(&assignment) {
                    tracing::warn!(%error, "cannot resume partitions");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the partition assignment to resume it")
            }
        }
        self.health.set_consuming(true);
    }

    /// Records which dependency failed, for the readiness probe.
    fn report_health(&self, result: &Result<BatchOutcome>) {
        match result {
            Ok(_) => {
                self.health.set_database_ok(true);
                self.health.set_broker_ok(true);
            }
            Err(Error::Database(_)) => {
                self.health.set_database_ok(false);
                crate::metrics::record_db_error();
            }
            Err(Error::Kafka(_)) => {
                self.health.set_broker_ok(false);
                crate::metrics::record_broker_error();
            }
            Err(_) => {}
        }
    }

    /// Stores the offset after the last record of each partition in the
    /// batch; auto-commit sends it to the broker.
    fn store_offsets(&self, batch: &[InboundRecord]) {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for record in batch {
            let entry = next
                .entry((record.topic.as_str(), record.partition))
                .or_insert(0);
            *entry = (*entry).max(record.offset + 1);
        }
        let mut offsets = TopicPartitionList::with_capacity(next.len());
        for ((topic, partition), offset) in next {
            if let Err(error) =
                offsets.add_partition_offset(topic, partition, Offset::Offset(offset))
            {
                tracing::error!(%error, topic, partition, offset, "cannot build the offset list");
            }
        }
        // Storing fails for a partition revoked while the batch ran; its
        // records are redelivered to the new owner, which finds their
        // executions recorded. A cooperative rebalance revokes only some
        // partitions, so librdkafka stores the others and reports the
        // failed ones in the list.
        if let Err(error) = self.consumer.store_offsets(&offsets) {
            tracing::warn!(%error, "offsets not stored; the records will be redelivered");
            return;
        }
        for element in offsets.elements() {
            if let Err(error) = element.error() {
                tracing::info!(
                    %error,
                    topic = element.topic(),
                    partition = element.partition(),
                    "offset not stored because the partition was revoked; the new owner reads its records again"
                );
            }
        }
    }

    /// Subscribes to the configured topics plus those of active event
    /// sources, if that set changed.
    fn follow_index(&mut self) {
        let mut topics: BTreeSet<String> = self.index.borrow().topics();
        topics.extend(self.options.static_topics.iter().cloned());
        if topics == self.subscribed {
            return;
        }

        if topics.is_empty() {
            self.consumer.unsubscribe();
            tracing::warn!(
                "no topics to consume: create an event source with --topic, or set kafka.topics"
            );
        } else {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            if let Err(error) = self.consumer.subscribe(&names) {
                tracing::error!(%error, ?names, "subscription failed; keeping the previous one");
                return;
            }
            tracing::info!(topics = ?names, "subscribed");
        }
        self.subscribed = topics;
    }

    fn commit_on_shutdown(&self) {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("offsets committed"),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                tracing::info!("no new offsets to commit");
            }
            Err(error) => {
                tracing::warn!(%error, "final offset commit failed; uncommitted records will be redelivered")
            }
        }
    }
}

/// Logs a consumer error; a missing topic is expected until it is created,
/// and an unreachable broker is retried by librdkafka.
fn log_consumer_error(error: &KafkaError, consecutive: u32) {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            tracing::warn!(%error, consecutive, "subscribed topic does not exist yet");
        }
        Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown) => {
            tracing::warn!(%error, consecutive, "broker unreachable; librdkafka reconnects");
        }
        _ => tracing::error!(%error, consecutive, "consumer error"),
    }
}

/// Returns the delay before retry `attempt`: 100 ms doubled per attempt,
/// capped at `max`, with the upper half randomized so replicas spread out.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let exponential = Duration::from_millis(100).saturating_mul(1 << attempt.min(16));
    let capped = exponential.min(max);
    let half = capped / 2;
    half + half.mul_f64(rand::thread_rng().gen::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(5);
        for attempt in 1..40 {
            let delay = backoff(attempt, max);
            assert!(delay <= max, "attempt {attempt}: {delay:?}");
        }
        assert!(backoff(1, max) <= Duration::from_millis(200));
        assert!(backoff(30, max) >= Duration::from_millis(2500));
    }
}
