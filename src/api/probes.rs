//! Probes and metrics: `/livez`, `/readyz` and `/metrics`.
//!
//! `/livez` returns 200 while the process serves HTTP at all. `/readyz`
//! first pings the database and requests the broker's metadata, waiting at
//! most [`crate::health::CHECK_TIMEOUT`] for each. It returns 200 only when
//! both responded and the consumer is consuming with at least one partition
//! assigned, otherwise 503. Both bodies are JSON for people, and probes act
//! on the status code.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::ApiState;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /livez`
pub async fn livez() -> Json<serde_json::Value> {
    Json(json!({"status": "alive"}))
}

/// `GET /readyz`
pub async fn readyz(State(state): State<ApiState>) -> Response {
    tokio::join!(
        state.health.check_database(&state.db),
        state.health.check_broker(&state.producer),
    );
    let report = state.health.report();
    let ready = report.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database_ok": report.database_ok,
        "broker_ok": report.broker_ok,
        "consuming": report.consuming,
        "assigned_partitions": report.assigned_partitions,
    });
    (status, Json(body)).into_response()
}

/// `GET /metrics`
pub async fn metrics() -> Response {
    match crate::metrics::render() {
        Some(text) => ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the Prometheus recorder is not installed; see the event-hub log\n",
        )
            .into_response(),
    }
}
