//! A library for handler workers: consumers of the action topics that
//! verify each request, run a handler and report the outcome to the hub.
//!
//! ```no_run
//! use event_hub::config::Settings;
//! use event_hub::worker::{handler_fn, HandlerError, Worker};
//!
//! # async fn example() -> event_hub::Result<()> {
//! let settings = Settings::load(None)?;
//! let worker = Worker::builder(settings)
//!     .handle("builtin", "pipeline_run", handler_fn(|request| async move {
//!         let template = request.action.configuration["template_id"].as_str();
//!         match template {
//!             Some(_) => Ok(()),
//!             None => Err(HandlerError::permanent("configuration has no template_id")),
//!         }
//!     }))
//!     .build()?;
//! worker.run(tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```
//!
//! For each record on `<pipeline.actions_topic_prefix><flavor>.<subtype>`
//! the worker:
//!
//! 1. verifies the CloudEvents headers and the token ([`verify`]). A
//!    request that fails is reported `failed`, not retryable, with an error
//!    starting with `rejected: `, and its handler does not run;
//! 2. drops a duplicate of an execution this process is running or has
//!    finished (see below);
//! 3. reports `running`, runs the handler, and reports `succeeded`, or
//!    `failed` with the handler's error and whether it is retryable;
//! 4. stores the record's offset once the final status is acknowledged by
//!    the broker and every earlier record of the partition is finished.
//!
//! Duplicates: the worker remembers the executions it finished in a
//! bounded LRU (`worker.completed_cache_size`, default 10000) and those in
//! flight. That drops redeliveries within one process. A duplicate that
//! reaches another process, or this one after a restart or after its id
//! left the LRU, runs the handler again, so handlers must tolerate a
//! repeat. The hub's record stays right regardless: it applies a status
//! only when it moves the execution forward, and never changes one that
//! `succeeded` or was dead-lettered.
//!
//! Concurrency: one task owns the Kafka consumer; each request runs in its
//! own task, at most `worker.concurrency` at once, so requests of one
//! partition may finish out of order (set the concurrency to 1 to handle
//! them in order). Handlers run on the tokio runtime and must not block it.

mod completed;
mod offsets;
mod runtime;
pub mod verify;

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::{self, TokenVerifier};
use crate::config::Settings;
use crate::dispatch::ActionRequest;
use crate::{Error, Result};

/// A handler's error message, with whether the hub should deliver the
/// request again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
    retryable: bool,
}

impl HandlerError {
    /// Builds a failure that may pass on a later attempt, such as a
    /// timeout. The hub delivers the request again after the action's
    /// backoff, until its attempts run out.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// Builds a failure that no retry can fix, such as an invalid
    /// configuration. The execution ends `failed`.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    /// Returns the error message reported to the hub.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the hub should deliver the request again.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for HandlerError {}

/// The work done for each verified action request.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Performs the action of `request`.
    async fn handle(&self, request: &ActionRequest) -> Result<(), HandlerError>;
}

/// A [`Handler`] made from an async function; see [`handler_fn`].
pub struct FnHandler<F>(F);

/// Wraps an async function that takes the request by value as a [`Handler`].
pub fn handler_fn<F, Fut>(function: F) -> FnHandler<F>
where
    F: Fn(ActionRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    FnHandler(function)
}

#[async_trait::async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(ActionRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, request: &ActionRequest) -> Result<(), HandlerError> {
        (self.0)(request.clone()).await
    }
}

/// One `(flavor, subtype)` that a worker handles.
#[derive(Clone)]
pub struct Subscription {
    /// Handler family of the action.
    pub flavor: String,
    /// Handler variant of the action.
    pub subtype: String,
    /// The action topic, `<actions_topic_prefix><flavor>.<subtype>`.
    pub topic: String,
    handler: Arc<dyn Handler>,
}

impl Subscription {
    /// Returns `<flavor>.<subtype>`, the `ce_type` and token audience.
    pub fn action_type(&self) -> String {
        format!("{}.{}", self.flavor, self.subtype)
    }
}

/// Builds a [`Worker`].
pub struct WorkerBuilder {
    settings: Settings,
    subscriptions: Vec<Subscription>,
    verifier: Option<TokenVerifier>,
    name: Option<String>,
}

impl WorkerBuilder {
    /// Subscribes `handler` to the action requests of `(flavor, subtype)`.
    pub fn handle(
        mut self,
        flavor: impl Into<String>,
        subtype: impl Into<String>,
        handler: impl Handler,
    ) -> Self {
        let flavor = flavor.into();
        let subtype = subtype.into();
        let topic = self.settings.pipeline.action_topic(&flavor, &subtype);
        self.subscriptions.push(Subscription {
            flavor,
            subtype,
            topic,
            handler: Arc::new(handler),
        });
        self
    }

