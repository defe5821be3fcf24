//! One batch through the pipeline: resolve, decode, match, record,
//! dispatch.
//!
//! [`Pipeline::process`] either finishes every record of the batch or
//! returns an error having stored nothing the caller relies on: executions
//! are idempotent and action requests carry their execution id, so the
//! caller retries the whole batch.
//!
//! The matched events of a batch are recorded and dispatched in groups, each
//! group in its own database transaction, so that the transaction size
//! stays bounded when batches grow. When a group fails, the groups before it
//! stay recorded and dispatched, and the retry finds their executions no
//! longer `pending` and does not publish them again.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::dead_letter::{dead_letter, PAYLOAD_OMITTED_HEADER};
use crate::dispatch::{DispatchInput, Dispatcher};
use crate::event::{self, Event, EventSource, InboundRecord};
use crate::kafka::{produce_all, OutboundRecord};
use crate::matching::index::{CompiledTrigger, TriggerIndex};
use crate::store::entity::trigger_execution::ExecutionStatus;
use crate::store::executions::{self, NewExecution};
use crate::Result;

/// Counts of what a batch did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Records in the batch.
    pub records: usize,
    /// Records whose event matched at least one trigger.
    pub matched: usize,
    /// Executions recorded or found already recorded.
    pub executions: usize,
    /// Action requests published.
    pub published: usize,
    /// Records written to the dead letter topic.
    pub dead_lettered: usize,
    /// Records of inactive event sources, left alone.
    pub skipped: usize,
    /// Database transactions that recorded executions, one per group of
    /// matched events.
    pub transactions: usize,
}

/// The stateless steps of the pipeline, shared by every batch.
#[derive(Clone)]
pub struct Pipeline {
    db: DatabaseConnection,
    dispatcher: Dispatcher,
    producer: rdkafka::producer::FutureProducer,
    dlq_topic: String,
    transaction_max_executions: usize,
}

/// A decoded event and the triggers it matched.
struct MatchedEvent<'a> {
    record: &'a InboundRecord,
    source: Arc<EventSource>,
    event: Event,
    triggers: Vec<&'a CompiledTrigger>,
}

/// The result of [`Pipeline::record_and_dispatch`] for one group of events.
struct GroupOutcome {
    /// Executions recorded or found already recorded.
    executions: usize,
    /// Action requests published.
    published: usize,
}

/// Splits consecutive events into groups of at most `max_executions`
/// executions, given each event's number of executions, and returns the
/// index range of each group.
///
/// An event's executions are never split, so an event with more than
/// `max_executions` executions forms a group by itself. Every event belongs
/// to exactly one group, in order.
fn execution_groups(executions_per_event: &[usize], max_executions: usize) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut executions = 0;
    for (index, &count) in executions_per_event.iter().enumerate() {
        if index > start && executions + count > max_executions {
            groups.push(start..index);
            start = index;
            executions = 0;
        }
        executions += count;
    }
    if start < executions_per_event.len() {
        groups.push(start..executions_per_event.len());
    }
    groups
}

impl Pipeline {
    /// Creates the pipeline. It records at most `transaction_max_executions`
    /// executions per transaction, except for an event that alone matches
    /// more triggers. Values below 1 count as 1.
    pub fn new(
        db: DatabaseConnection,
        dispatcher: Dispatcher,
        producer: rdkafka::producer::FutureProducer,
        dlq_topic: String,
        transaction_max_executions: usize,
    ) -> Self {
        Self {
            db,
            dispatcher,
            producer,
            dlq_topic,
            transaction_max_executions: transaction_max_executions.max(1),
        }
    }

