//! The daemon's HTTP server: admin API, webhook ingress, probes and metrics.
//!
//! | path | access | what |
//! |---|---|---|
//! | `/livez`, `/readyz` | public | liveness and readiness probes ([`probes`]) |
//! | `/metrics` | public | Prometheus metrics ([`crate::metrics`]) |
//! | `/webhooks/{event_source}` | signed body | GitHub webhook ingress ([`webhooks`]) |
//! | `/api/v1/openapi.json`, `/api/v1/keys` | public | the OpenAPI document and the public key set |
//! | `/api/v1/...` | bearer token | event sources, actions, triggers, executions, dry-run matching ([`admin`], [`dry_run`]) |
//!
//! [`routes::Operation::ALL`] lists every route; the router and the
//! OpenAPI document are both built from it. The daemon binds the listener
//! with [`HttpServer::bind`] before its consumer starts and stops the
//! server gracefully on its shutdown token.

pub mod admin;
pub mod auth;
pub mod dry_run;
pub mod error;
pub mod keys;
pub mod openapi;
pub mod probes;
pub mod routes;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use rdkafka::producer::FutureProducer;
use sea_orm::DatabaseConnection;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::auth::AdminTokens;
use self::error::ApiError;
use self::routes::{Access, Operation};
use crate::auth::TokenSigner;
use crate::config::HttpSettings;
use crate::health::Health;
use crate::{Error, Result};

/// Maximum wait for in-flight requests once shutdown has started. Requests
/// still running then are dropped.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// State shared by the handlers. Cloning it is cheap.
#[derive(Clone)]
pub struct ApiState {
    db: DatabaseConnection,
    producer: FutureProducer,
    health: Arc<Health>,
    admin_tokens: Arc<AdminTokens>,
    key_set: Arc<Value>,
    max_body_bytes: usize,
}

impl ApiState {
    /// Creates the state of the HTTP server and installs the Prometheus
    /// recorder. Logs a warning when no admin token is configured.
    pub fn new(
        db: DatabaseConnection,
        producer: FutureProducer,
        health: Arc<Health>,
        signer: &TokenSigner,
        settings: &HttpSettings,
    ) -> Result<Self> {
        let admin_tokens = AdminTokens::new(&settings.admin_tokens);
        if admin_tokens.is_empty() {
            tracing::warn!(
                "http.admin_tokens is empty: the admin API answers 401 to every request; \
                 set EVENT_HUB__HTTP__ADMIN_TOKENS to enable it"
            );
        }
        if crate::metrics::install().is_none() {
            tracing::warn!("/metrics is unavailable: another metrics recorder is installed");
        }
        Ok(Self {
            db,
            producer,
            health,
            admin_tokens: Arc::new(admin_tokens),
            key_set: Arc::new(keys::key_set(signer)?),
            max_body_bytes: settings.max_body_bytes,
        })
    }
}

/// Builds the router of every route in [`Operation::ALL`].
pub fn router(state: ApiState) -> Router {
    let mut router = Router::new();
    for operation in Operation::ALL {
        let spec = operation.spec();
        let mut handler = operation.handler();
        if spec.access == Access::Admin {
            handler = handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_admin_token,
            ));
        }
        router = router.route(spec.path, handler);
    }
    router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

async fn route_not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Counts and times each request by its route template, and logs server
/// errors.
async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let started = Instant::now();

    let response = next.run(request).await;

    let status = response.status();
    let elapsed = started.elapsed();
    crate::metrics::record_http_request(
        method.as_str(),
        &route,
        status.as_u16(),
        elapsed.as_secs_f64(),
    );
    if status.is_server_error() {
        tracing::warn!(%method, %route, status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "HTTP request failed");
    } else {
        tracing::debug!(%method, %route, status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "HTTP request served");
    }
    response
}

/// A bound listener, not serving yet.
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    address: SocketAddr,
}

impl HttpServer {
    /// Binds `http.listen`, logs the address and reports it through
    /// [`HttpSettings::bound_address`].
    pub async fn bind(settings: &HttpSettings) -> Result<Self> {
        let requested = settings.listen_address()?;
        let listener = TcpListener::bind(requested).await.map_err(|error| {
            Error::Config(format!(
                "http.listen: cannot listen on {requested}: {error}"
            ))
        })?;
        let address = listener.local_addr()?;
        settings.bound_address.set(address);
        tracing::info!(%address, "HTTP server listening");
        Ok(Self { listener, address })
    }

    /// Returns the bound address, with the port chosen for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves [`router`] in a task until `shutdown` is cancelled.
    pub fn spawn(self, state: ApiState, shutdown: CancellationToken) -> RunningServer {
        let app = router(state);
        let stop = shutdown.clone();
        let handle = tokio::spawn(async move {
            axum::serve(self.listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        RunningServer { handle, shutdown }
    }
}

/// A serving HTTP server.
#[derive(Debug)]
pub struct RunningServer {
    handle: JoinHandle<std::io::Result<()>>,
    shutdown: CancellationToken,
}

impl RunningServer {
    /// Waits for the server to stop after its shutdown token is cancelled
    /// (cancelling it if needed), at most [`STOP_TIMEOUT`]; then drops the
    /// requests still running.
    pub async fn stopped(mut self) {
        self.shutdown.cancel();
        match tokio::time::timeout(STOP_TIMEOUT, &mut self.handle).await {
            Ok(Ok(Ok(()))) => tracing::info!("HTTP server stopped"),
            Ok(Ok(Err(error))) => tracing::error!(%error, "HTTP server failed"),
            Ok(Err(error)) => tracing::error!(%error, "HTTP server task ended abnormally"),
            Err(_elapsed) => {
                tracing::warn!(
                    timeout_s = STOP_TIMEOUT.as_secs(),
                    "HTTP requests still running at shutdown were dropped"
                );
                self.handle.abort();
            }
        }
    }
}
