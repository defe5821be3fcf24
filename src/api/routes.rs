//! The route table: every route the HTTP server serves, with its OpenAPI
//! description.
//!
//! The router ([`super::router`]) and the OpenAPI document
//! ([`super::openapi::document`]) are both built from [`Operation::ALL`],
//! and [`Operation::handler`] matches every operation exhaustively, so a
//! route cannot be served without being documented, or documented without
//! being served.

use axum::routing::{delete, get, patch, post, MethodRouter};

use super::{admin, dry_run, keys, openapi, probes, webhooks, ApiState};

/// Access level of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: probes, metrics, the key set and the OpenAPI document.
    Public,
    /// Callers whose body carries a valid `x-hub-signature-256`.
    Webhook,
    /// Callers with an admin bearer token.
    Admin,
}

/// Body of a successful response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// JSON described by the named schema of the OpenAPI components.
    Json(&'static str),
    /// Plain text.
    Text,
    /// Nothing.
    Empty,
}

/// A query parameter of a route.
#[derive(Clone, Copy, Debug)]
pub struct QueryParameter {
    /// Parameter name.
    pub name: &'static str,
    /// JSON Schema type: `string` or `integer`.
    pub schema_type: &'static str,
    /// Description of the filter.
    pub description: &'static str,
}

/// OpenAPI description of one route.
#[derive(Clone, Copy, Debug)]
pub struct RouteSpec {
    /// HTTP method in upper case.
    pub method: &'static str,
    /// Path template with `{parameter}` segments, as axum and OpenAPI write it.
    pub path: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// OpenAPI tag grouping the route.
    pub tag: &'static str,
    /// Access level.
    pub access: Access,
    /// Schema of the JSON request body, if the route takes one.
    pub request: Option<&'static str>,
    /// Status code of success.
    pub success_status: u16,
    /// Body of a successful response.
    pub response: Body,
    /// Query parameters.
    pub query: &'static [QueryParameter],
}

/// Every operation of the HTTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant is described by its `spec().summary`.
pub enum Operation {
    Livez,
    Readyz,
    Metrics,
    ReceiveWebhook,
    OpenApi,
    GetKeys,
    ListEventSources,
    CreateEventSource,
    GetEventSource,
    UpdateEventSource,
    DeleteEventSource,
    ActivateEventSource,
    DeactivateEventSource,
    RotateEventSourceSecret,
    ListActions,
    CreateAction,
    GetAction,
    UpdateAction,
    DeleteAction,
    ListTriggers,
    CreateTrigger,
    GetTrigger,
    UpdateTrigger,
    DeleteTrigger,
    ActivateTrigger,
    DeactivateTrigger,
    ListExecutions,
    GetExecution,
    MatchEvent,
}

const EXECUTION_QUERY: &[QueryParameter] = &[
    QueryParameter {
        name: "trigger",
        schema_type: "string",
        description: "Only executions of this trigger, by name or id.",
    },
    QueryParameter {
        name: "status",
        schema_type: "string",
        description: "Only executions in this status: pending, dispatched, running, succeeded, failed or dead_lettered.",
    },
    QueryParameter {
        name: "event_id",
        schema_type: "string",
        description: "Only executions of this event id.",
    },
    QueryParameter {
        name: "limit",
        schema_type: "integer",
        description: "Page size, 1 to 1000. Default: 50.",
    },
    QueryParameter {
        name: "offset",
        schema_type: "integer",
        description: "Executions skipped before the page. Default: 0.",
    },
];

impl Operation {
    /// All operations, in the order the OpenAPI document lists them.
    pub const ALL: [Operation; 29] = [
        Self::Livez,
        Self::Readyz,
        Self::Metrics,
        Self::ReceiveWebhook,
        Self::OpenApi,
        Self::GetKeys,
        Self::ListEventSources,
        Self::CreateEventSource,
        Self::GetEventSource,
        Self::UpdateEventSource,
        Self::DeleteEventSource,
        Self::ActivateEventSource,
        Self::DeactivateEventSource,
        Self::RotateEventSourceSecret,
        Self::ListActions,
        Self::CreateAction,
        Self::GetAction,
        Self::UpdateAction,
        Self::DeleteAction,
        Self::ListTriggers,
        Self::CreateTrigger,
        Self::GetTrigger,
        Self::UpdateTrigger,
        Self::DeleteTrigger,
        Self::ActivateTrigger,
        Self::DeactivateTrigger,
        Self::ListExecutions,
        Self::GetExecution,
        Self::MatchEvent,
    ];

