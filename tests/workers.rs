//! End-to-end tests of handler workers against the in-process hub: the
//! Rust example's handler on `event_hub::worker`, the Python example worker
//! as a subprocess, status reports, retries, dead letters, rejections and
//! duplicates.
//!
//! The store functions behind statuses and retries run on every database
//! backend that `common::databases` reaches.
//!
//! The Python part needs `confluent-kafka` and `PyJWT[crypto]`
//! (`scripts/install-python-deps`). Without them it is skipped with a note,
//! unless `EVENT_HUB_TEST_REQUIRE_PYTHON=1`, which makes it a failure.

mod common;
mod harness;

#[allow(dead_code)]
#[path = "../examples/rust_worker.rs"]
mod rust_worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use event_hub::auth::{generate_key_pair, jwks, PublicKey, TokenSigner};
use event_hub::dispatch::ActionRequest;
use event_hub::status::StatusReport;
use event_hub::store::entity::trigger_execution::{self, ExecutionStatus};
use event_hub::store::executions;
use event_hub::store::resources::{self, NewAction, NewEventSource, NewTrigger, RetryPolicy};
use event_hub::worker::{handler_fn, Handler, HandlerError, Worker};
use harness::{headers_of, read_topic, unique, wait_until, Hub};
use rdkafka::message::{Message as _, OwnedMessage};
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const STATUS_TOPIC: &str = "event-hub.execution-status";
const ACTIONS_DLQ_TOPIC: &str = "event-hub.actions.dlq";
const REQUIRE_PYTHON_ENV: &str = "EVENT_HUB_TEST_REQUIRE_PYTHON";

/// Returns the push delivery of the README walk-through: a push to master
/// of Codertocat/Hello-World.
fn push_payload() -> Vec<u8> {
    std::fs::read(harness::fixtures_dir().join("push/with-new-branch.payload.json"))
        .expect("push fixture")
}

/// Starts a hub with the event topic, the status and dead letter topics,
/// and a GitHub event source on the event topic.
async fn hub_with_source() -> (Hub, String) {
    let topic = unique("github-events");
    let mut hub = Hub::new(&[&topic]).await;
    for shared_topic in [STATUS_TOPIC, ACTIONS_DLQ_TOPIC] {
        hub.cluster
            .create_topic(shared_topic, 3, 1)
            .expect("topic created");
    }
    hub.settings.pipeline.retry_sweep_interval_ms = 300;
    resources::create_event_source(
        &hub.db,
        NewEventSource {
            name: "gh".into(),
            flavor: "github".into(),
            plugin_subtype: "webhook".into(),
            description: None,
            configuration: json!({ "topics": [topic] }),
            is_active: true,
        },
    )
    .await
    .unwrap();
    (hub, topic)
}

/// Creates an action of `flavor.subtype` with `policy`, its action topic,
/// and a trigger for pushes to master; returns the trigger id.
async fn create_action_and_trigger(
    hub: &Hub,
    name: &str,
    flavor: &str,
    subtype: &str,
    policy: RetryPolicy,
) -> Uuid {
    hub.cluster
        .create_topic(&hub.settings.pipeline.action_topic(flavor, subtype), 3, 1)
        .expect("action topic created");
    resources::create_action_with_retry_policy(
        &hub.db,
        NewAction {
            name: name.into(),
            flavor: flavor.into(),
            plugin_subtype: subtype.into(),
            description: None,
            configuration: json!({ "template_id": "tmpl-42" }),
            service_account: "sa-ci".into(),
            auth_window_minutes: 60,
        },
        policy,
    )
    .await
    .unwrap();
    resources::create_trigger(
        &hub.db,
        NewTrigger {
            name: format!("on-push-{name}"),
            description: None,
            event_source: "gh".into(),
            action: name.into(),
            event_filter: json!({
                "repo": "Codertocat/Hello-World", "branch": "master", "event_type": "push"
            }),
            is_active: true,
        },
    )
    .await
    .unwrap()
    .id
}

