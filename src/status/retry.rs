//! Retries and dead letters of failed executions.
//!
//! A retryable failure leaves its execution `failed` with `next_attempt_at`
//! set. When that time comes, the scheduler claims the execution
//! ([`executions::claim_due`]) and reads the last request back from its
//! Kafka position. It publishes the request again with the next `attempt`
//! and a fresh token. When the action's attempts or event age ran out, it
//! copies the request to `pipeline.actions_dlq_topic` instead and marks
//! the execution `dead_lettered`.
//!
//! Retries survive a restart because their due time is in the database: a
//! timer per scheduled execution wakes the scheduler on time, and a sweep
//! every `pipeline.retry_sweep_interval_ms` finds the ones whose timer was
//! lost, or set by another replica. Claims are conditional UPDATEs with a
//! lease, so replicas sweeping at once handle each execution once; a
//! replica that dies holding a claim leaves it due again when the lease
//! ends.
//!
//! Concurrency: one task per replica handles due executions one at a time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::consumer::Consumer as _;
use rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use sea_orm::{DatabaseConnection, EntityTrait};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenSigner;
use crate::config::KafkaSettings;
use crate::consumer::dead_letter::{ERROR_HEADER, ERROR_MESSAGE_HEADER, FAILED_AT_HEADER};
use crate::dispatch::{ActionRequest, ATTEMPT_HEADER};
use crate::kafka::{self, produce_all, OutboundRecord};
use crate::store::entity::trigger_execution::ExecutionStatus;
use crate::store::entity::{action, trigger};
use crate::store::executions::{self, DueExecution, RequestPosition, StatusChange};
use crate::store::resources::RetryPolicy;
use crate::{Error, Result};

/// How long a claim on a due execution lasts before another replica may
/// take it over.
const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// Most executions claimed per query.
const CLAIM_BATCH: u64 = 100;

/// How long reading a request back from its topic may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Dead letter header: the execution id.
pub const EXECUTION_ID_HEADER: &str = "event-hub-execution-id";
/// Dead letter header: the trigger's id.
pub const TRIGGER_ID_HEADER: &str = "event-hub-trigger-id";
/// Dead letter header: the trigger's name.
pub const TRIGGER_HEADER: &str = "event-hub-trigger";
/// Dead letter header: the action's id.
pub const ACTION_ID_HEADER: &str = "event-hub-action-id";
/// Dead letter header: the action's name.
pub const ACTION_HEADER: &str = "event-hub-action";
/// Dead letter header: the number of attempts made.
pub const ATTEMPTS_HEADER: &str = "event-hub-attempts";

/// Dead letter reason: every attempt the action allows failed.
pub const ATTEMPTS_EXHAUSTED: &str = "attempts_exhausted";
/// Dead letter reason: the execution is older than the action's
/// `max_event_age_secs`.
pub const EVENT_TOO_OLD: &str = "event_too_old";

/// Returns whether an execution recorded at `created_at` whose attempt
/// `attempt` failed may be attempted again at `now` under `policy`.
pub fn retries_left(
    policy: &RetryPolicy,
    attempt: u32,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    dead_letter_reason(policy, attempt, created_at, now).is_none()
}

/// Returns why a failed attempt must not be retried, or `None` if it may be.
fn dead_letter_reason(
    policy: &RetryPolicy,
    attempt: u32,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<&'static str> {
    if i64::from(attempt) >= i64::from(policy.max_attempts) {
        return Some(ATTEMPTS_EXHAUSTED);
    }
    let age = now.signed_duration_since(created_at).num_seconds();
    match policy.max_event_age_secs {
        Some(max_age) if age >= max_age => Some(EVENT_TOO_OLD),
        _ => None,
    }
}

/// Reads single records back from the action topics by position.
pub struct RequestFetcher {
    consumer: kafka::EventConsumer,
}

