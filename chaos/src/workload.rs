//! The chaos run's resources and events, and the rule that decides which
//! (event, trigger) pairs must exist.
//!
//! The rule is written here from the generated fields, independently of
//! event-hub's own filter engine, so a matching bug cannot hide a delivery
//! bug or the other way round.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use event_hub::store::resources::{self, NewAction, NewEventSource, NewTrigger};
use rand::Rng;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use sea_orm::DatabaseConnection;
use serde_json::{json, Value};
use uuid::Uuid;

/// Dead letter topic of the hub.
pub const DLQ_TOPIC: &str = "event-hub.dlq";
/// Action topic of the `build` action.
pub const BUILD_TOPIC: &str = "event-hub.actions.builtin.pipeline_run";
/// Topic on which workers report execution statuses.
pub const STATUS_TOPIC: &str = "event-hub.execution-status";
/// Dead letter topic of action requests.
pub const ACTIONS_DLQ_TOPIC: &str = "event-hub.actions.dlq";
/// Topics the hub writes or reads besides the event topics; tansu does not
/// create topics on first use.
pub const HUB_TOPICS: [&str; 5] = [
    DLQ_TOPIC,
    BUILD_TOPIC,
    NOTIFY_TOPIC,
    STATUS_TOPIC,
    ACTIONS_DLQ_TOPIC,
];
/// Action topic of the `notify` action.
pub const NOTIFY_TOPIC: &str = "event-hub.actions.builtin.notify";

/// The two event topics.
#[derive(Clone, Debug)]
pub struct Topics {
    /// GitHub webhook deliveries.
    pub github: String,
    /// JSON objects.
    pub json: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            github: "chaos-github-events".to_owned(),
            json: "chaos-json-events".to_owned(),
        }
    }
}

/// Ids of the four triggers the run creates.
#[derive(Clone, Copy, Debug)]
pub struct Triggers {
    /// GitHub pushes to `main`.
    pub push_main: Uuid,
    /// GitHub pull requests opened.
    pub pr_opened: Uuid,
    /// JSON events of type `push`.
    pub json_push: Uuid,
    /// JSON events with `count` above 5.
    pub json_count: Uuid,
}

/// Creates the event sources, actions and triggers of the run.
pub async fn create_resources(
    db: &DatabaseConnection,
    topics: &Topics,
) -> anyhow::Result<Triggers> {
    for (name, flavor, subtype, topic) in [
        ("gh", "github", "webhook", &topics.github),
        ("app", "json", "kafka", &topics.json),
    ] {
        resources::create_event_source(
            db,
            NewEventSource {
                name: name.into(),
                flavor: flavor.into(),
                plugin_subtype: subtype.into(),
                description: None,
                configuration: json!({ "topics": [topic] }),
                is_active: true,
            },
        )
        .await?;
    }
    for (name, subtype) in [("build", "pipeline_run"), ("notify", "notify")] {
        resources::create_action(
            db,
            NewAction {
                name: name.into(),
                flavor: "builtin".into(),
                plugin_subtype: subtype.into(),
                description: None,
                configuration: json!({ "template_id": name }),
                service_account: "sa-chaos".into(),
                auth_window_minutes: 60,
            },
        )
        .await?;
    }

    let create = |name: &'static str, source: &'static str, action: &'static str, filter: Value| {
        let db = db.clone();
        async move {
            resources::create_trigger(
                &db,
                NewTrigger {
                    name: name.into(),
                    description: None,
                    event_source: source.into(),
                    action: action.into(),
                    event_filter: filter,
                    is_active: true,
                },
            )
            .await
            .map(|trigger| trigger.id)
        }
    };
    Ok(Triggers {
        push_main: create(
            "push-main",
            "gh",
            "build",
            json!({"event_type": "push", "branch": "main"}),
        )
        .await?,
        pr_opened: create(
            "pr-opened",
            "gh",
            "notify",
            json!({"event_type": "pull_request", "action": ["opened"]}),
        )
        .await?,
        json_push: create("json-push", "app", "build", json!({"type": ["push"]})).await?,
        json_count: create(
            "json-count",
            "app",
            "notify",
            json!({"count": [{"numeric": [">", 5]}]}),
        )
        .await?,
    })
}

/// Returns the triggers a GitHub record must match, from its header and body.
pub fn expected_github(triggers: &Triggers, github_event: &str, body: &Value) -> Vec<Uuid> {
    let mut matched = Vec::new();
    if github_event == "push" && body["ref"] == "refs/heads/main" {
        matched.push(triggers.push_main);
    }
    if github_event == "pull_request" && body["action"] == "opened" {
        matched.push(triggers.pr_opened);
    }
    matched
}

/// Returns the triggers a JSON record must match.
pub fn expected_json(triggers: &Triggers, body: &Value) -> Vec<Uuid> {
    let mut matched = Vec::new();
    if body["type"] == "push" {
        matched.push(triggers.json_push);
    }
    if body["count"].as_i64().is_some_and(|count| count > 5) {
        matched.push(triggers.json_count);
    }
    matched
}

