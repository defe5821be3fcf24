//! `publish`: produce one record, for example a webhook payload, to a topic.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::config::Settings;
use crate::kafka::producer_config;

/// Arguments of `event-hub publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Topic to produce to.
    #[arg(long, short = 't')]
    pub topic: String,

    /// Record key.
    #[arg(long, short = 'k')]
    pub key: Option<String>,

    /// Record header as NAME=VALUE; repeat for several headers.
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// File with the record value; without it the value is read from stdin.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Seconds to wait for the broker's acknowledgement.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub timeout: u64,
}

fn parse_header(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {value:?}")),
    }
}

/// Produces one record and prints where it landed.
pub async fn run(settings: &Settings, args: PublishArgs) -> anyhow::Result<()> {
    let payload = match &args.file {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            let mut buffer = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buffer)
                .context("cannot read the value from stdin")?;
            buffer
        }
    };

    let timeout = Duration::from_secs(args.timeout);
    let mut config = producer_config(&settings.kafka);
    config.set("message.timeout.ms", timeout.as_millis().to_string());
    let producer: FutureProducer = config
        .create()
        .context("cannot create the Kafka producer")?;

    let headers = args
        .headers
        .iter()
        .fold(OwnedHeaders::new(), |headers, (name, value)| {
            headers.insert(Header {
                key: name,
                value: Some(value),
            })
        });
    let mut record = FutureRecord::to(&args.topic)
        .payload(&payload)
        .headers(headers);
    if let Some(key) = &args.key {
        record = record.key(key);
    }

    let delivery = producer
        .send(record, Timeout::After(timeout))
        .await
        .map_err(|(error, _)| error)
        .with_context(|| {
            format!(
                "cannot publish to {} at {}",
                args.topic, settings.kafka.bootstrap_servers
            )
        })?;
    println!(
        "published {} bytes to {} partition {} offset {}",
        payload.len(),
        args.topic,
        delivery.partition,
        delivery.offset
    );
    Ok(())
}
