//! The OpenAPI 3.1 document of the HTTP server, `GET /api/v1/openapi.json`.
//!
//! Paths come from the route table ([`Operation::ALL`]), so every served
//! route is listed. The schemas below describe the JSON bodies of the
//! handlers and are kept in step with them by hand.

use axum::Json;
use serde_json::{json, Map, Value};

use super::routes::{Access, Body, Operation};

/// Name of the bearer token security scheme.
const ADMIN_SCHEME: &str = "adminToken";

/// `GET /api/v1/openapi.json`
pub async fn get_document() -> Json<Value> {
    Json(document())
}

/// Builds the OpenAPI document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for operation in Operation::ALL {
        let spec = operation.spec();
        let path_item = paths
            .entry(spec.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = path_item {
            methods.insert(
                spec.method.to_ascii_lowercase(),
                operation_object(operation),
            );
        }
    }

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "event-hub",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Admin API, webhook ingress, probes and metrics of an event-hub replica. \
                Routes under /api/v1 other than openapi.json and keys need an admin bearer token \
                from http.admin_tokens. Errors are {\"error\": {\"message\", \"field\"}}."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                ADMIN_SCHEME: {"type": "http", "scheme": "bearer", "description": "One of http.admin_tokens."}
            },
            "schemas": schemas(),
        }
    })
}

