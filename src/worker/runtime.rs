//! The worker's consumer loop and the life of one request.
//!
//! Concurrency: [`run`] owns the consumer and the offset tracker and
//! spawns one task per record into a `JoinSet`, reading a new record only
//! while fewer than `worker.concurrency` tasks run. A task returns its
//! record's position when the record is finished; the loop then stores the
//! partition's commit point, which librdkafka's auto-commit sends. The
//! handler itself runs in a further task, so that a panic in it becomes a
//! retryable failure instead of ending the worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::completed::{Admission, CompletedExecutions, Completion};
use super::offsets::OffsetTracker;
use super::verify::{verify_request, RecordView, Rejection};
use super::{Handler, HandlerError, Worker};
use crate::auth::TokenVerifier;
use crate::status::{
    truncate_error, ReportedStatus, StatusReport, MAX_ERROR_BYTES, REJECTED_PREFIX,
};
use crate::store::executions::RequestPosition;
use crate::{kafka, Result};

/// Cap of the backoff between attempts to deliver a final status.
const MAX_REPORT_BACKOFF: Duration = Duration::from_secs(5);

/// State shared by every request task.
struct Shared {
    producer: FutureProducer,
    status_topic: String,
    worker_name: String,
    verifier: TokenVerifier,
    completed: Mutex<CompletedExecutions>,
    /// Action type and handler by topic.
    handlers: HashMap<String, (String, Arc<dyn Handler>)>,
}

/// The position of a finished record, so that its offset can be stored.
struct Finished {
    topic: String,
    partition: i32,
    offset: i64,
    /// `false` when the task gave up at shutdown before its final status
    /// was acknowledged; the record must then be read again.
    done: bool,
}