/// Produces the walk-through push to the event topic; returns its delivery id.
async fn publish_push(hub: &Hub, topic: &str) -> String {
    let delivery = Uuid::new_v4().to_string();
    hub.produce(
        topic,
        None,
        &[("x-github-event", "push"), ("x-github-delivery", &delivery)],
        &push_payload(),
    )
    .await;
    delivery
}

/// A worker running in a task of the test.
struct RunningWorker {
    shutdown: CancellationToken,
    task: JoinHandle<event_hub::Result<()>>,
}

impl RunningWorker {
    /// Starts `worker` in a task.
    fn start(worker: Worker) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(worker.run(shutdown.clone()));
        Self { shutdown, task }
    }

    /// Stops the worker and checks that it ended cleanly.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("worker stops within 20 s")
            .expect("worker task does not panic")
            .expect("worker ends without error");
    }
}

/// Returns a handler that counts its calls and then behaves like `outcome`
/// for the call number (1 for the first).
fn counting<F>(calls: Arc<AtomicUsize>, outcome: F) -> impl Handler
where
    F: Fn(usize) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    let outcome = Arc::new(outcome);
    handler_fn(move |_request: ActionRequest| {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        let outcome = Arc::clone(&outcome);
        async move { outcome(call) }
    })
}

/// Returns the executions of `trigger_id`.
async fn executions_of(hub: &Hub, trigger_id: Uuid) -> Vec<trigger_execution::Model> {
    executions::list(
        &hub.db,
        &executions::ExecutionQuery {
            trigger_id: Some(trigger_id),
            ..executions::ExecutionQuery::default()
        },
    )
    .await
    .unwrap()
}

/// Waits until the single execution of `trigger_id` has `status`.
async fn wait_for_status(
    hub: &Hub,
    trigger_id: Uuid,
    status: ExecutionStatus,
    timeout: Duration,
) -> trigger_execution::Model {
    let reached = wait_until(timeout, || async {
        executions_of(hub, trigger_id)
            .await
            .first()
            .is_some_and(|execution| execution.status == status)
    })
    .await;
    let executions = executions_of(hub, trigger_id).await;
    assert!(
        reached,
        "execution of trigger {trigger_id} did not reach {status:?} within {timeout:?}: {executions:?}"
    );
    assert_eq!(executions.len(), 1, "{executions:?}");
    executions.into_iter().next().unwrap()
}

/// Returns the status reports on the status topic, after at least
/// `expected` arrived and no more came for a second.
fn status_reports(hub: &Hub, expected: usize) -> Vec<StatusReport> {
    read_topic(
        &hub.bootstrap_servers(),
        STATUS_TOPIC,
        expected,
        Duration::from_secs(1),
        Duration::from_secs(30),
    )
    .iter()
    .map(|message| serde_json::from_slice(message.payload().unwrap()).expect("status report"))
    .collect()
}

/// Reads the one action request of `topic`.
fn read_request(hub: &Hub, topic: &str) -> OwnedMessage {
    let mut messages = read_topic(
        &hub.bootstrap_servers(),
        topic,
        1,
        Duration::from_millis(500),
        Duration::from_secs(30),
    );
    assert_eq!(messages.len(), 1, "one action request on {topic}");
    messages.remove(0)
}

/// Produces `payload` with the headers and key of `original` to its topic.
async fn republish(hub: &Hub, original: &OwnedMessage, payload: &[u8]) {
    let headers = headers_of(original);
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let key = original
        .key()
        .map(|key| String::from_utf8_lossy(key).into_owned());
    hub.produce(original.topic(), key.as_deref(), &pairs, payload)
        .await;
}

// ---------------------------------------------------------------------------
// Python example worker
// ---------------------------------------------------------------------------

