//! End-to-end tests of the pipeline through librdkafka's mock cluster:
//! GitHub fixtures in, executions and signed action requests out.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use event_hub::dispatch::ActionRequest;
use event_hub::store::entity::trigger_execution::ExecutionStatus;
use event_hub::store::executions::{self, ExecutionQuery};
use event_hub::store::resources::{self, NewAction, NewEventSource, NewTrigger};
use harness::{headers_of, read_topic, unique, wait_until, Hub};
use rdkafka::message::Message as _;
use serde_json::{json, Value};

const ACTION_TOPIC: &str = "event-hub.actions.builtin.pipeline_run";

/// Creates the walk-through's event source, action and push trigger.
async fn create_walkthrough(hub: &Hub, topic: &str, secret: Option<&str>) {
    let mut configuration = json!({ "topics": [topic] });
    if let Some(secret) = secret {
        configuration["secret"] = json!(secret);
    }
    resources::create_event_source(
        &hub.db,
        NewEventSource {
            name: "gh".into(),
            flavor: "github".into(),
            plugin_subtype: "webhook".into(),
            description: None,
            configuration,
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
            configuration: json!({ "template_id": "tmpl-42" }),
            service_account: "sa-ci".into(),
            auth_window_minutes: 60,
        },
    )
    .await
    .unwrap();
    create_trigger(
        hub,
        "on-push",
        json!({ "repo": "Codertocat/Hello-World", "branch": "master", "event_type": "push" }),
    )
    .await;
}

async fn create_trigger(hub: &Hub, name: &str, filter: Value) -> uuid::Uuid {
    resources::create_trigger(
        &hub.db,
        NewTrigger {
            name: name.into(),
            description: None,
            event_source: "gh".into(),
            action: "run-pipeline".into(),
            event_filter: filter,
            is_active: true,
        },
    )
    .await
    .unwrap()
    .id
}