/// Runs `worker` until `shutdown` is cancelled.
pub(super) async fn run(worker: Worker, shutdown: CancellationToken) -> Result<()> {
    let settings = &worker.settings;
    let mut config = kafka::consumer_config(&settings.kafka);
    config
        .set("group.id", &worker.group_id)
        .set("client.id", "event-hub-worker");
    let consumer: kafka::EventConsumer =
        config.create_with_context(kafka::EventConsumerContext::default())?;
    let producer: FutureProducer = kafka::producer_config(&settings.kafka)
        .set("client.id", "event-hub-worker")
        .create()?;

    let topics: Vec<&str> = worker
        .subscriptions
        .iter()
        .map(|subscription| subscription.topic.as_str())
        .collect();
    consumer.subscribe(&topics)?;
    tracing::info!(
        ?topics,
        group_id = %worker.group_id,
        worker = %worker.name,
        key_ids = ?worker.verifier.key_ids(),
        "worker started"
    );

    let shared = Arc::new(Shared {
        producer: producer.clone(),
        status_topic: settings.worker.status_topic(&settings.pipeline).to_owned(),
        worker_name: worker.name.clone(),
        verifier: worker.verifier.clone(),
        completed: Mutex::new(CompletedExecutions::new(
            settings.worker.completed_cache_size,
        )),
        handlers: worker
            .subscriptions
            .iter()
            .map(|subscription| {
                (
                    subscription.topic.clone(),
                    (
                        subscription.action_type(),
                        Arc::clone(&subscription.handler),
                    ),
                )
            })
            .collect(),
    });
    let concurrency = settings.worker.concurrency.max(1);
    let mut tracker = OffsetTracker::default();
    let mut tasks: JoinSet<Finished> = JoinSet::new();

    loop {
        let has_capacity = tasks.len() < concurrency;
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(joined) = tasks.join_next() => {
                finish(&consumer, &mut tracker, joined);
            }
            message = consumer.recv(), if has_capacity => match message {
                Ok(message) => {
                    let message = message.detach();
                    tracker.start(message.topic(), message.partition(), message.offset());
                    tasks.spawn(process(Arc::clone(&shared), message, shutdown.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "worker consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }

    // Let the requests in flight finish and report, within the deadline.
    let deadline = settings.pipeline.shutdown_timeout();
    let drained = tokio::time::timeout(deadline, async {
        while let Some(joined) = tasks.join_next().await {
            finish(&consumer, &mut tracker, joined);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            requests = tasks.len(),
            deadline_ms = deadline.as_millis() as u64,
            "requests still running at the shutdown deadline; they will be delivered again"
        );
        tasks.abort_all();
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => {
            tracing::warn!(%error, "final offset commit failed; uncommitted requests will be delivered again")
        }
    }
    kafka::leave_group(&consumer, kafka::LEAVE_GROUP_TIMEOUT).await;
    tracing::info!(worker = %worker.name, "worker stopped");
    Ok(())
}

/// Stores the commit point of a finished record's partition if it moved.
fn finish(
    consumer: &kafka::EventConsumer,
    tracker: &mut OffsetTracker,
    joined: std::result::Result<Finished, tokio::task::JoinError>,
) {
    let finished = match joined {
        Ok(finished) if finished.done => finished,
        Ok(_) => return,
        Err(error) => {
            tracing::error!(%error, "a request task ended abnormally; its record will be delivered again");
            return;
        }
    };
    let Some(commit_point) = tracker.finish(&finished.topic, finished.partition, finished.offset)
    else {
        return;
    };
    let mut offsets = TopicPartitionList::new();
    let added = offsets.add_partition_offset(
        &finished.topic,
        finished.partition,
        Offset::Offset(commit_point),
    );
    if let Err(error) = added.and_then(|()| consumer.store_offsets(&offsets)) {
        tracing::warn!(%error, topic = %finished.topic, partition = finished.partition, "offset not stored; the records will be delivered again");
    }
}

/// Verifies, deduplicates, runs and reports one request.
async fn process(
    shared: Arc<Shared>,
    message: OwnedMessage,
    shutdown: CancellationToken,
) -> Finished {
    let position = RequestPosition {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
    };
    let done = handle_record(&shared, &message, &position, &shutdown).await;
    Finished {
        topic: position.topic,
        partition: position.partition,
        offset: position.offset,
        done,
    }
}

/// Handles one record; returns `false` only when shutdown interrupted the
/// delivery of its final status.
async fn handle_record(
    shared: &Shared,
    message: &OwnedMessage,
    position: &RequestPosition,
    shutdown: &CancellationToken,
) -> bool {
    let Some((action_type, handler)) = shared.handlers.get(message.topic()) else {
        tracing::warn!(
            topic = message.topic(),
            "record from a topic without handler skipped"
        );
        return true;
    };
    let headers: Vec<(&str, Option<&[u8]>)> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| (header.key, header.value))
                .collect()
        })
        .unwrap_or_default();
    let view = RecordView {
        headers,
        payload: message.payload().unwrap_or_default(),
    };

    let request = match verify_request(&view, action_type, &shared.verifier) {
        Ok(request) => request,
        Err(rejection) => return report_rejection(shared, rejection, position, shutdown).await,
    };
    let execution_id = request.execution_id;
    let attempt = request.attempt;

    let admission = shared
        .completed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .admit(execution_id, attempt);
    if admission != Admission::Run {
        tracing::info!(%execution_id, attempt, ?admission, "duplicate request dropped");
        return true;
    }

    let running = report(
        shared,
        execution_id,
        ReportedStatus::Running,
        attempt,
        None,
        false,
        position,
    );
    if let Err(error) = deliver_once(shared, &running).await {
        tracing::warn!(%error, %execution_id, "the running status was not delivered; handling the request anyway");
    }

    tracing::info!(%execution_id, attempt, action_type, "handling request");
    let outcome = run_handler(handler, request).await;
    let (status, error, retryable) = match &outcome {
        Ok(()) => (ReportedStatus::Succeeded, None, false),
        Err(error) => (
            ReportedStatus::Failed,
            Some(error.message().to_owned()),
            error.is_retryable(),
        ),
    };
    match &outcome {
        Ok(()) => tracing::info!(%execution_id, attempt, "request succeeded"),
        Err(error) => {
            tracing::warn!(%execution_id, attempt, retryable, error = error.message(), "request failed")
        }
    }

    let last = report(
        shared,
        execution_id,
        status,
        attempt,
        error,
        retryable,
        position,
    );
    let delivered = deliver_until_acknowledged(shared, &last, shutdown).await;
    let mut completed = shared
        .completed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if delivered {
        completed.finish(
            execution_id,
            Completion {
                attempt,
                is_final: !retryable,
            },
        );
    } else {
        completed.abandon(execution_id, attempt);
    }
    delivered
}

/// Runs the handler in its own task, turning a panic into a retryable error.
async fn run_handler(
    handler: &Arc<dyn Handler>,
    request: crate::dispatch::ActionRequest,
) -> std::result::Result<(), HandlerError> {
    let handler = Arc::clone(handler);
    let task = tokio::spawn(async move { handler.handle(&request).await });
    match task.await {
        Ok(outcome) => outcome,
        Err(error) if error.is_panic() => Err(HandlerError::retryable("the handler panicked")),
        Err(error) => Err(HandlerError::retryable(format!(
            "the handler task ended: {error}"
        ))),
    }
}

/// Reports a rejected request, when it names an execution.
async fn report_rejection(
    shared: &Shared,
    rejection: Rejection,
    position: &RequestPosition,
    shutdown: &CancellationToken,
) -> bool {
    let Some(execution_id) = rejection.execution_id else {
        tracing::warn!(
            topic = %position.topic,
            partition = position.partition,
            offset = position.offset,
            reason = %rejection.reason,
            "request rejected; it names no execution, so the rejection is not reported"
        );
        return true;
    };
    tracing::warn!(
        %execution_id,
        attempt = rejection.attempt,
        topic = %position.topic,
        partition = position.partition,
        offset = position.offset,
        reason = %rejection.reason,
        "request rejected"
    );
    let error = format!("{REJECTED_PREFIX}{}", rejection.reason);
    let rejected = report(
        shared,
        execution_id,
        ReportedStatus::Failed,
        rejection.attempt,
        Some(error),
        false,
        position,
    );
    deliver_until_acknowledged(shared, &rejected, shutdown).await
}

/// Builds a status report of this worker.
fn report(
    shared: &Shared,
    execution_id: Uuid,
    status: ReportedStatus,
    attempt: u32,
    error: Option<String>,
    retryable: bool,
    position: &RequestPosition,
) -> StatusReport {
    StatusReport {
        execution_id,
        status,
        attempt,
        error: error.map(|text| truncate_error(&text, MAX_ERROR_BYTES)),
        retryable,
        worker: shared.worker_name.clone(),
        reported_at: Utc::now(),
        request: Some(position.clone()),
    }
}

/// Produces `report` once and waits for the acknowledgement.
async fn deliver_once(shared: &Shared, report: &StatusReport) -> Result<()> {
    let payload = serde_json::to_vec(report)?;
    let key = report.execution_id.to_string();
    let record = FutureRecord::to(&shared.status_topic)
        .key(&key)
        .payload(&payload)
        .headers(
            rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "content-type",
                value: Some("application/json"),
            }),
        );
    shared
        .producer
        .send(record, Timeout::Never)
        .await
        .map(|_delivery| ())
        .map_err(|(error, _message)| error.into())
}

/// Produces `report` until the broker acknowledges it, with capped
/// backoff; returns `false` if shutdown came first.
async fn deliver_until_acknowledged(
    shared: &Shared,
    report: &StatusReport,
    shutdown: &CancellationToken,
) -> bool {
    let mut failures: u32 = 0;
    loop {
        let error = match deliver_once(shared, report).await {
            Ok(()) => return true,
            Err(error) => error,
        };
        failures = failures.saturating_add(1);
        let delay = crate::consumer::backoff(failures, MAX_REPORT_BACKOFF);
        tracing::warn!(
            %error,
            execution_id = %report.execution_id,
            status = ?report.status,
            retry_in_ms = delay.as_millis() as u64,
            "status report not delivered; retrying"
        );
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(delay) => {}
        }
    }
}