/// Builds a compact GitHub delivery: a push (to `main` or a feature branch)
/// or a pull request event (opened or closed).
fn github_event(n: usize, rng: &mut impl Rng) -> (&'static str, Value) {
    let repository = json!({
        "full_name": format!("org/repo-{}", n % 50),
        "name": format!("repo-{}", n % 50),
        "owner": { "login": "org" },
    });
    if rng.gen_bool(0.5) {
        let branch = if rng.gen_bool(0.5) {
            "main"
        } else {
            "feature/x"
        };
        let body = json!({
            "ref": format!("refs/heads/{branch}"),
            "after": format!("{:040x}", rng.gen::<u128>()),
            "repository": repository,
            "sender": { "login": "octocat" },
            "head_commit": { "message": format!("change {n}") },
        });
        ("push", body)
    } else {
        let action = if rng.gen_bool(0.5) {
            "opened"
        } else {
            "closed"
        };
        let body = json!({
            "action": action,
            "number": n,
            "pull_request": { "base": { "ref": "main" }, "head": { "sha": format!("{:040x}", rng.gen::<u128>()) } },
            "repository": repository,
            "sender": { "login": "octocat" },
        });
        ("pull_request", body)
    }
}

/// Builds a JSON event that matches zero, one or two triggers.
fn json_event(n: usize, rng: &mut impl Rng) -> Value {
    let kinds = ["push", "deploy", "comment"];
    json!({
        "type": kinds[rng.gen_range(0..kinds.len())],
        "count": rng.gen_range(0..10),
        "n": n,
        "repo": format!("org/repo-{}", n % 50),
    })
}

/// Produces `events` events at about `rate` per second (0: unthrottled),
/// alternating GitHub and JSON; returns how many were acknowledged.
///
/// librdkafka retries sends across the broker restart for up to 300 s. The
/// pace does not speed up after an outage, so the restart leaves no burst
/// of records behind it.
pub async fn produce(
    bootstrap_servers: String,
    topics: Topics,
    events: usize,
    rate: u64,
) -> anyhow::Result<usize> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap_servers)
        // Not idempotent: tansu 0.6.0 refuses new producer ids after a
        // restart. A resent record is a new event for the check, which
        // reads the topics back.
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .create()
        .context("cannot create the chaos producer")?;

    let mut pace_start = Instant::now();
    let mut paced_from = 0;
    let mut in_flight = Vec::new();
    let mut acknowledged = 0;
    for n in 0..events {
        let (topic, key, headers, payload) = {
            let mut rng = rand::thread_rng();
            if n % 2 == 0 {
                let (github_event, body) = github_event(n, &mut rng);
                let delivery = Uuid::new_v4().to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "x-github-event",
                        value: Some(github_event),
                    })
                    .insert(Header {
                        key: "x-github-delivery",
                        value: Some(&delivery),
                    });
                (topics.github.clone(), delivery, headers, body.to_string())
            } else {
                let body = json_event(n, &mut rng);
                (
                    topics.json.clone(),
                    n.to_string(),
                    OwnedHeaders::new(),
                    body.to_string(),
                )
            }
        };
        let producer = producer.clone();
        in_flight.push(tokio::spawn(async move {
            let record = FutureRecord::to(&topic)
                .key(&key)
                .payload(&payload)
                .headers(headers);
            producer
                .send(record, Timeout::Never)
                .await
                .map_err(|(error, _)| error)
        }));

        if in_flight.len() >= 1_000 {
            for delivery in in_flight.drain(..) {
                delivery.await??;
                acknowledged += 1;
            }
        }
        if rate > 0 {
            let due =
                pace_start + Duration::from_secs_f64((n + 1 - paced_from) as f64 / rate as f64);
            let now = Instant::now();
            if now > due + Duration::from_secs(1) {
                // More than a second behind, after a broker outage for
                // example: keep the steady rate from here instead of making
                // up for lost time with a burst.
                pace_start = now;
                paced_from = n + 1;
            } else {
                tokio::time::sleep_until(due.into()).await;
            }
        }
    }
    for delivery in in_flight {
        delivery.await??;
        acknowledged += 1;
    }
    Ok(acknowledged)
}

/// Produces `records` JSON events to `topic` as fast as the broker takes
/// them; returns how many were acknowledged.
pub async fn produce_json(
    bootstrap_servers: &str,
    topic: &str,
    records: usize,
) -> anyhow::Result<usize> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("cannot create the backlog producer")?;
    let mut in_flight = Vec::new();
    let mut acknowledged = 0;
    for n in 0..records {
        let body = {
            let mut rng = rand::thread_rng();
            json_event(n, &mut rng).to_string()
        };
        let key = n.to_string();
        match producer.send_result(FutureRecord::to(topic).key(&key).payload(&body)) {
            Ok(delivery) => in_flight.push(delivery),
            Err((error, _)) => anyhow::bail!("cannot queue record {n}: {error}"),
        }
        if in_flight.len() >= 50_000 {
            for delivery in in_flight.drain(..) {
                delivery.await?.map_err(|(error, _)| error)?;
                acknowledged += 1;
            }
        }
    }
    for delivery in in_flight {
        delivery.await?.map_err(|(error, _)| error)?;
        acknowledged += 1;
    }
    Ok(acknowledged)
}
