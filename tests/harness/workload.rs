//! Shared workload of the fault and process tests: a JSON event source
//! with one trigger on pushes, a producer of push events, checks of the
//! committed offsets against the executions, and a pipeline built as the
//! daemon builds it.

use std::collections::BTreeSet;
use std::time::Duration;

use event_hub::auth::TokenSigner;
use event_hub::consumer::Pipeline;
use event_hub::dispatch::Dispatcher;
use event_hub::store::entity::trigger_execution::ExecutionStatus;
use event_hub::store::executions::{self, ExecutionQuery};
use event_hub::store::resources::{self, NewAction, NewEventSource, NewTrigger};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sea_orm::DatabaseConnection;
use serde_json::json;

use super::{test_producer, Hub};

/// Creates a JSON source on `topic`, an action and a trigger on pushes;
/// returns the trigger id.
pub async fn create_json_pipeline(db: &DatabaseConnection, topic: &str) -> uuid::Uuid {
    resources::create_event_source(
        db,
        NewEventSource {
            name: "app".into(),
            flavor: "json".into(),
            plugin_subtype: "kafka".into(),
            description: None,
            configuration: json!({ "topics": [topic] }),
            is_active: true,
        },
    )
    .await
    .unwrap();
    resources::create_action(
        db,
        NewAction {
            name: "run-pipeline".into(),
            flavor: "builtin".into(),
            plugin_subtype: "pipeline_run".into(),
            description: None,
            configuration: json!({}),
            service_account: "sa-ci".into(),
            auth_window_minutes: 10,
        },
    )
    .await
    .unwrap();
    resources::create_trigger(
        db,
        NewTrigger {
            name: "on-push".into(),
            description: None,
            event_source: "app".into(),
            action: "run-pipeline".into(),
            event_filter: json!({ "type": ["push"] }),
            is_active: true,
        },
    )
    .await
    .unwrap()
    .id
}

pub async fn count(db: &DatabaseConnection, status: Option<ExecutionStatus>) -> usize {
    executions::count(
        db,
        &ExecutionQuery {
            status,
            ..ExecutionQuery::default()
        },
    )
    .await
    .unwrap() as usize
}

/// Produces `events` JSON pushes spread over the topic's partitions.
pub async fn produce_pushes(bootstrap_servers: &str, topic: &str, events: usize) {
    let producer = test_producer(bootstrap_servers);
    let sends = (0..events).map(|n| {
        let producer = &producer;
        async move {
            let body = json!({ "type": "push", "n": n }).to_string();
            super::produce(producer, topic, Some(&n.to_string()), &[], body.as_bytes()).await;
        }
    });
    futures::future::join_all(sends).await;
}

/// Asserts that every record below the group's committed offset of its
/// partition has a dispatched execution; returns the committed total.
pub async fn assert_committed_prefix_dispatched(
    bootstrap_servers: &str,
    group_id: &str,
    topic: &str,
    partitions: i32,
    db: &DatabaseConnection,
) -> i64 {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", group_id)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = reader
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    let dispatched: BTreeSet<String> = executions::list(
        db,
        &ExecutionQuery {
            status: Some(ExecutionStatus::Dispatched),
            limit: 1_000_000,
            ..ExecutionQuery::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .map(|execution| execution.event_id)
    .collect();

    let mut total = 0;
    for element in committed.elements() {
        let Offset::Offset(next) = element.offset() else {
            continue;
        };
        total += next;
        for offset in 0..next {
            let event_id = format!("{topic}/{}/{offset}", element.partition());
            assert!(
                dispatched.contains(&event_id),
                "{event_id} committed but not dispatched"
            );
        }
    }
    total
}

/// Builds a pipeline from the hub's settings, as the daemon does.
pub fn pipeline(hub: &Hub, transaction_max_executions: usize) -> Pipeline {
    let settings = &hub.settings;
    let producer: FutureProducer = event_hub::kafka::producer_config(&settings.kafka)
        .create()
        .expect("producer");
    let signer = TokenSigner::from_settings(&settings.auth).expect("signing key");
    let dispatcher = Dispatcher::new(
        producer.clone(),
        signer,
        settings.pipeline.actions_topic_prefix.clone(),
    );
    Pipeline::new(
        hub.db.clone(),
        dispatcher,
        producer,
        settings.pipeline.dlq_topic.clone(),
        transaction_max_executions,
    )
}
