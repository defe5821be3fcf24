//! `consume`: print records of a topic, for example action requests or
//! dead letters, as JSON lines.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::config::Settings;
use crate::event::{projection, FieldSet};

/// Arguments of `event-hub consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read, such as event-hub.actions.builtin.pipeline_run or event-hub.dlq.
    #[arg(long, short = 't')]
    pub topic: String,

    /// Stop after this many records.
    #[arg(long, short = 'n', value_name = "COUNT")]
    pub max_records: Option<usize>,

    /// Stop after this many seconds without a new record.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub idle_timeout: u64,
}

/// Reads every partition of the topic from its beginning, without joining
/// a consumer group, and prints one JSON object per record.
pub async fn run(settings: &Settings, args: ConsumeArgs) -> anyhow::Result<()> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.bootstrap_servers)
        .set("group.id", "event-hub-consume")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .context("cannot create the Kafka consumer")?;

    let idle = Duration::from_secs(args.idle_timeout);
    let Some(partitions) = wait_for_partitions(&consumer, &args.topic, idle).await? else {
        eprintln!("topic {} does not exist; 0 records read", args.topic);
        return Ok(());
    };
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment.add_partition_offset(&args.topic, partition, Offset::Beginning)?;
    }
    consumer
        .assign(&assignment)
        .with_context(|| format!("cannot read {}", args.topic))?;

    let idle = Duration::from_secs(args.idle_timeout);
    let mut printed = 0;
    while args.max_records.is_none_or(|max| printed < max) {
        let message = match tokio::time::timeout(idle, consumer.recv()).await {
            Err(_elapsed) => break,
            Ok(message) => message.with_context(|| format!("cannot read {}", args.topic))?,
        };
        let headers: serde_json::Map<String, Value> = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        let value = header
                            .value
                            .map(|value| Value::String(String::from_utf8_lossy(value).into_owned()))
                            .unwrap_or(Value::Null);
                        (header.key.to_owned(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Parsed like an event, so that every key prints as it is.
        let value = message.payload().map(|payload| {
            projection::parse(payload, &FieldSet::WHOLE)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
        });
        let line = json!({
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().map(|key| String::from_utf8_lossy(key).into_owned()),
            "headers": headers,
            "value": value,
        });
        println!("{line}");
        printed += 1;
    }
    eprintln!("{printed} record(s) read from {}", args.topic);
    Ok(())
}

/// Returns the partition numbers of `topic`, waiting up to `timeout` for it
/// to be created, or `None` if it still does not exist.
async fn wait_for_partitions(
    consumer: &StreamConsumer,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Option<Vec<i32>>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("cannot fetch the metadata of {topic}"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|entry| entry.name() == topic && entry.error().is_none())
            .flat_map(|entry| entry.partitions().iter().map(|partition| partition.id()))
            .collect();
        if !partitions.is_empty() {
            return Ok(Some(partitions));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
