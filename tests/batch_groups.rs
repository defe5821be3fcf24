//! Tests of batches whose executions span several database transactions,
//! on SQLite and, when reachable, PostgreSQL and MySQL/MariaDB (see
//! `common::databases`), with librdkafka's mock cluster as the broker.
//!
//! Every event here matches three triggers, so it has three executions, and
//! `pipeline.transaction_max_executions` is set low enough that one batch
//! needs several transactions.

mod common;
mod harness;

use std::collections::{BTreeMap, BTreeSet};

use event_hub::event::InboundRecord;
use event_hub::matching::refresh::load_index;
use event_hub::store::entity::trigger_execution::ExecutionStatus;
use event_hub::store::executions::{self, NewExecution};
use event_hub::store::resources::{self, NewTrigger};
use harness::workload::{
    assert_committed_prefix_dispatched, count, create_json_pipeline, pipeline,
};
use harness::{headers_of, read_to_end, unique, wait_until, Hub};
use sea_orm::DatabaseConnection;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

use common::databases::{fresh_databases, TestDatabase};

const ACTION_TOPIC: &str = "event-hub.actions.builtin.pipeline_run";

/// Triggers per event: every trigger matches every push.
const TRIGGERS: usize = 3;

/// Starts a hub on `database` with a JSON source on a new topic and
/// [`TRIGGERS`] triggers on pushes, without starting its daemon. Returns the
/// hub, the topic and the trigger ids.
async fn hub_with_triggers(database: &TestDatabase) -> (Hub, String, Vec<Uuid>) {
    let topic = unique("json-events");
    let directory = tempfile::tempdir().unwrap();
    let hub = Hub::with_database(&[&topic], &database.url, directory).await;
    let mut trigger_ids = vec![create_json_pipeline(&hub.db, &topic).await];
    for n in 2..=TRIGGERS {
        let trigger = resources::create_trigger(
            &hub.db,
            NewTrigger {
                name: format!("on-push-{n}"),
                description: None,
                event_source: "app".into(),
                action: "run-pipeline".into(),
                event_filter: json!({ "type": ["push"] }),
                is_active: true,
            },
        )
        .await
        .unwrap();
        trigger_ids.push(trigger.id);
    }
    (hub, topic, trigger_ids)
}

/// Returns the record of a push at `offset` of partition 0, with `padding`
/// bytes of filler in its value.
fn push_record(topic: &str, offset: i64, padding: usize) -> InboundRecord {
    let value = json!({ "type": "push", "n": offset, "padding": "x".repeat(padding) });
    InboundRecord {
        topic: topic.to_owned(),
        partition: 0,
        offset,
        payload: Some(value.to_string().into_bytes()),
        ..InboundRecord::default()
    }
}

fn push_records(topic: &str, events: i64) -> Vec<InboundRecord> {
    (0..events)
        .map(|offset| push_record(topic, offset, 0))
        .collect()
}

/// Returns the execution ids of the event at `offset`, one per trigger.
fn execution_ids(topic: &str, offset: i64, trigger_ids: &[Uuid]) -> Vec<Uuid> {
    let event_id = format!("{topic}/0/{offset}");
    trigger_ids
        .iter()
        .map(|trigger_id| executions::execution_id(*trigger_id, &event_id))
        .collect()
}