    /// Returns the OpenAPI `operationId`: the variant name in lower camel case.
    pub fn operation_id(self) -> String {
        let name = format!("{self:?}");
        let mut characters = name.chars();
        match characters.next() {
            Some(first) => first.to_ascii_lowercase().to_string() + characters.as_str(),
            None => name,
        }
    }

    /// Returns the OpenAPI description of the operation.
    pub fn spec(self) -> RouteSpec {
        use Access::{Admin, Public, Webhook};

        let spec =
            |method, path, summary, tag, access, request, success_status, response| RouteSpec {
                method,
                path,
                summary,
                tag,
                access,
                request,
                success_status,
                response,
                query: &[],
            };
        const SOURCES: &str = "/api/v1/event-sources";
        const SOURCE: &str = "/api/v1/event-sources/{key}";
        const ACTIONS: &str = "/api/v1/actions";
        const ACTION: &str = "/api/v1/actions/{key}";
        const TRIGGERS: &str = "/api/v1/triggers";
        const TRIGGER: &str = "/api/v1/triggers/{key}";

        match self {
            Self::Livez => spec("GET", "/livez", "Liveness probe: 200 while the process serves HTTP.", "probes", Public, None, 200, Body::Json("Status")),
            Self::Readyz => spec("GET", "/readyz", "Readiness probe: 200 when the database and the broker answer and partitions are assigned, else 503.", "probes", Public, None, 200, Body::Json("Readiness")),
            Self::Metrics => spec("GET", "/metrics", "Prometheus metrics in the text exposition format.", "probes", Public, None, 200, Body::Text),
            Self::ReceiveWebhook => spec("POST", "/webhooks/{event_source}", "Receive a GitHub webhook delivery signed with the event source's secret and produce it to the source's first topic.", "webhooks", Webhook, Some("WebhookPayload"), 202, Body::Json("WebhookAccepted")),
            Self::OpenApi => spec("GET", "/api/v1/openapi.json", "This OpenAPI document.", "meta", Public, None, 200, Body::Json("OpenApiDocument")),
            Self::GetKeys => spec("GET", "/api/v1/keys", "The hub's public signing key as a JSON Web Key Set.", "meta", Public, None, 200, Body::Json("KeySet")),
            Self::ListEventSources => spec("GET", SOURCES, "List event sources by name, secrets redacted.", "event-sources", Admin, None, 200, Body::Json("EventSourceList")),
            Self::CreateEventSource => spec("POST", SOURCES, "Create an event source.", "event-sources", Admin, Some("EventSourceCreate"), 201, Body::Json("EventSource")),
            Self::GetEventSource => spec("GET", SOURCE, "Show an event source by name or id, secret redacted.", "event-sources", Admin, None, 200, Body::Json("EventSource")),
            Self::UpdateEventSource => spec("PATCH", SOURCE, "Change fields of an event source; fields left out stay as they are.", "event-sources", Admin, Some("EventSourcePatch"), 200, Body::Json("EventSource")),
            Self::DeleteEventSource => spec("DELETE", SOURCE, "Delete an event source that no trigger uses.", "event-sources", Admin, None, 204, Body::Empty),
            Self::ActivateEventSource => spec("POST", "/api/v1/event-sources/{key}/activate", "Activate an event source: its records are matched again.", "event-sources", Admin, None, 200, Body::Json("EventSource")),
            Self::DeactivateEventSource => spec("POST", "/api/v1/event-sources/{key}/deactivate", "Deactivate an event source: its records are skipped.", "event-sources", Admin, None, 200, Body::Json("EventSource")),
            Self::RotateEventSourceSecret => spec("POST", "/api/v1/event-sources/{key}/rotate-secret", "Store a new random webhook secret in a github event source and return it once.", "event-sources", Admin, None, 200, Body::Json("RotatedSecret")),
            Self::ListActions => spec("GET", ACTIONS, "List actions by name.", "actions", Admin, None, 200, Body::Json("ActionList")),
            Self::CreateAction => spec("POST", ACTIONS, "Create an action.", "actions", Admin, Some("ActionCreate"), 201, Body::Json("Action")),
            Self::GetAction => spec("GET", ACTION, "Show an action by name or id.", "actions", Admin, None, 200, Body::Json("Action")),
            Self::UpdateAction => spec("PATCH", ACTION, "Change fields of an action; fields left out stay as they are.", "actions", Admin, Some("ActionPatch"), 200, Body::Json("Action")),
            Self::DeleteAction => spec("DELETE", ACTION, "Delete an action that no trigger uses.", "actions", Admin, None, 204, Body::Empty),
            Self::ListTriggers => spec("GET", TRIGGERS, "List triggers by name.", "triggers", Admin, None, 200, Body::Json("TriggerList")),
            Self::CreateTrigger => spec("POST", TRIGGERS, "Create a trigger; its event filter is validated.", "triggers", Admin, Some("TriggerCreate"), 201, Body::Json("Trigger")),
            Self::GetTrigger => spec("GET", TRIGGER, "Show a trigger by name or id.", "triggers", Admin, None, 200, Body::Json("Trigger")),
            Self::UpdateTrigger => spec("PATCH", TRIGGER, "Change fields of a trigger; fields left out stay as they are.", "triggers", Admin, Some("TriggerPatch"), 200, Body::Json("Trigger")),
            Self::DeleteTrigger => spec("DELETE", TRIGGER, "Delete a trigger and its executions.", "triggers", Admin, None, 204, Body::Empty),
            Self::ActivateTrigger => spec("POST", "/api/v1/triggers/{key}/activate", "Activate a trigger.", "triggers", Admin, None, 200, Body::Json("Trigger")),
            Self::DeactivateTrigger => spec("POST", "/api/v1/triggers/{key}/deactivate", "Deactivate a trigger: it matches nothing until activated.", "triggers", Admin, None, 200, Body::Json("Trigger")),
            Self::ListExecutions => RouteSpec {
                query: EXECUTION_QUERY,
                ..spec("GET", "/api/v1/executions", "List executions, newest first, one page at a time, with the total count.", "executions", Admin, None, 200, Body::Json("ExecutionPage"))
            },
            Self::GetExecution => spec("GET", "/api/v1/executions/{id}", "Show an execution by id.", "executions", Admin, None, 200, Body::Json("Execution")),
            Self::MatchEvent => spec("POST", "/api/v1/match", "Decode an event as a record of an event source and list the active triggers it matches, without recording anything.", "matching", Admin, Some("MatchRequest"), 200, Body::Json("MatchResult")),
        }
    }