    /// Verifies tokens with `verifier` instead of the keys named in the
    /// configuration.
    pub fn verifier(mut self, verifier: TokenVerifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Sets the `worker` field of status reports. Default: `<host>/<pid>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Checks the subscriptions, loads the public keys and returns the worker.
    pub fn build(self) -> Result<Worker> {
        if self.subscriptions.is_empty() {
            return Err(Error::Config(
                "worker: no handler; subscribe one with WorkerBuilder::handle".to_owned(),
            ));
        }
        for subscription in &self.subscriptions {
            validate_action_type_part("flavor", &subscription.flavor)?;
            validate_action_type_part("subtype", &subscription.subtype)?;
        }
        let mut action_types: Vec<String> = self
            .subscriptions
            .iter()
            .map(Subscription::action_type)
            .collect();
        action_types.sort();
        if action_types.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(Error::Config(
                "worker: a (flavor, subtype) has two handlers; subscribe each once".to_owned(),
            ));
        }
        let group_id = match (&self.settings.worker.group_id, action_types.as_slice()) {
            (Some(group_id), _) => group_id.clone(),
            (None, [only]) => format!("event-hub-worker-{only}"),
            (None, _) => return Err(Error::Config(
                "worker.group_id: required when one worker handles several (flavor, subtype) pairs"
                    .to_owned(),
            )),
        };
        let verifier = match self.verifier {
            Some(verifier) => verifier,
            None => configured_verifier(&self.settings)?,
        };
        Ok(Worker {
            settings: self.settings,
            subscriptions: self.subscriptions,
            verifier,
            group_id,
            name: self.name.unwrap_or_else(default_worker_name),
        })
    }
}

/// A handler worker; see the module documentation.
pub struct Worker {
    settings: Settings,
    subscriptions: Vec<Subscription>,
    verifier: TokenVerifier,
    group_id: String,
    name: String,
}

impl Worker {
    /// Starts building a worker configured by `settings`: Kafka connection
    /// and properties, `pipeline.actions_topic_prefix`, `auth.issuer` and
    /// the `worker` section.
    pub fn builder(settings: Settings) -> WorkerBuilder {
        WorkerBuilder {
            settings,
            subscriptions: Vec::new(),
            verifier: None,
            name: None,
        }
    }

    /// Returns the consumer group of the worker.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Returns the subscriptions of the worker.
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// Consumes and handles action requests until `shutdown` is cancelled.
    ///
    /// On shutdown it stops reading, waits up to
    /// `pipeline.shutdown_timeout_ms` for the requests in flight to finish
    /// and report, commits the stored offsets and returns. Requests still
    /// unfinished then are redelivered to the group later.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        runtime::run(self, shutdown).await
    }
}

/// Builds the token verifier from the configured keys: `worker.jwks_file`
/// and `worker.public_key_files`, else `auth.public_key_files` and the
/// public half of the signing key.
fn configured_verifier(settings: &Settings) -> Result<TokenVerifier> {
    let issuer = Some(settings.auth.issuer.clone());
    let worker = &settings.worker;
    if worker.jwks_file.is_none() && worker.public_key_files.is_empty() {
        let mut verifier = TokenVerifier::new(issuer);
        let keys = auth::public_keys(&settings.auth).map_err(|_| {
            Error::Config(
                "worker.jwks_file: no public key of the hub; set worker.jwks_file to the \
                 output of `event-hub keys export`, or worker.public_key_files"
                    .to_owned(),
            )
        })?;
        for key in &keys {
            verifier.add_public_key(key)?;
        }
        return Ok(verifier);
    }

    let mut verifier = match &worker.jwks_file {
        Some(path) => TokenVerifier::from_jwks_file(path, issuer)
            .map_err(|error| Error::Config(format!("worker.jwks_file: {error}")))?,
        None => TokenVerifier::new(issuer),
    };
    for path in &worker.public_key_files {
        let pem = std::fs::read_to_string(path).map_err(|error| {
            Error::Config(format!(
                "worker.public_key_files: cannot read {}: {error}",
                path.display()
            ))
        })?;
        verifier.add_public_pem(&pem).map_err(|error| {
            Error::Config(format!(
                "worker.public_key_files: {}: {error}",
                path.display()
            ))
        })?;
    }
    Ok(verifier)
}

/// Checks a flavor or subtype as the hub does for actions.
fn validate_action_type_part(field: &str, value: &str) -> Result<()> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{value:?} must be 1 to 64 characters of a-z, 0-9, '_' and '-'"),
        ))
    }
}

/// Returns `<host>/<pid>`.
fn default_worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host}/{}", std::process::id())
}