    /// Processes `records` against `index`.
    ///
    /// Dead letters are acknowledged first. Then, group by group, executions
    /// are recorded in one transaction per group, and the action requests of
    /// executions still `pending` are published and marked dispatched. This
    /// returns `Ok` only after every group is done.
    pub async fn process(
        &self,
        index: &TriggerIndex,
        records: &[InboundRecord],
    ) -> Result<BatchOutcome> {
        let started = std::time::Instant::now();
        let mut outcome = BatchOutcome {
            records: records.len(),
            ..BatchOutcome::default()
        };

        // Resolve, decode and match: pure work on the current index.
        let mut dead_letters: Vec<OutboundRecord> = Vec::new();
        let mut matched: Vec<MatchedEvent<'_>> = Vec::new();
        for record in records {
            if record.headers_unreadable {
                let message =
                    "a header name is not valid UTF-8; the record's headers are not copied";
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, reason = "invalid_header", "record dead-lettered");
                dead_letters.push(dead_letter(
                    &self.dlq_topic,
                    record,
                    "invalid_header",
                    message,
                    None,
                ));
                continue;
            }
            let source = match index.resolve_source(record) {
                Ok(source) => Arc::clone(source),
                Err(error) => {
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, reason = error.reason(), %error, "record dead-lettered");
                    dead_letters.push(dead_letter(
                        &self.dlq_topic,
                        record,
                        error.reason(),
                        &error.to_string(),
                        None,
                    ));
                    continue;
                }
            };
            if !source.is_active {
                tracing::debug!(topic = %record.topic, offset = record.offset, event_source = %source.name, "record skipped: event source inactive");
                outcome.skipped += 1;
                continue;
            }
            let (event, triggers) = match index.decode_and_match(&source, record) {
                Ok(decoded) => decoded,
                Err(error) => {
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, event_source = %source.name, reason = error.reason(), %error, "record dead-lettered");
                    dead_letters.push(dead_letter(
                        &self.dlq_topic,
                        record,
                        error.reason(),
                        &error.to_string(),
                        Some(&source.name),
                    ));
                    continue;
                }
            };
            tracing::debug!(event_id = %event.id, event_source = %source.name, event_type = %event.event_type, triggers = triggers.len(), "event matched");
            if triggers.is_empty() {
                continue;
            }
            matched.push(MatchedEvent {
                record,
                source,
                event,
                triggers,
            });
        }
        outcome.matched = matched.len();

        // Dead letters first: a record counts as finished once its dead
        // letter is acknowledged.
        if !dead_letters.is_empty() {
            produce_all(&self.producer, &dead_letters).await?;
            outcome.dead_lettered = dead_letters.len();
        }

        // Record and dispatch in groups of whole events, each group with
        // its own transaction.
        let executions_per_event: Vec<usize> = matched
            .iter()
            .map(|matched| matched.triggers.len())
            .collect();
        for group in execution_groups(&executions_per_event, self.transaction_max_executions) {
            let group_outcome = self.record_and_dispatch(&matched[group]).await?;
            outcome.transactions += 1;
            outcome.executions += group_outcome.executions;
            outcome.published += group_outcome.published;
        }

        crate::metrics::record_batch(
            records,
            &dead_letters,
            outcome.executions,
            started.elapsed().as_secs_f64(),
        );
        Ok(outcome)
    }

    /// Records the executions of `matched` in one transaction, then publishes
    /// the action requests of those still `pending` and marks them
    /// dispatched.
    async fn record_and_dispatch(&self, matched: &[MatchedEvent<'_>]) -> Result<GroupOutcome> {
        let new_executions: Vec<NewExecution> = matched
            .iter()
            .flat_map(|matched| {
                matched.triggers.iter().map(|compiled| NewExecution {
                    trigger_id: compiled.trigger.id,
                    event_source_id: matched.source.id,
                    event_id: matched.event.id.clone(),
                    event_metadata: matched.event.metadata.clone(),
                })
            })
            .collect();
        let stored = executions::record(&self.db, &new_executions).await?;

        // Publish the requests of executions not yet dispatched, including
        // those left pending by an earlier failed attempt or a crash.
        let pending: HashSet<Uuid> = stored
            .iter()
            .filter(|row| row.status == ExecutionStatus::Pending)
            .map(|row| row.id)
            .collect();
        let metadata_by_id: HashMap<Uuid, &serde_json::Value> = stored
            .iter()
            .map(|row| (row.id, &row.event_metadata))
            .collect();
        let mut requests = Vec::with_capacity(pending.len());
        let mut dispatched_ids = Vec::with_capacity(pending.len());
        let mut seen = HashSet::with_capacity(pending.len());
        for matched in matched {
            for compiled in &matched.triggers {
                let execution_id = executions::execution_id(compiled.trigger.id, &matched.event.id);
                if !pending.contains(&execution_id) || !seen.insert(execution_id) {
                    continue;
                }
                let metadata = metadata_by_id
                    .get(&execution_id)
                    .copied()
                    .unwrap_or(&matched.event.metadata);
                let mut request = self.dispatcher.build(&DispatchInput {
                    execution_id,
                    trigger: &compiled.trigger,
                    action: &compiled.action,
                    source: &matched.source,
                    event: &matched.event,
                    metadata,
                })?;
                // Carry the event's W3C trace context to the worker.
                request
                    .headers
                    .extend(crate::metrics::trace_headers(matched.record));
                requests.push(request);
                dispatched_ids.push(execution_id);
            }
        }
        self.dispatcher.publish(&requests).await?;
        crate::metrics::record_action_requests(&requests);
        executions::mark_dispatched(&self.db, &dispatched_ids).await?;
        tracing::debug!(
            events = matched.len(),
            executions = stored.len(),
            action_requests = requests.len(),
            "execution group recorded and dispatched"
        );

        Ok(GroupOutcome {
            executions: stored.len(),
            published: requests.len(),
        })
    }

    /// Processes `records` one at a time, dead-lettering each record whose
    /// processing fails with a permanent error.
    ///
    /// The consumer falls back to this when a whole batch failed with an
    /// error that retrying cannot fix, so that one bad record (an event the
    /// database refuses, an action request too large for the broker) cannot
    /// stop its partition. A transient error still fails the call, and the
    /// caller retries.
    pub async fn process_isolating(
        &self,
        index: &TriggerIndex,
        records: &[InboundRecord],
    ) -> Result<BatchOutcome> {
        let mut total = BatchOutcome::default();
        for record in records {
            match self.process(index, std::slice::from_ref(record)).await {
                Ok(outcome) => total.add(&outcome),
                Err(error) if error.is_permanent() => {
                    self.dead_letter_unprocessable(index, record, &error)
                        .await?;
                    total.records += 1;
                    total.dead_lettered += 1;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(total)
    }

    /// Dead-letters a record that cannot be processed, and fails the
    /// executions it may have left `pending` so the sweep does not retry them.
    async fn dead_letter_unprocessable(
        &self,
        index: &TriggerIndex,
        record: &InboundRecord,
        error: &crate::Error,
    ) -> Result<()> {
        let message = format!("processing failed: {error}");
        tracing::error!(topic = %record.topic, partition = record.partition, offset = record.offset, %error, "record dead-lettered: processing failed with an error that retrying cannot fix");

        let source = index.resolve_source(record).ok();
        if let Some(source) = source {
            if let Ok(event) = event::decode(source, record) {
                match executions::fail_pending_of_event(&self.db, &event.id, &message).await {
                    Ok(_) => {}
                    Err(update_error) if update_error.is_permanent() => {
                        // The database refused this event's data, so it
                        // recorded nothing for it either.
                    }
                    Err(update_error) => return Err(update_error),
                }
            }
        }

        let source_name = source.map(|source| source.name.as_str());
        let copy = dead_letter(
            &self.dlq_topic,
            record,
            "processing_failed",
            &message,
            source_name,
        );
        match produce_all(&self.producer, std::slice::from_ref(&copy)).await {
            Ok(()) => Ok(()),
            Err(error) if crate::Error::from(error.clone()).is_permanent() => {
                // Too large for the dead letter topic as well: keep the
                // headers, which name the original's position.
                let mut without_value = copy;
                without_value.headers.push((
                    PAYLOAD_OMITTED_HEADER.to_owned(),
                    without_value.payload.len().to_string().into_bytes(),
                ));
                without_value.payload = Vec::new();
                Ok(produce_all(&self.producer, std::slice::from_ref(&without_value)).await?)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Returns the producer's fatal error, after which it cannot send again.
    pub fn fatal_producer_error(&self) -> Option<(rdkafka::types::RDKafkaErrorCode, String)> {
        use rdkafka::producer::Producer as _;
        self.producer.client().fatal_error()
    }
}

impl BatchOutcome {
    fn add(&mut self, other: &BatchOutcome) {
        self.records += other.records;
        self.matched += other.matched;
        self.executions += other.executions;
        self.published += other.published;
        self.dead_lettered += other.dead_lettered;
        self.skipped += other.skipped;
        self.transactions += other.transactions;
    }
}

#[cfg(test)]
mod tests {
    use super::execution_groups;

    #[test]
    fn groups_fill_up_to_the_limit() {
        assert_eq!(execution_groups(&[1; 5], 2), vec![0..2, 2..4, 4..5]);
        assert_eq!(execution_groups(&[2, 2, 1], 5), vec![0..3]);
        assert_eq!(
            execution_groups(&[3, 2, 1, 4, 1], 5),
            vec![0..2, 2..4, 4..5]
        );
    }

    #[test]
    fn groups_never_split_an_event() {
        assert_eq!(execution_groups(&[7], 3), vec![0..1]);
        assert_eq!(execution_groups(&[1, 7, 1], 3), vec![0..1, 1..2, 2..3]);
        assert_eq!(execution_groups(&[3, 3], 3), vec![0..1, 1..2]);
    }

    #[test]
    fn groups_of_no_events() {
        assert!(execution_groups(&[], 500).is_empty());
    }

    #[test]
    fn groups_cover_every_event_in_order() {
        let counts: Vec<usize> = (0..200).map(|n| n % 7 + 1).collect();
        for max in [1, 2, 5, 13, 500] {
            let groups = execution_groups(&counts, max);
            let mut next = 0;
            for group in &groups {
                assert_eq!(group.start, next, "max {max}: groups are contiguous");
                assert!(!group.is_empty(), "max {max}: no empty group");
                let executions: usize = counts[group.clone()].iter().sum();
                assert!(
                    executions <= max || group.len() == 1,
                    "max {max}: group {group:?} has {executions} executions"
                );
                next = group.end;
            }
            assert_eq!(next, counts.len(), "max {max}: every event grouped");
        }
    }
}