impl RequestFetcher {
    /// Creates the fetcher's consumer. It assigns partitions itself and
    /// never commits, so its group id (`<group_id>.fetch`) stores no offsets.
    pub fn new(settings: &KafkaSettings, group_id: &str) -> Result<Self> {
        let mut config = kafka::consumer_config(settings);
        config
            .set("group.id", format!("{group_id}.fetch"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "error");
        Ok(Self {
            consumer: config.create_with_context(kafka::EventConsumerContext::default())?,
        })
    }

    /// Returns the record at `position`, or `None` when the topic no longer
    /// has it (deleted by retention or compaction).
    pub async fn fetch(&self, position: &RequestPosition) -> Result<Option<OwnedMessage>> {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(
            &position.topic,
            position.partition,
            Offset::Offset(position.offset),
        )?;
        self.consumer.assign(&assignment)?;
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, self.read_at(position)).await;
        if let Err(error) = self.consumer.unassign() {
            tracing::warn!(%error, "unassigning the request fetcher failed");
        }
        match fetched {
            Ok(result) => result,
            Err(_elapsed) => Err(Error::Kafka(fetch_timed_out())),
        }
    }

    async fn read_at(&self, position: &RequestPosition) -> Result<Option<OwnedMessage>> {
        loop {
            match self.consumer.recv().await {
                Ok(message)
                    if message.topic() == position.topic
                        && message.partition() == position.partition =>
                {
                    if message.offset() == position.offset {
                        return Ok(Some(message.detach()));
                    }
                    if message.offset() > position.offset {
                        return Ok(None);
                    }
                }
                Ok(_) => {}
                Err(error) => match error.rdkafka_error_code() {
                    Some(rdkafka::types::RDKafkaErrorCode::OffsetOutOfRange) => return Ok(None),
                    _ => return Err(error.into()),
                },
            }
        }
    }
}

/// Returns the error of a fetch that timed out.
fn fetch_timed_out() -> rdkafka::error::KafkaError {
    rdkafka::error::KafkaError::MessageConsumption(
        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
    )
}

/// Publishes due retries and dead letters.
pub struct RetryScheduler {
    db: DatabaseConnection,
    producer: FutureProducer,
    signer: TokenSigner,
    fetcher: RequestFetcher,
    dlq_topic: String,
    sweep_interval: Duration,
}

impl RetryScheduler {
    /// Creates the scheduler.
    pub fn new(
        db: DatabaseConnection,
        producer: FutureProducer,
        signer: TokenSigner,
        fetcher: RequestFetcher,
        dlq_topic: String,
        sweep_interval: Duration,
    ) -> Self {
        Self {
            db,
            producer,
            signer,
            fetcher,
            dlq_topic,
            sweep_interval,
        }
    }

    /// Runs until `shutdown` is cancelled: sweeps every sweep interval, and
    /// at each due time received on `wake`.
    pub async fn run(
        self,
        mut wake: mpsc::UnboundedReceiver<DateTime<Utc>>,
        shutdown: CancellationToken,
    ) {
        let mut timers: BinaryHeap<Reverse<DateTime<Utc>>> = BinaryHeap::new();
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            let now = Utc::now();
            let timer_in = timers
                .peek()
                .map(|Reverse(due)| (*due - now).to_std().unwrap_or(Duration::ZERO));
            let sweep_in = next_sweep.saturating_duration_since(tokio::time::Instant::now());
            let sleep_for = timer_in.map_or(sweep_in, |timer| timer.min(sweep_in));

            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                Some(due) = wake.recv() => {
                    timers.push(Reverse(due));
                    continue;
                }
                () = tokio::time::sleep(sleep_for) => {}
            }