/// Returns how many action requests on the action topic carry each
/// execution id.
fn published_counts(hub: &Hub) -> BTreeMap<Uuid, usize> {
    let mut counts = BTreeMap::new();
    for message in read_to_end(&hub.bootstrap_servers(), ACTION_TOPIC) {
        let id: Uuid = headers_of(&message)["ce_id"]
            .parse()
            .expect("ce_id is a UUID");
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

async fn status_of(db: &DatabaseConnection, id: Uuid) -> Option<ExecutionStatus> {
    match executions::find(db, id).await {
        Ok(row) => Some(row.status),
        Err(event_hub::Error::NotFound { .. }) => None,
        Err(error) => panic!("reading execution {id} failed: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_split_into_transactions() {
    for database in fresh_databases().await {
        let backend = database.backend;
        let (hub, topic, trigger_ids) = hub_with_triggers(&database).await;
        let index = load_index(&hub.db).await.unwrap();
        // Two events (six executions) fit under seven, three do not.
        let pipeline = pipeline(&hub, 7);
        let records = push_records(&topic, 10);

        let outcome = pipeline.process(&index, &records).await.unwrap();
        assert_eq!(outcome.records, 10, "{backend}");
        assert_eq!(outcome.matched, 10, "{backend}");
        assert_eq!(outcome.executions, 30, "{backend}");
        assert_eq!(outcome.published, 30, "{backend}");
        assert_eq!(outcome.transactions, 5, "{backend}");

        assert_eq!(count(&hub.db, None).await, 30, "{backend}");
        assert_eq!(
            count(&hub.db, Some(ExecutionStatus::Dispatched)).await,
            30,
            "{backend}"
        );
        let published = published_counts(&hub);
        let expected: BTreeSet<Uuid> = (0..10)
            .flat_map(|offset| execution_ids(&topic, offset, &trigger_ids))
            .collect();
        assert_eq!(
            published.keys().copied().collect::<BTreeSet<_>>(),
            expected,
            "{backend}: every execution published"
        );
        assert!(
            published.values().all(|&times| times == 1),
            "{backend}: each published once: {published:?}"
        );

        // The same batch again, as after a crash before the offsets were
        // committed: everything is found dispatched, nothing is published.
        let again = pipeline.process(&index, &records).await.unwrap();
        assert_eq!(again.executions, 30, "{backend}");
        assert_eq!(again.published, 0, "{backend}");
        assert_eq!(again.transactions, 5, "{backend}");
        assert_eq!(
            published_counts(&hub).values().sum::<usize>(),
            30,
            "{backend}"
        );

        drop(hub);
        database.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_publishes_only_pending() {
    for database in fresh_databases().await {
        let backend = database.backend;
        let (hub, topic, trigger_ids) = hub_with_triggers(&database).await;
        let source_id = resources::find_event_source(&hub.db, "app")
            .await
            .unwrap()
            .id;

        // Events 0 to 3 were recorded by an earlier delivery, and the
        // requests of events 0 and 1 were published then.
        let mut earlier = Vec::new();
        for offset in 0..4 {
            for trigger_id in &trigger_ids {
                earlier.push(NewExecution {
                    trigger_id: *trigger_id,
                    event_source_id: source_id,
                    event_id: format!("{topic}/0/{offset}"),
                    event_metadata: json!({ "type": "push" }),
                });
            }
        }
        executions::record(&hub.db, &earlier).await.unwrap();
        let dispatched_before: Vec<Uuid> = (0..2)
            .flat_map(|offset| execution_ids(&topic, offset, &trigger_ids))
            .collect();
        executions::mark_dispatched(&hub.db, &dispatched_before)
            .await
            .unwrap();

        let index = load_index(&hub.db).await.unwrap();
        let outcome = pipeline(&hub, 7)
            .process(&index, &push_records(&topic, 8))
            .await
            .unwrap();
        assert_eq!(outcome.executions, 24, "{backend}");
        assert_eq!(
            outcome.published, 18,
            "{backend}: all but the six dispatched"
        );
        assert_eq!(outcome.transactions, 4, "{backend}");

        let published = published_counts(&hub);
        for offset in 0..8 {
            for id in execution_ids(&topic, offset, &trigger_ids) {
                let expected_times = usize::from(offset >= 2);
                assert_eq!(
                    published.get(&id).copied().unwrap_or(0),
                    expected_times,
                    "{backend}: requests of event {offset}"
                );
                assert_eq!(
                    status_of(&hub.db, id).await,
                    Some(ExecutionStatus::Dispatched),
                    "{backend}: event {offset}"
                );
            }
        }
        assert_eq!(count(&hub.db, None).await, 24, "{backend}");

        drop(hub);
        database.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_group_keeps_earlier_groups() {
    for database in fresh_databases().await {
        let backend = database.backend;
        let (mut hub, topic, trigger_ids) = hub_with_triggers(&database).await;
        // The producer takes records up to 500 kB, so the action requests
        // of a 600 kB event are rejected.
        hub.settings
            .kafka
            .producer_properties
            .insert("message.max.bytes".to_owned(), "500000".to_owned());
        let index = load_index(&hub.db).await.unwrap();
        // One event per transaction. Event 3 is too large to publish.
        let pipeline = pipeline(&hub, TRIGGERS);
        let mut records = push_records(&topic, 6);
        records[3] = push_record(&topic, 3, 600_000);

        let error = pipeline.process(&index, &records).await.unwrap_err();
        assert!(error.is_permanent(), "{backend}: {error}");
        for offset in 0..6 {
            let expected = match offset {
                0..=2 => Some(ExecutionStatus::Dispatched),
                3 => Some(ExecutionStatus::Pending),
                _ => None,
            };
            for id in execution_ids(&topic, offset, &trigger_ids) {
                assert_eq!(
                    status_of(&hub.db, id).await,
                    expected,
                    "{backend}: event {offset} after the failed attempt"
                );
            }
        }

        // The consumer retries a batch that failed permanently record by
        // record. The groups done before the failure are not published again.
        let outcome = pipeline.process_isolating(&index, &records).await.unwrap();
        assert_eq!(outcome.dead_lettered, 1, "{backend}");
        assert_eq!(outcome.published, 6, "{backend}: events 4 and 5");

        let published = published_counts(&hub);
        for offset in 0..6 {
            let (expected_status, expected_times) = if offset == 3 {
                (ExecutionStatus::Failed, 0)
            } else {
                (ExecutionStatus::Dispatched, 1)
            };
            for id in execution_ids(&topic, offset, &trigger_ids) {
                assert_eq!(
                    status_of(&hub.db, id).await,
                    Some(expected_status),
                    "{backend}: event {offset}"
                );
                assert_eq!(
                    published.get(&id).copied().unwrap_or(0),
                    expected_times,
                    "{backend}: requests of event {offset}"
                );
            }
        }

        drop(hub);
        database.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_commits_after_all_groups() {
    const EVENTS: usize = 40;
    for database in fresh_databases().await {
        let backend = database.backend;
        let (mut hub, topic, _) = hub_with_triggers(&database).await;
        // At most one event (three executions) per transaction.
        hub.settings.pipeline.transaction_max_executions = 5;
        harness::workload::produce_pushes(&hub.bootstrap_servers(), &topic, EVENTS).await;

        hub.start();
        let expected = EVENTS * TRIGGERS;
        assert!(
            wait_until(Duration::from_secs(60), || async {
                count(&hub.db, Some(ExecutionStatus::Dispatched)).await == expected
            })
            .await,
            "{backend}: every execution dispatched"
        );
        hub.stop().await.unwrap();

        assert_eq!(count(&hub.db, None).await, expected, "{backend}");
        let published = published_counts(&hub);
        assert_eq!(
            published.len(),
            expected,
            "{backend}: every execution published"
        );
        assert!(
            published.values().all(|&times| times == 1),
            "{backend}: each published once: {published:?}"
        );
        let committed = assert_committed_prefix_dispatched(
            &hub.bootstrap_servers(),
            &hub.settings.kafka.group_id,
            &topic,
            6,
            &hub.db,
        )
        .await;
        assert_eq!(
            committed, EVENTS as i64,
            "{backend}: every offset committed"
        );

        assert_eq!(
            count(&hub.db, Some(ExecutionStatus::Pending)).await,
            0,
            "{backend}: no execution left pending"
        );

        drop(hub);
        database.drop_database().await;
    }
}
