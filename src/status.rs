//! Execution statuses reported by workers, and the hub's consumer of them.
//!
//! Workers publish a [`StatusReport`] to `pipeline.status_topic` (default
//! `event-hub.execution-status`), keyed by execution id so that the reports
//! of one execution stay in order on one partition. Every hub replica runs
//! one [`StatusConsumer`] in the consumer group `<kafka.group_id>.status`.
//! It applies each report to `trigger_executions` with
//! [`executions::apply_status`], whose conditional UPDATE lets a status move
//! an execution forward only, so a repeated or late report changes nothing.
//!
//! A `failed` report marked retryable schedules the execution's next step
//! in `next_attempt_at`: after the action's backoff, with jitter, or at once
//! when its attempts or its event age ran out. The [`retry`] scheduler then
//! publishes the request again or dead-letters it.
//!
//! Concurrency: the consumer is one task that handles one report at a time
//! and stores its offset only after the database accepted it. A database
//! error is retried with capped backoff while the partition waits. The
//! consumer sends the due time of each scheduled execution to the retry
//! scheduler, a second task, over a channel.

pub mod retry;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng as _;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use sea_orm::{DatabaseConnection, EntityTrait};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::TokenSigner;
use crate::config::Settings;
use crate::store::entity::trigger;
use crate::store::entity::trigger_execution::ExecutionStatus;
use crate::store::executions::{self, RequestPosition, StatusChange};
use crate::store::resources::{self, RetryPolicy};
use crate::{kafka, Error, Result};

/// Prefix of the error of a request that a worker rejected without running
/// its handler: a forged, expired or misaddressed request.
pub const REJECTED_PREFIX: &str = "rejected: ";

/// A status a worker reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportedStatus {
    /// The handler started.
    Running,
    /// The handler finished without error.
    Succeeded,
    /// The handler failed, or the worker rejected the request.
    Failed,
}

impl ReportedStatus {
    /// Returns the execution status this report sets.
    pub fn execution_status(self) -> ExecutionStatus {
        match self {
            Self::Running => ExecutionStatus::Running,
            Self::Succeeded => ExecutionStatus::Succeeded,
            Self::Failed => ExecutionStatus::Failed,
        }
    }
}

/// The JSON value of a record on the status topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The execution, as in the request's `execution_id` and `ce_id`.
    pub execution_id: Uuid,
    /// What happened.
    pub status: ReportedStatus,
    /// The request's `attempt`, 1 for the first delivery.
    pub attempt: u32,
    /// The error of a `failed` report. It starts with [`REJECTED_PREFIX`]
    /// when the worker rejected the request.
    #[serde(default)]
    pub error: Option<String>,
    /// Whether the hub should deliver the request again, for `failed`.
    #[serde(default)]
    pub retryable: bool,
    /// The reporting worker, as free text such as `host/pid`.
    #[serde(default)]
    pub worker: String,
    /// When the worker reported, UTC.
    pub reported_at: DateTime<Utc>,
    /// The Kafka position of the request. The hub reads the request back
    /// from there to publish it again or dead-letter it. Without it, a
    /// retryable failure is dead-lettered with the execution's stored
    /// fields only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestPosition>,
}

/// Largest error text stored with an execution, in bytes; longer errors
/// are cut at a character boundary.
pub const MAX_ERROR_BYTES: usize = 4096;

