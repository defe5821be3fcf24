//! Waiting for the replicas to drain, and checking every expected
//! (event, trigger) pair against the database and the action topics.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_hub::store::entity::trigger_execution;
use event_hub::store::executions::execution_id;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sea_orm::{DatabaseConnection, EntityTrait};
use uuid::Uuid;

use crate::faults::{Replicas, Stats};
use crate::workload::{self, Topics, Triggers};

const GROUP_ID: &str = "event-hub-chaos";

/// Waits until the group's committed offsets reach the end of every
/// partition of `topics`, recording the highest lag and replica RSS.
pub async fn wait_for_zero_lag(
    bootstrap_servers: &str,
    topics: &[&str],
    timeout: Duration,
    replicas: &mut Replicas,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", GROUP_ID)
        .create()?;
    let started = Instant::now();
    loop {
        // A busy broker may time out a metadata request: try again until
        // the drain timeout.
        let lag = match total_lag(&consumer, topics) {
            Ok(lag) => lag,
            Err(error) => {
                anyhow::ensure!(started.elapsed() < timeout, "cannot read the lag: {error}");
                eprintln!("note: cannot read the lag yet: {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        stats.max_lag = stats.max_lag.max(lag);
        stats.max_rss_kib = stats.max_rss_kib.max(replicas.max_rss_kib());
        if lag == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "lag still {lag} after {} s",
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Samples the group's total lag every second on a thread of its own, so
/// that the report's max lag covers the whole run, faults included.
///
/// The samples use blocking librdkafka calls with timeouts of up to 10 s.
/// On the async tasks they would stall the fault schedule, so they run on
/// a thread.
pub struct LagSampler {
    max_lag: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LagSampler {
    /// Starts sampling the lag of `topics`.
    pub fn start(bootstrap_servers: &str, topics: &[&str]) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap_servers)
            .set("group.id", GROUP_ID)
            .create()?;
        let topics: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
        let max_lag = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let max_lag = Arc::clone(&max_lag);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                while !stop.load(Ordering::Relaxed) {
                    // A failed sample (broker restarting) is skipped.
                    if let Ok(lag) = total_lag(&consumer, &topics) {
                        max_lag.fetch_max(lag, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        };
        Ok(Self {
            max_lag,
            stop,
            thread: Some(thread),
        })
    }

    /// Returns the highest lag sampled so far.
    pub fn max_lag(&self) -> i64 {
        self.max_lag.load(Ordering::Relaxed)
    }
}

impl Drop for LagSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn total_lag(consumer: &BaseConsumer, topics: &[&str]) -> anyhow::Result<i64> {
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut partitions = TopicPartitionList::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|topic| topics.contains(&topic.name()))
    {
        for partition in topic.partitions() {
            partitions.add_partition(topic.name(), partition.id());
        }
    }
    let committed = consumer.committed_offsets(partitions, Duration::from_secs(10))?;
    let mut lag = 0;
    for element in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(
            element.topic(),
            element.partition(),
            Duration::from_secs(10),
        )?;
        let position = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => low,
        };
        lag += (high - position).max(0);
    }
    Ok(lag)
}

/// Reads every record of `topic` from the beginning until no record has
/// arrived for 5 s.
///
/// NOTE: tansu 0.6.0 sometimes reports a high watermark below the last
/// offset it serves, so reading up to the watermarks can stop early. The
/// idle timeout does not depend on them.
fn read_all(bootstrap_servers: &str, topic: &str) -> anyhow::Result<Vec<OwnedMessage>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set(
            "group.id",
            format!("event-hub-chaos-reader-{}", Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata
        .topics()
        .iter()
        .flat_map(|topic| topic.partitions())
    {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;

    let mut messages = Vec::new();
    let started = Instant::now();
    let mut last_record = Instant::now();
    while last_record.elapsed() < Duration::from_secs(5) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "reading {topic} timed out"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                messages.push(message.detach());
                last_record = Instant::now();
            }
            Some(Err(error)) => return Err(error.into()),
            None => {}
        }
    }
    Ok(messages)
}

fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == name)
            .and_then(|header| header.value)
            .map(|value| String::from_utf8_lossy(value).into_owned())
    })
}

/// The outcome of the checks.
#[derive(Debug, Default)]
pub struct Report {
    /// Records on the event topics.
    pub records: usize,
    /// Executions the records require.
    pub executions_expected: usize,
    /// Expected executions found in the database.
    pub executions_recorded: usize,
    /// Rows beyond one per (trigger, event).
    pub executions_duplicated: usize,
    /// Expected executions not in the database.
    pub executions_missing: usize,
    /// Executions in the database that no record requires.
    pub executions_unexpected: usize,
    /// Executions still not dispatched.
    pub executions_not_dispatched: usize,
    /// Action requests on the action topics.
    pub requests_published: usize,
    /// Action requests beyond the first per execution.
    pub requests_duplicated: usize,
    /// Expected executions without an action request.
    pub requests_missing: usize,
    /// Records on the dead letter topic.
    pub dead_letters: usize,
}

