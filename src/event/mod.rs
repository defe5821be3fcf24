//! Decoding of event records into [`Event`]s, by event source flavor.
//!
//! Decoding is pure and synchronous: it takes a record already read from
//! Kafka and the event source it belongs to, and returns either an event
//! ready for matching or a [`DecodeError`] whose [`reason`](DecodeError::reason)
//! goes into the dead letter record's headers.
//!
//! | flavor | subtype | record value | event id |
//! |---|---|---|---|
//! | `github` | `webhook` | raw webhook body | `x-github-delivery`, else topic/partition/offset |
//! | `cloudevents` | `kafka` | binary (`ce_*` headers) or structured mode | CloudEvents `source` and `id` |
//! | `json` | `kafka` | any JSON object | topic/partition/offset |

pub mod cloudevents;
pub mod github;
pub mod json;
pub mod projection;
mod record;
pub mod source;

pub use projection::FieldSet;
pub use record::InboundRecord;
pub use source::{EventSource, Flavor, SourceConfiguration};

use serde_json::Value;

/// Maximum length of an event id stored as is; longer ids are replaced by their SHA-256.
pub const MAX_EVENT_ID_LEN: usize = 512;

/// A decoded event, ready for matching.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Idempotency key: one execution per (trigger, event id).
    pub id: String,
    /// Event type: the GitHub event (`push`, `tag`, `pull_request`, ...), the
    /// CloudEvents `type`, or the JSON object's `type` field when present.
    pub event_type: String,
    /// The JSON document that trigger filters are matched against.
    pub document: Value,
    /// Small derived fields stored with each execution and sent in the
    /// action request (`event.metadata`).
    pub metadata: Value,
}

/// Why a record could not be decoded into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record has no value, or an empty one.
    #[error("record has no value")]
    EmptyValue,
    /// The value is not valid JSON.
    #[error("value is not valid JSON: {0}")]
    InvalidJson(String),
    /// The value is JSON but not the shape the flavor expects.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// A header the flavor requires is missing or not UTF-8.
    #[error("missing or invalid header {0:?}")]
    MissingHeader(&'static str),
    /// The source has a secret but the record carries no signature.
    #[error("missing signature header x-hub-signature-256")]
    MissingSignature,
    /// The signature does not match the value and the source's secret.
    #[error("signature does not match the record value")]
    InvalidSignature,
}

impl DecodeError {
    /// Returns a short, stable code for metrics and the `event-hub-error` header.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::EmptyValue => "empty_value",
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidEvent(_) => "invalid_event",
            Self::MissingHeader(_) => "missing_header",
            Self::MissingSignature => "missing_signature",
            Self::InvalidSignature => "invalid_signature",
        }
    }
}

/// An event decoded for matching by [`decode_for_matching`].
#[derive(Clone, Debug, PartialEq)]
pub enum MatchingEvent {
    /// The event with its whole document.
    Whole(Event),
    /// The event with a document that holds only the fields of the
    /// [`FieldSet`] it was decoded with. Its id, type and metadata are
    /// those of the whole event.
    Projected(Event),
}

impl MatchingEvent {
    /// Returns the event, whose document is enough for matching.
    pub fn event(&self) -> &Event {
        match self {
            Self::Whole(event) | Self::Projected(event) => event,
        }
    }

    /// Takes the event out. Its document is enough for matching, and is
    /// whole only for [`MatchingEvent::Whole`].
    pub fn into_event(self) -> Event {
        match self {
            Self::Whole(event) | Self::Projected(event) => event,
        }
    }

    /// Returns the event with its whole document, parsing the value of
    /// `record`, the record it was decoded from, again if it was projected.
    ///
    /// The signature was verified and the id, type and metadata derived
    /// when the event was decoded for matching, so this only parses. The
    /// fields that decoding adds to the document, such as GitHub's
    /// `event_type`, are the projected document's top-level fields that
    /// the value lacks, and are copied over.
    pub fn into_whole(self, record: &InboundRecord) -> Result<Event, DecodeError> {
        let mut event = match self {
            Self::Whole(event) => return Ok(event),
            Self::Projected(event) => event,
        };
        let (Value::Object(mut whole), Value::Object(projected)) =
            (parse_json(record)?, std::mem::take(&mut event.document))
        else {
            // Both parses read the same text with the same visitor, and the
            // projected one found an object, so the whole one does too.
            return Err(DecodeError::InvalidEvent(
                "the value is not the JSON object it was decoded as".to_owned(),
            ));
        };
        for (key, value) in projected {
            whole.entry(key).or_insert(value);
        }
        event.document = Value::Object(whole);
        Ok(event)
    }
}

/// Decodes `record` as an event of `source`.
pub fn decode(source: &EventSource, record: &InboundRecord) -> Result<Event, DecodeError> {
    decode_with(source, record, None)
}

/// Decodes `record` as an event of `source`, building its document from
/// `fields` only when the flavor allows it (see [`projection`]).
///
/// `fields` must hold the fields that the source's trigger filters name;
/// [`FieldSet::for_flavor`] adds those that decoding itself reads. It
/// fails exactly when [`decode`] does, except for the limits that
/// [`projection`] lists. CloudEvents records are decoded whole.
pub fn decode_for_matching(
    source: &EventSource,
    record: &InboundRecord,
    fields: &FieldSet,
) -> Result<MatchingEvent, DecodeError> {
    match source.flavor {
        Flavor::Github | Flavor::Json => {
            decode_with(source, record, Some(fields)).map(MatchingEvent::Projected)
        }
        // NOTE: a CloudEvent's document is built from headers as well as
        // the value, so this flavor is decoded whole. Projecting its
        // `data` would need the decoder to take a field set too.
        Flavor::Cloudevents => decode(source, record).map(MatchingEvent::Whole),
    }
}

fn decode_with(
    source: &EventSource,
    record: &InboundRecord,
    fields: Option<&FieldSet>,
) -> Result<Event, DecodeError> {
    let event = match source.flavor {
        Flavor::Github => github::decode_fields(source, record, fields)?,
        Flavor::Cloudevents => cloudevents::decode(record)?,
        Flavor::Json => json::decode_fields(record, fields)?,
    };
    Ok(Event {
        id: bounded_event_id(event.id),
        ..event
    })
}

/// Replaces an event id longer than [`MAX_EVENT_ID_LEN`] by `sha256:<hex>`,
/// so it fits the indexed column on every database.
fn bounded_event_id(id: String) -> String {
    use sha2::{Digest, Sha256};

    if id.len() <= MAX_EVENT_ID_LEN {
        return id;
    }
    format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes())))
}

/// Parses a record value as JSON, distinguishing a missing value from bad JSON.
pub(crate) fn parse_json(record: &InboundRecord) -> Result<Value, DecodeError> {
    parse_fields(record, None)
}

/// Parses a record value like [`parse_json`], keeping only `fields` when
/// given.
fn parse_fields(record: &InboundRecord, fields: Option<&FieldSet>) -> Result<Value, DecodeError> {
    let payload = match record.payload.as_deref() {
        None | Some([]) => return Err(DecodeError::EmptyValue),
        Some(payload) => payload,
    };
    projection::parse(payload, fields.unwrap_or(&FieldSet::WHOLE))
}
