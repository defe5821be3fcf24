//! Prometheus metrics of the daemon, and W3C trace context propagation.
//!
//! [`install`] sets the process-wide recorder of the `metrics` crate once.
//! The `record_*` and `set_*` functions below are the only places that name
//! a metric, so the names and labels in [`names`] stay in one file. Before
//! [`install`] runs, and in CLI commands that never call it, the functions
//! do nothing. `/metrics` serves [`render`].
//!
//! Labels carry topics, partitions, reasons and route templates only, never
//! event ids or resource names, so the number of series stays bounded.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::consumer::dead_letter::ERROR_HEADER;
use crate::event::InboundRecord;
use crate::kafka::OutboundRecord;

/// Metric names, as they appear in the `/metrics` output.
pub mod names {
    /// Counter of records read from event topics, by `topic`.
    pub const RECORDS_CONSUMED: &str = "event_hub_records_consumed_total";
    /// Counter of records written to the dead letter topic, by `reason`.
    pub const DEAD_LETTERS: &str = "event_hub_dead_letters_total";
    /// Counter of executions recorded or found already recorded.
    pub const EXECUTIONS: &str = "event_hub_executions_total";
    /// Counter of action requests acknowledged by the broker, by `topic`.
    pub const ACTION_REQUESTS_PUBLISHED: &str = "event_hub_action_requests_published_total";
    /// Histogram of the time to process one batch, in seconds.
    pub const BATCH_DURATION: &str = "event_hub_batch_duration_seconds";
    /// Gauge of records not yet consumed, by `topic` and `partition`.
    pub const CONSUMER_LAG: &str = "event_hub_consumer_lag_records";
    /// Gauge of active triggers in the current trigger index.
    pub const TRIGGER_INDEX_TRIGGERS: &str = "event_hub_trigger_index_triggers";
    /// Gauge of when the current trigger index was built, in Unix seconds.
    pub const TRIGGER_INDEX_BUILT: &str = "event_hub_trigger_index_built_timestamp_seconds";
    /// Counter of failed database calls.
    pub const DATABASE_ERRORS: &str = "event_hub_database_errors_total";
    /// Counter of failed broker calls.
    pub const BROKER_ERRORS: &str = "event_hub_broker_errors_total";
    /// Counter of webhook deliveries received, by `outcome`.
    pub const WEBHOOKS: &str = "event_hub_webhooks_total";
    /// Counter of HTTP requests served, by `method`, `route` and `status`.
    pub const HTTP_REQUESTS: &str = "event_hub_http_requests_total";
    /// Histogram of HTTP request durations in seconds, by `method` and `route`.
    pub const HTTP_REQUEST_DURATION: &str = "event_hub_http_request_duration_seconds";
}

/// Bucket upper bounds of the duration histograms, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the recorder drains histogram samples into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process-wide `metrics` recorder,
/// once, and returns its handle.
///
/// Later calls return the same handle. Returns `None`, and logs a warning
/// once, if another recorder was installed first. The metrics then go to
/// that recorder, and `/metrics` has nothing to serve.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE.get_or_init(build_and_install).clone()
}

fn build_and_install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &DURATION_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder);
    let handle = match builder {
        Ok(handle) => handle,
        Err(error) => {
            tracing::warn!(%error, "cannot install the Prometheus recorder; /metrics stays empty");
            return None;
        }
    };
    describe();

    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the metrics upkeep thread; histograms are drained at each scrape only");
    }
    Some(handle)
}

/// Returns the Prometheus text exposition of every metric, or `None` when
/// [`install`] has not succeeded.
pub fn render() -> Option<String> {
    let handle = HANDLE.get()?.as_ref()?;
    handle.run_upkeep();
    Some(handle.render())
}