    /// Returns the handler of the operation, for its method.
    pub fn handler(self) -> MethodRouter<ApiState> {
        match self {
            Self::Livez => get(probes::livez),
            Self::Readyz => get(probes::readyz),
            Self::Metrics => get(probes::metrics),
            Self::ReceiveWebhook => post(webhooks::receive),
            Self::OpenApi => get(openapi::get_document),
            Self::GetKeys => get(keys::get_keys),
            Self::ListEventSources => get(admin::list_event_sources),
            Self::CreateEventSource => post(admin::create_event_source),
            Self::GetEventSource => get(admin::get_event_source),
            Self::UpdateEventSource => patch(admin::update_event_source),
            Self::DeleteEventSource => delete(admin::delete_event_source),
            Self::ActivateEventSource => post(admin::activate_event_source),
            Self::DeactivateEventSource => post(admin::deactivate_event_source),
            Self::RotateEventSourceSecret => post(admin::rotate_event_source_secret),
            Self::ListActions => get(admin::list_actions),
            Self::CreateAction => post(admin::create_action),
            Self::GetAction => get(admin::get_action),
            Self::UpdateAction => patch(admin::update_action),
            Self::DeleteAction => delete(admin::delete_action),
            Self::ListTriggers => get(admin::list_triggers),
            Self::CreateTrigger => post(admin::create_trigger),
            Self::GetTrigger => get(admin::get_trigger),
            Self::UpdateTrigger => patch(admin::update_trigger),
            Self::DeleteTrigger => delete(admin::delete_trigger),
            Self::ActivateTrigger => post(admin::activate_trigger),
            Self::DeactivateTrigger => post(admin::deactivate_trigger),
            Self::ListExecutions => get(admin::list_executions),
            Self::GetExecution => get(admin::get_execution),
            Self::MatchEvent => post(dry_run::match_event),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn routes_are_unique_and_methods_match_handlers() {
        let mut seen = HashSet::new();
        for operation in Operation::ALL {
            let spec = operation.spec();
            assert!(
                seen.insert((spec.method, spec.path)),
                "{} {} listed twice",
                spec.method,
                spec.path
            );
            assert!(["GET", "POST", "PATCH", "DELETE"].contains(&spec.method));
        }
    }

    #[test]
    fn operation_ids_are_camel_case() {
        assert_eq!(
            Operation::ListEventSources.operation_id(),
            "listEventSources"
        );
        assert_eq!(Operation::Livez.operation_id(), "livez");
    }
}
