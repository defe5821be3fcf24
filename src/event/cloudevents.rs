//! CloudEvents 1.0 in the Kafka protocol binding (`cloudevents`/`kafka` sources).
//!
//! Two content modes are accepted:
//!
//! - Structured mode, when the `content-type` header is
//!   `application/cloudevents+json` (parameters such as `; charset=utf-8`
//!   are ignored): the record value is the event in the JSON format, with
//!   `specversion`, `id`, `source` and `type` required and `data` or
//!   `data_base64` optional.
//! - Binary mode, when a `ce_specversion` header is present: each attribute
//!   is a `ce_<name>` header (`ce_id`, `ce_source` and `ce_type` required),
//!   `content-type` is `datacontenttype`, and the record value is the data.
//!   JSON data (no content type, `application/json` or `*/*+json`) is parsed;
//!   other data becomes a `data` string when it is UTF-8 and `data_base64`
//!   otherwise.
//!
//! Either way, the event document is the structured-mode JSON form of the
//! event, so a filter such as `{"type": "com.example.deploy", "data":
//! {"env": "prod"}}` works for both modes.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::json::json_kind;
use super::{parse_json, DecodeError, Event, InboundRecord};

/// The only CloudEvents version accepted.
pub const SPEC_VERSION: &str = "1.0";
/// Media type of structured-mode events.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
/// Media type of batched events, which this decoder does not accept.
const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// Prefix of binary-mode attribute headers.
const HEADER_PREFIX: &str = "ce_";

/// Required attributes, in the order they are checked.
const REQUIRED_ATTRIBUTES: [&str; 4] = ["specversion", "id", "source", "type"];
/// Optional attributes that must be strings when present.
const OPTIONAL_STRING_ATTRIBUTES: [&str; 4] = ["datacontenttype", "dataschema", "subject", "time"];

/// Decodes a CloudEvent in binary or structured mode.
///
/// The event id is the JSON array `[source, id]`, which keeps ids of
/// different sources apart. A record in neither mode, or one missing a
/// required attribute, is [`DecodeError::InvalidEvent`]. In binary mode, a
/// missing `ce_id`, `ce_source` or `ce_type` header is
/// [`DecodeError::MissingHeader`].
pub fn decode(record: &InboundRecord) -> Result<Event, DecodeError> {
    let content_type = record.header_str("content-type").map(media_type);
    let document = match content_type {
        Some(media) if media.eq_ignore_ascii_case(STRUCTURED_CONTENT_TYPE) => {
            decode_structured(record)?
        }
        Some(media) if media.eq_ignore_ascii_case(BATCH_CONTENT_TYPE) => {
            return Err(DecodeError::InvalidEvent(format!(
                "batched CloudEvents ({BATCH_CONTENT_TYPE}) are not supported; \
                 send one event per record"
            )))
        }
        _ if has_header(record, "ce_specversion") => decode_binary(record)?,
        _ => {
            return Err(DecodeError::InvalidEvent(format!(
                "record is neither a structured-mode CloudEvent (content-type \
                 {STRUCTURED_CONTENT_TYPE}) nor a binary-mode one (ce_specversion header)"
            )))
        }
    };
    event_from_document(document)
}

/// Parses and validates a structured-mode record value.
fn decode_structured(record: &InboundRecord) -> Result<Map<String, Value>, DecodeError> {
    let document = match parse_json(record)? {
        Value::Object(document) => document,
        other => {
            return Err(DecodeError::InvalidEvent(format!(
                "structured-mode CloudEvent must be a JSON object, found {}",
                json_kind(&other)
            )))
        }
    };
    for name in REQUIRED_ATTRIBUTES {
        match document.get(name) {
            Some(Value::String(value)) if !value.is_empty() => {}
            Some(other) => {
                return Err(DecodeError::InvalidEvent(format!(
                    "attribute {name:?} must be a non-empty string, found {}",
                    describe_value(other)
                )))
            }
            None => {
                return Err(DecodeError::InvalidEvent(format!(
                    "missing required attribute {name:?}"
                )))
            }
        }
    }
    check_spec_version(document.get("specversion").and_then(Value::as_str))?;
    for name in OPTIONAL_STRING_ATTRIBUTES {
        if let Some(value) = document.get(name).filter(|value| !value.is_string()) {
            return Err(DecodeError::InvalidEvent(format!(
                "attribute {name:?} must be a string, found {}",
                json_kind(value)
            )));
        }
    }

    match (document.get("data"), document.get("data_base64")) {
        (Some(_), Some(_)) => {
            return Err(DecodeError::InvalidEvent(
                "event has both data and data_base64; send only one".to_owned(),
            ))
        }
        (None, Some(Value::String(encoded))) if BASE64.decode(encoded).is_err() => {
            return Err(DecodeError::InvalidEvent(
                "data_base64 is not valid base64".to_owned(),
            ))
        }
        (None, Some(Value::String(_))) => {}
        (None, Some(other)) => {
            return Err(DecodeError::InvalidEvent(format!(
                "data_base64 must be a base64 string, found {}",
                json_kind(other)
            )))
        }
        _ => {}
    }
    Ok(document)
}