/// Returns `text` cut to at most `max` bytes at a character boundary.
pub fn truncate_error(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The status consumer and the retry scheduler of one replica.
pub struct StatusTasks {
    consumer: JoinHandle<()>,
    scheduler: JoinHandle<()>,
}

impl StatusTasks {
    /// Waits for both tasks to end, which they do when the daemon's
    /// shutdown token is cancelled.
    pub async fn join(self) {
        if let Err(error) = self.consumer.await {
            tracing::warn!(%error, "status consumer ended abnormally");
        }
        if let Err(error) = self.scheduler.await {
            tracing::warn!(%error, "retry scheduler ended abnormally");
        }
    }
}

/// Starts the status consumer and the retry scheduler of the daemon.
pub fn spawn(
    settings: &Settings,
    db: DatabaseConnection,
    producer: FutureProducer,
    signer: TokenSigner,
    shutdown: CancellationToken,
) -> Result<StatusTasks> {
    let group_id = format!("{}.status", settings.kafka.group_id);
    let mut config = kafka::consumer_config(&settings.kafka);
    config.set("group.id", &group_id);
    let consumer: kafka::EventConsumer =
        config.create_with_context(kafka::EventConsumerContext::default())?;
    consumer.subscribe(&[settings.pipeline.status_topic.as_str()])?;

    let (wake_sender, wake_receiver) = mpsc::unbounded_channel();
    let scheduler = retry::RetryScheduler::new(
        db.clone(),
        producer,
        signer,
        retry::RequestFetcher::new(&settings.kafka, &group_id)?,
        settings.pipeline.actions_dlq_topic.clone(),
        settings.pipeline.retry_sweep_interval(),
    );
    let status_consumer = StatusConsumer {
        consumer,
        db,
        wake: wake_sender,
        max_retry_backoff: Duration::from_millis(settings.pipeline.max_retry_backoff_ms),
    };
    tracing::info!(
        topic = %settings.pipeline.status_topic,
        group_id = %group_id,
        "status consumer started"
    );
    Ok(StatusTasks {
        consumer: tokio::spawn(status_consumer.run(shutdown.clone())),
        scheduler: tokio::spawn(scheduler.run(wake_receiver, shutdown)),
    })
}

/// Reads the status topic and applies each report to its execution.
pub struct StatusConsumer {
    consumer: kafka::EventConsumer,
    db: DatabaseConnection,
    wake: mpsc::UnboundedSender<DateTime<Utc>>,
    max_retry_backoff: Duration,
}

impl StatusConsumer {
    /// Consumes until `shutdown` is cancelled, then commits the stored offsets.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message.detach(),
                Err(error) => {
                    tracing::warn!(%error, "status consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if !self.handle_with_retries(&message, &shutdown).await {
                break;
            }
            self.store_offset(&message);
        }

        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                tracing::warn!(%error, "final commit of status offsets failed; those reports will be applied again, which changes nothing")
            }
        }
        kafka::leave_group(&self.consumer, kafka::LEAVE_GROUP_TIMEOUT).await;
    }

    /// Handles one record until it succeeds; returns `false` if shutdown
    /// interrupted the retries.
    async fn handle_with_retries(
        &self,
        message: &rdkafka::message::OwnedMessage,
        shutdown: &CancellationToken,
    ) -> bool {
        let Some(report) = parse_report(message) else {
            return true;
        };
        let mut attempt: u32 = 0;
        loop {
            match self.apply(&report).await {
                Ok(()) => return true,
                Err(error) => {
                    attempt = attempt.saturating_add(1);
                    let delay = crate::consumer::backoff(attempt, self.max_retry_backoff);
                    tracing::warn!(
                        %error,
                        execution_id = %report.execution_id,
                        attempt,
                        retry_in_ms = delay.as_millis() as u64,
                        "applying a status report failed; retrying"
                    );
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return false,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Applies one report; a report that does not move its execution
    /// forward is logged and dropped.
    async fn apply(&self, report: &StatusReport) -> Result<()> {
        let change = status_change(&self.db, report).await?;
        let Some(change) = change else {
            return Ok(());
        };
        let applied = executions::apply_status(&self.db, &change).await?;
        if !applied {
            tracing::debug!(
                execution_id = %report.execution_id,
                status = ?report.status,
                attempt = report.attempt,
                "status report ignored: the execution is unknown or further along"
            );
            return Ok(());
        }
        tracing::info!(
            execution_id = %report.execution_id,
            status = ?report.status,
            attempt = report.attempt,
            worker = %report.worker,
            error = report.error.as_deref().unwrap_or(""),
            next_attempt_at = ?change.next_attempt_at,
            "execution status updated"
        );
        if let Some(due) = change.next_attempt_at {
            // The scheduler may have stopped during shutdown; the sweep of
            // the next start finds the execution anyway.
            let _ignored = self.wake.send(due);
        }
        Ok(())
    }

    fn store_offset(&self, message: &rdkafka::message::OwnedMessage) {
        let mut offsets = TopicPartitionList::new();
        let added = offsets.add_partition_offset(
            message.topic(),
            message.partition(),
            Offset::Offset(message.offset() + 1),
        );
        if let Err(error) = added.and_then(|()| self.consumer.store_offsets(&offsets)) {
            tracing::warn!(%error, topic = message.topic(), partition = message.partition(), "status offset not stored; the report will be applied again");
        }
    }
}

/// Parses a status record, logging and skipping one that is not a report.
fn parse_report(message: &rdkafka::message::OwnedMessage) -> Option<StatusReport> {
    let payload = message.payload().unwrap_or_default();
    match serde_json::from_slice::<StatusReport>(payload) {
        Ok(report) if report.attempt >= 1 && i32::try_from(report.attempt).is_ok() => Some(report),
        Ok(report) => {
            tracing::warn!(
                execution_id = %report.execution_id,
                attempt = report.attempt,
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                "status report skipped: attempt must be from 1 to 2147483647"
            );
            None
        }
        Err(error) => {
            tracing::warn!(
                %error,
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                "status report skipped: not a status report"
            );
            None
        }
    }
}

/// Builds the change a report makes, or `None` for a report about an
/// execution that does not exist.
///
/// Only a retryable `failed` report reads the execution and its action's
/// retry policy, to schedule the next step.
async fn status_change(
    db: &DatabaseConnection,
    report: &StatusReport,
) -> Result<Option<StatusChange>> {
    let attempt = i32::try_from(report.attempt).unwrap_or(i32::MAX);
    let error = match report.status {
        ReportedStatus::Failed => Some(truncate_error(
            report
                .error
                .as_deref()
                .unwrap_or("failed without an error message"),
            MAX_ERROR_BYTES,
        )),
        ReportedStatus::Running | ReportedStatus::Succeeded => None,
    };

    let mut next_attempt_at = None;
    if report.status == ReportedStatus::Failed && report.retryable {
        let execution = match executions::find(db, report.execution_id).await {
            Ok(execution) => execution,
            Err(Error::NotFound { .. }) => {
                tracing::warn!(execution_id = %report.execution_id, "status report for an unknown execution ignored");
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let policy = retry_policy_of(db, execution.trigger_id).await?;
        let now = Utc::now();
        let delay = if retry::retries_left(&policy, report.attempt, execution.created_at, now) {
            jittered(policy.delay_after(report.attempt))
        } else {
            // Due at once: the scheduler dead-letters it.
            Duration::ZERO
        };
        next_attempt_at = Some(now + chrono::Duration::from_std(delay).unwrap_or_default());
    }

    Ok(Some(StatusChange {
        execution_id: report.execution_id,
        status: report.status.execution_status(),
        attempt,
        error,
        next_attempt_at,
        request: report.request.clone(),
    }))
}

/// Returns the retry policy of the action of `trigger_id`, or the default
/// policy when the trigger is gone.
pub(crate) async fn retry_policy_of(
    db: &DatabaseConnection,
    trigger_id: Uuid,
) -> Result<RetryPolicy> {
    match trigger::Entity::find_by_id(trigger_id).one(db).await? {
        Some(trigger) => match resources::find_retry_policy(db, trigger.action_id).await {
            Err(Error::NotFound { .. }) => Ok(RetryPolicy::default()),
            other => other,
        },
        None => Ok(RetryPolicy::default()),
    }
}

/// Returns `delay` with its upper half randomized, so that executions that
/// failed together spread out.
pub fn jittered(delay: Duration) -> Duration {
    let half = delay / 2;
    half + half.mul_f64(rand::thread_rng().gen::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_json_contract() {
        let report = StatusReport {
            execution_id: Uuid::nil(),
            status: ReportedStatus::Failed,
            attempt: 2,
            error: Some("boom".into()),
            retryable: true,
            worker: "host/1".into(),
            reported_at: DateTime::parse_from_rfc3339("2026-12-04T21:46:19Z")
                .unwrap()
                .with_timezone(&Utc),
            request: None,
        };
        let value = serde_json::to_value(&report).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "execution_id": "00000000-0000-0000-0000-000000000000",
                "status": "failed",
                "attempt": 2,
                "error": "boom",
                "retryable": true,
                "worker": "host/1",
                "reported_at": "2026-12-04T21:46:19Z",
            })
        );
        let minimal: StatusReport = serde_json::from_value(serde_json::json!({
            "execution_id": Uuid::nil(),
            "status": "running",
            "attempt": 1,
            "reported_at": "2026-12-04T21:46:19Z",
        }))
        .unwrap();
        assert_eq!(minimal.status, ReportedStatus::Running);
        assert!(!minimal.retryable);
    }

    #[test]
    fn truncate_error_keeps_characters_whole() {
        assert_eq!(truncate_error("short", 10), "short");
        assert_eq!(truncate_error("ééé", 3), "é");
        assert_eq!(truncate_error("abcdef", 4), "abcd");
    }

    #[test]
    fn jitter_stays_in_upper_half() {
        let delay = Duration::from_millis(1000);
        for _ in 0..100 {
            let jittered = jittered(delay);
            assert!(jittered >= Duration::from_millis(500), "{jittered:?}");
            assert!(jittered <= delay, "{jittered:?}");
        }
    }
}