impl Report {
    /// Returns whether the guarantee held.
    pub fn passed(&self) -> bool {
        self.executions_missing == 0
            && self.executions_duplicated == 0
            && self.executions_unexpected == 0
            && self.requests_missing == 0
            && self.executions_not_dispatched == 0
    }

    /// Prints the report.
    pub fn print(&self, produced: usize, stats: &Stats, drain: Duration, total: Duration) {
        println!();
        println!("event-hub chaos report");
        println!("  records produced                 {produced}");
        println!("  records on the event topics      {}", self.records);
        println!("  faults                           {} replica kills, {} broker restart(s), {} database outage(s)", stats.kills, stats.broker_restarts, stats.database_outages);
        println!(
            "  executions expected              {}",
            self.executions_expected
        );
        println!(
            "  executions recorded              {}",
            self.executions_recorded
        );
        println!(
            "  executions duplicated            {}",
            self.executions_duplicated
        );
        println!(
            "  executions missing               {}",
            self.executions_missing
        );
        println!(
            "  executions unexpected            {}",
            self.executions_unexpected
        );
        println!(
            "  executions not dispatched        {}",
            self.executions_not_dispatched
        );
        println!(
            "  action requests published        {}",
            self.requests_published
        );
        println!(
            "  action requests duplicated       {}",
            self.requests_duplicated
        );
        println!(
            "  action requests missing          {}",
            self.requests_missing
        );
        println!("  records in the DLQ               {}", self.dead_letters);
        println!("  max lag (records)                {}", stats.max_lag);
        println!(
            "  max RSS of a replica             {:.1} MiB",
            stats.max_rss_kib as f64 / 1024.0
        );
        println!(
            "  time to drain after the faults   {:.1} s",
            drain.as_secs_f64()
        );
        println!(
            "  total run time                   {:.1} s",
            total.as_secs_f64()
        );
        println!(
            "  result                           {}",
            if self.passed() { "PASSED" } else { "FAILED" }
        );
    }
}

/// Derives the expected executions from the event topics and compares them
/// with the database and the action topics.
pub async fn check(
    bootstrap_servers: &str,
    topics: &Topics,
    triggers: &Triggers,
    db: &DatabaseConnection,
) -> anyhow::Result<Report> {
    let mut report = Report::default();

    // Expected pairs, from the records themselves.
    let mut expected: HashSet<(Uuid, String)> = HashSet::new();
    for message in read_all(bootstrap_servers, &topics.github)? {
        report.records += 1;
        let body: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default())?;
        let (Some(github_event), Some(delivery)) = (
            header(&message, "x-github-event"),
            header(&message, "x-github-delivery"),
        ) else {
            anyhow::bail!(
                "GitHub record at offset {} lacks its headers",
                message.offset()
            );
        };
        for trigger in workload::expected_github(triggers, &github_event, &body) {
            expected.insert((trigger, delivery.clone()));
        }
    }
    for message in read_all(bootstrap_servers, &topics.json)? {
        report.records += 1;
        let body: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default())?;
        let event_id = format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        for trigger in workload::expected_json(triggers, &body) {
            expected.insert((trigger, event_id.clone()));
        }
    }
    report.executions_expected = expected.len();

    // The database.
    let rows = trigger_execution::Entity::find().all(db).await?;
    let mut recorded: HashMap<(Uuid, String), usize> = HashMap::new();
    for row in &rows {
        *recorded
            .entry((row.trigger_id, row.event_id.clone()))
            .or_default() += 1;
        if row.status == trigger_execution::ExecutionStatus::Pending {
            report.executions_not_dispatched += 1;
        }
    }
    report.executions_duplicated = recorded.values().map(|count| count - 1).sum();
    report.executions_recorded = expected
        .iter()
        .filter(|pair| recorded.contains_key(*pair))
        .count();
    report.executions_missing = expected.len() - report.executions_recorded;
    for (trigger, event_id) in expected
        .iter()
        .filter(|pair| !recorded.contains_key(*pair))
        .take(10)
    {
        println!("  missing execution: trigger {trigger}, event {event_id}");
    }
    report.executions_unexpected = recorded
        .keys()
        .filter(|pair| !expected.contains(*pair))
        .count();

    // The action topics.
    let mut published: HashMap<String, usize> = HashMap::new();
    for topic in [workload::BUILD_TOPIC, workload::NOTIFY_TOPIC] {
        for message in read_all(bootstrap_servers, topic)? {
            report.requests_published += 1;
            if let Some(id) = header(&message, "ce_id") {
                *published.entry(id).or_default() += 1;
            }
        }
    }
    report.requests_duplicated = published.values().map(|count| count - 1).sum();
    report.requests_missing = expected
        .iter()
        .filter(|(trigger, event_id)| {
            !published.contains_key(&execution_id(*trigger, event_id).to_string())
        })
        .count();

    report.dead_letters = read_all(bootstrap_servers, workload::DLQ_TOPIC)?.len();
    Ok(report)
}