            let now = Utc::now();
            while timers.peek().is_some_and(|Reverse(due)| *due <= now) {
                timers.pop();
            }
            if tokio::time::Instant::now() >= next_sweep {
                next_sweep = tokio::time::Instant::now() + self.sweep_interval;
            }
            if let Err(error) = self.run_due(&shutdown).await {
                tracing::warn!(%error, "retry sweep failed; retrying at the next sweep");
            }
        }
    }

    /// Claims and handles every due execution.
    async fn run_due(&self, shutdown: &CancellationToken) -> Result<()> {
        loop {
            let claimed =
                executions::claim_due(&self.db, Utc::now(), CLAIM_LEASE, CLAIM_BATCH).await?;
            let count = claimed.len();
            for due in claimed {
                if shutdown.is_cancelled() {
                    // Unhandled claims become due again when their lease ends.
                    return Ok(());
                }
                let execution_id = due.execution.id;
                if let Err(error) = self.handle(due).await {
                    tracing::warn!(
                        %error,
                        %execution_id,
                        retry_in_secs = CLAIM_LEASE.as_secs(),
                        "retry of a failed execution failed; it is due again when its claim ends"
                    );
                }
            }
            if (count as u64) < CLAIM_BATCH {
                return Ok(());
            }
        }
    }

    /// Publishes the next attempt of a claimed execution, or dead-letters it.
    async fn handle(&self, due: DueExecution) -> Result<()> {
        let execution = &due.execution;
        let attempt = u32::try_from(execution.attempts).unwrap_or(0).max(1);
        let trigger = trigger::Entity::find_by_id(execution.trigger_id)
            .one(&self.db)
            .await?;
        let action = match &trigger {
            Some(trigger) => {
                action::Entity::find_by_id(trigger.action_id)
                    .one(&self.db)
                    .await?
            }
            None => None,
        };
        let policy = super::retry_policy_of(&self.db, execution.trigger_id).await?;

        let request = match &due.request {
            Some(position) => self.fetcher.fetch(position).await?,
            None => None,
        };
        let request = request.filter(|message| is_request_of(message, execution.id));

        let reason = dead_letter_reason(&policy, attempt, execution.created_at, Utc::now());
        match (reason, request, &action) {
            (None, Some(request), Some(action)) => {
                self.publish_retry(&due, &request, action, attempt + 1)
                    .await
            }
            (reason, request, _) => {
                let reason = reason.unwrap_or("request_unreadable");
                self.dead_letter(
                    &due,
                    request.as_ref(),
                    trigger.as_ref(),
                    action.as_ref(),
                    reason,
                )
                .await
            }
        }
    }

    /// Publishes `request` again as attempt `next_attempt` with a fresh
    /// token, then marks the execution dispatched.
    async fn publish_retry(
        &self,
        due: &DueExecution,
        message: &OwnedMessage,
        action: &action::Model,
        next_attempt: u32,
    ) -> Result<()> {
        let mut request: ActionRequest =
            serde_json::from_slice(message.payload().unwrap_or_default())?;
        let now = Utc::now();
        let audience = format!("{}.{}", request.action.flavor, request.action.subtype);
        let window = chrono::Duration::minutes(i64::from(action.auth_window_minutes));
        let (token, expires_at) = self.signer.sign(
            &request.auth.service_account,
            &audience,
            request.execution_id,
            now,
            window,
        )?;
        request.auth.token = token;
        request.auth.expires_at = expires_at;
        request.set_attempt(next_attempt);

        let mut headers = copy_headers(message, &["ce_time", ATTEMPT_HEADER]);
        headers.push((
            "ce_time".to_owned(),
            now.to_rfc3339_opts(SecondsFormat::Millis, true)
                .into_bytes(),
        ));
        headers.push((
            ATTEMPT_HEADER.to_owned(),
            next_attempt.to_string().into_bytes(),
        ));
        let record = OutboundRecord {
            topic: message.topic().to_owned(),
            key: message.key().map(<[u8]>::to_vec),
            payload: serde_json::to_vec(&request)?,
            headers,
        };
        produce_all(&self.producer, std::slice::from_ref(&record)).await?;

        let change = StatusChange {
            execution_id: due.execution.id,
            status: ExecutionStatus::Dispatched,
            attempt: i32::try_from(next_attempt).unwrap_or(i32::MAX),
            error: due.execution.error.clone(),
            next_attempt_at: None,
            request: None,
        };
        executions::apply_status(&self.db, &change).await?;
        tracing::info!(
            execution_id = %due.execution.id,
            attempt = next_attempt,
            topic = %record.topic,
            "action request published again"
        );
        Ok(())
    }

    /// Copies the request, or the execution's stored fields when the
    /// request cannot be read, to the action dead letter topic, then marks
    /// the execution dead-lettered.
    async fn dead_letter(
        &self,
        due: &DueExecution,
        request: Option<&OwnedMessage>,
        trigger: Option<&trigger::Model>,
        action: Option<&action::Model>,
        reason: &str,
    ) -> Result<()> {
        let execution = &due.execution;
        let error = execution
            .error
            .clone()
            .unwrap_or_else(|| "failed without an error message".to_owned());
        let (payload, mut headers) = match request {
            Some(message) => (
                message.payload().unwrap_or_default().to_vec(),
                copy_headers(message, &[]),
            ),
            None => {
                let stored = serde_json::json!({
                    "execution_id": execution.id,
                    "trigger_id": execution.trigger_id,
                    "event_source_id": execution.event_source_id,
                    "event_id": execution.event_id,
                    "event_metadata": execution.event_metadata,
                    "note": "the action request could not be read back from its topic",
                });
                (serde_json::to_vec(&stored)?, Vec::new())
            }
        };
        let mut add =
            |name: &str, value: String| headers.push((name.to_owned(), value.into_bytes()));
        add(ERROR_HEADER, reason.to_owned());
        add(ERROR_MESSAGE_HEADER, error.clone());
        add(EXECUTION_ID_HEADER, execution.id.to_string());
        add(TRIGGER_ID_HEADER, execution.trigger_id.to_string());
        if let Some(trigger) = trigger {
            add(TRIGGER_HEADER, trigger.name.clone());
        }
        if let Some(action) = action {
            add(ACTION_ID_HEADER, action.id.to_string());
            add(ACTION_HEADER, action.name.clone());
        }
        add(ATTEMPTS_HEADER, execution.attempts.to_string());
        add(
            FAILED_AT_HEADER,
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        let record = OutboundRecord {
            topic: self.dlq_topic.clone(),
            key: Some(execution.id.to_string().into_bytes()),
            payload,
            headers,
        };
        produce_all(&self.producer, std::slice::from_ref(&record)).await?;

        let change = StatusChange {
            execution_id: execution.id,
            status: ExecutionStatus::DeadLettered,
            attempt: execution.attempts,
            error: Some(error),
            next_attempt_at: None,
            request: None,
        };
        executions::apply_status(&self.db, &change).await?;
        tracing::warn!(
            execution_id = %execution.id,
            attempts = execution.attempts,
            reason,
            topic = %self.dlq_topic,
            "action request dead-lettered"
        );
        Ok(())
    }
}

