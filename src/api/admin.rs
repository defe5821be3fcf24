//! Admin API handlers: event sources, actions, triggers and executions.
//!
//! Handlers translate JSON to the inputs of [`crate::store::resources`] and
//! [`crate::store::executions`] and back. Validation stays in the store, so
//! the API and the CLI accept the same values. Resources are addressed by
//! name or id. Event source configurations are returned with the webhook
//! secret replaced by [`resources::REDACTED_SECRET`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::{ApiError, ApiJson};
use super::ApiState;
use crate::event::Flavor;
use crate::store::entity::trigger_execution::{self, ExecutionStatus};
use crate::store::entity::{action, event_source, trigger};
use crate::store::executions::{self, ExecutionQuery};
use crate::store::resources::{
    self, ActionUpdate, EventSourceUpdate, NewAction, NewEventSource, NewTrigger, TriggerUpdate,
};

/// Default page size of the execution list.
pub const DEFAULT_EXECUTION_LIMIT: u64 = 50;

/// Largest page size of the execution list.
pub const MAX_EXECUTION_LIMIT: u64 = 1000;

/// Deserializes a field that distinguishes "absent" (`None`, through
/// `#[serde(default)]`) from `null` (`Some(None)`).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Returns a 201 response with `body` and a `Location` header.
fn created(location: String, body: impl Serialize) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

// ---------------------------------------------------------------------------
// Event sources
// ---------------------------------------------------------------------------

/// Body of `POST /api/v1/event-sources`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSourceCreate {
    name: String,
    flavor: String,
    #[serde(default, alias = "subtype")]
    plugin_subtype: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    configuration: Option<Value>,
    #[serde(default = "default_true")]
    is_active: bool,
}

/// Body of `PATCH /api/v1/event-sources/{key}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSourcePatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    flavor: Option<String>,
    #[serde(default, alias = "subtype")]
    plugin_subtype: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default)]
    configuration: Option<Value>,
    #[serde(default)]
    is_active: Option<bool>,
}

fn default_true() -> bool {
    true
}

/// Returns the only subtype of `flavor`, or `None` when the flavor is
/// unknown (the store then rejects it) or has several.
fn only_subtype(flavor: &str) -> Option<String> {
    match flavor.parse::<Flavor>().ok()?.subtypes() {
        [subtype] => Some((*subtype).to_owned()),
        _ => None,
    }
}

/// Returns the event source with its webhook secret redacted.
pub fn redacted(source: event_source::Model) -> event_source::Model {
    event_source::Model {
        configuration: resources::redact_secret(&source.configuration),
        ..source
    }
}

/// `GET /api/v1/event-sources`
pub async fn list_event_sources(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let sources = resources::list_event_sources(&state.db).await?;
    let sources: Vec<_> = sources.into_iter().map(redacted).collect();
    Ok(Json(sources).into_response())
}

/// `POST /api/v1/event-sources`
pub async fn create_event_source(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<EventSourceCreate>,
) -> Result<Response, ApiError> {
    let configuration = body.configuration.unwrap_or_else(|| json!({"topics": []}));
    if configuration.get("secret").and_then(Value::as_str) == Some(resources::REDACTED_SECRET) {
        return Err(ApiError::invalid(
            "configuration.secret",
            "is the redaction placeholder; send the real secret",
        ));
    }
    let plugin_subtype = body
        .plugin_subtype
        .or_else(|| only_subtype(&body.flavor))
        .unwrap_or_default();
    let created_source = resources::create_event_source(
        &state.db,
        NewEventSource {
            name: body.name,
            flavor: body.flavor,
            plugin_subtype,
            description: body.description,
            configuration,
            is_active: body.is_active,
        },
    )
    .await?;
    Ok(created(
        format!("/api/v1/event-sources/{}", created_source.id),
        redacted(created_source),
    ))
}

/// `GET /api/v1/event-sources/{key}`
pub async fn get_event_source(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let source = resources::find_event_source(&state.db, &key).await?;
    Ok(Json(redacted(source)).into_response())
}

/// `PATCH /api/v1/event-sources/{key}`
///
/// A `configuration` replaces the stored one, except that a `secret` equal
/// to the redaction placeholder keeps the stored secret, so a client can
/// send back what it read.
pub async fn update_event_source(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<EventSourcePatch>,
) -> Result<Response, ApiError> {
    let current = resources::find_event_source(&state.db, &key).await?;
    let configuration = body.configuration.map(|mut configuration| {
        let placeholder =
            configuration.get("secret").and_then(Value::as_str) == Some(resources::REDACTED_SECRET);
        if placeholder {
            match current.configuration.get("secret") {
                Some(secret) => configuration["secret"] = secret.clone(),
                None => {
                    if let Some(object) = configuration.as_object_mut() {
                        object.remove("secret");
                    }
                }
            }
        }
        configuration
    });
    let plugin_subtype = match (&body.plugin_subtype, &body.flavor) {
        (Some(subtype), _) => Some(subtype.clone()),
        (None, Some(flavor)) => only_subtype(flavor),
        (None, None) => None,
    };
    let update = EventSourceUpdate {
        name: body.name,
        flavor: body.flavor,
        plugin_subtype,
        description: body.description,
        configuration,
        is_active: body.is_active,
    };
    let updated =
        resources::update_event_source(&state.db, &current.id.to_string(), update).await?;
    Ok(Json(redacted(updated)).into_response())
}