/// Registers the help text of each metric.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

    describe_counter!(
        names::RECORDS_CONSUMED,
        Unit::Count,
        "Records read from event topics."
    );
    describe_counter!(
        names::DEAD_LETTERS,
        Unit::Count,
        "Records written to the dead letter topic, by reason."
    );
    describe_counter!(
        names::EXECUTIONS,
        Unit::Count,
        "Trigger executions recorded or found already recorded."
    );
    describe_counter!(
        names::ACTION_REQUESTS_PUBLISHED,
        Unit::Count,
        "Action requests acknowledged by the broker."
    );
    describe_histogram!(
        names::BATCH_DURATION,
        Unit::Seconds,
        "Time to process one batch, from decoding to the last acknowledgement."
    );
    describe_gauge!(
        names::CONSUMER_LAG,
        Unit::Count,
        "Records between the consumer's position and the end of the partition."
    );
    describe_gauge!(
        names::TRIGGER_INDEX_TRIGGERS,
        Unit::Count,
        "Active triggers in the current trigger index."
    );
    describe_gauge!(
        names::TRIGGER_INDEX_BUILT,
        Unit::Seconds,
        "When the current trigger index was built, in seconds since the Unix epoch."
    );
    describe_counter!(
        names::DATABASE_ERRORS,
        Unit::Count,
        "Failed database calls."
    );
    describe_counter!(names::BROKER_ERRORS, Unit::Count, "Failed broker calls.");
    describe_counter!(
        names::WEBHOOKS,
        Unit::Count,
        "Webhook deliveries received, by outcome."
    );
    describe_counter!(
        names::HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests served, by method, route template and status code."
    );
    describe_histogram!(
        names::HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request durations, by method and route template."
    );
}

/// Counts `records` read from `topic`.
pub fn record_consumed(topic: &str, records: u64) {
    metrics::counter!(names::RECORDS_CONSUMED, "topic" => topic.to_owned()).increment(records);
}

/// Counts one dead letter written for `reason` (the `event-hub-error` header value).
pub fn record_dead_lettered(reason: &str) {
    metrics::counter!(names::DEAD_LETTERS, "reason" => reason.to_owned()).increment(1);
}

/// Records the metrics of one finished batch: the records it read by topic,
/// its dead letters by reason, its executions and its duration. The pipeline
/// calls it once per batch, after the batch succeeded, so a retried batch
/// counts once.
///
/// Action requests are counted by [`record_action_requests`] instead, as
/// soon as the broker acknowledges them. A batch publishes them group by
/// group, and a retry does not publish again the groups that were done.
pub fn record_batch(
    records: &[InboundRecord],
    dead_letters: &[OutboundRecord],
    executions: usize,
    seconds: f64,
) {
    for (topic, count) in count_by_topic(records.iter().map(|record| record.topic.as_str())) {
        record_consumed(topic, count);
    }
    for dead_letter in dead_letters {
        let reason = dead_letter
            .headers
            .iter()
            .find(|(name, _)| name == ERROR_HEADER)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
            .unwrap_or("unknown");
        record_dead_lettered(reason);
    }
    record_executions(executions as u64);
    record_batch_latency(seconds);
}

/// Counts `action_requests` by topic, once the broker acknowledged them.
pub fn record_action_requests(action_requests: &[OutboundRecord]) {
    let topics = action_requests.iter().map(|request| request.topic.as_str());
    for (topic, count) in count_by_topic(topics) {
        record_published(topic, count);
    }
}

fn count_by_topic<'a>(topics: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, u64> {
    let mut counts = BTreeMap::new();
    for topic in topics {
        *counts.entry(topic).or_insert(0) += 1;
    }
    counts
}

/// Counts `executions` recorded, or found recorded already, by one batch.
pub fn record_executions(executions: u64) {
    metrics::counter!(names::EXECUTIONS).increment(executions);
}

/// Counts `requests` action requests acknowledged on `topic`.
pub fn record_published(topic: &str, requests: u64) {
    metrics::counter!(names::ACTION_REQUESTS_PUBLISHED, "topic" => topic.to_owned())
        .increment(requests);
}

/// Observes the processing time of one batch.
pub fn record_batch_latency(seconds: f64) {
    metrics::histogram!(names::BATCH_DURATION).record(seconds);
}

/// Sets the lag of one partition: its high watermark minus the consumer's
/// position.
pub fn set_consumer_lag(topic: &str, partition: i32, lag: i64) {
    // Lags fit an f64 exactly up to 2^53 records.
    let lag = lag.max(0) as f64;
    metrics::gauge!(
        names::CONSUMER_LAG,
        "topic" => topic.to_owned(),
        "partition" => partition.to_string()
    )
    .set(lag);
}

/// Sets the size and build time of the trigger index now in use.
pub fn set_trigger_index(triggers: usize, built_at: DateTime<Utc>) {
    let triggers = triggers as f64;
    let built_at = built_at.timestamp_millis() as f64 / 1000.0;
    metrics::gauge!(names::TRIGGER_INDEX_TRIGGERS).set(triggers);
    metrics::gauge!(names::TRIGGER_INDEX_BUILT).set(built_at);
}