/// Returns whether `message` is an action request of execution
/// `execution_id`, by its `ce_id` header.
fn is_request_of(message: &OwnedMessage, execution_id: uuid::Uuid) -> bool {
    let expected = execution_id.to_string();
    let matches = message.headers().is_some_and(|headers| {
        headers
            .iter()
            .any(|header| header.key == "ce_id" && header.value == Some(expected.as_bytes()))
    });
    if !matches {
        tracing::warn!(
            %execution_id,
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            "the reported request position holds another execution's request"
        );
    }
    matches
}

/// Returns the headers of `message` except those named in `skip`.
fn copy_headers(message: &OwnedMessage, skip: &[&str]) -> Vec<(String, Vec<u8>)> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .filter(|header| !skip.contains(&header.key))
                .map(|header| {
                    (
                        header.key.to_owned(),
                        header.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_reason_by_attempts_and_age() {
        let policy = RetryPolicy {
            max_attempts: 3,
            max_event_age_secs: Some(600),
            ..RetryPolicy::default()
        };
        let now = Utc::now();
        let recent = now - chrono::Duration::seconds(10);
        assert_eq!(dead_letter_reason(&policy, 1, recent, now), None);
        assert_eq!(dead_letter_reason(&policy, 2, recent, now), None);
        assert_eq!(
            dead_letter_reason(&policy, 3, recent, now),
            Some(ATTEMPTS_EXHAUSTED)
        );
        let old = now - chrono::Duration::seconds(601);
        assert_eq!(
            dead_letter_reason(&policy, 1, old, now),
            Some(EVENT_TOO_OLD)
        );
        assert!(retries_left(&RetryPolicy::default(), 2, old, now));
    }
}
