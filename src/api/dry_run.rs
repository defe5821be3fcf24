//! Dry-run matching: `POST /api/v1/match` shows what the pipeline would do
//! with an event, without recording or publishing anything.
//!
//! The event is decoded with [`event::decode`] as a record of the named
//! event source. It is matched against a trigger index built from the
//! database for this request, so a trigger created a moment ago takes part
//! even if the consumers have not loaded it yet. Only active triggers match, as
//! in the pipeline.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiJson};
use super::ApiState;
use crate::event::{self, EventSource, InboundRecord};
use crate::matching::refresh;
use crate::store::resources;

/// Body of `POST /api/v1/match`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRequest {
    /// Name or id of the event source to decode the event as.
    event_source: String,
    /// Record headers, such as `x-github-event`.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The record value as JSON; it is serialized compactly.
    #[serde(default)]
    body: Option<Value>,
    /// The record value as exact text, for bodies whose signature must
    /// match byte for byte.
    #[serde(default)]
    raw_body: Option<String>,
    /// Topic of the simulated record. Default: the source's first topic.
    #[serde(default)]
    topic: Option<String>,
    /// Whether to verify `x-hub-signature-256` when the source has a
    /// secret. Default: false, so that a payload can be tried unsigned.
    #[serde(default)]
    verify_signature: bool,
}

/// Topic of the simulated record when neither the request nor the source
/// names one.
const FALLBACK_TOPIC: &str = "dry-run";

/// `POST /api/v1/match`
///
/// Returns 200 with an `outcome`: `matched` (with the matching triggers),
/// `no_match`, `dead_letter` (the record would be dead-lettered, and
/// `error` gives the reason) or `skipped` (the source is inactive, and
/// `triggers` lists what would match once it is active). `explanations`
/// gives, for each active trigger of the source, whether it matched and
/// else the first condition of its filter that failed.
pub async fn match_event(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<MatchRequest>,
) -> Result<Json<Value>, ApiError> {
    let payload = match (&request.body, request.raw_body) {
        (Some(body), None) => serde_json::to_vec(body).map_err(crate::Error::from)?,
        (None, Some(raw)) => raw.into_bytes(),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "raw_body",
                "give either body or raw_body, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "body",
                "missing: give the event as body (JSON) or raw_body (text)",
            ))
        }
    };

    let model = match resources::find_event_source(&state.db, &request.event_source).await {
        Err(crate::Error::NotFound { kind, key }) => {
            return Err(ApiError::invalid(
                "event_source",
                format!("{kind} not found: {key}"),
            ))
        }
        other => other?,
    };
    let mut source = EventSource::from_model(&model)?;
    if !request.verify_signature {
        source.secret = None;
    }
    let index = refresh::load_index(&state.db).await?;

    let topic = request
        .topic
        .or_else(|| source.topics.first().cloned())
        .unwrap_or_else(|| FALLBACK_TOPIC.to_owned());
    let record = InboundRecord {
        topic,
        payload: Some(payload),
        headers: request
            .headers
            .into_iter()
            .map(|(name, value)| (name, Some(value.into_bytes())))
            .collect(),
        ..InboundRecord::default()
    };

    let source_json = json!({
        "id": source.id,
        "name": source.name,
        "flavor": source.flavor,
        "is_active": source.is_active,
    });
    let event = match event::decode(&source, &record) {
        Ok(event) => event,
        Err(error) => {
            return Ok(Json(json!({
                "event_source": source_json,
                "outcome": "dead_letter",
                "error": {"reason": error.reason(), "message": error.to_string()},
                "event": null,
                "triggers": [],
                "matches": [],
                "explanations": [],
            })))
        }
    };

    let matched = index.matching(source.id, &event.document);
    let outcome = if !source.is_active {
        "skipped"
    } else if matched.is_empty() {
        "no_match"
    } else {
        "matched"
    };
    let triggers: Vec<&str> = matched
        .iter()
        .map(|compiled| compiled.trigger.name.as_str())
        .collect();
    let matches: Vec<Value> = matched
        .iter()
        .map(|compiled| {
            json!({
                "trigger": {"id": compiled.trigger.id, "name": compiled.trigger.name},
                "action": {
                    "id": compiled.action.id,
                    "name": compiled.action.name,
                    "flavor": compiled.action.flavor,
                    "subtype": compiled.action.plugin_subtype,
                },
            })
        })
        .collect();
    let explanations: Vec<Value> = index
        .explain(source.id, &event.document)
        .into_iter()
        .map(|explanation| {
            let (mismatch, message) = match &explanation.result {
                Ok(()) => (Value::Null, Value::Null),
                Err(mismatch) => (json!(mismatch), json!(mismatch.to_string())),
            };
            json!({
                "trigger": explanation.trigger.trigger.name,
                "matched": explanation.result.is_ok(),
                "mismatch": mismatch,
                "message": message,
            })
        })
        .collect();

    Ok(Json(json!({
        "event_source": source_json,
        "outcome": outcome,
        "error": null,
        "event": {
            "id": event.id,
            "type": event.event_type,
            "metadata": event.metadata,
            "document": event.document,
        },
        "triggers": triggers,
        "matches": matches,
        "explanations": explanations,
    })))
}
