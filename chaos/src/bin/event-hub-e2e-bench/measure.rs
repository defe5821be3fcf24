//! Measurements: when the hub is ready, when a consumer group has committed
//! a topic up to known end offsets, and the latency from an event's
//! produce time to the output record that it caused.
//!
//! librdkafka's calls block, so the lag query runs on tokio's blocking
//! threads and the latency reader runs on a thread of its own until
//! [`LatencyReader::finish`] sets its stop flag.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::events::{now_micros, EndOffsets};

/// Interval between two checks of readiness or committed offsets.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Waits until the hub's `/readyz` on `port` returns 200, which it does
/// once partitions are assigned to the consumer; returns when it first did.
pub async fn wait_ready(port: u16, timeout: Duration) -> anyhow::Result<Instant> {
    let started = Instant::now();
    loop {
        let ok = tokio::task::spawn_blocking(move || readyz_ok(port)).await?;
        if ok {
            return Ok(Instant::now());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "the hub was not ready within {} s; see its log",
            timeout.as_secs()
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Sends `GET /readyz` over HTTP/1.1 and returns whether the status is 200.
fn readyz_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status_line = [0_u8; 12];
    stream.read_exact(&mut status_line).is_ok() && &status_line[9..12] == b"200"
}

/// Waits until `group` has committed every partition of `topic` up to
/// `ends`.
///
/// The ends come from the producer's delivery reports, not from the
/// broker's high watermarks, because tansu 0.6.0 sometimes reports a
/// watermark below the last offset it serves.
pub async fn wait_committed(
    bootstrap_servers: &str,
    group: &str,
    topic: &str,
    ends: &EndOffsets,
    timeout: Duration,
) -> anyhow::Result<()> {
    let consumer: Arc<BaseConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap_servers)
            .set("group.id", group)
            .create()?,
    );
    let mut partitions = TopicPartitionList::new();
    for partition in ends.keys() {
        partitions.add_partition(topic, *partition);
    }
    let started = Instant::now();
    loop {
        let query = (Arc::clone(&consumer), partitions.clone());
        let committed = tokio::task::spawn_blocking(move || {
            query.0.committed_offsets(query.1, Duration::from_secs(10))
        })
        .await?;
        let remaining = match committed {
            Ok(committed) => remaining(&committed, ends),
            Err(error) => {
                eprintln!("note: cannot read the committed offsets yet: {error}");
                i64::MAX
            }
        };
        if remaining == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "group {group} still had {remaining} records to commit on {topic} after {} s",
            timeout.as_secs()
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Returns how many records lie between the committed offsets and `ends`.
fn remaining(committed: &TopicPartitionList, ends: &EndOffsets) -> i64 {
    ends.iter()
        .map(|(partition, end)| {
            let position = committed
                .elements()
                .iter()
                .find(|element| element.partition() == *partition)
                .and_then(|element| match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                })
                .unwrap_or(0);
            (end - position).max(0)
        })
        .sum()
}

/// Returns the CPU time (user and system, all threads) that process `pid`
/// has used, in seconds, or `None` when it cannot be read.
///
/// `/proc/PID/stat` counts in USER_HZ ticks, which Linux fixes at 100 per
/// second for user space.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in brackets, may contain spaces; fields count from
    // after its closing bracket, where field 3 (the state) starts.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

/// Latency figures of one case, in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Highest.
    pub max_us: u64,
    /// Output records measured.
    pub samples: u64,
}

/// Reads an output topic from given offsets and records, per record, its
/// receive time minus the produce time stamped in the event.
pub struct LatencyReader {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<anyhow::Result<Histogram<u64>>>,
}

/// Settings of the latency reader: the topic it reads and what it measures.
pub struct ReaderSpec<'a> {
    /// Broker address.
    pub bootstrap_servers: &'a str,
    /// Output topic: pass-through copies or action requests.
    pub topic: &'a str,
    /// JSON pointer of the produce time in an output record's value.
    pub sent_at_pointer: &'static str,
    /// `fetch.wait.max.ms` of the reader.
    pub fetch_wait_max_ms: u64,
    /// Records stamped before this time (microseconds since the epoch)
    /// belong to the throughput backlog and are not measured.
    pub not_before_us: u64,
}

impl LatencyReader {
    /// Starts reading `spec.topic` from its current end.
    pub fn start(spec: &ReaderSpec<'_>) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", spec.bootstrap_servers)
            .set(
                "group.id",
                format!("e2e-latency-reader-{}", uuid::Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", spec.fetch_wait_max_ms.to_string())
            .create()?;
        let metadata = consumer.fetch_metadata(Some(spec.topic), Duration::from_secs(10))?;
        let mut assignment = TopicPartitionList::new();
        for partition in metadata
            .topics()
            .iter()
            .flat_map(|topic| topic.partitions())
        {
            // Start at the high watermark, fixed now, so that no record
            // produced from here on is skipped. A watermark that tansu
            // reports too low only lets older records in, which the
            // `not_before_us` check drops.
            let (_, high) =
                consumer.fetch_watermarks(spec.topic, partition.id(), Duration::from_secs(10))?;
            assignment.add_partition_offset(spec.topic, partition.id(), Offset::Offset(high))?;
        }
        consumer.assign(&assignment)?;

        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU64::new(0));
        let pointer = spec.sent_at_pointer;
        let not_before_us = spec.not_before_us;
        let (thread_stop, thread_samples) = (Arc::clone(&stop), Arc::clone(&samples));
        let thread = std::thread::spawn(move || {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            // NOTE: with tansu 0.6.0 this reader received some records
            // several times at the same offset, so only the first receipt
            // of each (partition, offset) is measured.
            let mut measured = std::collections::HashSet::new();
            while !thread_stop.load(Ordering::SeqCst) {
                let message = match consumer.poll(Duration::from_millis(100)) {
                    None => continue,
                    Some(result) => result?,
                };
                let received_us = now_micros();
                if !measured.insert((message.partition(), message.offset())) {
                    continue;
                }
                let value: serde_json::Value =
                    serde_json::from_slice(message.payload().unwrap_or_default())
                        .context("an output record is not JSON")?;
                let sent_us = value
                    .pointer(pointer)
                    .and_then(serde_json::Value::as_u64)
                    .with_context(|| format!("an output record lacks {pointer}"))?;
                if sent_us < not_before_us {
                    continue;
                }
                histogram.saturating_record(received_us.saturating_sub(sent_us));
                thread_samples.fetch_add(1, Ordering::SeqCst);
            }
            Ok(histogram)
        });
        Ok(Self {
            stop,
            samples,
            thread,
        })
    }

    /// Waits until `expected` samples arrived, or until none arrived for
    /// `idle`, then stops reading and returns the figures.
    pub async fn finish(self, expected: u64, idle: Duration) -> anyhow::Result<Latency> {
        let mut seen = self.samples.load(Ordering::SeqCst);
        let mut last_progress = Instant::now();
        while seen < expected && last_progress.elapsed() < idle && !self.thread.is_finished() {
            tokio::time::sleep(POLL_INTERVAL).await;
            let now_seen = self.samples.load(Ordering::SeqCst);
            if now_seen != seen {
                seen = now_seen;
                last_progress = Instant::now();
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread;
        let histogram = tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the latency reader panicked"))??;
        Ok(Latency {
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
            samples: histogram.len(),
        })
    }
}
