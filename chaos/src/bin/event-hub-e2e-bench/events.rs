//! The benchmark's events and triggers, and the producers that write the
//! events: a backlog as fast as the broker takes it, then a fixed rate.
//!
//! Event `n` is a JSON object of about 1 KB. It names a repository that a
//! trigger filters on when `n % 100 < match_percent`, else one that no
//! trigger names, so the expected executions follow from the event numbers
//! alone. Each trigger filters on one repository, so a matching event
//! matches exactly one trigger.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use event_hub::store::resources::{self, NewAction, NewEventSource, NewTrigger};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sea_orm::DatabaseConnection;
use serde_json::json;

/// Target size of one event's JSON value, in bytes.
const EVENT_BYTES: usize = 1024;

/// Field of each event with its produce time, in microseconds since the
/// Unix epoch. The latency reader subtracts it from the time it reads the
/// copy or the action request.
pub const SENT_AT_FIELD: &str = "sent_at_us";

/// Name of the benchmark's event source.
pub const SOURCE_NAME: &str = "bench-events";

/// The triggers' action: `builtin`/`pipeline_run`.
const ACTION: (&str, &str) = ("builtin", "pipeline_run");

/// Returns whether event `n` names a repository that a trigger filters on.
pub fn matches(n: usize, match_percent: u32) -> bool {
    n % 100 < match_percent as usize
}

/// Returns how many events of `range` match.
pub fn count_matching(range: std::ops::Range<usize>, match_percent: u32) -> usize {
    range.filter(|n| matches(*n, match_percent)).count()
}

/// Returns the time since the Unix epoch in microseconds.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}

/// Builds the JSON value of event `n`, about [`EVENT_BYTES`] long.
pub fn event(n: usize, match_percent: u32, triggers: usize, sent_at_us: u64) -> String {
    const TYPES: [&str; 4] = ["push", "pull_request", "deploy", "workflow_run"];
    let repo = if matches(n, match_percent) {
        format!("org/repo-{}", n % triggers)
    } else {
        format!("org/untracked-{}", n % 5_000)
    };
    let mut value = json!({
        "source": format!("src-{}", n % 50),
        "type": TYPES[n % TYPES.len()],
        "repo": repo,
        "branch": if n.is_multiple_of(3) { "main" } else { "feature/bench" },
        "count": n % 10,
        "actor": format!("user-{}", n % 997),
        "detail": {
            "pr": { "number": n % 10_000 },
            "conclusion": if n.is_multiple_of(2) { "success" } else { "failure" },
            "sha": format!("{:040x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        },
        "n": n,
        SENT_AT_FIELD: sent_at_us,
        "message": "",
    });
    let padding = EVENT_BYTES.saturating_sub(value.to_string().len());
    value["message"] = json!("x".repeat(padding));
    value.to_string()
}

/// Creates the event source on `topic`, one action and `triggers` triggers,
/// trigger K filtering on `{"repo": ["org/repo-K"]}`.
pub async fn create_resources(
    db: &DatabaseConnection,
    topic: &str,
    triggers: usize,
) -> anyhow::Result<()> {
    resources::create_event_source(
        db,
        NewEventSource {
            name: SOURCE_NAME.into(),
            flavor: "json".into(),
            plugin_subtype: "kafka".into(),
            description: None,
            configuration: json!({ "topics": [topic] }),
            is_active: true,
        },
    )
    .await?;
    resources::create_action(
        db,
        NewAction {
            name: "bench-run".into(),
            flavor: ACTION.0.into(),
            plugin_subtype: ACTION.1.into(),
            description: None,
            configuration: json!({ "template_id": "bench" }),
            service_account: "sa-bench".into(),
            auth_window_minutes: 60,
        },
    )
    .await?;
    for k in 0..triggers {
        resources::create_trigger(
            db,
            NewTrigger {
                name: format!("repo-{k}"),
                description: None,
                event_source: SOURCE_NAME.into(),
                action: "bench-run".into(),
                event_filter: json!({ "repo": [format!("org/repo-{k}")] }),
                is_active: true,
            },
        )
        .await?;
    }
    Ok(())
}

/// Returns the action topic of the triggers' action under `prefix`.
pub fn action_topic(prefix: &str) -> String {
    format!("{prefix}{}.{}", ACTION.0, ACTION.1)
}

/// End offset (last acknowledged offset + 1) of each partition written to.
pub type EndOffsets = BTreeMap<i32, i64>;

/// Adds the position of one acknowledged record to `ends`.
fn note_delivery(ends: &mut EndOffsets, partition: i32, offset: i64) {
    let end = ends.entry(partition).or_insert(0);
    *end = (*end).max(offset + 1);
}

/// The route of one case's events: broker, topics and match rate.
#[derive(Clone, Copy, Debug)]
pub struct EventSpec<'a> {
    /// Broker address.
    pub bootstrap_servers: &'a str,
    /// Event topic of the case.
    pub topic: &'a str,
    /// Share of events that match a trigger, in percent.
    pub match_percent: u32,
    /// Triggers over the event source.
    pub triggers: usize,
    /// Topic of the record that the latency producer sends before it
    /// starts.
    pub warmup_topic: &'a str,
}

/// Produces events `range` as fast as the broker takes them; returns the
/// end offset of each partition.
pub async fn produce_backlog(
    spec: EventSpec<'_>,
    range: std::ops::Range<usize>,
) -> anyhow::Result<EndOffsets> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", spec.bootstrap_servers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("cannot create the backlog producer")?;
    let mut ends = EndOffsets::new();
    let mut in_flight = Vec::new();
    for n in range {
        let payload = event(n, spec.match_percent, spec.triggers, now_micros());
        let key = n.to_string();
        match producer.send_result(FutureRecord::to(spec.topic).key(&key).payload(&payload)) {
            Ok(delivery) => in_flight.push(delivery),
            Err((error, _)) => anyhow::bail!("cannot queue event {n}: {error}"),
        }
        if in_flight.len() >= 50_000 {
            await_deliveries(&mut in_flight, &mut ends).await?;
        }
    }
    await_deliveries(&mut in_flight, &mut ends).await?;
    Ok(ends)
}