/// Returns a Python interpreter with the example's dependencies:
/// `EVENT_HUB_TEST_PYTHON`, else the venv of `scripts/install-python-deps`,
/// else `python3` on PATH.
fn python_interpreter() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/python-venv/bin/python3");
    let candidates = [
        std::env::var_os("EVENT_HUB_TEST_PYTHON").map(PathBuf::from),
        Some(venv),
        Some(PathBuf::from("python3")),
    ];
    for candidate in candidates.into_iter().flatten() {
        let usable = std::process::Command::new(&candidate)
            .args(["-c", "import confluent_kafka, jwt, cryptography"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if usable {
            return Some(candidate);
        }
    }
    let message = "the Python example worker's dependencies are not installed \
                   (scripts/install-python-deps)";
    if std::env::var(REQUIRE_PYTHON_ENV).as_deref() == Ok("1") {
        panic!("{message}");
    }
    eprintln!("note: skipping the Python worker: {message}");
    None
}

/// Runs `event-hub execution show ID --output json` against the hub's database.
fn cli_execution_show(hub: &Hub, id: Uuid) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_event-hub"))
        .args(["execution", "show", &id.to_string(), "--output", "json"])
        .current_dir(hub.directory())
        .env_remove("EVENT_HUB_CONFIG")
        .env("EVENT_HUB__DATABASE__URL", hub.database_url())
        .output()
        .expect("event-hub runs");
    assert!(
        output.status.success(),
        "execution show failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("execution show prints JSON")
}

/// Checks that `execution show` reports a succeeded first attempt with its
/// timestamps in order.
fn assert_succeeded_with_timestamps(hub: &Hub, id: Uuid) {
    let shown = cli_execution_show(hub, id);
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["attempts"], 1, "{shown}");
    assert_eq!(shown["error"], Value::Null, "{shown}");
    let time = |field: &str| -> chrono::DateTime<chrono::Utc> {
        shown[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing: {shown}"))
            .parse()
            .unwrap_or_else(|error| panic!("{field} is not a time: {error}: {shown}"))
    };
    assert!(time("created_at") <= time("finished_at"), "{shown}");
    assert!(time("dispatched_at") <= time("finished_at"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_reaches_rust_and_python_workers() {
    let (mut hub, topic) = hub_with_source().await;
    let rust_trigger = create_action_and_trigger(
        &hub,
        "run-pipeline",
        rust_worker::FLAVOR,
        rust_worker::SUBTYPE,
        RetryPolicy::default(),
    )
    .await;
    let python = python_interpreter();
    let python_trigger = match python {
        Some(_) => Some(
            create_action_and_trigger(
                &hub,
                "python-pipeline",
                "python",
                "pipeline_run",
                RetryPolicy::default(),
            )
            .await,
        ),
        None => None,
    };
    hub.start();

    let rust_calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&rust_calls);
    let mut settings = hub.settings.clone();
    settings.worker.group_id = Some(unique("rust-worker"));
    let worker = Worker::builder(settings)
        .handle(
            rust_worker::FLAVOR,
            rust_worker::SUBTYPE,
            handler_fn(move |request| {
                counter.fetch_add(1, Ordering::SeqCst);
                rust_worker::handle(request)
            }),
        )
        .build()
        .unwrap();
    let rust = RunningWorker::start(worker);

    let mut python_child = python.map(|interpreter| {
        let keys = [PublicKey::from_pem(&hub.public_pem, None).unwrap()];
        let jwks_path = hub.directory().join("jwks.json");
        std::fs::write(&jwks_path, jwks(&keys).to_string()).unwrap();
        let log = std::fs::File::create(hub.directory().join("python-worker.log")).unwrap();
        std::process::Command::new(interpreter)
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/python_worker/worker.py"))
            .args(["--bootstrap-servers", &hub.bootstrap_servers()])
            .args(["--flavor", "python", "--subtype", "pipeline_run"])
            .arg("--jwks")
            .arg(&jwks_path)
            .args(["--once", "--timeout", "90"])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("python worker starts")
    });

    publish_push(&hub, &topic).await;

    let rust_execution = wait_for_status(
        &hub,
        rust_trigger,
        ExecutionStatus::Succeeded,
        Duration::from_secs(60),
    )
    .await;
    assert_succeeded_with_timestamps(&hub, rust_execution.id);
    assert_eq!(rust_calls.load(Ordering::SeqCst), 1);

    if let (Some(trigger), Some(child)) = (python_trigger, python_child.as_mut()) {
        let log_path = hub.directory().join("python-worker.log");
        let reached = wait_until(Duration::from_secs(90), || async {
            executions_of(&hub, trigger)
                .await
                .first()
                .is_some_and(|execution| execution.status == ExecutionStatus::Succeeded)
        })
        .await;
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        assert!(reached, "python worker did not succeed; its log:\n{log}");
        let execution = executions_of(&hub, trigger).await.remove(0);
        assert_succeeded_with_timestamps(&hub, execution.id);

        let exited = wait_until(Duration::from_secs(30), || {
            let status = child.try_wait().expect("try_wait");
            async move { status.is_some() }
        })
        .await;
        assert!(exited, "python worker exits after --once");
        let status = child.wait().expect("python worker status");
        assert!(
            status.success(),
            "python worker failed: {status}; log:\n{log}"
        );
    }

    rust.stop().await;
    hub.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_success_and_dead_letters() {
    let (mut hub, topic) = hub_with_source().await;
    let fast_retries = RetryPolicy {
        max_attempts: 3,
        initial_delay_ms: 100,
        max_delay_ms: 200,
        ..RetryPolicy::default()
    };
    let flaky_trigger =
        create_action_and_trigger(&hub, "flaky", "builtin", "flaky", fast_retries.clone()).await;
    let broken_trigger =
        create_action_and_trigger(&hub, "broken", "builtin", "broken", fast_retries).await;
    hub.start();

    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let broken_calls = Arc::new(AtomicUsize::new(0));
    let flaky = counting(Arc::clone(&flaky_calls), |call| {
        if call <= 2 {
            Err(HandlerError::retryable(format!("try {call}: CI busy")))
        } else {
            Ok(())
        }
    });
    let broken = counting(Arc::clone(&broken_calls), |_call| {
        Err(HandlerError::retryable("deploy target unreachable"))
    });
    let mut settings = hub.settings.clone();
    settings.worker.group_id = Some(unique("retry-worker"));
    let worker = Worker::builder(settings)
        .handle("builtin", "flaky", flaky)
        .handle("builtin", "broken", broken)
        .build()
        .unwrap();
    let running = RunningWorker::start(worker);

    publish_push(&hub, &topic).await;

    let succeeded = wait_for_status(
        &hub,
        flaky_trigger,
        ExecutionStatus::Succeeded,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(succeeded.attempts, 3);
    assert_eq!(succeeded.error, None);
    assert!(succeeded.finished_at.is_some());
    assert_eq!(flaky_calls.load(Ordering::SeqCst), 3);

    let dead = wait_for_status(
        &hub,
        broken_trigger,
        ExecutionStatus::DeadLettered,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.error.as_deref(), Some("deploy target unreachable"));
    assert!(dead.finished_at.is_some());
    assert_eq!(broken_calls.load(Ordering::SeqCst), 3);

    // The flaky action's topic contains attempts 1, 2 and 3 of one execution,
    // each with its own valid token.
    let requests = read_topic(
        &hub.bootstrap_servers(),
        &hub.settings.pipeline.action_topic("builtin", "flaky"),
        3,
        Duration::from_millis(500),
        Duration::from_secs(30),
    );
    let mut attempts: Vec<u32> = Vec::new();
    for message in &requests {
        let request: ActionRequest = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(request.execution_id, succeeded.id);
        assert_eq!(
            headers_of(message)["event-hub-attempt"],
            request.attempt.to_string()
        );
        let claims = hub
            .verifier
            .verify(&request.auth.token, "builtin.flaky")
            .expect("every attempt carries a valid token");
        assert_eq!(claims.jti, succeeded.id.to_string());
        attempts.push(request.attempt);
    }
    attempts.sort_unstable();
    assert_eq!(attempts, vec![1, 2, 3]);

    // Exactly one dead letter, naming the trigger, action, error and attempts.
    let dead_letters = read_topic(
        &hub.bootstrap_servers(),
        ACTIONS_DLQ_TOPIC,
        1,
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    assert_eq!(dead_letters.len(), 1);
    let headers = headers_of(&dead_letters[0]);
    assert_eq!(headers["event-hub-error"], "attempts_exhausted");
    assert_eq!(
        headers["event-hub-error-message"],
        "deploy target unreachable"
    );
    assert_eq!(headers["event-hub-attempts"], "3");
    assert_eq!(headers["event-hub-trigger"], "on-push-broken");
    assert_eq!(headers["event-hub-trigger-id"], broken_trigger.to_string());
    assert_eq!(headers["event-hub-action"], "broken");
    assert_eq!(headers["event-hub-execution-id"], dead.id.to_string());
    let request: ActionRequest =
        serde_json::from_slice(dead_letters[0].payload().unwrap()).unwrap();
    assert_eq!(request.execution_id, dead.id);

    running.stop().await;
    hub.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_misaddressed_requests_are_rejected() {
    let (mut hub, topic) = hub_with_source().await;
    let trigger = create_action_and_trigger(
        &hub,
        "run-pipeline",
        "builtin",
        "pipeline_run",
        RetryPolicy::default(),
    )
    .await;
    hub.start();
    publish_push(&hub, &topic).await;
    let action_topic = hub
        .settings
        .pipeline
        .action_topic("builtin", "pipeline_run");
    let original = read_request(&hub, &action_topic);
    let request: ActionRequest = serde_json::from_slice(original.payload().unwrap()).unwrap();

    // Three copies of the real request whose tokens must not pass.
    let hub_signer = TokenSigner::from_settings(&hub.settings.auth).unwrap();
    let other_pair = generate_key_pair().unwrap();
    let other_signer = TokenSigner::from_pem(
        other_pair.private_pem.expose_secret(),
        None,
        "event-hub".into(),
    )
    .unwrap();
    let now = chrono::Utc::now();
    let hour = chrono::Duration::hours(1);
    let tokens = [
        other_signer
            .sign(
                "sa-ci",
                "builtin.pipeline_run",
                request.execution_id,
                now,
                hour,
            )
            .unwrap()
            .0,
        hub_signer
            .sign("sa-ci", "builtin.deploy", request.execution_id, now, hour)
            .unwrap()
            .0,
        hub_signer
            .sign(
                "sa-ci",
                "builtin.pipeline_run",
                request.execution_id,
                now - chrono::Duration::hours(2),
                chrono::Duration::minutes(5),
            )
            .unwrap()
            .0,
    ];
    for token in tokens {
        let mut forged = request.clone();
        forged.auth.token = token;
        republish(&hub, &original, &serde_json::to_vec(&forged).unwrap()).await;
    }

    let calls = Arc::new(AtomicUsize::new(0));
    let mut settings = hub.settings.clone();
    settings.worker.group_id = Some(unique("rejecting-worker"));
    let worker = Worker::builder(settings)
        .name("test-worker")
        .handle(
            "builtin",
            "pipeline_run",
            counting(Arc::clone(&calls), |_| Ok(())),
        )
        .build()
        .unwrap();
    let running = RunningWorker::start(worker);

    // The real request: running and succeeded; each forged one: a rejection.
    let reports = status_reports(&hub, 5);
    running.stop().await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the real request runs"
    );
    assert_eq!(reports.len(), 5, "{reports:?}");

    let rejections: Vec<&StatusReport> = reports
        .iter()
        .filter(|report| {
            report
                .error
                .as_deref()
                .is_some_and(|error| error.starts_with("rejected: "))
        })
        .collect();
    assert_eq!(rejections.len(), 3, "{reports:?}");
    for rejection in &rejections {
        assert_eq!(rejection.execution_id, request.execution_id);
        assert_eq!(rejection.status, event_hub::status::ReportedStatus::Failed);
        assert!(!rejection.retryable);
        assert_eq!(rejection.worker, "test-worker");
    }
    let errors: Vec<&str> = rejections
        .iter()
        .filter_map(|report| report.error.as_deref())
        .collect();
    for expected in ["no public key with kid", "audience", "expired"] {
        assert!(
            errors.iter().any(|error| error.contains(expected)),
            "no rejection mentions {expected:?}: {errors:?}"
        );
    }

    // The real execution succeeded; the rejections did not overwrite it.
    let execution = wait_for_status(
        &hub,
        trigger,
        ExecutionStatus::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(execution.attempts, 1);
    hub.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_request_runs_handler_once() {
    let (mut hub, topic) = hub_with_source().await;
    let trigger = create_action_and_trigger(
        &hub,
        "run-pipeline",
        "builtin",
        "pipeline_run",
        RetryPolicy::default(),
    )
    .await;
    hub.start();
    publish_push(&hub, &topic).await;
    let action_topic = hub
        .settings
        .pipeline
        .action_topic("builtin", "pipeline_run");
    let original = read_request(&hub, &action_topic);
    republish(&hub, &original, original.payload().unwrap()).await;

    let calls = Arc::new(AtomicUsize::new(0));
    let handler = counting(Arc::clone(&calls), |_| Ok(()));
    let mut settings = hub.settings.clone();
    settings.worker.group_id = Some(unique("dedup-worker"));
    let worker = Worker::builder(settings)
        .handle("builtin", "pipeline_run", handler)
        .build()
        .unwrap();
    let running = RunningWorker::start(worker);

    let execution = wait_for_status(
        &hub,
        trigger,
        ExecutionStatus::Succeeded,
        Duration::from_secs(60),
    )
    .await;
    // Give the duplicate, the next record of the same partition, time to
    // be read and dropped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.stop().await;
    let reports = status_reports(&hub, 2);

    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let statuses: Vec<_> = reports.iter().map(|report| report.status).collect();
    assert_eq!(
        statuses,
        vec![
            event_hub::status::ReportedStatus::Running,
            event_hub::status::ReportedStatus::Succeeded
        ]
    );
    assert_eq!(execution.attempts, 1);
    hub.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Store functions on every backend
// ---------------------------------------------------------------------------

fn change(id: Uuid, status: ExecutionStatus, attempt: i32) -> executions::StatusChange {
    executions::StatusChange {
        execution_id: id,
        status,
        attempt,
        error: None,
        next_attempt_at: None,
        request: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_only_move_forward() {
    for database in common::databases::fresh_databases().await {
        let db = &database.db;
        let backend = database.backend;
        resources::create_event_source(
            db,
            NewEventSource {
                name: "gh".into(),
                flavor: "github".into(),
                plugin_subtype: "webhook".into(),
                description: None,
                configuration: json!({ "topics": ["github-events"] }),
                is_active: true,
            },
        )
        .await
        .unwrap();
        let policy = RetryPolicy {
            max_attempts: 5,
            backoff: event_hub::store::resources::Backoff::Linear,
            initial_delay_ms: 250,
            max_delay_ms: 4000,
            max_event_age_secs: Some(3600),
        };
        let action = resources::create_action_with_retry_policy(
            db,
            NewAction {
                name: "run".into(),
                flavor: "builtin".into(),
                plugin_subtype: "pipeline_run".into(),
                description: None,
                configuration: json!({}),
                service_account: "sa-ci".into(),
                auth_window_minutes: 60,
            },
            policy.clone(),
        )
        .await
        .unwrap();
        assert_eq!(
            resources::find_retry_policy(db, action.id).await.unwrap(),
            policy,
            "{backend}"
        );

        let trigger = resources::create_trigger(
            db,
            NewTrigger {
                name: "on-push".into(),
                description: None,
                event_source: "gh".into(),
                action: "run".into(),
                event_filter: json!({ "event_type": "push" }),
                is_active: true,
            },
        )
        .await
        .unwrap();
        let source = resources::find_event_source(db, "gh").await.unwrap();
        let recorded = executions::record(
            db,
            &[executions::NewExecution {
                trigger_id: trigger.id,
                event_source_id: source.id,
                event_id: "delivery-1".into(),
                event_metadata: json!({}),
            }],
        )
        .await
        .unwrap();
        let id = recorded[0].id;
        executions::mark_dispatched(db, &[id]).await.unwrap();

        let apply = |change: executions::StatusChange| async move {
            executions::apply_status(db, &change).await.unwrap()
        };
        assert!(
            apply(change(id, ExecutionStatus::Running, 1)).await,
            "{backend}"
        );
        assert!(
            !apply(change(id, ExecutionStatus::Running, 1)).await,
            "{backend}: repeat"
        );

        let position = executions::RequestPosition {
            topic: "event-hub.actions.builtin.pipeline_run".into(),
            partition: 2,
            offset: 41,
        };
        let due = chrono::Utc::now() - chrono::Duration::seconds(1);
        let failed = executions::StatusChange {
            error: Some("CI busy".into()),
            next_attempt_at: Some(due),
            request: Some(position.clone()),
            ..change(id, ExecutionStatus::Failed, 1)
        };
        assert!(apply(failed).await, "{backend}");
        assert!(
            !apply(change(id, ExecutionStatus::Running, 1)).await,
            "{backend}: late running"
        );
        assert!(
            executions::next_attempt_at(db, id).await.unwrap().is_some(),
            "{backend}"
        );

        let lease = Duration::from_secs(60);
        let claimed = executions::claim_due(db, chrono::Utc::now(), lease, 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "{backend}");
        assert_eq!(claimed[0].execution.id, id, "{backend}");
        assert_eq!(claimed[0].request.as_ref(), Some(&position), "{backend}");
        assert_eq!(
            claimed[0].execution.error.as_deref(),
            Some("CI busy"),
            "{backend}"
        );
        let again = executions::claim_due(db, chrono::Utc::now(), lease, 10)
            .await
            .unwrap();
        assert!(
            again.is_empty(),
            "{backend}: a claimed execution is not due"
        );

        assert!(
            apply(change(id, ExecutionStatus::Dispatched, 2)).await,
            "{backend}"
        );
        assert!(
            !apply(change(id, ExecutionStatus::Failed, 1)).await,
            "{backend}: failure of an older attempt"
        );
        assert!(
            apply(change(id, ExecutionStatus::Running, 2)).await,
            "{backend}"
        );
        assert!(
            apply(change(id, ExecutionStatus::Succeeded, 2)).await,
            "{backend}"
        );
        assert!(
            !apply(change(id, ExecutionStatus::Failed, 3)).await,
            "{backend}: succeeded is final"
        );

        let stored = executions::find(db, id).await.unwrap();
        assert_eq!(stored.status, ExecutionStatus::Succeeded, "{backend}");
        assert_eq!(stored.attempts, 2, "{backend}");
        assert_eq!(stored.error, None, "{backend}");
        assert!(stored.finished_at.is_some(), "{backend}");
        assert!(stored.dispatched_at.is_some(), "{backend}");
        assert_eq!(
            executions::next_attempt_at(db, id).await.unwrap(),
            None,
            "{backend}"
        );

        let update = resources::RetryPolicyUpdate {
            max_attempts: Some(2),
            max_event_age_secs: Some(None),
            ..resources::RetryPolicyUpdate::default()
        };
        resources::update_action_with_retry_policy(
            db,
            "run",
            resources::ActionUpdate::default(),
            update,
        )
        .await
        .unwrap();
        let updated = resources::find_retry_policy(db, action.id).await.unwrap();
        assert_eq!(updated.max_attempts, 2, "{backend}");
        assert_eq!(updated.max_event_age_secs, None, "{backend}");
        assert_eq!(updated.initial_delay_ms, 250, "{backend}");

        let invalid = resources::RetryPolicyUpdate {
            max_delay_ms: Some(100),
            ..resources::RetryPolicyUpdate::default()
        };
        let error = resources::update_action_with_retry_policy(
            db,
            "run",
            resources::ActionUpdate::default(),
            invalid,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&error, event_hub::Error::Invalid { field, .. } if field == "max_delay_ms"),
            "{backend}: {error}"
        );

        let default_action = resources::create_action(
            db,
            NewAction {
                name: "plain".into(),
                flavor: "builtin".into(),
                plugin_subtype: "plain".into(),
                description: None,
                configuration: json!({}),
                service_account: "sa-ci".into(),
                auth_window_minutes: 60,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            resources::find_retry_policy(db, default_action.id)
                .await
                .unwrap(),
            RetryPolicy::default(),
            "{backend}"
        );
        database.drop_database().await;
    }
}

// ---------------------------------------------------------------------------
// The built-in worker and key export
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_worker_reports_command_failure() {
    let (mut hub, topic) = hub_with_source().await;
    let single_attempt = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let trigger =
        create_action_and_trigger(&hub, "deploy", "builtin", "deploy", single_attempt).await;
    hub.start();

    // `keys export` writes the JWKS that the built-in worker verifies with.
    let signing_key = hub
        .settings
        .auth
        .signing_key
        .as_ref()
        .expect("the harness signs with an inline key")
        .expose_secret()
        .to_owned();
    let jwks_path = hub.directory().join("exported-jwks.json");
    let export = std::process::Command::new(env!("CARGO_BIN_EXE_event-hub"))
        .args(["keys", "export", "--out"])
        .arg(&jwks_path)
        .current_dir(hub.directory())
        .env_remove("EVENT_HUB_CONFIG")
        .env("EVENT_HUB__AUTH__SIGNING_KEY", &signing_key)
        .output()
        .expect("event-hub runs");
    assert!(
        export.status.success(),
        "keys export failed: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    let exported: Value = serde_json::from_slice(&std::fs::read(&jwks_path).unwrap()).unwrap();
    assert_eq!(exported["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(exported["keys"][0]["kty"], "OKP");

    let log_path = hub.directory().join("builtin-worker.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_event-hub"))
        .args(["worker", "--flavor", "builtin", "--subtype", "deploy"])
        .args([
            "--exec",
            "test -n \"$(cat)\" && echo \"attempt $EVENT_HUB_ATTEMPT\" >&2 && echo 'deploy target unreachable' >&2 && exit 3",
        ])
        .current_dir(hub.directory())
        .env_remove("EVENT_HUB_CONFIG")
        .env("EVENT_HUB__KAFKA__BOOTSTRAP_SERVERS", hub.bootstrap_servers())
        .env("EVENT_HUB__WORKER__JWKS_FILE", &jwks_path)
        .env("EVENT_HUB__WORKER__GROUP_ID", unique("builtin-worker"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("event-hub worker starts");

    publish_push(&hub, &topic).await;
    let reached = wait_until(Duration::from_secs(60), || async {
        executions_of(&hub, trigger)
            .await
            .first()
            .is_some_and(|execution| execution.status == ExecutionStatus::DeadLettered)
    })
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        reached,
        "the execution was not dead-lettered; worker log:\n{log}"
    );

    let execution = executions_of(&hub, trigger).await.remove(0);
    let error = execution.error.unwrap_or_default();
    assert!(error.contains("exit status 3"), "{error}");
    assert!(error.contains("attempt 1"), "{error}");
    assert!(error.ends_with("deploy target unreachable"), "{error}");
    assert_eq!(execution.attempts, 1);
    hub.stop().await.unwrap();
}
