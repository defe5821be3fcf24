//! Webhook ingress: `POST /webhooks/{event_source}` turns a GitHub delivery
//! into a record on the event source's first topic.
//!
//! Only `github` event sources with a webhook secret and at least one topic
//! accept deliveries. Once the source is loaded for its secret, the
//! `x-hub-signature-256` HMAC of the raw body is verified before any other
//! header or the body is looked at. A missing or wrong signature gets 401,
//! and nothing is produced. An accepted delivery gets 202 only after the
//! broker acknowledged the record, so a 2xx means that the event is
//! durable. The consumer then decodes it like any other record,
//! verifying the signature again.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore as _;
use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use serde_json::{json, Value};

use super::error::ApiError;
use super::ApiState;
use crate::event::github::{self, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER};
use crate::event::{DecodeError, EventSource, Flavor};
use crate::kafka::{produce_all, OutboundRecord};
use crate::matching::index::EVENT_SOURCE_HEADER;
use crate::metrics::{self, TRACEPARENT_HEADER, TRACESTATE_HEADER};
use crate::store::entity::event_source;
use crate::store::resources::{self, EventSourceUpdate};
use crate::{Error, Result};

/// Maximum wait for the broker's acknowledgement. GitHub gives up on a
/// delivery that gets no response within 10 seconds, and a late 202 would
/// be lost on it.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(9);

/// Random bytes in a generated webhook secret; it is written as hex.
const SECRET_BYTES: usize = 32;

/// Request headers copied to the record, when present.
const FORWARDED_HEADERS: [&str; 4] = [
    EVENT_HEADER,
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    "content-type",
];

/// `POST /webhooks/{event_source}`
pub async fn receive(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    match accept(&state, &key, &headers, body).await {
        Ok(accepted) => {
            metrics::record_webhook("accepted");
            (StatusCode::ACCEPTED, Json(accepted)).into_response()
        }
        Err((outcome, error)) => {
            metrics::record_webhook(outcome);
            tracing::info!(
                event_source = %key,
                outcome,
                status = error.status().as_u16(),
                message = error.message(),
                "webhook delivery rejected"
            );
            error.into_response()
        }
    }
}

/// A rejected delivery: the outcome label for metrics and the response.
type Rejection = (&'static str, ApiError);

async fn accept(
    state: &ApiState,
    key: &str,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Value, Rejection> {
    let body = body.map_err(|rejection| ("invalid_body", ApiError::from(rejection)))?;
    let source = webhook_source(&state.db, key).await?;
    let Some(secret) = &source.secret else {
        return Err(not_a_webhook_source(key));
    };

    let signature = headers.get(SIGNATURE_HEADER).map(|value| value.as_bytes());
    if let Err(error) = github::verify_body_signature(secret, signature, &body) {
        let outcome = match error {
            DecodeError::MissingSignature => "missing_signature",
            _ => "invalid_signature",
        };
        let message = match error {
            DecodeError::MissingSignature => {
                format!("missing {SIGNATURE_HEADER} header; set the webhook's secret in GitHub")
            }
            _ => {
                format!("{SIGNATURE_HEADER} does not match the body and the event source's secret")
            }
        };
        return Err((
            outcome,
            ApiError::unauthorized(message, r#"HMAC-SHA256 realm="event-hub""#),
        ));
    }

    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let is_json = content_type
            .to_str()
            .map(|text| {
                text.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err((
                "unsupported_content_type",
                ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "the body must be JSON: set the webhook's content type to application/json",
                ),
            ));
        }
    }
    let has_event = headers
        .get(EVENT_HEADER)
        .is_some_and(|value| !value.is_empty());
    if !has_event {
        return Err((
            "missing_header",
            ApiError::invalid(EVENT_HEADER, format!("missing {EVENT_HEADER} header")),
        ));
    }

    let record = outbound_record(&source, headers, body);
    let topic = record.topic.clone();
    let produced = tokio::time::timeout(
        PRODUCE_TIMEOUT,
        produce_all(&state.producer, std::slice::from_ref(&record)),
    )
    .await;
    let failure = match produced {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_elapsed) => Some(format!(
            "no acknowledgement within {} s",
            PRODUCE_TIMEOUT.as_secs()
        )),
    };
    if let Some(failure) = failure {
        metrics::record_broker_error();
        tracing::warn!(event_source = %source.name, %topic, error = %failure, "webhook delivery not produced");
        return Err((
            "broker_error",
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the broker did not acknowledge the event; retry the delivery",
            ),
        ));
    }

    let delivery = headers
        .get(DELIVERY_HEADER)
        .and_then(|value| value.to_str().ok());
    tracing::debug!(event_source = %source.name, %topic, delivery, "webhook delivery produced");
    Ok(json!({
        "event_source": {"id": source.id, "name": source.name},
        "topic": topic,
        "delivery": delivery,
    }))
}

