//! End-to-end tests of the `cloudevents` and `json` flavors and of event
//! source routing, through librdkafka's mock cluster.

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use event_hub::dispatch::ActionRequest;
use event_hub::store::entity::{event_source, trigger_execution};
use event_hub::store::executions::{self, ExecutionQuery};
use event_hub::store::resources::{self, NewAction, NewEventSource, NewTrigger};
use harness::{headers_of, read_topic, unique, wait_until, Hub};
use rdkafka::message::Message as _;
use serde_json::{json, Value};
use uuid::Uuid;

const ACTION_TOPIC: &str = "event-hub.actions.builtin.pipeline_run";
const DEAD_LETTER_TOPIC: &str = "event-hub.dlq";

async fn create_source(
    hub: &Hub,
    name: &str,
    flavor: &str,
    topics: &[&str],
    is_active: bool,
) -> event_source::Model {
    resources::create_event_source(
        &hub.db,
        NewEventSource {
            name: name.into(),
            flavor: flavor.into(),
            plugin_subtype: "kafka".into(),
            description: None,
            configuration: json!({ "topics": topics }),
            is_active,
        },
    )
    .await
    .unwrap()
}

async fn create_action(hub: &Hub) {
    resources::create_action(
        &hub.db,
        NewAction {
            name: "run-pipeline".into(),
            flavor: "builtin".into(),
            plugin_subtype: "pipeline_run".into(),
            description: None,
            configuration: json!({}),
            service_account: "sa-ci".into(),
            auth_window_minutes: 5,
        },
    )
    .await
    .unwrap();
}

async fn create_trigger(hub: &Hub, name: &str, event_source: &str, filter: Value) -> Uuid {
    resources::create_trigger(
        &hub.db,
        NewTrigger {
            name: name.into(),
            description: None,
            event_source: event_source.into(),
            action: "run-pipeline".into(),
            event_filter: filter,
            is_active: true,
        },
    )
    .await
    .unwrap()
    .id
}

async fn execution_count(hub: &Hub, trigger_id: Option<Uuid>) -> u64 {
    executions::count(
        &hub.db,
        &ExecutionQuery {
            trigger_id,
            ..ExecutionQuery::default()
        },
    )
    .await
    .unwrap()
}

async fn all_executions(hub: &Hub) -> Vec<trigger_execution::Model> {
    executions::list(
        &hub.db,
        &ExecutionQuery {
            limit: 1_000,
            ..ExecutionQuery::default()
        },
    )
    .await
    .unwrap()
}

