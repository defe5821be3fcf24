//! End-to-end tests of the daemon's HTTP server: webhook ingress, admin
//! API authentication, the OpenAPI route list, metrics and readiness.

mod common;
mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use event_hub::api::routes::{Access, Operation};
use event_hub::dispatch::ActionRequest;
use event_hub::store::executions::{self, NewExecution};
use event_hub::store::resources::{self, NewAction, NewEventSource, NewTrigger};
use harness::{read_topic, unique, wait_until, Hub};
use rdkafka::message::Message as _;
use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait as _;
use secrecy::SecretString;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
const WEBHOOK_SECRET: &str = "It's a Secret to Everybody";
const PUSH_FIXTURE: &str = "push/with-new-branch.payload.json";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}

/// Starts a hub whose admin API accepts [`ADMIN_TOKEN`] and returns its
/// base URL.
async fn start_hub(hub: &mut Hub) -> String {
    hub.settings.http.admin_tokens = vec![SecretString::from(ADMIN_TOKEN)];
    hub.start();
    hub.http_url().await
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn push_payload() -> Vec<u8> {
    std::fs::read(harness::fixtures_dir().join(PUSH_FIXTURE)).expect("push fixture")
}

/// Sends an admin request with the test token and returns status and JSON body.
async fn admin(base: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = client()
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates, through the admin API, a github source `name` on `topic` with
/// the webhook secret, an action with subtype `subtype` and a trigger for
/// pushes to master of the fixture's repository.
async fn create_pipeline_via_api(base: &str, name: &str, topic: &str, subtype: &str) {
    let (status, body) = admin(
        base,
        Method::POST,
        "/api/v1/event-sources",
        Some(json!({
            "name": name,
            "flavor": "github",
            "configuration": {"topics": [topic], "secret": WEBHOOK_SECRET},
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["configuration"]["secret"], "********",
        "secret redacted"
    );

    let action = format!("{name}-run");
    let (status, body) = admin(
        base,
        Method::POST,
        "/api/v1/actions",
        Some(json!({
            "name": action,
            "flavor": "builtin",
            "plugin_subtype": subtype,
            "configuration": {"template_id": "t-1"},
            "service_account": "sa-ci",
            "auth_window_minutes": 60,
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = admin(
        base,
        Method::POST,
        "/api/v1/triggers",
        Some(json!({
            "name": format!("{name}-on-push"),
            "event_source": name,
            "action": action,
            "event_filter": {"repo": "Codertocat/Hello-World", "branch": "master", "event_type": "push"},
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Posts `body` to the webhook endpoint of `source` with the given
/// signature and returns the response.
async fn post_webhook(
    base: &str,
    source: &str,
    body: Vec<u8>,
    signature: Option<&str>,
    delivery: &str,
) -> reqwest::Response {
    let mut request = client()
        .post(format!("{base}/webhooks/{source}"))
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header("content-type", "application/json")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    request.send().await.expect("webhook request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhook_becomes_an_execution() {
    let topic = unique("webhook-events");
    let subtype = unique("run").replace('-', "_");
    let action_topic = format!("event-hub.actions.builtin.{subtype}");
    let mut hub = Hub::new(&[&topic]).await;
    let base = start_hub(&mut hub).await;
    create_pipeline_via_api(&base, "gh", &topic, &subtype).await;

    let body = push_payload();
    let delivery = uuid::Uuid::new_v4().to_string();
    let signature = sign(WEBHOOK_SECRET, &body);
    let response = post_webhook(&base, "gh", body, Some(&signature), &delivery).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["topic"], topic.as_str());
    assert_eq!(accepted["delivery"], delivery.as_str());

    let path = format!("/api/v1/executions?event_id={delivery}&status=dispatched");
    let dispatched = wait_until(Duration::from_secs(30), || async {
        let (_, page) = admin(&base, Method::GET, &path, None).await;
        page["total"] == 1
    })
    .await;
    assert!(dispatched, "execution dispatched within 30 s");
    let (_, page) = admin(&base, Method::GET, &path, None).await;
    let execution_id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, execution) = admin(
        &base,
        Method::GET,
        &format!("/api/v1/executions/{execution_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(execution["event_metadata"]["branch"], "master");

    // The action request's token verifies with the key from /api/v1/keys.
    let messages = read_topic(
        &hub.bootstrap_servers(),
        &action_topic,
        1,
        Duration::from_millis(500),
        Duration::from_secs(30),
    );
    assert_eq!(messages.len(), 1, "one action request");
    let request: ActionRequest = serde_json::from_slice(messages[0].payload().unwrap()).unwrap();
    assert_eq!(request.execution_id.to_string(), execution_id);
    let keys: Value = client()
        .get(format!("{base}/api/v1/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &keys["keys"][0];
    let header = jsonwebtoken::decode_header(&request.auth.token).unwrap();
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let decoding_key =
        jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().unwrap()).expect("OKP key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&[format!("builtin.{subtype}")]);
    jsonwebtoken::decode::<Value>(&request.auth.token, &decoding_key, &validation)
        .expect("token verifies with the published key");

    hub.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_or_oversized_webhooks_produce_nothing() {
    let topic = unique("webhook-rejected");
    let mut hub = Hub::new(&[&topic]).await;
    hub.settings.http.max_body_bytes = 64 * 1024;
    let base = start_hub(&mut hub).await;
    let subtype = unique("quiet").replace('-', "_");
    create_pipeline_via_api(&base, "gh-quiet", &topic, &subtype).await;

    let body = push_payload();
    let delivery = uuid::Uuid::new_v4().to_string();
    let cases = [
        ("wrong signature", Some(sign("another secret", &body))),
        ("missing signature", None),
        ("malformed signature", Some("sha256=zz".to_owned())),
    ];
    for (case, signature) in cases {
        let response = post_webhook(
            &base,
            "gh-quiet",
            body.clone(),
            signature.as_deref(),
            &delivery,
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{case}: 401 carries a challenge"
        );
    }

    // A signature over a different body does not cover this one.
    let signature = sign(WEBHOOK_SECRET, b"{}");
    let response = post_webhook(&base, "gh-quiet", body.clone(), Some(&signature), &delivery).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "signature of another body"
    );

    let oversized = vec![b' '; 64 * 1024 + 1];
    let signature = sign(WEBHOOK_SECRET, &oversized);
    let response = post_webhook(&base, "gh-quiet", oversized, Some(&signature), &delivery).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let signature = sign(WEBHOOK_SECRET, &body);
    let response = post_webhook(
        &base,
        "no-such-source",
        body.clone(),
        Some(&signature),
        &delivery,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let messages = read_topic(
        &hub.bootstrap_servers(),
        &topic,
        1,
        Duration::from_secs(1),
        Duration::from_secs(3),
    );
    assert!(
        messages.is_empty(),
        "rejected deliveries reached Kafka: {} records",
        messages.len()
    );
    hub.stop().await.unwrap();
}

/// Resources that a request bypassing authentication would change.
async fn create_victims(hub: &Hub, topic: &str) -> uuid::Uuid {
    resources::create_event_source(
        &hub.db,
        NewEventSource {
            name: "gh".into(),
            flavor: "github".into(),
            plugin_subtype: "webhook".into(),
            description: None,
            configuration: json!({"topics": [topic], "secret": WEBHOOK_SECRET}),
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
            service_account: "sa-ci".into(),
            auth_window_minutes: 60,
        },
    )
    .await
    .unwrap();

    let trigger = resources::create_trigger(
        &hub.db,
        NewTrigger {
            name: "on-push".into(),
            description: None,
            event_source: "gh".into(),
            action: "run-pipeline".into(),
            event_filter: json!({"event_type": "push"}),
            is_active: true,
        },
    )
    .await
    .unwrap();

    let source = resources::find_event_source(&hub.db, "gh").await.unwrap();
    let recorded = executions::record(
        &hub.db,
        &[NewExecution {
            trigger_id: trigger.id,
            event_source_id: source.id,
            event_id: "delivery-1".into(),
            event_metadata: json!({}),
        }],
    )
    .await
    .unwrap();
    recorded[0].id
}

/// Everything an unauthorized request could have changed, as JSON.
async fn snapshot(hub: &Hub) -> Value {
    let sources = resources::list_event_sources(&hub.db).await.unwrap();
    let actions = resources::list_actions(&hub.db).await.unwrap();
    let triggers = resources::list_triggers(&hub.db).await.unwrap();
    let executions = executions::list(&hub.db, &Default::default())
        .await
        .unwrap();
    json!({"sources": sources, "actions": actions, "triggers": triggers, "executions": executions})
}

/// Returns the concrete path of a route template, with `{key}` naming the
/// victim resource of its kind and `{id}` the victim execution.
fn concrete_path(template: &str, execution_id: uuid::Uuid) -> String {
    let key = if template.starts_with("/api/v1/event-sources") {
        "gh"
    } else if template.starts_with("/api/v1/actions") {
        "run-pipeline"
    } else {
        "on-push"
    };
    template
        .replace("{key}", key)
        .replace("{id}", &execution_id.to_string())
        .replace("{event_source}", "gh")
}

/// Returns a body that would change something if the request got through.
fn tempting_body(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("POST", "/api/v1/event-sources") => Some(json!({"name": "intruder", "flavor": "json"})),
        ("POST", "/api/v1/actions") => Some(json!({
            "name": "intruder", "flavor": "builtin", "plugin_subtype": "x",
            "service_account": "sa", "auth_window_minutes": 5
        })),
        ("POST", "/api/v1/triggers") => Some(json!({
            "name": "intruder", "event_source": "gh", "action": "run-pipeline", "event_filter": {}
        })),
        ("POST", "/api/v1/match") => Some(json!({"event_source": "gh", "body": {}})),
        ("PATCH", _) => Some(json!({"name": "renamed"})),
        _ => None,
    }
}

/// Returns the admin routes listed in the served OpenAPI document as
/// (method, path template) pairs.
async fn documented_admin_routes(base: &str) -> Vec<(String, String)> {
    let document: Value = client()
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut routes = Vec::new();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|requirements| !requirements.is_empty());
            if secured {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route_and_each_is_served() {
    let topic = unique("openapi");
    let mut hub = Hub::new(&[&topic]).await;
    let base = start_hub(&mut hub).await;

    let document: Value = client()
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented = BTreeSet::new();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let table: BTreeSet<(String, String)> = Operation::ALL
        .iter()
        .map(|operation| {
            let spec = operation.spec();
            (spec.method.to_owned(), spec.path.to_owned())
        })
        .collect();
    assert_eq!(
        documented, table,
        "the OpenAPI document lists the route table"
    );
    let admin_routes: BTreeSet<(String, String)> =
        documented_admin_routes(&base).await.into_iter().collect();
    let table_admin: BTreeSet<(String, String)> = Operation::ALL
        .iter()
        .filter(|operation| operation.spec().access == Access::Admin)
        .map(|operation| {
            let spec = operation.spec();
            (spec.method.to_owned(), spec.path.to_owned())
        })
        .collect();
    assert_eq!(admin_routes, table_admin, "admin routes require the token");

    // Every documented route is served: with a valid token, no request ends
    // in the router's fallback. Keys name nothing, so nothing changes.
    for (method, template) in &documented {
        let path = template
            .replace("{key}", "missing-resource")
            .replace("{event_source}", "missing-resource")
            .replace("{id}", &uuid::Uuid::new_v4().to_string());
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client()
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN);
        if method == Method::POST || method == Method::PATCH {
            request = request.json(&json!({}));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {template}"
        );
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {template}");
        assert!(
            !message.starts_with("no route for"),
            "{method} {template} is documented but not served"
        );
    }
    hub.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_reject_missing_or_wrong_tokens() {
    let topic = unique("admin-auth");
    let mut hub = Hub::new(&[&topic]).await;
    let execution_id = create_victims(&hub, &topic).await;
    let base = start_hub(&mut hub).await;
    let before = snapshot(&hub).await;

    let routes = documented_admin_routes(&base).await;
    assert!(routes.len() >= 20, "admin routes found: {routes:?}");
    let wrong_credentials: [(&str, Option<String>); 4] = [
        ("no Authorization header", None),
        (
            "wrong bearer token",
            Some("Bearer not-the-admin-token-0123".to_owned()),
        ),
        (
            "right token, Basic scheme",
            Some(format!("Basic {ADMIN_TOKEN}")),
        ),
        (
            "token prefix only",
            Some(format!("Bearer {}", &ADMIN_TOKEN[..10])),
        ),
    ];
    for (method, template) in &routes {
        let path = concrete_path(template, execution_id);
        for (case, authorization) in &wrong_credentials {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = client().request(method.clone(), format!("{base}{path}"));
            if let Some(authorization) = authorization {
                request = request.header("authorization", authorization);
            }
            if let Some(body) = tempting_body(method.as_str(), template) {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {case}"
            );
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(
                challenge.starts_with("Bearer"),
                "{method} {path} with {case}: challenge {challenge:?}"
            );
            let body: Value = response.json().await.unwrap();
            assert!(
                body["error"]["message"].is_string(),
                "{method} {path} with {case}: JSON error body"
            );
        }
    }

    assert_eq!(
        snapshot(&hub).await,
        before,
        "unauthorized requests changed nothing"
    );
    hub.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_without_tokens_is_disabled() {
    let topic = unique("admin-disabled");
    let mut hub = Hub::new(&[&topic]).await;
    hub.start();
    let base = hub.http_url().await;

    for (method, template) in documented_admin_routes(&base).await {
        let path = concrete_path(&template, uuid::Uuid::new_v4());
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = client()
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("disabled"), "{method} {path}: {message}");
    }
    hub.stop().await.unwrap();
}

/// Returns the sum of the samples of `name` whose labels include `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let has_labels = labels
            .iter()
            .all(|(label, expected)| series_labels.contains(&format!("{label}=\"{expected}\"")));
        if has_labels {
            total += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}

async fn scrape(base: &str) -> String {
    let response = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_records_executions_and_requests() {
    let topic = unique("metrics-events");
    let subtype = unique("metered").replace('-', "_");
    let action_topic = format!("event-hub.actions.builtin.{subtype}");
    let mut hub = Hub::new(&[&topic]).await;
    let base = start_hub(&mut hub).await;
    create_pipeline_via_api(&base, "gh", &topic, &subtype).await;

    let before = scrape(&base).await;
    let executions_before = metric(&before, "event_hub_executions_total", &[]);
    let accepted_before = metric(
        &before,
        "event_hub_webhooks_total",
        &[("outcome", "accepted")],
    );

    let body = push_payload();
    let signature = sign(WEBHOOK_SECRET, &body);
    let delivery = uuid::Uuid::new_v4().to_string();
    let response = post_webhook(&base, "gh", body.clone(), Some(&signature), &delivery).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // A record that is not JSON, produced directly, is dead-lettered.
    hub.produce(&topic, None, &[("x-github-event", "push")], b"not json")
        .await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (counted, text) = loop {
        let text = scrape(&base).await;
        let published = metric(
            &text,
            "event_hub_action_requests_published_total",
            &[("topic", &action_topic)],
        );
        let consumed = metric(
            &text,
            "event_hub_records_consumed_total",
            &[("topic", &topic)],
        );
        if published >= 1.0 && consumed >= 2.0 {
            break (true, text);
        }
        if tokio::time::Instant::now() >= deadline {
            break (false, text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(counted, "metrics moved within 30 s:\n{text}");
    assert!(metric(&text, "event_hub_executions_total", &[]) >= executions_before + 1.0);
    assert!(
        metric(
            &text,
            "event_hub_webhooks_total",
            &[("outcome", "accepted")]
        ) >= accepted_before + 1.0
    );
    assert!(
        metric(
            &text,
            "event_hub_dead_letters_total",
            &[("reason", "missing_signature")]
        ) >= 1.0
    );
    assert!(metric(&text, "event_hub_batch_duration_seconds_count", &[]) >= 1.0);
    assert!(
        metric(
            &text,
            "event_hub_http_requests_total",
            &[("route", "/webhooks/{event_source}"), ("status", "202")]
        ) >= 1.0
    );
    hub.stop().await.unwrap();
}

/// Admin URLs of the test PostgreSQL server, as `tests/common/databases.rs`
/// tries them.
const POSTGRES_ADMIN_URLS: [&str; 2] = [
    "postgres://postgres@127.0.0.1:5432/test",
    "postgres://root@127.0.0.1:5432/test",
];

/// Connects to the first reachable PostgreSQL admin URL.
async fn postgres_admin() -> Option<sea_orm::DatabaseConnection> {
    let candidates: Vec<String> = match std::env::var(common::databases::POSTGRES_URL_ENV) {
        Ok(url) if !url.is_empty() => vec![url],
        _ => POSTGRES_ADMIN_URLS
            .iter()
            .map(|url| (*url).to_owned())
            .collect(),
    };
    for url in candidates {
        if let Ok(db) = sea_orm::Database::connect(url).await {
            return Some(db);
        }
    }
    None
}

async fn readyz(base: &str) -> (StatusCode, Value) {
    let response = client().get(format!("{base}/readyz")).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `/readyz` for up to 30 s until it returns `expected`. Returns
/// whether it did, and the last body.
async fn wait_readiness(base: &str, expected: StatusCode) -> (bool, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = readyz(base).await;
        if status == expected {
            return (true, body);
        }
        if tokio::time::Instant::now() >= deadline {
            return (false, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_database_availability() {
    let Some(database) = common::databases::fresh_server_database(
        "postgres",
        common::databases::POSTGRES_URL_ENV,
        &POSTGRES_ADMIN_URLS,
    )
    .await
    else {
        return;
    };
    let name = database
        .url
        .rsplit('/')
        .next()
        .and_then(|last| last.split('?').next())
        .unwrap()
        .to_owned();
    let admin_db = postgres_admin().await.expect("admin connection");

    let topic = unique("readyz");
    let mut hub = Hub::with_database(&[&topic], &database.url, tempfile::tempdir().unwrap()).await;
    resources::create_event_source(
        &hub.db,
        NewEventSource {
            name: "events".into(),
            flavor: "json".into(),
            plugin_subtype: "kafka".into(),
            description: None,
            configuration: json!({"topics": [topic]}),
            is_active: true,
        },
    )
    .await
    .unwrap();
    let base = start_hub(&mut hub).await;

    let live = client().get(format!("{base}/livez")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let (ready, last) = wait_readiness(&base, StatusCode::OK).await;
    assert!(ready, "ready within 30 s: {last}");

    // Refuse new connections to the hub's database and end the open ones.
    admin_db
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS false"
        ))
        .await
        .unwrap();
    admin_db
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .await
        .unwrap();
    // pg_terminate_backend only signals the sessions, which end shortly after.
    let (unready, body) = wait_readiness(&base, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(unready, "not ready while the database is down: {body}");
    assert_eq!(body["database_ok"], false, "{body}");
    let live = client().get(format!("{base}/livez")).send().await.unwrap();
    assert_eq!(
        live.status(),
        StatusCode::OK,
        "alive while the database is down"
    );

    admin_db
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"
        ))
        .await
        .unwrap();
    let (recovered, last) = wait_readiness(&base, StatusCode::OK).await;
    assert!(recovered, "ready again within 30 s: {last}");

    hub.stop().await.unwrap();
    let _ = admin_db.close().await;
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_lists_matching_triggers() {
    let topic = unique("dry-run");
    let mut hub = Hub::new(&[&topic]).await;
    let base = start_hub(&mut hub).await;
    create_pipeline_via_api(&base, "gh", &topic, "pipeline_run").await;
    let payload: Value = serde_json::from_slice(&push_payload()).unwrap();

    let (status, result) = admin(
        &base,
        Method::POST,
        "/api/v1/match",
        Some(json!({"event_source": "gh", "headers": {"x-github-event": "push"}, "body": payload})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["outcome"], "matched", "{result}");
    assert_eq!(result["triggers"], json!(["gh-on-push"]));
    assert_eq!(result["explanations"][0]["matched"], true, "{result}");

    let mut tag_push = payload.clone();
    tag_push["ref"] = json!("refs/tags/v1.0");
    let (_, result) = admin(
        &base,
        Method::POST,
        "/api/v1/match",
        Some(
            json!({"event_source": "gh", "headers": {"x-github-event": "push"}, "body": tag_push}),
        ),
    )
    .await;
    assert_eq!(result["outcome"], "no_match", "{result}");
    let explanation = &result["explanations"][0];
    assert_eq!(explanation["matched"], false, "{result}");
    assert!(explanation["message"].is_string(), "{result}");

    let (_, result) = admin(
        &base,
        Method::POST,
        "/api/v1/match",
        Some(json!({"event_source": "gh", "headers": {"x-github-event": "push"}, "raw_body": "not json"})),
    )
    .await;
    assert_eq!(result["outcome"], "dead_letter", "{result}");
    assert_eq!(result["error"]["reason"], "invalid_json");

    let (_, result) = admin(
        &base,
        Method::POST,
        "/api/v1/match",
        Some(json!({"event_source": "gh", "headers": {"x-github-event": "push"}, "body": payload, "verify_signature": true})),
    )
    .await;
    assert_eq!(result["error"]["reason"], "missing_signature", "{result}");

    let (status, error) = admin(
        &base,
        Method::POST,
        "/api/v1/match",
        Some(json!({"event_source": "nope", "body": {}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["field"], "event_source");
    hub.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_crud_round_trip_and_errors() {
    let topic = unique("crud");
    let mut hub = Hub::new(&[&topic]).await;
    let base = start_hub(&mut hub).await;
    create_pipeline_via_api(&base, "gh", &topic, "pipeline_run").await;

    // A name in use is a conflict naming the field.
    let (status, error) = admin(
        &base,
        Method::POST,
        "/api/v1/event-sources",
        Some(json!({"name": "gh", "flavor": "github"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["error"]["field"], "name");

    // An invalid filter is rejected with the field.
    let (status, error) = admin(
        &base,
        Method::PATCH,
        "/api/v1/triggers/gh-on-push",
        Some(json!({"event_filter": {"branch": [{"prefix": 7}]}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "event_filter");

    // Sending back the redacted secret keeps the stored one.
    let (status, source) = admin(&base, Method::GET, "/api/v1/event-sources/gh", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut configuration = source["configuration"].clone();
    configuration["topics"] = json!([topic, "second-topic"]);
    let (status, updated) = admin(
        &base,
        Method::PATCH,
        "/api/v1/event-sources/gh",
        Some(json!({"configuration": configuration, "description": "pushes"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let stored = resources::find_event_source(&hub.db, "gh").await.unwrap();
    assert_eq!(stored.configuration["secret"], WEBHOOK_SECRET);
    assert_eq!(stored.description.as_deref(), Some("pushes"));

    // Rotation returns a new secret once and stores it.
    let (status, rotated) = admin(
        &base,
        Method::POST,
        "/api/v1/event-sources/gh/rotate-secret",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let secret = rotated["secret"].as_str().unwrap();
    let stored = resources::find_event_source(&hub.db, "gh").await.unwrap();
    assert_eq!(stored.configuration["secret"], secret);
    assert_ne!(secret, WEBHOOK_SECRET);

    // Deleting a source that a trigger uses conflicts; deactivating works.
    let (status, _) = admin(&base, Method::DELETE, "/api/v1/event-sources/gh", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, trigger) = admin(
        &base,
        Method::POST,
        "/api/v1/triggers/gh-on-push/deactivate",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(trigger["is_active"], false);
    let (status, _) = admin(&base, Method::DELETE, "/api/v1/triggers/gh-on-push", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, error) = admin(&base, Method::GET, "/api/v1/triggers/gh-on-push", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");

    // Execution list validation.
    let (status, error) = admin(&base, Method::GET, "/api/v1/executions?limit=0", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["field"], "limit");
    let (status, error) = admin(&base, Method::GET, "/api/v1/executions?status=done", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["field"], "status");
    let (status, page) = admin(
        &base,
        Method::GET,
        &format!("/api/v1/executions?status={}", "pending"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 0);
    assert_eq!(page["limit"], 50);
    hub.stop().await.unwrap();
}

/// Runs the `event-hub` CLI against `hub`'s database and returns its output.
fn cli(hub: &Hub, arguments: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_event-hub"))
        .args(arguments)
        .env("EVENT_HUB__DATABASE__URL", hub.database_url())
        .env_remove("RUST_LOG")
        .output()
        .expect("event-hub runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_rotate_secret_prints_it_once() {
    let topic = unique("rotate");
    let hub = Hub::new(&[&topic]).await;
    create_victims(&hub, &topic).await;

    let output = cli(&hub, &["event-source", "update", "gh", "--rotate-secret"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let printed = stdout
        .lines()
        .find_map(|line| line.strip_prefix("new webhook secret (shown only now): "))
        .unwrap_or_else(|| panic!("no secret line in {stdout:?}"))
        .to_owned();
    assert_eq!(printed.len(), 64, "32 random bytes as hex");
    let stored = resources::find_event_source(&hub.db, "gh").await.unwrap();
    assert_eq!(stored.configuration["secret"], printed.as_str());

    let output = cli(
        &hub,
        &[
            "event-source",
            "update",
            "gh",
            "--rotate-secret",
            "--output",
            "json",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let stored = resources::find_event_source(&hub.db, "gh").await.unwrap();
    assert_eq!(stored.configuration["secret"], printed["secret"]);
    assert_eq!(
        printed["event_source"]["configuration"]["secret"],
        "********"
    );

    // Only github sources verify a secret.
    resources::create_event_source(
        &hub.db,
        NewEventSource {
            name: "plain".into(),
            flavor: "json".into(),
            plugin_subtype: "kafka".into(),
            description: None,
            configuration: json!({"topics": [topic]}),
            is_active: true,
        },
    )
    .await
    .unwrap();
    let output = cli(
        &hub,
        &["event-source", "update", "plain", "--rotate-secret"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only github event sources"), "{stderr}");

    // The flag excludes setting a secret explicitly.
    let output = cli(
        &hub,
        &[
            "event-source",
            "update",
            "gh",
            "--rotate-secret",
            "--secret",
            "x",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
