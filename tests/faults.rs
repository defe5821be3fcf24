//! Fault tests of the delivery guarantee: for every record and every
//! trigger that matches it, exactly one execution row exists and its action
//! request was published at least once, whatever fails on the way.

mod common;
mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use event_hub::store::entity::trigger_execution::ExecutionStatus;
use event_hub::store::executions::{self, ExecutionQuery, NewExecution};
use event_hub::store::resources::{self, NewAction, NewEventSource, NewTrigger};
use harness::process::{daemon_env, DaemonProcess};
use harness::proxy::Proxy;
use harness::tansu::{Storage, Tansu};
use harness::workload::{
    assert_committed_prefix_dispatched, count, create_json_pipeline, produce_pushes,
};
use harness::{headers_of, read_topic, test_settings, unique, wait_until, Hub};
use rdkafka::message::Message as _;
use sea_orm::DatabaseConnection;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const ACTION_TOPIC: &str = "event-hub.actions.builtin.pipeline_run";

/// Asserts exactly `expected` executions, all dispatched, each published.
async fn assert_exactly_once(db: &DatabaseConnection, bootstrap_servers: &str, expected: usize) {
    assert_eq!(count(db, None).await, expected, "one execution per event");
    assert_eq!(
        count(db, Some(ExecutionStatus::Dispatched)).await,
        expected,
        "all dispatched"
    );
    let messages = harness::read_to_end(bootstrap_servers, ACTION_TOPIC);
    let published: BTreeSet<String> = messages
        .iter()
        .map(|message| headers_of(message)["ce_id"].clone())
        .collect();
    assert_eq!(published.len(), expected, "every execution published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_execution_left_by_a_crash_is_swept() {
    let topic = unique("json-events");
    let mut hub = Hub::new(&[&topic]).await;
    hub.settings.pipeline.pending_sweep_interval_ms = 200;
    hub.settings.pipeline.pending_sweep_age_ms = 500;
    let trigger_id = create_json_pipeline(&hub.db, &topic).await;
    let source_id = resources::find_event_source(&hub.db, "app")
        .await
        .unwrap()
        .id;

    // What a crash between recording and publishing leaves behind, for an
    // event whose record will not match again.
    let orphan = NewExecution {
        trigger_id,
        event_source_id: source_id,
        event_id: format!("{topic}/0/0"),
        event_metadata: json!({ "type": "push" }),
    };
    executions::record(&hub.db, std::slice::from_ref(&orphan))
        .await
        .unwrap();
    hub.start();

    let messages = read_topic(
        &hub.bootstrap_servers(),
        ACTION_TOPIC,
        1,
        Duration::from_secs(1),
        Duration::from_secs(20),
    );
    hub.stop().await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(headers_of(&messages[0])["ce_id"], orphan.id().to_string());
    let request: event_hub::dispatch::ActionRequest =
        serde_json::from_slice(messages[0].payload().unwrap()).unwrap();
    assert_eq!(
        request.event.data,
        serde_json::Value::Null,
        "a swept request has no event document"
    );
    assert_eq!(request.event.metadata, json!({ "type": "push" }));
    let execution = executions::find(&hub.db, orphan.id()).await.unwrap();
    assert_eq!(execution.status, ExecutionStatus::Dispatched);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_while_processing_keeps_exactly_once() {
    let topic = unique("json-events");
    let mut hub = Hub::new(&[&topic]).await;
    hub.settings.pipeline.batch_size = 100;
    create_json_pipeline(&hub.db, &topic).await;
    // All requests share one trigger, so one action topic partition: keep
    // them under the mock cluster's retention of about 5 MiB per partition.
    const EVENTS: usize = 3_000;
    produce_pushes(&hub.bootstrap_servers(), &topic, EVENTS).await;

    hub.start();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            count(&hub.db, None).await > 300
        })
        .await
    );

    // A second replica joins mid-stream and takes over some partitions...
    let second_shutdown = CancellationToken::new();
    let second = tokio::spawn(event_hub::daemon::run(
        hub.settings.clone(),
        second_shutdown.clone(),
    ));
    assert!(
        wait_until(Duration::from_secs(30), || async {
            count(&hub.db, None).await > 1_500
        })
        .await
    );

    // ...then the first leaves, and the second takes over everything.
    hub.stop().await.unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || async {
            count(&hub.db, Some(ExecutionStatus::Dispatched)).await == EVENTS
        })
        .await,
        "all events processed after the rebalances"
    );
    second_shutdown.cancel();
    second.await.unwrap().unwrap();

    assert_exactly_once(&hub.db, &hub.bootstrap_servers(), EVENTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_pauses_and_resumes() {
    let Some(database) = common::databases::fresh_server_database(
        "postgres",
        common::databases::POSTGRES_URL_ENV,
        &[
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://root@127.0.0.1:5432/test",
        ],
    )
    .await
    else {
        return;
    };
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let proxied_url = database
        .url
        .replace("127.0.0.1:5432", &proxy.address.to_string());
    assert_ne!(
        proxied_url, database.url,
        "the database URL names 127.0.0.1:5432"
    );

    let topic = unique("json-events");
    let directory = tempfile::tempdir().unwrap();
    let mut hub = Hub::with_database(&[&topic], &proxied_url, directory).await;
    hub.settings.database.connect_timeout_secs = 1;
    hub.settings.pipeline.max_retry_backoff_ms = 500;
    hub.settings.pipeline.batch_size = 100;
    create_json_pipeline(&database.db, &topic).await;
    const EVENTS: usize = 3_000;
    produce_pushes(&hub.bootstrap_servers(), &topic, EVENTS).await;

    hub.start();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            count(&database.db, None).await > 300
        })
        .await
    );

    proxy.cut();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            !hub.health.report().is_ready()
        })
        .await,
        "not ready while the database is unreachable"
    );
    // The outage lasts 30 s, several times the retry backoff cap, so the
    // consumer goes through many retries; it stays not ready throughout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = count(&database.db, None).await;
    let outage_end = tokio::time::Instant::now() + Duration::from_secs(27);
    while tokio::time::Instant::now() < outage_end {
        assert!(
            !hub.health.report().is_ready(),
            "not ready during the whole outage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        count(&database.db, None).await,
        during,
        "nothing recorded during the outage"
    );
    assert!(!hub.health.report().database_ok);
    // Nothing is committed past what was dispatched.
    assert_committed_prefix_dispatched(
        &hub.bootstrap_servers(),
        &hub.settings.kafka.group_id,
        &topic,
        6,
        &database.db,
    )
    .await;

    proxy.restore();
    assert!(
        wait_until(Duration::from_secs(60), || async {
            count(&database.db, Some(ExecutionStatus::Dispatched)).await == EVENTS
        })
        .await,
        "all events processed after the database returned"
    );
    assert!(
        wait_until(Duration::from_secs(10), || async {
            hub.health.report().is_ready()
        })
        .await,
        "ready again: {:?}",
        hub.health.report()
    );
    hub.stop().await.unwrap();

    assert_exactly_once(&database.db, &hub.bootstrap_servers(), EVENTS).await;
    drop(proxy);
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing() {
    let Some(mut tansu) = Tansu::start_with(Storage::Sqlite) else {
        return;
    };
    let topic = unique("json-events");
    tansu.create_topics(&[&topic], 6).await;
    tansu
        .create_topics(&["event-hub.dlq", ACTION_TOPIC], 3)
        .await;
    let database = common::databases::fresh_sqlite().await;
    create_json_pipeline(&database.db, &topic).await;

    let pair = event_hub::auth::generate_key_pair().unwrap();
    let settings = test_settings(&tansu.bootstrap_servers, &database.url, &pair.private_pem);
    let directory = tempfile::tempdir().unwrap();
    const EVENTS: usize = 3_000;
    produce_pushes(&tansu.bootstrap_servers, &topic, EVENTS).await;

    let mut daemon =
        DaemonProcess::spawn(&daemon_env(&settings), &directory.path().join("daemon.log"));
    assert!(
        wait_until(Duration::from_secs(60), || async {
            count(&database.db, None).await > 300
        })
        .await,
        "processing started: {}",
        daemon.log()
    );
    tansu.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tansu.restart();

    assert!(
        wait_until(Duration::from_secs(120), || async {
            count(&database.db, Some(ExecutionStatus::Dispatched)).await == EVENTS
        })
        .await,
        "all events processed after the broker restart: {}",
        daemon.log()
    );
    daemon.signal("TERM");
    let (status, _) = daemon
        .wait_for_exit(Duration::from_secs(15))
        .expect("daemon exits");
    assert!(status.success(), "{}", daemon.log());

    assert_exactly_once(&database.db, &tansu.bootstrap_servers, EVENTS).await;
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_is_dead_lettered() {
    let postgres = common::databases::fresh_server_database(
        "postgres",
        common::databases::POSTGRES_URL_ENV,
        &[
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://root@127.0.0.1:5432/test",
        ],
    )
    .await;
    let database = match postgres {
        Some(database) => database,
        None => common::databases::fresh_sqlite().await,
    };
    let topic = unique("json-events");
    let directory = tempfile::tempdir().unwrap();
    let mut hub = Hub::with_database(&[&topic], &database.url, directory).await;
    // The hub's producer takes records up to 500 kB here, so the action
    // request of a 600 kB event is refused, and so is its dead letter copy.
    hub.settings
        .kafka
        .producer_properties
        .insert("message.max.bytes".to_owned(), "500000".to_owned());
    create_json_pipeline(&hub.db, &topic).await;
    hub.start();

    let padding = "x".repeat(600_000);
    let oversized = json!({ "type": "push", "padding": padding }).to_string();
    let key = Some("one-partition");
    hub.produce(&topic, key, &[], oversized.as_bytes()).await;
    let after = json!({ "type": "push", "marker": "after" }).to_string();
    hub.produce(&topic, key, &[], after.as_bytes()).await;

    assert!(
        wait_until(Duration::from_secs(30), || async {
            count(&database.db, Some(ExecutionStatus::Dispatched)).await == 1
        })
        .await,
        "the record after the oversized one is processed"
    );
    let dead = read_topic(
        &hub.bootstrap_servers(),
        "event-hub.dlq",
        1,
        Duration::from_secs(1),
        Duration::from_secs(20),
    );
    hub.stop().await.unwrap();

    assert_eq!(dead.len(), 1, "only the oversized record is dead-lettered");
    let headers = headers_of(&dead[0]);
    assert_eq!(headers["event-hub-error"], "processing_failed");
    assert!(
        headers["event-hub-error-message"].contains("too large"),
        "{headers:?}"
    );
    assert_eq!(
        headers["event-hub-payload-omitted"],
        oversized.len().to_string(),
        "the value is too large to copy, and its size is recorded"
    );
    assert_eq!(headers["event-hub-source-offset"], "0");

    let failed = executions::list(
        &database.db,
        &ExecutionQuery {
            status: Some(ExecutionStatus::Failed),
            ..ExecutionQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        failed.len(),
        1,
        "the oversized event's execution is failed, not left pending"
    );
    assert!(failed[0]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("processing failed"));
    assert_eq!(count(&database.db, Some(ExecutionStatus::Pending)).await, 0);
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_event_id_is_dead_lettered() {
    let Some(database) = common::databases::fresh_server_database(
        "postgres",
        common::databases::POSTGRES_URL_ENV,
        &[
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://root@127.0.0.1:5432/test",
        ],
    )
    .await
    else {
        return;
    };
    let topic = unique("github-events");
    let directory = tempfile::tempdir().unwrap();
    let mut hub = Hub::with_database(&[&topic], &database.url, directory).await;
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
    resources::create_action(
        &hub.db,
        NewAction {
            name: "run-pipeline".into(),
            flavor: "builtin".into(),
            plugin_subtype: "pipeline_run".into(),
            description: None,
            configuration: json!({}),
            service_account: "sa".into(),
            auth_window_minutes: 5,
        },
    )
    .await
    .unwrap();
    resources::create_trigger(
        &hub.db,
        NewTrigger {
            name: "any-push".into(),
            description: None,
            event_source: "gh".into(),
            action: "run-pipeline".into(),
            event_filter: json!({ "event_type": ["push"] }),
            is_active: true,
        },
    )
    .await
    .unwrap();
    hub.start();

    let body = br#"{"ref": "refs/heads/main", "repository": {"full_name": "o/r"}}"#;
    let key = Some("one-partition");
    hub.produce(
        &topic,
        key,
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "bad\u{0}id"),
        ],
        body,
    )
    .await;
    hub.produce(
        &topic,
        key,
        &[("x-github-event", "push"), ("x-github-delivery", "good-id")],
        body,
    )
    .await;

    assert!(
        wait_until(Duration::from_secs(30), || async {
            count(&database.db, Some(ExecutionStatus::Dispatched)).await == 1
        })
        .await,
        "the record after the refused one is processed"
    );
    let dead = read_topic(
        &hub.bootstrap_servers(),
        "event-hub.dlq",
        1,
        Duration::from_secs(1),
        Duration::from_secs(20),
    );
    hub.stop().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(headers_of(&dead[0])["event-hub-error"], "processing_failed");
    database.drop_database().await;
}