/// `DELETE /api/v1/event-sources/{key}`
pub async fn delete_event_source(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    resources::delete_event_source(&state.db, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/event-sources/{key}/activate`
pub async fn activate_event_source(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let source = resources::set_event_source_active(&state.db, &key, true).await?;
    Ok(Json(redacted(source)).into_response())
}

/// `POST /api/v1/event-sources/{key}/deactivate`
pub async fn deactivate_event_source(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let source = resources::set_event_source_active(&state.db, &key, false).await?;
    Ok(Json(redacted(source)).into_response())
}

/// `POST /api/v1/event-sources/{key}/rotate-secret`
///
/// Stores a new random webhook secret and returns it, the only time it is
/// shown.
pub async fn rotate_event_source_secret(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let (source, secret) = super::webhooks::rotate_webhook_secret(&state.db, &key).await?;
    let body = json!({
        "event_source": redacted(source),
        "secret": secrecy::ExposeSecret::expose_secret(&secret),
    });
    Ok(Json(body).into_response())
}

// ---------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------

/// Body of `POST /api/v1/actions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionCreate {
    name: String,
    flavor: String,
    #[serde(alias = "subtype")]
    plugin_subtype: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    configuration: Option<Value>,
    service_account: String,
    auth_window_minutes: i32,
}

/// Body of `PATCH /api/v1/actions/{key}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    flavor: Option<String>,
    #[serde(default, alias = "subtype")]
    plugin_subtype: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default)]
    configuration: Option<Value>,
    #[serde(default)]
    service_account: Option<String>,
    #[serde(default)]
    auth_window_minutes: Option<i32>,
}

/// `GET /api/v1/actions`
pub async fn list_actions(
    State(state): State<ApiState>,
) -> Result<Json<Vec<action::Model>>, ApiError> {
    Ok(Json(resources::list_actions(&state.db).await?))
}

/// `POST /api/v1/actions`
pub async fn create_action(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<ActionCreate>,
) -> Result<Response, ApiError> {
    let created_action = resources::create_action(
        &state.db,
        NewAction {
            name: body.name,
            flavor: body.flavor,
            plugin_subtype: body.plugin_subtype,
            description: body.description,
            configuration: body.configuration.unwrap_or_else(|| json!({})),
            service_account: body.service_account,
            auth_window_minutes: body.auth_window_minutes,
        },
    )
    .await?;
    Ok(created(
        format!("/api/v1/actions/{}", created_action.id),
        created_action,
    ))
}