/// Builds the structured-mode form of a binary-mode record.
fn decode_binary(record: &InboundRecord) -> Result<Map<String, Value>, DecodeError> {
    const REQUIRED_HEADERS: [(&str, &str); 4] = [
        ("ce_specversion", "specversion"),
        ("ce_id", "id"),
        ("ce_source", "source"),
        ("ce_type", "type"),
    ];

    let mut document = Map::new();
    for (header, attribute) in REQUIRED_HEADERS {
        let value = record
            .header_str(header)
            .filter(|value| !value.is_empty())
            .ok_or(DecodeError::MissingHeader(header))?;
        document.insert(attribute.to_owned(), Value::String(value.to_owned()));
    }
    check_spec_version(document.get("specversion").and_then(Value::as_str))?;

    // Later headers of the same name win, as in `InboundRecord::header`.
    for (key, value) in &record.headers {
        let Some(name) = strip_prefix_ignore_case(key, HEADER_PREFIX) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if REQUIRED_ATTRIBUTES.contains(&name.as_str()) {
            continue;
        }
        validate_attribute_name(key, &name)?;
        let text = value
            .as_deref()
            .map(std::str::from_utf8)
            .transpose()
            .ok()
            .flatten()
            .ok_or_else(|| {
                DecodeError::InvalidEvent(format!("header {key:?} has no UTF-8 value"))
            })?;
        document.insert(name, Value::String(text.to_owned()));
    }

    let content_type = record.header_str("content-type");
    if let Some(content_type) = content_type {
        document.insert(
            "datacontenttype".to_owned(),
            Value::String(content_type.to_owned()),
        );
    }
    let data_content_type = document
        .get("datacontenttype")
        .and_then(Value::as_str)
        .map(str::to_owned);
    insert_binary_data(record, data_content_type.as_deref(), &mut document)?;
    Ok(document)
}

/// Adds the record value to a binary-mode event as `data` or `data_base64`.
fn insert_binary_data(
    record: &InboundRecord,
    content_type: Option<&str>,
    document: &mut Map<String, Value>,
) -> Result<(), DecodeError> {
    let payload = match record.payload.as_deref() {
        None | Some([]) => return Ok(()),
        Some(payload) => payload,
    };
    if content_type.is_none_or(is_json_media_type) {
        document.insert("data".to_owned(), parse_json(record)?);
    } else if let Ok(text) = std::str::from_utf8(payload) {
        document.insert("data".to_owned(), Value::String(text.to_owned()));
    } else {
        document.insert(
            "data_base64".to_owned(),
            Value::String(BASE64.encode(payload)),
        );
    }
    Ok(())
}

/// Builds the event from a validated structured-mode document.
fn event_from_document(document: Map<String, Value>) -> Result<Event, DecodeError> {
    let attribute = |name: &str| {
        document
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (id, source, event_type) = (attribute("id"), attribute("source"), attribute("type"));
    let event_id = serde_json::to_string(&[source, id])
        .map_err(|error| DecodeError::InvalidEvent(error.to_string()))?;

    let mut metadata = Map::new();
    for name in ["id", "source", "type", "subject", "time"] {
        if let Some(value) = document.get(name) {
            metadata.insert(name.to_owned(), value.clone());
        }
    }
    Ok(Event {
        id: event_id,
        event_type: event_type.to_owned(),
        document: Value::Object(document),
        metadata: Value::Object(metadata),
    })
}

fn check_spec_version(version: Option<&str>) -> Result<(), DecodeError> {
    match version {
        Some(SPEC_VERSION) => Ok(()),
        other => Err(DecodeError::InvalidEvent(format!(
            "unsupported specversion {:?}; only {SPEC_VERSION:?} is supported",
            other.unwrap_or_default()
        ))),
    }
}

/// Checks a binary-mode extension name. CloudEvents 1.0 requires attribute
/// names of lowercase ASCII letters and digits, and the record value carries
/// `data`.
fn validate_attribute_name(header: &str, name: &str) -> Result<(), DecodeError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(DecodeError::InvalidEvent(format!(
            "header {header:?} does not name a CloudEvents attribute; \
             attribute names contain only letters a-z and digits"
        )));
    }
    if name == "data" {
        return Err(DecodeError::InvalidEvent(format!(
            "header {header:?} is not allowed; in binary mode the record value is the data"
        )));
    }
    Ok(())
}