/// Produces events `range` at `rate` per second, each stamped with its send
/// time; returns the end offset of each partition.
///
/// The producer sends each record at once (`linger.ms=0`), so the stamped
/// time is close to the time the record leaves the process.
pub async fn produce_at_rate(
    spec: EventSpec<'_>,
    range: std::ops::Range<usize>,
    rate: u64,
) -> anyhow::Result<EndOffsets> {
    anyhow::ensure!(rate > 0, "--latency-rate must be above 0");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", spec.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .context("cannot create the latency producer")?;

    // A new idempotent producer took about 1 s on tansu 0.6.0 to deliver
    // its first record. A warm-up record keeps that delay out of the
    // latency of the first events.
    producer
        .send(
            FutureRecord::<(), _>::to(spec.warmup_topic).payload("warm-up"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(error, _)| error)
        .context("the warm-up record was not acknowledged")?;

    let started = Instant::now();
    let first = range.start;
    let mut ends = EndOffsets::new();
    let mut in_flight = Vec::new();
    for n in range {
        let due = started + Duration::from_secs_f64((n - first) as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let payload = event(n, spec.match_percent, spec.triggers, now_micros());
        let key = n.to_string();
        match producer.send_result(FutureRecord::to(spec.topic).key(&key).payload(&payload)) {
            Ok(delivery) => in_flight.push(delivery),
            Err((error, _)) => anyhow::bail!("cannot queue event {n}: {error}"),
        }
    }
    await_deliveries(&mut in_flight, &mut ends).await?;
    Ok(ends)
}

async fn await_deliveries(
    in_flight: &mut Vec<rdkafka::producer::DeliveryFuture>,
    ends: &mut EndOffsets,
) -> anyhow::Result<()> {
    for delivery in in_flight.drain(..) {
        let delivery = delivery
            .await
            .context("the producer dropped a delivery report")?
            .map_err(|(error, _)| error)
            .context("an event was not acknowledged")?;
        note_delivery(ends, delivery.partition, delivery.offset);
    }
    Ok(())
}