/// Counts one failed database call.
pub fn record_db_error() {
    metrics::counter!(names::DATABASE_ERRORS).increment(1);
}

/// Counts one failed broker call.
pub fn record_broker_error() {
    metrics::counter!(names::BROKER_ERRORS).increment(1);
}

/// Counts one webhook delivery with its `outcome`, such as `accepted` or
/// `invalid_signature`.
pub fn record_webhook(outcome: &'static str) {
    metrics::counter!(names::WEBHOOKS, "outcome" => outcome).increment(1);
}

/// Counts one HTTP request and observes its duration. `route` is the route
/// template (`/api/v1/triggers/{key}`), never the raw path.
pub fn record_http_request(method: &str, route: &str, status: u16, seconds: f64) {
    metrics::counter!(
        names::HTTP_REQUESTS,
        "method" => method.to_owned(),
        "route" => route.to_owned(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(
        names::HTTP_REQUEST_DURATION,
        "method" => method.to_owned(),
        "route" => route.to_owned()
    )
    .record(seconds);
}

/// Header of the W3C Trace Context that names the caller's trace and span.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// Header of the W3C Trace Context with vendor-specific trace state.
pub const TRACESTATE_HEADER: &str = "tracestate";

/// Returns the record's `traceparent` header if it is a valid W3C Trace
/// Context value, so that it can be copied to the action requests the
/// record causes.
///
/// A valid value is `VERSION-TRACEID-PARENTID-FLAGS` in lowercase hex with
/// 2, 32, 16 and 2 digits, where the version is not `ff` and neither id is
/// all zeros. Version `00` must have exactly these four fields; later
/// versions may append more after another `-`.
pub fn traceparent(record: &InboundRecord) -> Option<String> {
    let value = record.header_str(TRACEPARENT_HEADER)?.trim();
    is_valid_traceparent(value).then(|| value.to_owned())
}

/// Returns the trace context headers to copy from `record` to an outbound
/// record: `traceparent` when valid, with `tracestate` when present.
pub fn trace_headers(record: &InboundRecord) -> Vec<(String, Vec<u8>)> {
    let Some(parent) = traceparent(record) else {
        return Vec::new();
    };
    let mut headers = vec![(TRACEPARENT_HEADER.to_owned(), parent.into_bytes())];
    if let Some(state) = record.header_str(TRACESTATE_HEADER) {
        if !state.is_empty() {
            headers.push((TRACESTATE_HEADER.to_owned(), state.as_bytes().to_vec()));
        }
    }
    headers
}

/// Checks a `traceparent` value against the W3C Trace Context format.
pub fn is_valid_traceparent(value: &str) -> bool {
    let is_lower_hex = |field: &str, digits: usize| {
        field.len() == digits
            && field
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    let is_all_zeros = |field: &str| field.bytes().all(|byte| byte == b'0');

    let mut fields = value.split('-');
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let has_more_fields = fields.next().is_some();

    is_lower_hex(version, 2)
        && version != "ff"
        && !(version == "00" && has_more_fields)
        && is_lower_hex(trace_id, 32)
        && !is_all_zeros(trace_id)
        && is_lower_hex(parent_id, 16)
        && !is_all_zeros(parent_id)
        && is_lower_hex(flags, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn record_with(headers: &[(&str, &str)]) -> InboundRecord {
        InboundRecord {
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), Some(value.as_bytes().to_vec())))
                .collect(),
            ..InboundRecord::default()
        }
    }

    #[test]
    fn traceparent_accepts_valid_values() {
        assert!(is_valid_traceparent(VALID));
        assert!(is_valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra"
        ));
        let record = record_with(&[("Traceparent", VALID)]);
        assert_eq!(traceparent(&record).as_deref(), Some(VALID));
    }

    #[test]
    fn traceparent_rejects_invalid_values() {
        let invalid = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for value in invalid {
            assert!(!is_valid_traceparent(value), "{value:?} accepted");
        }
        assert_eq!(traceparent(&record_with(&[])), None);
    }

    #[test]
    fn trace_headers_carry_state_only_with_parent() {
        let record = record_with(&[("traceparent", VALID), ("tracestate", "vendor=1")]);
        assert_eq!(
            trace_headers(&record),
            vec![
                ("traceparent".to_owned(), VALID.as_bytes().to_vec()),
                ("tracestate".to_owned(), b"vendor=1".to_vec()),
            ]
        );
        let orphan = record_with(&[("tracestate", "vendor=1")]);
        assert!(trace_headers(&orphan).is_empty());
    }
}