fn operation_object(operation: Operation) -> Value {
    let spec = operation.spec();
    let mut object = Map::new();
    object.insert("operationId".into(), operation.operation_id().into());
    object.insert("summary".into(), spec.summary.into());
    object.insert("tags".into(), json!([spec.tag]));

    let mut parameters: Vec<Value> = path_parameters(spec.path)
        .into_iter()
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": {"type": "string"},
                "description": if name == "id" { "Execution id (UUID)." } else { "Name or id." },
            })
        })
        .collect();
    if spec.access == Access::Webhook {
        for (name, required, description) in [
            ("x-hub-signature-256", true, "sha256= and the hex HMAC-SHA256 of the body, keyed with the event source's secret."),
            ("x-github-event", true, "The webhook event, such as push."),
            ("x-github-delivery", false, "Unique id of the delivery; the event id."),
        ] {
            parameters.push(json!({
                "name": name,
                "in": "header",
                "required": required,
                "schema": {"type": "string"},
                "description": description,
            }));
        }
    }
    for query in spec.query {
        parameters.push(json!({
            "name": query.name,
            "in": "query",
            "required": false,
            "schema": {"type": query.schema_type},
            "description": query.description,
        }));
    }
    if !parameters.is_empty() {
        object.insert("parameters".into(), parameters.into());
    }

    if let Some(schema) = spec.request {
        object.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": schema_ref(schema)}}}),
        );
    }

    let mut responses = Map::new();
    let success = match spec.response {
        Body::Json(schema) => json!({
            "description": "Success.",
            "content": {"application/json": {"schema": schema_ref(schema)}},
        }),
        Body::Text => json!({
            "description": "Success.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }),
        Body::Empty => json!({"description": "Success, no content."}),
    };
    responses.insert(spec.success_status.to_string(), success);
    for (status, description) in error_responses(operation) {
        responses.insert(
            status.to_string(),
            json!({
                "description": description,
                "content": {"application/json": {"schema": schema_ref("Error")}},
            }),
        );
    }
    object.insert("responses".into(), responses.into());

    let security = match spec.access {
        Access::Admin => json!([{ADMIN_SCHEME: []}]),
        Access::Public | Access::Webhook => json!([]),
    };
    object.insert("security".into(), security);
    Value::Object(object)
}

/// Returns the error statuses an operation can return, with descriptions.
fn error_responses(operation: Operation) -> Vec<(u16, &'static str)> {
    let spec = operation.spec();
    let mut statuses = Vec::new();

    match spec.access {
        Access::Public => {
            if operation == Operation::Readyz {
                statuses.push((503, "Not ready; the body says which check failed."));
            }
            if operation == Operation::Metrics {
                statuses.push((503, "The Prometheus recorder is not installed."));
            }
            return statuses;
        }
        Access::Webhook => {
            statuses.extend([
                (400, "The x-github-event header is missing."),
                (401, "The signature is missing or does not match."),
                (
                    404,
                    "No github event source with a secret and a topic has this name or id.",
                ),
                (413, "The body is larger than http.max_body_bytes."),
                (415, "The body is not JSON."),
                (
                    503,
                    "The database or the broker is unavailable; retry the delivery.",
                ),
            ]);
            return statuses;
        }
        Access::Admin => {}
    }

    statuses.push((401, "The bearer token is missing or not accepted."));
    let has_input = spec.request.is_some() || !spec.query.is_empty();
    let has_key = spec.path.contains('{');
    if has_input || has_key {
        statuses.push((400, "A field or parameter is invalid; field names it."));
    }
    if has_key {
        statuses.push((404, "No resource has this name or id."));
    }

    let writes =
        matches!(spec.method, "POST" | "PATCH" | "DELETE") && operation != Operation::MatchEvent;
    if writes {
        statuses.push((
            409,
            "The name is taken, or triggers still use the resource.",
        ));
    }
    if spec.request.is_some() {
        statuses.push((413, "The body is larger than http.max_body_bytes."));
        statuses.push((415, "The body is not JSON."));
    }

    statuses.push((
        500,
        "The database or another component failed; the log has details.",
    ));
    statuses
}

/// Returns the `{name}` segments of a path template.
pub fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn schemas() -> Value {
    let timestamp = json!({"type": "string", "format": "date-time"});
    let uuid = json!({"type": "string", "format": "uuid"});
    let nullable_text = json!({"type": ["string", "null"]});
    let object = json!({"type": "object"});

    let mut schemas = Map::new();
    schemas.insert("Error".into(), json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["message", "field"],
                "properties": {
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"], "description": "The request field at fault."}
                }
            }}
        }));
    schemas.insert(
        "Status".into(),
        json!({"type": "object", "properties": {"status": {"type": "string"}}}),
    );
    schemas.insert(
        "Readiness".into(),
        json!({
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not_ready"]},
                "database_ok": {"type": "boolean"},
                "broker_ok": {"type": "boolean"},
                "consuming": {"type": "boolean"},
                "assigned_partitions": {"type": "integer"}
            }
        }),
    );
    schemas.insert(
        "WebhookPayload".into(),
        json!({"type": "object", "description": "The webhook body exactly as GitHub sent it."}),
    );
    schemas.insert("WebhookAccepted".into(), json!({
            "type": "object",
            "properties": {
                "event_source": {"type": "object", "properties": {"id": uuid, "name": {"type": "string"}}},
                "topic": {"type": "string"},
                "delivery": nullable_text
            }
        }));
    schemas.insert("OpenApiDocument".into(), json!(object));
    schemas.insert(
        "KeySet".into(),
        json!({
            "type": "object",
            "properties": {"keys": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "kty": {"const": "OKP"},
                    "crv": {"const": "Ed25519"},
                    "x": {"type": "string", "description": "The public key, base64url."},
                    "kid": {"type": "string"},
                    "alg": {"const": "EdDSA"},
                    "use": {"const": "sig"}
                }
            }}}
        }),
    );
    schemas.insert("EventSourceConfiguration".into(), json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "topics": {"type": "array", "items": {"type": "string"}},
                "secret": {"type": "string", "description": "Webhook secret; returned as ******** and kept when sent back so."}
            }
        }));
    schemas.insert(
        "EventSource".into(),
        json!({
            "type": "object",
            "properties": {
                "id": uuid, "name": {"type": "string"},
                "flavor": {"type": "string", "enum": ["github", "cloudevents", "json"]},
                "plugin_subtype": {"type": "string"},
                "description": nullable_text,
                "configuration": schema_ref("EventSourceConfiguration"),
                "is_active": {"type": "boolean"},
                "created_at": timestamp, "updated_at": timestamp
            }
        }),
    );
    schemas.insert(
        "EventSourceList".into(),
        json!({"type": "array", "items": schema_ref("EventSource")}),
    );
    schemas.insert("EventSourceCreate".into(), json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "flavor"],
            "properties": {
                "name": {"type": "string"},
                "flavor": {"type": "string", "enum": ["github", "cloudevents", "json"]},
                "plugin_subtype": {"type": "string", "description": "Default: the flavor's only subtype."},
                "description": nullable_text,
                "configuration": schema_ref("EventSourceConfiguration"),
                "is_active": {"type": "boolean", "default": true}
            }
        }));
    schemas.insert("EventSourcePatch".into(), json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string"},
                "flavor": {"type": "string"},
                "plugin_subtype": {"type": "string"},
                "description": {"type": ["string", "null"], "description": "null or an empty text removes it."},
                "configuration": schema_ref("EventSourceConfiguration"),
                "is_active": {"type": "boolean"}
            }
        }));
    schemas.insert("RotatedSecret".into(), json!({
            "type": "object",
            "properties": {
                "event_source": schema_ref("EventSource"),
                "secret": {"type": "string", "description": "The new secret, shown only in this response."}
            }
        }));
    schemas.insert(
        "Action".into(),
        json!({
            "type": "object",
            "properties": {
                "id": uuid, "name": {"type": "string"},
                "flavor": {"type": "string"}, "plugin_subtype": {"type": "string"},
                "description": nullable_text,
                "configuration": object,
                "service_account": {"type": "string"},
                "auth_window_minutes": {"type": "integer", "minimum": 1, "maximum": 1440},
                "created_at": timestamp, "updated_at": timestamp
            }
        }),
    );
    schemas.insert(
        "ActionList".into(),
        json!({"type": "array", "items": schema_ref("Action")}),
    );
    schemas.insert("ActionCreate".into(), json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "flavor", "plugin_subtype", "service_account", "auth_window_minutes"],
            "properties": {
                "name": {"type": "string"},
                "flavor": {"type": "string", "pattern": "^[a-z0-9_-]+$"},
                "plugin_subtype": {"type": "string", "pattern": "^[a-z0-9_-]+$"},
                "description": nullable_text,
                "configuration": object,
                "service_account": {"type": "string"},
                "auth_window_minutes": {"type": "integer", "minimum": 1, "maximum": 1440}
            }
        }));
    schemas.insert(
        "ActionPatch".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string"},
                "flavor": {"type": "string"},
                "plugin_subtype": {"type": "string"},
                "description": {"type": ["string", "null"]},
                "configuration": object,
                "service_account": {"type": "string"},
                "auth_window_minutes": {"type": "integer", "minimum": 1, "maximum": 1440}
            }
        }),
    );
    schemas.insert(
        "Trigger".into(),
        json!({
            "type": "object",
            "properties": {
                "id": uuid, "name": {"type": "string"},
                "description": nullable_text,
                "event_source_id": uuid, "action_id": uuid,
                "event_filter": object,
                "is_active": {"type": "boolean"},
                "created_at": timestamp, "updated_at": timestamp
            }
        }),
    );
    schemas.insert(
        "TriggerList".into(),
        json!({"type": "array", "items": schema_ref("Trigger")}),
    );
    schemas.insert("TriggerCreate".into(), json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "event_source", "action", "event_filter"],
            "properties": {
                "name": {"type": "string"},
                "description": nullable_text,
                "event_source": {"type": "string", "description": "Name or id."},
                "action": {"type": "string", "description": "Name or id."},
                "event_filter": {"type": "object", "description": "An event pattern; see docs/filters.md."},
                "is_active": {"type": "boolean", "default": true}
            }
        }));
    schemas.insert(
        "TriggerPatch".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string"},
                "description": {"type": ["string", "null"]},
                "event_source": {"type": "string"},
                "action": {"type": "string"},
                "event_filter": object,
                "is_active": {"type": "boolean"}
            }
        }),
    );
    schemas.insert("Execution".into(), json!({
            "type": "object",
            "properties": {
                "id": uuid, "trigger_id": uuid, "event_source_id": uuid,
                "event_id": {"type": "string"},
                "event_metadata": object,
                "status": {"type": "string", "enum": ["pending", "dispatched", "running", "succeeded", "failed", "dead_lettered"]},
                "attempts": {"type": "integer"},
                "error": nullable_text,
                "created_at": timestamp, "updated_at": timestamp,
                "dispatched_at": {"type": ["string", "null"], "format": "date-time"},
                "finished_at": {"type": ["string", "null"], "format": "date-time"}
            }
        }));
    schemas.insert("ExecutionPage".into(), json!({
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": schema_ref("Execution")},
                "total": {"type": "integer", "description": "Executions matching the filters, on all pages."},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"}
            }
        }));
    schemas.insert(
        "MatchRequest".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["event_source"],
            "properties": {
                "event_source": {"type": "string", "description": "Name or id."},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"description": "The record value as JSON. Give this or raw_body."},
                "raw_body": {"type": "string", "description": "The record value as exact text."},
                "topic": {"type": "string", "description": "Default: the source's first topic."},
                "verify_signature": {"type": "boolean", "default": false}
            }
        }),
    );
    schemas.insert("MatchResult".into(), json!({
            "type": "object",
            "properties": {
                "event_source": object,
                "outcome": {"type": "string", "enum": ["matched", "no_match", "dead_letter", "skipped"]},
                "error": {"type": ["object", "null"], "properties": {"reason": {"type": "string"}, "message": {"type": "string"}}},
                "event": {"type": ["object", "null"]},
                "triggers": {"type": "array", "items": {"type": "string"}},
                "matches": {"type": "array", "items": object},
                "explanations": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "trigger": {"type": "string"},
                        "matched": {"type": "boolean"},
                        "mismatch": {"type": ["object", "null"], "description": "The first failed condition: path, kind, expected, actual."},
                        "message": {"type": ["string", "null"]}
                    }
                }}
            }
        }));
    Value::Object(schemas)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects every `$ref` value below `value`.
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if key == "$ref" {
                        if let Some(text) = child.as_str() {
                            found.push(text.to_owned());
                        }
                    }
                    references(child, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| references(item, found)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let document = document();
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(!found.is_empty());
        for reference in found {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected reference {reference}"));
            assert!(
                document["components"]["schemas"].get(name).is_some(),
                "schema {name} is referenced but not defined"
            );
        }
    }

    #[test]
    fn every_operation_is_listed_once() {
        let document = document();
        let mut listed = 0;
        for (_path, methods) in document["paths"].as_object().unwrap() {
            listed += methods.as_object().unwrap().len();
        }
        assert_eq!(listed, Operation::ALL.len());
    }

    #[test]
    fn path_parameters_of_templates() {
        assert_eq!(path_parameters("/api/v1/triggers/{key}/activate"), ["key"]);
        assert!(path_parameters("/livez").is_empty());
    }
}