fn parse_request(message: &rdkafka::message::OwnedMessage) -> ActionRequest {
    serde_json::from_slice(message.payload().expect("action request has a value"))
        .expect("action request is valid JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_binary_and_structured_modes() {
    let topic = unique("cloudevents");
    let mut hub = Hub::new(&[&topic]).await;
    assert_eq!(hub.settings.pipeline.dlq_topic, DEAD_LETTER_TOPIC);
    let shop = create_source(&hub, "shop", "cloudevents", &[&topic], true).await;
    create_action(&hub).await;
    let trigger_id = create_trigger(
        &hub,
        "large-orders",
        "shop",
        json!({
            "type": ["com.example.order.created"],
            "data": {"amount": [{"numeric": [">", 100]}]}
        }),
    )
    .await;
    hub.start();

    let binary = |id: &'static str| {
        [
            ("ce_specversion", "1.0"),
            ("ce_id", id),
            ("ce_source", "/shop/orders"),
            ("ce_type", "com.example.order.created"),
            ("content-type", "application/json"),
        ]
    };
    let structured = |id: &str, amount: Value| {
        json!({
            "specversion": "1.0",
            "id": id,
            "source": "/shop/orders",
            "type": "com.example.order.created",
            "datacontenttype": "application/json",
            "data": {"amount": amount}
        })
        .to_string()
    };
    let structured_headers = [("content-type", "application/cloudevents+json")];

    // One partition, so the record missing ce_id comes last.
    let key = Some("orders");
    hub.produce(&topic, key, &binary("order-1"), br#"{"amount": 250}"#)
        .await;
    hub.produce(
        &topic,
        key,
        &structured_headers,
        structured("order-2", json!(101)).as_bytes(),
    )
    .await;
    hub.produce(&topic, key, &binary("order-3"), br#"{"amount": 100}"#)
        .await;
    hub.produce(
        &topic,
        key,
        &structured_headers,
        structured("order-4", json!(99.5)).as_bytes(),
    )
    .await;
    hub.produce(
        &topic,
        key,
        &[
            ("ce_specversion", "1.0"),
            ("ce_source", "/shop/orders"),
            ("ce_type", "com.example.order.created"),
            ("content-type", "application/json"),
        ],
        br#"{"amount": 500}"#,
    )
    .await;

    let dead = read_topic(
        &hub.bootstrap_servers(),
        DEAD_LETTER_TOPIC,
        1,
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    assert!(
        wait_until(Duration::from_secs(20), || async {
            execution_count(&hub, None).await >= 2
        })
        .await,
        "executions of the two large orders recorded within 20 s"
    );
    let requests = read_topic(
        &hub.bootstrap_servers(),
        ACTION_TOPIC,
        2,
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    // A graceful stop finishes the batch in progress, so the counts below
    // are final.
    hub.stop().await.unwrap();

    let executions = all_executions(&hub).await;
    let mut event_ids: Vec<&str> = executions
        .iter()
        .map(|execution| execution.event_id.as_str())
        .collect();
    event_ids.sort_unstable();
    assert_eq!(
        event_ids,
        [
            r#"["/shop/orders","order-1"]"#,
            r#"["/shop/orders","order-2"]"#
        ]
    );
    for execution in &executions {
        let id: Vec<String> = serde_json::from_str(&execution.event_id)
            .expect("a CloudEvents event id is a JSON array");
        assert_eq!(id[0], "/shop/orders");
        assert_eq!(execution.trigger_id, trigger_id);
        assert_eq!(execution.event_source_id, shop.id);
        assert_eq!(
            execution.event_metadata["type"],
            "com.example.order.created"
        );
    }

    // Both modes reach the worker as the same structured-mode document.
    assert_eq!(requests.len(), 2);
    let by_event: BTreeMap<String, ActionRequest> = requests
        .iter()
        .map(parse_request)
        .map(|request| (request.event.id.clone(), request))
        .collect();
    let from_binary = &by_event[r#"["/shop/orders","order-1"]"#];
    assert_eq!(from_binary.event.source.flavor, "cloudevents");
    assert_eq!(from_binary.event.event_type, "com.example.order.created");
    assert_eq!(
        from_binary.event.data,
        json!({
            "specversion": "1.0",
            "id": "order-1",
            "source": "/shop/orders",
            "type": "com.example.order.created",
            "datacontenttype": "application/json",
            "data": {"amount": 250}
        })
    );
    let from_structured = &by_event[r#"["/shop/orders","order-2"]"#];
    assert_eq!(from_structured.event.data["data"]["amount"], 101);

    assert_eq!(
        dead.len(),
        1,
        "only the record without ce_id is dead-lettered"
    );
    let headers = headers_of(&dead[0]);
    assert_eq!(headers["event-hub-error"], "missing_header");
    assert_eq!(headers["event-hub-event-source"], "shop");
    assert_eq!(headers["event-hub-source-topic"], topic);
    assert!(
        headers["event-hub-error-message"].contains("ce_id"),
        "{}",
        headers["event-hub-error-message"]
    );
    assert_eq!(dead[0].payload(), Some(&br#"{"amount": 500}"#[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_event_source_header_overrides_topic() {
    let topic_a = unique("json-a");
    let topic_b = unique("json-b");
    let mut hub = Hub::new(&[&topic_a, &topic_b]).await;
    let source_a = create_source(&hub, "source-a", "json", &[&topic_a], true).await;
    let source_b = create_source(&hub, "source-b", "json", &[&topic_b], true).await;
    create_action(&hub).await;
    // The same filter on both sources, so only routing decides the trigger.
    let filter = json!({ "type": [{ "prefix": "deploy." }] });
    let trigger_a = create_trigger(&hub, "a-deploys", "source-a", filter.clone()).await;
    let trigger_b = create_trigger(&hub, "b-deploys", "source-b", filter).await;
    hub.start();

    hub.produce(
        &topic_a,
        None,
        &[("event-source", "source-b")],
        br#"{"type": "deploy.by-name"}"#,
    )
    .await;
    hub.produce(&topic_a, None, &[], br#"{"type": "deploy.direct"}"#)
        .await;
    let id_of_a = source_a.id.to_string();
    hub.produce(
        &topic_b,
        None,
        &[("event-source", &id_of_a)],
        br#"{"type": "deploy.by-id"}"#,
    )
    .await;

    assert!(
        wait_until(Duration::from_secs(20), || async {
            execution_count(&hub, None).await >= 3
        })
        .await,
        "three executions recorded within 20 s"
    );
    let requests = read_topic(
        &hub.bootstrap_servers(),
        ACTION_TOPIC,
        3,
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    hub.stop().await.unwrap();

    let executions = all_executions(&hub).await;
    assert_eq!(executions.len(), 3, "one trigger per record");
    let by_type: BTreeMap<String, &trigger_execution::Model> = executions
        .iter()
        .map(|execution| {
            let event_type = execution.event_metadata["type"].as_str().unwrap();
            (event_type.to_owned(), execution)
        })
        .collect();

    let by_name = by_type["deploy.by-name"];
    assert_eq!(by_name.trigger_id, trigger_b);
    assert_eq!(by_name.event_source_id, source_b.id);
    assert!(
        by_name.event_id.starts_with(&format!("{topic_a}/")),
        "read from topic A: {}",
        by_name.event_id
    );

    let direct = by_type["deploy.direct"];
    assert_eq!(direct.trigger_id, trigger_a);
    assert_eq!(direct.event_source_id, source_a.id);

    let by_id = by_type["deploy.by-id"];
    assert_eq!(by_id.trigger_id, trigger_a);
    assert_eq!(by_id.event_source_id, source_a.id);
    assert!(
        by_id.event_id.starts_with(&format!("{topic_b}/")),
        "read from topic B: {}",
        by_id.event_id
    );

    assert_eq!(requests.len(), 3);
    let request = requests
        .iter()
        .map(parse_request)
        .find(|request| request.event.data["type"] == "deploy.by-name")
        .expect("request of the record routed by name");
    assert_eq!(request.event.source.name, "source-b");
    assert_eq!(request.event.source.flavor, "json");
    assert_eq!(request.trigger.name, "b-deploys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_source_is_skipped_until_activated() {
    let topic = unique("json-paused");
    let mut hub = Hub::new(&[&topic]).await;
    create_source(&hub, "paused", "json", &[&topic], false).await;
    // Reachable only through the event-source header: it marks progress.
    create_source(&hub, "marker", "json", &[], true).await;
    create_action(&hub).await;
    let paused_trigger = create_trigger(
        &hub,
        "paused-deploys",
        "paused",
        json!({ "type": [{ "prefix": "deploy." }] }),
    )
    .await;
    let marker_trigger =
        create_trigger(&hub, "marker-any", "marker", json!({ "type": ["marker"] })).await;
    hub.start();

    // One partition, in order: three records of the inactive source, then a
    // record dead-lettered on purpose, then a record of the marker source.
    let key = Some("paused");
    for _ in 0..3 {
        hub.produce(&topic, key, &[], br#"{"type": "deploy.while-inactive"}"#)
            .await;
    }
    hub.produce(
        &topic,
        key,
        &[("event-source", "no-such-source")],
        br#"{"type": "deploy.unknown-source"}"#,
    )
    .await;
    hub.produce(
        &topic,
        key,
        &[("event-source", "marker")],
        br#"{"type": "marker"}"#,
    )
    .await;

    assert!(
        wait_until(Duration::from_secs(20), || async {
            execution_count(&hub, Some(marker_trigger)).await == 1
        })
        .await,
        "marker execution recorded within 20 s"
    );
    // Every record before the marker is finished once its execution exists.
    assert_eq!(
        execution_count(&hub, Some(paused_trigger)).await,
        0,
        "no execution while the source is inactive"
    );
    let dead = read_topic(
        &hub.bootstrap_servers(),
        DEAD_LETTER_TOPIC,
        1,
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    assert_eq!(
        dead.len(),
        1,
        "records of the inactive source are not dead-lettered"
    );
    assert_eq!(headers_of(&dead[0])["event-source"], "no-such-source");

    resources::set_event_source_active(&hub.db, "paused", true)
        .await
        .unwrap();
    let activated_at = Instant::now();
    // Records produced before the index refresh are still skipped, so keep
    // producing until one matches.
    let mut matched_after = None;
    loop {
        hub.produce(&topic, key, &[], br#"{"type": "deploy.after-activation"}"#)
            .await;
        let matched = wait_until(Duration::from_millis(200), || async {
            execution_count(&hub, Some(paused_trigger)).await > 0
        })
        .await;
        if matched {
            matched_after = Some(activated_at.elapsed());
            break;
        }
        if activated_at.elapsed() >= Duration::from_secs(2) {
            break;
        }
    }
    hub.stop().await.unwrap();
    assert!(
        matched_after.is_some_and(|elapsed| elapsed <= Duration::from_secs(2)),
        "first match after activation: {matched_after:?}, expected within 2 s"
    );

    let executions = all_executions(&hub).await;
    for execution in executions
        .iter()
        .filter(|execution| execution.trigger_id == paused_trigger)
    {
        assert_eq!(
            execution.event_metadata["type"], "deploy.after-activation",
            "records skipped while inactive are not replayed"
        );
    }
}