/// Loads the event source `key` and checks that it accepts webhooks.
async fn webhook_source(
    db: &DatabaseConnection,
    key: &str,
) -> std::result::Result<EventSource, Rejection> {
    let model = match resources::find_event_source(db, key).await {
        Ok(model) => model,
        Err(Error::NotFound { .. }) => return Err(not_a_webhook_source(key)),
        Err(Error::Database(error)) => {
            metrics::record_db_error();
            tracing::warn!(%error, event_source = %key, "cannot load the event source of a webhook delivery");
            return Err((
                "database_error",
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; retry the delivery",
                ),
            ));
        }
        Err(error) => return Err(("internal_error", ApiError::from(error))),
    };
    let source =
        EventSource::from_model(&model).map_err(|error| ("internal_error", error.into()))?;
    if source.flavor != Flavor::Github || source.topics.is_empty() {
        return Err(not_a_webhook_source(key));
    }
    Ok(source)
}

/// Returns the same 404 for an unknown event source and for one that does
/// not take webhooks, so that callers learn nothing about other sources.
fn not_a_webhook_source(key: &str) -> Rejection {
    (
        "unknown_event_source",
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no webhook endpoint for {key:?}: it must be a github event source \
                 with a secret and a topic"
            ),
        ),
    )
}

/// Builds the record of an accepted delivery for the source's first topic.
fn outbound_record(source: &EventSource, headers: &HeaderMap, body: Bytes) -> OutboundRecord {
    let mut record_headers: Vec<(String, Vec<u8>)> = FORWARDED_HEADERS
        .iter()
        .filter_map(|name| {
            headers
                .get(*name)
                .map(|value| ((*name).to_owned(), value.as_bytes().to_vec()))
        })
        .collect();
    record_headers.push((
        EVENT_SOURCE_HEADER.to_owned(),
        source.id.to_string().into_bytes(),
    ));
    if let Some(parent) = headers
        .get(TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| metrics::is_valid_traceparent(value))
    {
        record_headers.push((TRACEPARENT_HEADER.to_owned(), parent.as_bytes().to_vec()));
        if let Some(state) = headers.get(TRACESTATE_HEADER) {
            record_headers.push((TRACESTATE_HEADER.to_owned(), state.as_bytes().to_vec()));
        }
    }
    OutboundRecord {
        topic: source.topics[0].clone(),
        key: None,
        payload: body.to_vec(),
        headers: record_headers,
    }
}

/// Returns a new random webhook secret: 32 bytes from the operating
/// system's random number generator, as 64 hex digits.
pub fn generate_webhook_secret() -> SecretString {
    let mut bytes = [0_u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(hex::encode(bytes))
}

/// Stores a new random webhook secret in the `github` event source `key`
/// and returns the updated source with the secret.
///
/// Fails with [`Error::Invalid`] on `flavor` for other flavors, which do
/// not verify signatures.
pub async fn rotate_webhook_secret(
    db: &DatabaseConnection,
    key: &str,
) -> Result<(event_source::Model, SecretString)> {
    let current = resources::find_event_source(db, key).await?;
    if current.flavor != Flavor::Github.as_str() {
        return Err(Error::invalid(
            "flavor",
            format!(
                "event source {:?} has flavor {}; only github event sources verify a webhook secret",
                current.name, current.flavor
            ),
        ));
    }
    let secret = generate_webhook_secret();
    let mut configuration = current
        .configuration
        .as_object()
        .cloned()
        .unwrap_or_default();
    configuration.insert(
        "secret".to_owned(),
        Value::String(secrecy::ExposeSecret::expose_secret(&secret).to_owned()),
    );
    let update = EventSourceUpdate {
        configuration: Some(Value::Object(configuration)),
        ..EventSourceUpdate::default()
    };
    let updated = resources::update_event_source(db, &current.id.to_string(), update).await?;
    Ok((updated, secret))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use secrecy::ExposeSecret as _;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn generated_secrets_differ_and_are_hex() {
        let first = generate_webhook_secret();
        let second = generate_webhook_secret();
        assert_eq!(first.expose_secret().len(), SECRET_BYTES * 2);
        assert!(first
            .expose_secret()
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(first.expose_secret(), second.expose_secret());
    }

    #[test]
    fn record_carries_forwarded_headers_and_source() {
        let source = EventSource {
            id: Uuid::nil(),
            name: "gh".to_owned(),
            flavor: Flavor::Github,
            subtype: "webhook".to_owned(),
            topics: vec!["github-events".to_owned(), "other".to_owned()],
            secret: Some(SecretString::from("secret")),
            is_active: true,
        };
        let mut headers = HeaderMap::new();
        headers.insert(EVENT_HEADER, HeaderValue::from_static("push"));
        headers.insert(DELIVERY_HEADER, HeaderValue::from_static("d-1"));
        headers.insert("user-agent", HeaderValue::from_static("GitHub-Hookshot/1"));
        headers.insert(TRACEPARENT_HEADER, HeaderValue::from_static("not-valid"));

        let record = outbound_record(&source, &headers, Bytes::from_static(b"{}"));
        assert_eq!(record.topic, "github-events");
        assert_eq!(record.payload, b"{}");
        let names: Vec<&str> = record
            .headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(names, [EVENT_HEADER, DELIVERY_HEADER, EVENT_SOURCE_HEADER]);
        assert_eq!(record.headers[2].1, Uuid::nil().to_string().into_bytes());
    }
}