async fn execution_count(hub: &Hub, trigger_id: Option<uuid::Uuid>) -> u64 {
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

fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_fixtures_trigger_exactly_the_matching_pushes() {
    let topic = unique("github-events");
    let mut hub = Hub::new(&[&topic]).await;
    create_walkthrough(&hub, &topic, None).await;
    let push_trigger = resources::find_trigger(&hub.db, "on-push")
        .await
        .unwrap()
        .id;
    let pr_trigger = create_trigger(
        &hub,
        "on-pr-opened",
        json!({ "event_type": "pull_request", "action": ["opened"] }),
    )
    .await;
    hub.start();

    // The expectation is computed from the raw payloads, independently of
    // the decoder: branch pushes to master of Codertocat/Hello-World, and
    // pull requests opened.
    let mut expected_push = BTreeSet::new();
    let mut expected_pr = BTreeSet::new();
    let fixtures = harness::github_fixtures();
    for (event, path) in &fixtures {
        let body = std::fs::read(path).unwrap();
        let payload: Value = serde_json::from_slice(&body).unwrap();
        let delivery = uuid::Uuid::new_v4().to_string();
        if event == "push"
            && payload["ref"] == "refs/heads/master"
            && payload["repository"]["full_name"] == "Codertocat/Hello-World"
        {
            expected_push.insert(delivery.clone());
        }
        if event == "pull_request" && payload["action"] == "opened" {
            expected_pr.insert(delivery.clone());
        }
        hub.produce(
            &topic,
            None,
            &[("x-github-event", event), ("x-github-delivery", &delivery)],
            &body,
        )
        .await;
    }
    assert!(!expected_push.is_empty(), "fixtures contain master pushes");
    assert!(
        !expected_pr.is_empty(),
        "fixtures contain opened pull requests"
    );
    let expected_total = expected_push.len() + expected_pr.len();

    let recorded = wait_until(Duration::from_secs(30), || async {
        execution_count(&hub, None).await as usize >= expected_total
    })
    .await;
    assert!(recorded, "executions recorded within 30 s");

    let messages = read_topic(
        &hub.bootstrap_servers(),
        ACTION_TOPIC,
        expected_total,
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    hub.stop().await.unwrap();

    // Exactly the expected events, per trigger.
    let executions = executions::list(
        &hub.db,
        &ExecutionQuery {
            limit: 10_000,
            ..ExecutionQuery::default()
        },
    )
    .await
    .unwrap();
    let events_of = |trigger_id| -> BTreeSet<String> {
        executions
            .iter()
            .filter(|execution| execution.trigger_id == trigger_id)
            .map(|execution| execution.event_id.clone())
            .collect()
    };
    assert_eq!(events_of(push_trigger), expected_push);
    assert_eq!(events_of(pr_trigger), expected_pr);
    assert_eq!(executions.len(), expected_total);
    assert!(executions
        .iter()
        .all(|execution| execution.status == ExecutionStatus::Dispatched
            && execution.dispatched_at.is_some()));

    // One action request per execution, with the CloudEvents headers and
    // the JSON body of the contract, and a verifiable token.
    assert_eq!(messages.len(), expected_total);
    let by_execution: BTreeMap<uuid::Uuid, _> = executions.iter().map(|e| (e.id, e)).collect();
    for message in &messages {
        let headers = headers_of(message);
        let request: ActionRequest = serde_json::from_slice(message.payload().unwrap()).unwrap();
        let execution = by_execution[&request.execution_id];

        assert_eq!(headers["ce_specversion"], "1.0");
        assert_eq!(headers["ce_id"], request.execution_id.to_string());
        assert_eq!(
            headers["ce_source"],
            format!("event-hub/triggers/{}", execution.trigger_id)
        );
        assert_eq!(headers["ce_type"], "builtin.pipeline_run");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(
            message.key().unwrap(),
            execution.trigger_id.to_string().as_bytes()
        );

        assert_eq!(request.trigger.id, execution.trigger_id);
        assert_eq!(request.action.name, "run-pipeline");
        assert_eq!(request.action.flavor, "builtin");
        assert_eq!(request.action.subtype, "pipeline_run");
        assert_eq!(
            request.action.configuration,
            json!({ "template_id": "tmpl-42" })
        );
        assert_eq!(request.event.id, execution.event_id);
        assert_eq!(request.event.source.name, "gh");
        assert_eq!(request.event.source.flavor, "github");
        assert_eq!(request.event.metadata, execution.event_metadata);
        assert_eq!(request.auth.service_account, "sa-ci");

        let claims = hub
            .verifier
            .verify(&request.auth.token, "builtin.pipeline_run")
            .unwrap();
        assert_eq!(claims.sub, "sa-ci");
        assert_eq!(claims.aud, "builtin.pipeline_run");
        assert_eq!(claims.jti, request.execution_id.to_string());
        assert_eq!(claims.exp - claims.iat, 60 * 60);
        assert_eq!(claims.exp, request.auth.expires_at.timestamp());
    }
    let push_request: ActionRequest = messages
        .iter()
        .map(|message| serde_json::from_slice::<ActionRequest>(message.payload().unwrap()).unwrap())
        .find(|request| request.trigger.id == push_trigger)
        .unwrap();
    assert_eq!(push_request.event.event_type, "push");
    assert_eq!(push_request.event.metadata["branch"], "master");
    assert_eq!(
        push_request.event.metadata["repo"],
        "Codertocat/Hello-World"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_token_fails_verification() {
    let topic = unique("github-events");
    let mut hub = Hub::new(&[&topic]).await;
    create_walkthrough(&hub, &topic, None).await;
    hub.start();

    let body = std::fs::read(harness::fixtures_dir().join("push/payload.json")).unwrap();
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        payload["ref"], "refs/tags/simple-tag",
        "push/payload.json is a tag push"
    );
    let branch_push = branch_push_fixture();
    hub.produce(
        &topic,
        None,
        &[("x-github-event", "push"), ("x-github-delivery", "d-1")],
        &branch_push,
    )
    .await;
    let messages = read_topic(
        &hub.bootstrap_servers(),
        ACTION_TOPIC,
        1,
        Duration::ZERO,
        Duration::from_secs(30),
    );
    hub.stop().await.unwrap();
    assert_eq!(messages.len(), 1);

    let request: ActionRequest = serde_json::from_slice(messages[0].payload().unwrap()).unwrap();
    let token = &request.auth.token;
    hub.verifier.verify(token, "builtin.pipeline_run").unwrap();

    // Change one character of the signature, then of the claims.
    let mut forged_signature = token.clone();
    let last = forged_signature.pop().unwrap();
    forged_signature.push(if last == 'A' { 'B' } else { 'A' });
    assert!(hub
        .verifier
        .verify(&forged_signature, "builtin.pipeline_run")
        .is_err());

    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("sa-admin");
    let forged_claims = format!(
        "{}.{}.{}",
        parts[0],
        engine.encode(claims.to_string()),
        parts[2]
    );
    assert!(hub
        .verifier
        .verify(&forged_claims, "builtin.pipeline_run")
        .is_err());
    assert!(
        hub.verifier.verify(token, "builtin.other").is_err(),
        "another audience is rejected"
    );
}

/// Returns a branch push to master of Codertocat/Hello-World from the fixtures.
fn branch_push_fixture() -> Vec<u8> {
    harness::github_fixtures()
        .into_iter()
        .filter(|(event, _)| event == "push")
        .map(|(_, path)| std::fs::read(path).unwrap())
        .find(|body| {
            let payload: Value = serde_json::from_slice(body).unwrap();
            payload["ref"] == "refs/heads/master"
                && payload["repository"]["full_name"] == "Codertocat/Hello-World"
        })
        .expect("a master push fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_delivery_twice_records_one_execution() {
    let topic = unique("github-events");
    let mut hub = Hub::new(&[&topic]).await;
    create_walkthrough(&hub, &topic, None).await;
    hub.start();

    let body = branch_push_fixture();
    let headers = [
        ("x-github-event", "push"),
        ("x-github-delivery", "same-delivery"),
    ];
    hub.produce(&topic, None, &headers, &body).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            execution_count(&hub, None).await == 1
        })
        .await
    );
    hub.produce(&topic, None, &headers, &body).await;

    // A marker event after the duplicate proves the duplicate was consumed.
    hub.produce(
        &topic,
        None,
        &[("x-github-event", "push"), ("x-github-delivery", "marker")],
        &body,
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            execution_count(&hub, None).await == 2
        })
        .await
    );

    let messages = read_topic(
        &hub.bootstrap_servers(),
        ACTION_TOPIC,
        2,
        Duration::from_secs(1),
        Duration::from_secs(20),
    );
    hub.stop().await.unwrap();
    assert_eq!(execution_count(&hub, None).await, 2);
    assert_eq!(
        messages.len(),
        2,
        "the duplicate delivery publishes no second request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_the_dead_letter_topic() {
    let topic = unique("github-events");
    let mut hub = Hub::new(&[&topic]).await;
    create_walkthrough(&hub, &topic, Some("webhook-secret")).await;
    hub.start();

    let body = branch_push_fixture();
    // Sent to one partition, in order, so "after" is well defined.
    let key = Some("same-partition");
    hub.produce(
        &topic,
        key,
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "not-json"),
            (
                "x-hub-signature-256",
                &github_signature("webhook-secret", b"{not json"),
            ),
        ],
        b"{not json",
    )
    .await;
    hub.produce(
        &topic,
        key,
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "bad-signature"),
            (
                "x-hub-signature-256",
                &github_signature("wrong-secret", &body),
            ),
        ],
        &body,
    )
    .await;
    hub.produce(
        &topic,
        key,
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "unknown-source"),
            ("event-source", "no-such-source"),
        ],
        &body,
    )
    .await;
    hub.produce(
        &topic,
        key,
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "unsigned"),
        ],
        &body,
    )
    .await;
    hub.produce(
        &topic,
        key,
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "good"),
            (
                "x-hub-signature-256",
                &github_signature("webhook-secret", &body),
            ),
        ],
        &body,
    )
    .await;

    let dead = read_topic(
        &hub.bootstrap_servers(),
        "event-hub.dlq",
        4,
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    assert!(
        wait_until(Duration::from_secs(20), || async {
            execution_count(&hub, None).await == 1
        })
        .await
    );
    hub.stop().await.unwrap();

    let executions = executions::list(&hub.db, &ExecutionQuery::default())
        .await
        .unwrap();
    assert_eq!(executions.len(), 1);
    assert_eq!(executions[0].event_id, "good");

    assert_eq!(dead.len(), 4);
    let reasons: BTreeMap<String, BTreeMap<String, String>> = dead
        .iter()
        .map(|message| {
            let headers = headers_of(message);
            (headers["x-github-delivery"].clone(), headers)
        })
        .collect();
    assert_eq!(reasons["unsigned"]["event-hub-error"], "missing_signature");
    assert_eq!(reasons["bad-signature"]["event-hub-event-source"], "gh");
    assert_eq!(reasons["not-json"]["event-hub-error"], "invalid_json");
    assert_eq!(
        reasons["bad-signature"]["event-hub-error"],
        "invalid_signature"
    );
    assert_eq!(
        reasons["unknown-source"]["event-hub-error"],
        "unknown_event_source"
    );
    for headers in reasons.values() {
        assert_eq!(headers["event-hub-source-topic"], topic);
        assert!(headers["event-hub-source-partition"].parse::<i32>().is_ok());
        assert!(headers["event-hub-source-offset"].parse::<i64>().is_ok());
        assert!(!headers["event-hub-error-message"].is_empty());
    }
    let not_json = dead
        .iter()
        .find(|message| headers_of(message)["x-github-delivery"] == "not-json")
        .unwrap();
    assert_eq!(
        not_json.payload().unwrap(),
        b"{not json",
        "the original value is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_stream_loses_and_duplicates_nothing() {
    let topic = unique("json-events");
    let mut hub = Hub::new(&[&topic]).await;
    resources::create_event_source(
        &hub.db,
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
    for (name, filter) in [
        ("all-pushes", json!({ "type": ["push"] })),
        ("small", json!({ "n": [{ "numeric": ["<", 1000] }] })),
    ] {
        resources::create_trigger(
            &hub.db,
            NewTrigger {
                name: name.into(),
                description: None,
                event_source: "app".into(),
                action: "run-pipeline".into(),
                event_filter: filter,
                is_active: true,
            },
        )
        .await
        .unwrap();
    }

    const EVENTS: usize = 2_000;
    for n in 0..EVENTS {
        let body = json!({ "type": "push", "n": n }).to_string();
        hub.produce(&topic, Some(&n.to_string()), &[], body.as_bytes())
            .await;
    }
    let expected = EVENTS + 1_000;

    // Kill the daemon without a graceful stop once some work is done, then
    // start another one in the same consumer group.
    hub.start();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            execution_count(&hub, None).await > 200
        })
        .await
    );
    hub.abort().await;
    let after_kill = execution_count(&hub, None).await;
    hub.start();
    assert!(
        wait_until(Duration::from_secs(60), || async {
            execution_count(&hub, None).await as usize == expected
        })
        .await,
        "all executions recorded after the restart"
    );
    let messages = read_topic(
        &hub.bootstrap_servers(),
        ACTION_TOPIC,
        expected,
        Duration::from_secs(1),
        Duration::from_secs(60),
    );
    hub.stop().await.unwrap();

    assert!(
        (after_kill as usize) < expected,
        "the kill happened mid-stream"
    );
    let pending = executions::count(
        &hub.db,
        &ExecutionQuery {
            status: Some(ExecutionStatus::Pending),
            ..ExecutionQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(pending, 0, "every execution dispatched");
    let published: BTreeSet<String> = messages
        .iter()
        .map(|message| headers_of(message)["ce_id"].clone())
        .collect();
    assert_eq!(
        published.len(),
        expected,
        "every execution published at least once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_deactivate_stops_executions_within_two_seconds() {
    let topic = unique("github-events");
    let mut hub = Hub::new(&[&topic]).await;
    create_walkthrough(&hub, &topic, None).await;
    hub.start();
    let body = branch_push_fixture();
    let publish = |delivery: &'static str| {
        let hub = &hub;
        let topic = topic.clone();
        let body = body.clone();
        async move {
            hub.produce(
                &topic,
                None,
                &[("x-github-event", "push"), ("x-github-delivery", delivery)],
                &body,
            )
            .await;
        }
    };

    publish("before").await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            execution_count(&hub, None).await == 1
        })
        .await
    );

    let cli = |arguments: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_event-hub"))
            .args(arguments)
            .env("EVENT_HUB__DATABASE__URL", hub.database_url())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "event-hub {arguments:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };

    cli(&["trigger", "deactivate", "on-push"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish("while-inactive").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        execution_count(&hub, None).await,
        1,
        "no execution while the trigger is inactive"
    );

    cli(&["trigger", "activate", "on-push"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish("after").await;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            execution_count(&hub, None).await == 2
        })
        .await
    );
    hub.stop().await.unwrap();

    let events: BTreeSet<String> = executions::list(&hub.db, &ExecutionQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|execution| execution.event_id)
        .collect();
    assert_eq!(
        events,
        BTreeSet::from(["before".to_owned(), "after".to_owned()])
    );
}
