//! Plain JSON objects (`json`/`kafka` sources).
//!
//! The record value is any JSON object. It is matched as is, its id is the
//! record's position, and its string `type` field, when present, is the
//! event type.

use serde_json::{json, Value};

use super::{parse_fields, DecodeError, Event, FieldSet, InboundRecord};

/// Event type of objects without a string `type` field.
pub const DEFAULT_EVENT_TYPE: &str = "json";

/// The fields that [`decode`] reads, which a projected document must keep.
pub(super) const DECODER_FIELDS: &[&[&str]] = &[&["type"]];

/// Decodes a record whose value is a JSON object.
///
/// Returns [`DecodeError::EmptyValue`] for a missing or empty value,
/// [`DecodeError::InvalidJson`] for a value that is not JSON, and
/// [`DecodeError::InvalidEvent`] for JSON that is not an object.
pub fn decode(record: &InboundRecord) -> Result<Event, DecodeError> {
    decode_fields(record, None)
}

/// Decodes a record like [`decode`], keeping only `fields` of the object
/// when given (see [`super::projection`]).
pub(super) fn decode_fields(
    record: &InboundRecord,
    fields: Option<&FieldSet>,
) -> Result<Event, DecodeError> {
    let document = parse_fields(record, fields)?;
    if !document.is_object() {
        return Err(DecodeError::InvalidEvent(format!(
            "expected a JSON object, found {}",
            json_kind(&document)
        )));
    }

    let type_field = document.get("type").and_then(Value::as_str);
    let metadata = match type_field {
        Some(event_type) => json!({ "type": event_type }),
        None => json!({}),
    };
    let event_type = type_field.unwrap_or(DEFAULT_EVENT_TYPE).to_owned();
    Ok(Event {
        id: record.position(),
        event_type,
        document,
        metadata,
    })
}

/// Names the JSON type of a value for error messages ("an array", "a string").
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: Option<&[u8]>) -> InboundRecord {
        InboundRecord {
            topic: "events".to_owned(),
            partition: 3,
            offset: 42,
            payload: payload.map(<[u8]>::to_vec),
            ..InboundRecord::default()
        }
    }

    #[test]
    fn object_with_type() {
        let event = decode(&record(Some(br#"{"type":"deploy","env":"prod"}"#))).unwrap();
        assert_eq!(event.id, "events/3/42");
        assert_eq!(event.event_type, "deploy");
        assert_eq!(event.document, json!({"type": "deploy", "env": "prod"}));
        assert_eq!(event.metadata, json!({"type": "deploy"}));
    }

    #[test]
    fn object_without_type() {
        let event = decode(&record(Some(br#"{"env":"prod"}"#))).unwrap();
        assert_eq!(event.event_type, "json");
        assert_eq!(event.metadata, json!({}));
        assert_eq!(event.document, json!({"env": "prod"}));
    }

    #[test]
    fn non_string_type_is_ignored() {
        let event = decode(&record(Some(br#"{"type":7}"#))).unwrap();
        assert_eq!(event.event_type, "json");
        assert_eq!(event.metadata, json!({}));
        assert_eq!(event.document, json!({"type": 7}));
    }

    #[test]
    fn missing_and_empty_value() {
        assert_eq!(decode(&record(None)), Err(DecodeError::EmptyValue));
        assert_eq!(decode(&record(Some(b""))), Err(DecodeError::EmptyValue));
    }

    #[test]
    fn invalid_json() {
        let error = decode(&record(Some(b"{not json"))).unwrap_err();
        assert!(matches!(error, DecodeError::InvalidJson(_)), "{error:?}");
    }

    #[test]
    fn non_object_values() {
        for (payload, kind) in [
            (&b"[1,2]"[..], "an array"),
            (b"\"text\"", "a string"),
            (b"12", "a number"),
            (b"null", "null"),
            (b"true", "a boolean"),
        ] {
            let error = decode(&record(Some(payload))).unwrap_err();
            assert_eq!(
                error,
                DecodeError::InvalidEvent(format!("expected a JSON object, found {kind}"))
            );
        }
    }
}