/// Returns the media type of a `content-type` value, without parameters.
fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

/// Tests for `application/json` and the `+json` structured syntax suffix.
fn is_json_media_type(content_type: &str) -> bool {
    let media = media_type(content_type).to_ascii_lowercase();
    media == "application/json" || (media.contains('/') && media.ends_with("+json"))
}

fn has_header(record: &InboundRecord, name: &str) -> bool {
    record
        .headers
        .iter()
        .any(|(key, _)| key.eq_ignore_ascii_case(name))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Describes a value for error messages, naming an empty string as such.
fn describe_value(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "an empty string",
        other => json_kind(other),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(headers: &[(&str, &[u8])], payload: Option<&[u8]>) -> InboundRecord {
        InboundRecord {
            topic: "cloudevents".to_owned(),
            partition: 1,
            offset: 9,
            payload: payload.map(<[u8]>::to_vec),
            headers: headers
                .iter()
                .map(|(key, value)| ((*key).to_owned(), Some(value.to_vec())))
                .collect(),
            ..InboundRecord::default()
        }
    }

    fn structured(event: &Value) -> InboundRecord {
        let body = serde_json::to_vec(event).unwrap();
        record(
            &[(
                "content-type",
                b"application/cloudevents+json; charset=utf-8",
            )],
            Some(&body),
        )
    }

    const BINARY_HEADERS: [(&str, &[u8]); 4] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"A234-1234-1234"),
        ("ce_source", b"/mycontext"),
        ("ce_type", b"com.example.someevent"),
    ];

    fn binary(extra: &[(&str, &[u8])], payload: Option<&[u8]>) -> InboundRecord {
        let mut headers = BINARY_HEADERS.to_vec();
        headers.extend_from_slice(extra);
        record(&headers, payload)
    }

    fn invalid_event(error: DecodeError) -> String {
        match error {
            DecodeError::InvalidEvent(message) => message,
            other => panic!("expected InvalidEvent, got {other:?}"),
        }
    }

    #[test]
    fn structured_event() {
        let event = json!({
            "specversion": "1.0",
            "id": "A234-1234-1234",
            "source": "/mycontext",
            "type": "com.example.someevent",
            "subject": "larger-context",
            "time": "2018-04-05T17:31:00Z",
            "comexampleextension1": "value",
            "datacontenttype": "application/json",
            "data": {"appinfoA": "abc", "appinfoB": 123}
        });
        let decoded = decode(&structured(&event)).unwrap();
        assert_eq!(decoded.id, r#"["/mycontext","A234-1234-1234"]"#);
        assert_eq!(decoded.event_type, "com.example.someevent");
        assert_eq!(decoded.document, event);
        assert_eq!(
            decoded.metadata,
            json!({
                "id": "A234-1234-1234",
                "source": "/mycontext",
                "type": "com.example.someevent",
                "subject": "larger-context",
                "time": "2018-04-05T17:31:00Z"
            })
        );
    }

    #[test]
    fn structured_without_data() {
        let event = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
        let decoded = decode(&structured(&event)).unwrap();
        assert_eq!(decoded.document, event);
        assert_eq!(
            decoded.metadata,
            json!({"id": "1", "source": "s", "type": "t"})
        );
    }

    #[test]
    fn structured_content_type_is_case_insensitive() {
        let event = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
        let body = serde_json::to_vec(&event).unwrap();
        let record = record(
            &[("Content-Type", b"Application/CloudEvents+JSON")],
            Some(&body),
        );
        assert!(decode(&record).is_ok());
    }

    #[test]
    fn structured_data_base64() {
        let event = json!({
            "specversion": "1.0", "id": "1", "source": "s", "type": "t",
            "datacontenttype": "application/octet-stream", "data_base64": "AAEC"
        });
        let decoded = decode(&structured(&event)).unwrap();
        assert_eq!(decoded.document["data_base64"], "AAEC");
    }

    #[test]
    fn structured_missing_attributes() {
        let complete = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
        for name in REQUIRED_ATTRIBUTES {
            let mut event = complete.clone();
            event.as_object_mut().unwrap().remove(name);
            let message = invalid_event(decode(&structured(&event)).unwrap_err());
            assert_eq!(message, format!("missing required attribute {name:?}"));
        }
    }

    #[test]
    fn structured_attribute_types() {
        let complete = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
        for (name, value, expected) in [
            (
                "id",
                json!(""),
                "attribute \"id\" must be a non-empty string, found an empty string",
            ),
            (
                "source",
                json!(5),
                "attribute \"source\" must be a non-empty string, found a number",
            ),
            (
                "type",
                json!(null),
                "attribute \"type\" must be a non-empty string, found null",
            ),
            (
                "subject",
                json!(["x"]),
                "attribute \"subject\" must be a string, found an array",
            ),
            (
                "time",
                json!(1),
                "attribute \"time\" must be a string, found a number",
            ),
            (
                "data_base64",
                json!(1),
                "data_base64 must be a base64 string, found a number",
            ),
            (
                "data_base64",
                json!("%%%"),
                "data_base64 is not valid base64",
            ),
        ] {
            let mut event = complete.clone();
            event[name] = value;
            let message = invalid_event(decode(&structured(&event)).unwrap_err());
            assert_eq!(message, expected);
        }
    }

    #[test]
    fn structured_unsupported_version() {
        let event = json!({"specversion": "0.3", "id": "1", "source": "s", "type": "t"});
        let message = invalid_event(decode(&structured(&event)).unwrap_err());
        assert_eq!(
            message,
            "unsupported specversion \"0.3\"; only \"1.0\" is supported"
        );
    }

    #[test]
    fn structured_data_and_data_base64() {
        let event = json!({
            "specversion": "1.0", "id": "1", "source": "s", "type": "t",
            "data": "x", "data_base64": "eA=="
        });
        let message = invalid_event(decode(&structured(&event)).unwrap_err());
        assert_eq!(
            message,
            "event has both data and data_base64; send only one"
        );
    }

    #[test]
    fn structured_value_errors() {
        let content_type = [("content-type", &b"application/cloudevents+json"[..])];
        assert_eq!(
            decode(&record(&content_type, None)),
            Err(DecodeError::EmptyValue)
        );
        assert_eq!(
            decode(&record(&content_type, Some(b""))),
            Err(DecodeError::EmptyValue)
        );

        let error = decode(&record(&content_type, Some(b"{"))).unwrap_err();
        assert!(matches!(error, DecodeError::InvalidJson(_)), "{error:?}");

        let message = invalid_event(decode(&record(&content_type, Some(b"[]"))).unwrap_err());
        assert_eq!(
            message,
            "structured-mode CloudEvent must be a JSON object, found an array"
        );
    }

    #[test]
    fn structured_mode_wins_over_ce_headers() {
        let event = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
        let mut record = structured(&event);
        record
            .headers
            .push(("ce_specversion".to_owned(), Some(b"1.0".to_vec())));
        let decoded = decode(&record).unwrap();
        assert_eq!(decoded.document, event);
    }

    #[test]
    fn batch_mode_is_rejected() {
        let record = record(
            &[("content-type", b"application/cloudevents-batch+json")],
            Some(b"[]"),
        );
        let message = invalid_event(decode(&record).unwrap_err());
        assert!(message.contains("batched CloudEvents"), "{message}");
    }

    #[test]
    fn neither_mode() {
        for record in [
            record(&[], Some(b"{}")),
            record(&[("content-type", b"application/json")], Some(b"{}")),
            record(&[("ce_id", b"1")], Some(b"{}")),
        ] {
            let message = invalid_event(decode(&record).unwrap_err());
            assert!(message.starts_with("record is neither"), "{message}");
        }
    }

    #[test]
    fn binary_json_data() {
        let record = binary(
            &[
                ("content-type", b"application/json"),
                ("ce_subject", b"123"),
                ("ce_time", b"2018-04-05T17:31:00Z"),
                ("ce_comexampleextension1", b"value"),
                ("traceparent", b"not an attribute"),
            ],
            Some(br#"{"appinfoA":"abc"}"#),
        );
        let event = decode(&record).unwrap();
        assert_eq!(event.id, r#"["/mycontext","A234-1234-1234"]"#);
        assert_eq!(event.event_type, "com.example.someevent");
        assert_eq!(
            event.document,
            json!({
                "specversion": "1.0",
                "id": "A234-1234-1234",
                "source": "/mycontext",
                "type": "com.example.someevent",
                "subject": "123",
                "time": "2018-04-05T17:31:00Z",
                "comexampleextension1": "value",
                "datacontenttype": "application/json",
                "data": {"appinfoA": "abc"}
            })
        );
        assert_eq!(
            event.metadata,
            json!({
                "id": "A234-1234-1234",
                "source": "/mycontext",
                "type": "com.example.someevent",
                "subject": "123",
                "time": "2018-04-05T17:31:00Z"
            })
        );
    }

    #[test]
    fn binary_without_content_type_parses_json() {
        let event = decode(&binary(&[], Some(b"[1,2]"))).unwrap();
        assert_eq!(event.document["data"], json!([1, 2]));
        assert!(event.document.get("datacontenttype").is_none());
    }

    #[test]
    fn binary_structured_suffix_is_json() {
        let record = binary(
            &[(
                "content-type",
                b"application/vnd.example+json; charset=utf-8",
            )],
            Some(br#"{"a":1}"#),
        );
        let event = decode(&record).unwrap();
        assert_eq!(event.document["data"], json!({"a": 1}));
        assert_eq!(
            event.document["datacontenttype"],
            "application/vnd.example+json; charset=utf-8"
        );
    }

    #[test]
    fn binary_invalid_json_data() {
        let record = binary(&[("content-type", b"application/json")], Some(b"{oops"));
        let error = decode(&record).unwrap_err();
        assert!(matches!(error, DecodeError::InvalidJson(_)), "{error:?}");
    }

    #[test]
    fn binary_without_value_has_no_data() {
        for payload in [None, Some(&b""[..])] {
            let event = decode(&binary(&[], payload)).unwrap();
            assert!(event.document.get("data").is_none());
            assert!(event.document.get("data_base64").is_none());
        }
    }

    #[test]
    fn binary_text_data() {
        let record = binary(&[("content-type", b"text/plain")], Some("héllo".as_bytes()));
        let event = decode(&record).unwrap();
        assert_eq!(event.document["data"], "héllo");
        assert_eq!(event.document["datacontenttype"], "text/plain");
    }

    #[test]
    fn binary_bytes_data() {
        let record = binary(
            &[("content-type", b"application/octet-stream")],
            Some(&[0x00, 0xff, 0xfe]),
        );
        let event = decode(&record).unwrap();
        assert_eq!(event.document["data_base64"], "AP/+");
        assert!(event.document.get("data").is_none());
    }

    #[test]
    fn binary_missing_headers() {
        for (index, (header, _)) in BINARY_HEADERS.iter().enumerate() {
            let mut headers = BINARY_HEADERS.to_vec();
            if *header == "ce_specversion" {
                // Without ce_specversion the record is not binary mode at all.
                headers[index] = ("ce_specversion", b"");
            } else {
                headers.remove(index);
            }
            let error = decode(&record(&headers, None)).unwrap_err();
            assert_eq!(error, DecodeError::MissingHeader(header), "{header}");
        }
    }

    #[test]
    fn binary_unsupported_version() {
        let mut headers = BINARY_HEADERS.to_vec();
        headers[0] = ("ce_specversion", b"0.3");
        let message = invalid_event(decode(&record(&headers, None)).unwrap_err());
        assert_eq!(
            message,
            "unsupported specversion \"0.3\"; only \"1.0\" is supported"
        );
    }

    #[test]
    fn binary_invalid_extension_headers() {
        for (header, value) in [
            ("ce_my-ext", &b"x"[..]),
            ("ce_", b"x"),
            ("ce_data", b"x"),
            ("ce_ext", b"\xff"),
        ] {
            let message = invalid_event(decode(&binary(&[(header, value)], None)).unwrap_err());
            assert!(message.contains(header), "{header}: {message}");
        }
    }

    #[test]
    fn binary_header_names_are_case_insensitive() {
        let record = record(
            &[
                ("CE_SpecVersion", b"1.0"),
                ("ce_ID", b"1"),
                ("ce_source", b"s"),
                ("ce_type", b"t"),
                ("CE_Region", b"eu"),
            ],
            None,
        );
        let event = decode(&record).unwrap();
        assert_eq!(event.document["region"], "eu");
        assert_eq!(event.id, r#"["s","1"]"#);
    }

    #[test]
    fn event_ids_do_not_collide() {
        let first = binary(&[], None);
        let mut second = binary(&[], None);
        second.headers[1] = ("ce_id".to_owned(), Some(b"\",\"x".to_vec()));
        assert_ne!(decode(&first).unwrap().id, decode(&second).unwrap().id);
    }

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/cloudevents+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/jsonl"));
        assert!(!is_json_media_type("+json"));
    }
}