/// `GET /api/v1/actions/{key}`
pub async fn get_action(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<action::Model>, ApiError> {
    Ok(Json(resources::find_action(&state.db, &key).await?))
}

/// `PATCH /api/v1/actions/{key}`
pub async fn update_action(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<ActionPatch>,
) -> Result<Json<action::Model>, ApiError> {
    let update = ActionUpdate {
        name: body.name,
        flavor: body.flavor,
        plugin_subtype: body.plugin_subtype,
        description: body.description,
        configuration: body.configuration,
        service_account: body.service_account,
        auth_window_minutes: body.auth_window_minutes,
    };
    Ok(Json(
        resources::update_action(&state.db, &key, update).await?,
    ))
}

/// `DELETE /api/v1/actions/{key}`
pub async fn delete_action(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    resources::delete_action(&state.db, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------

/// Body of `POST /api/v1/triggers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerCreate {
    name: String,
    #[serde(default)]
    description: Option<String>,
    event_source: String,
    action: String,
    event_filter: Value,
    #[serde(default = "default_true")]
    is_active: bool,
}

/// Body of `PATCH /api/v1/triggers/{key}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default)]
    event_source: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    event_filter: Option<Value>,
    #[serde(default)]
    is_active: Option<bool>,
}

/// `GET /api/v1/triggers`
pub async fn list_triggers(
    State(state): State<ApiState>,
) -> Result<Json<Vec<trigger::Model>>, ApiError> {
    Ok(Json(resources::list_triggers(&state.db).await?))
}

/// `POST /api/v1/triggers`
pub async fn create_trigger(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<TriggerCreate>,
) -> Result<Response, ApiError> {
    let created_trigger = resources::create_trigger(
        &state.db,
        NewTrigger {
            name: body.name,
            description: body.description,
            event_source: body.event_source,
            action: body.action,
            event_filter: body.event_filter,
            is_active: body.is_active,
        },
    )
    .await?;
    Ok(created(
        format!("/api/v1/triggers/{}", created_trigger.id),
        created_trigger,
    ))
}

/// `GET /api/v1/triggers/{key}`
pub async fn get_trigger(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<trigger::Model>, ApiError> {
    Ok(Json(resources::find_trigger(&state.db, &key).await?))
}

/// `PATCH /api/v1/triggers/{key}`
pub async fn update_trigger(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<TriggerPatch>,
) -> Result<Json<trigger::Model>, ApiError> {
    let update = TriggerUpdate {
        name: body.name,
        description: body.description,
        event_source: body.event_source,
        action: body.action,
        event_filter: body.event_filter,
        is_active: body.is_active,
    };
    Ok(Json(
        resources::update_trigger(&state.db, &key, update).await?,
    ))
}

/// `DELETE /api/v1/triggers/{key}`
pub async fn delete_trigger(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    resources::delete_trigger(&state.db, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/triggers/{key}/activate`
pub async fn activate_trigger(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<trigger::Model>, ApiError> {
    Ok(Json(
        resources::set_trigger_active(&state.db, &key, true).await?,
    ))
}

/// `POST /api/v1/triggers/{key}/deactivate`
pub async fn deactivate_trigger(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<trigger::Model>, ApiError> {
    Ok(Json(
        resources::set_trigger_active(&state.db, &key, false).await?,
    ))
}

// ---------------------------------------------------------------------------
// Executions
// ---------------------------------------------------------------------------

/// Query of `GET /api/v1/executions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionFilter {
    trigger: Option<String>,
    status: Option<String>,
    event_id: Option<String>,
    limit: Option<u64>,
    offset: Option<u64>,
}

/// One page of executions with the number of all that match.
#[derive(Debug, Serialize)]
pub struct ExecutionPage {
    /// The executions of this page, newest first.
    pub items: Vec<trigger_execution::Model>,
    /// Executions matching the filters, on every page.
    pub total: u64,
    /// Page size used.
    pub limit: u64,
    /// Executions skipped before this page.
    pub offset: u64,
}

/// `GET /api/v1/executions`
pub async fn list_executions(
    State(state): State<ApiState>,
    query: Result<Query<ExecutionFilter>, QueryRejection>,
) -> Result<Json<ExecutionPage>, ApiError> {
    let Query(filter) = query?;
    let limit = filter.limit.unwrap_or(DEFAULT_EXECUTION_LIMIT);
    if !(1..=MAX_EXECUTION_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be from 1 to {MAX_EXECUTION_LIMIT}, got {limit}"),
        ));
    }
    let trigger_id = match &filter.trigger {
        Some(key) => match resources::find_trigger(&state.db, key).await {
            Ok(found) => Some(found.id),
            Err(crate::Error::NotFound { .. }) => {
                return Err(ApiError::invalid(
                    "trigger",
                    format!("trigger not found: {key}"),
                ))
            }
            Err(error) => return Err(error.into()),
        },
        None => None,
    };
    let status = filter.status.as_deref().map(parse_status).transpose()?;
    let query = ExecutionQuery {
        trigger_id,
        status,
        event_id: filter.event_id,
        limit,
        offset: filter.offset.unwrap_or(0),
    };
    let items = executions::list(&state.db, &query).await?;
    let total = executions::count(&state.db, &query).await?;
    Ok(Json(ExecutionPage {
        items,
        total,
        limit: query.limit,
        offset: query.offset,
    }))
}

fn parse_status(text: &str) -> Result<ExecutionStatus, ApiError> {
    serde_json::from_value(Value::String(text.to_owned())).map_err(|_| {
        ApiError::invalid(
            "status",
            format!(
                "unknown status {text:?}; expected pending, dispatched, running, succeeded, failed or dead_lettered"
            ),
        )
    })
}

/// `GET /api/v1/executions/{id}`
pub async fn get_execution(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<trigger_execution::Model>, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::invalid("id", format!("{id:?} is not an execution id (UUID)")))?;
    Ok(Json(executions::find(&state.db, id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_tells_null_from_absent() {
        let patch: TriggerPatch = serde_json::from_value(json!({"description": null})).unwrap();
        assert_eq!(patch.description, Some(None));
        let patch: TriggerPatch = serde_json::from_value(json!({})).unwrap();
        assert_eq!(patch.description, None);
        let patch: TriggerPatch = serde_json::from_value(json!({"description": "x"})).unwrap();
        assert_eq!(patch.description, Some(Some("x".to_owned())));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let error = serde_json::from_value::<ActionPatch>(json!({"nmae": "x"})).unwrap_err();
        assert!(error.to_string().contains("nmae"), "{error}");
    }

    #[test]
    fn statuses_parse() {
        assert_eq!(
            parse_status("dispatched").unwrap(),
            ExecutionStatus::Dispatched
        );
        let error = parse_status("done").unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }
}
