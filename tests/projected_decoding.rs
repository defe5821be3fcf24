//! The consumer decodes a record with only the fields that matching reads,
//! and decodes it whole when a trigger matches. These tests run
//! `Pipeline::process` over librdkafka's mock cluster and SQLite, and check
//! what reaches the action topic and the dead letter topic.

mod harness;

use std::collections::BTreeMap;

use event_hub::dispatch::ActionRequest;
use event_hub::event::InboundRecord;
use event_hub::matching::refresh::load_index;
use harness::workload::{create_json_pipeline, pipeline};
use harness::{headers_of, read_to_end, unique, Hub};
use serde_json::json;

const ACTION_TOPIC: &str = "event-hub.actions.builtin.pipeline_run";

fn record(topic: &str, offset: i64, payload: &[u8]) -> InboundRecord {
    InboundRecord {
        topic: topic.to_owned(),
        partition: 0,
        offset,
        payload: Some(payload.to_vec()),
        ..InboundRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_decodes_for_matching_then_whole() {
    let topic = unique("json-events");
    let hub = Hub::new(&[&topic]).await;
    // One JSON source on `topic` with one trigger on `{"type": ["push"]}`.
    create_json_pipeline(&hub.db, &topic).await;
    let index = load_index(&hub.db).await.unwrap();
    let pipeline = pipeline(&hub, 100);

    let whole = json!({
        "type": "push",
        "repository": {"name": "api", "topics": ["rust", {"deep": [null, 1.5]}]},
        "commits": [{"id": "a1", "message": "caf\u{e9}"}],
        "big": 18_446_744_073_709_551_615_u64,
    });
    let records = [
        // Matches: the request carries every field, not only `type`.
        record(&topic, 0, whole.to_string().as_bytes()),
        // Matches nothing. A number beyond f64 in a field no trigger names
        // is valid JSON, and is skipped without being converted.
        record(&topic, 1, br#"{"type": "tag", "huge": 1e400}"#),
        // Matches, so it is decoded whole, and serde_json rejects the number.
        record(&topic, 2, br#"{"type": "push", "huge": 1e400}"#),
        // Invalid UTF-8 in a field no trigger names.
        record(&topic, 3, b"{\"type\": \"tag\", \"name\": \"\xff\"}"),
        // Invalid JSON after the named field.
        record(&topic, 4, br#"{"type": "tag", "list": [1, 2}"#),
        // A JSON value that is not an object.
        record(&topic, 5, br#"["type", "push"]"#),
    ];

    let outcome = pipeline.process(&index, &records).await.unwrap();
    assert_eq!(outcome.records, 6);
    assert_eq!(outcome.matched, 1);
    assert_eq!(outcome.executions, 1);
    assert_eq!(outcome.published, 1);
    assert_eq!(outcome.dead_lettered, 4);

    let requests = read_to_end(&hub.bootstrap_servers(), ACTION_TOPIC);
    assert_eq!(requests.len(), 1);
    let request: ActionRequest = serde_json::from_slice(
        rdkafka::Message::payload(&requests[0]).expect("action request has a value"),
    )
    .unwrap();
    assert_eq!(request.event.data, whole);
    assert_eq!(request.event.metadata, json!({"type": "push"}));

    let reasons: BTreeMap<i64, String> = read_to_end(&hub.bootstrap_servers(), "event-hub.dlq")
        .iter()
        .map(|message| {
            let headers = headers_of(message);
            (
                headers["event-hub-source-offset"].parse().unwrap(),
                headers["event-hub-error"].clone(),
            )
        })
        .collect();
    let expected: BTreeMap<i64, String> = [
        (2, "invalid_json"),
        (3, "invalid_json"),
        (4, "invalid_json"),
        (5, "invalid_event"),
    ]
    .into_iter()
    .map(|(offset, reason)| (offset, reason.to_owned()))
    .collect();
    assert_eq!(reasons, expected);
}
