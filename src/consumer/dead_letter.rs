//! Dead letters: records that cannot be decoded or have no event source.
//!
//! A dead letter keeps the original key, value and headers, and adds headers
//! that give the reason it failed and where it came from, so an operator can fix
//! the cause and replay it to its topic.

use chrono::Utc;

use crate::event::InboundRecord;
use crate::kafka::OutboundRecord;

/// Header with the short, stable error code, such as `invalid_signature`.
pub const ERROR_HEADER: &str = "event-hub-error";
/// Header with the human-readable error message.
pub const ERROR_MESSAGE_HEADER: &str = "event-hub-error-message";
/// Header with the topic the record was read from.
pub const SOURCE_TOPIC_HEADER: &str = "event-hub-source-topic";
/// Header with the partition the record was read from.
pub const SOURCE_PARTITION_HEADER: &str = "event-hub-source-partition";
/// Header with the offset of the record.
pub const SOURCE_OFFSET_HEADER: &str = "event-hub-source-offset";
/// Header with the name of the event source, when it was resolved.
pub const EVENT_SOURCE_NAME_HEADER: &str = "event-hub-event-source";
/// Header present when the record's value was too large to copy. It
/// contains the value's size in bytes, and the original stays at its source
/// position.
pub const PAYLOAD_OMITTED_HEADER: &str = "event-hub-payload-omitted";
/// Header with the time the record was dead-lettered (RFC 3339, UTC).
pub const FAILED_AT_HEADER: &str = "event-hub-failed-at";

/// Builds the dead letter of `record` for `dlq_topic`.
pub fn dead_letter(
    dlq_topic: &str,
    record: &InboundRecord,
    reason: &str,
    message: &str,
    event_source: Option<&str>,
) -> OutboundRecord {
    let mut headers: Vec<(String, Vec<u8>)> = record
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone().unwrap_or_default()))
        .collect();
    let mut add = |name: &str, value: String| headers.push((name.to_owned(), value.into_bytes()));
    add(ERROR_HEADER, reason.to_owned());
    add(ERROR_MESSAGE_HEADER, message.to_owned());
    add(SOURCE_TOPIC_HEADER, record.topic.clone());
    add(SOURCE_PARTITION_HEADER, record.partition.to_string());
    add(SOURCE_OFFSET_HEADER, record.offset.to_string());
    if let Some(name) = event_source {
        add(EVENT_SOURCE_NAME_HEADER, name.to_owned());
    }
    add(
        FAILED_AT_HEADER,
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );

    OutboundRecord {
        topic: dlq_topic.to_owned(),
        key: record.key.clone(),
        payload: record.payload.clone().unwrap_or_default(),
        headers,
    }
}
