//! A handler worker for `builtin.pipeline_run` action requests, built on
//! `event_hub::worker`.
//!
//! It reads its settings like the hub does (`--config FILE` is not parsed
//! here: use `EVENT_HUB_CONFIG` or `EVENT_HUB__SECTION__KEY` variables):
//!
//! ```sh
//! event-hub keys export --out jwks.json
//! EVENT_HUB__KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092 \
//! EVENT_HUB__WORKER__JWKS_FILE=jwks.json \
//!     cargo run --example rust_worker
//! ```
//!
//! The library verifies each request, drops duplicates, reports `running`
//! and then `succeeded` or `failed`, and commits offsets after the final
//! status; [`handle`] only does the work. Stop it with Ctrl-C.
//!
//! Concurrency: the library runs up to `worker.concurrency` calls of
//! [`handle`] at once, so it must not rely on running alone.

use event_hub::config::Settings;
use event_hub::dispatch::ActionRequest;
use event_hub::worker::{handler_fn, HandlerError, Worker};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Action flavor this example handles.
pub const FLAVOR: &str = "builtin";
/// Action subtype this example handles.
pub const SUBTYPE: &str = "pipeline_run";

/// Starts a pipeline run for one request: the template comes from the
/// action's configuration, the commit from the GitHub push in the event.
///
/// A missing template cannot be fixed by a retry, so it is a permanent
/// error. A real handler would return a retryable error when the CI system
/// is unreachable.
pub async fn handle(request: ActionRequest) -> Result<(), HandlerError> {
    let Some(template) = request
        .action
        .configuration
        .get("template_id")
        .and_then(Value::as_str)
    else {
        return Err(HandlerError::permanent(
            "the action configuration has no template_id",
        ));
    };
    let commit = request
        .event
        .data
        .get("after")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let repository = request.event.metadata["repo"].as_str().unwrap_or("unknown");
    tracing::info!(
        execution_id = %request.execution_id,
        attempt = request.attempt,
        service_account = %request.auth.service_account,
        template,
        repository,
        commit,
        "pipeline run started"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,librdkafka=warn".into()),
        )
        .init();

    let settings = Settings::load(
        std::env::var_os("EVENT_HUB_CONFIG")
            .as_deref()
            .map(std::path::Path::new),
    )?;
    let worker = Worker::builder(settings)
        .handle(FLAVOR, SUBTYPE, handler_fn(handle))
        .build()?;

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    worker.run(shutdown).await?;
    Ok(())
}
