//! The pass-through: the ceiling the hub is compared with. It copies every
//! record of the input topic to the same partition of the output topic and
//! does nothing else.
//!
//! It runs in a separate process, this binary started again with the
//! hidden `pass-through` subcommand, so that like the hub it has its own
//! librdkafka clients and threads. Its Kafka settings follow the hub's
//! (`src/kafka.rs`): one consumer in a consumer group with
//! `enable.auto.offset.store=false`, and an idempotent producer with
//! `acks=all` and `linger.ms=0`. The offset of a record is stored in the
//! producer's delivery callback, after the broker acknowledged its copy.
//! Copies of one input partition go to one output partition, whose delivery
//! reports arrive in produce order, so stored offsets only move forward.
//!
//! Concurrency in the worker: the main thread polls the consumer and
//! queues copies, librdkafka's producer thread runs the delivery callback,
//! and a thread waits for the end of standard input, which is the parent's
//! stop request. The worker prints `assigned` once partitions are assigned
//! to it, and `copied N` before it exits.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

/// Settings of the pass-through worker.
#[derive(Clone, Debug, clap::Args)]
pub struct WorkerArgs {
    /// Broker address.
    #[arg(long)]
    pub bootstrap_servers: String,
    /// Consumer group.
    #[arg(long)]
    pub group_id: String,
    /// Topic to read.
    #[arg(long)]
    pub input_topic: String,
    /// Topic to copy the records to; it needs as many partitions as the
    /// input topic.
    #[arg(long)]
    pub output_topic: String,
    /// `fetch.wait.max.ms` of the consumer.
    #[arg(long)]
    pub fetch_wait_max_ms: u64,
    /// Topic of the record that the producer sends before the consumer
    /// subscribes.
    #[arg(long)]
    pub warmup_topic: String,
}

/// A running pass-through worker process.
pub struct PassThrough {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(String, Instant)>,
}

impl PassThrough {
    /// Starts this binary as a pass-through worker; its log goes to
    /// `log_file`.
    pub fn spawn(args: &WorkerArgs, log_file: &Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log_file)?;
        let mut child = Command::new(std::env::current_exe()?)
            .arg("pass-through")
            .args(["--bootstrap-servers", &args.bootstrap_servers])
            .args(["--group-id", &args.group_id])
            .args(["--input-topic", &args.input_topic])
            .args(["--output-topic", &args.output_topic])
            .args(["--fetch-wait-max-ms", &args.fetch_wait_max_ms.to_string()])
            .args(["--warmup-topic", &args.warmup_topic])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start the pass-through worker")?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .context("the pass-through worker has no standard output")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send((line, Instant::now())).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            lines,
        })
    }

    /// Returns the worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until partitions are assigned to the worker; returns when it
    /// printed so.
    pub async fn wait_assigned(&mut self, timeout: Duration) -> anyhow::Result<Instant> {
        let (_, at) = self.wait_line("assigned", timeout).await?;
        Ok(at)
    }

    /// Asks the worker to stop, waits for it, and returns how many copies
    /// the broker acknowledged.
    pub async fn stop(mut self, timeout: Duration) -> anyhow::Result<u64> {
        drop(self.stdin.take());
        let (line, _) = self.wait_line("copied ", timeout).await?;
        let copied = line["copied ".len()..]
            .trim()
            .parse()
            .with_context(|| format!("unexpected line from the pass-through worker: {line}"))?;
        let status = tokio::task::spawn_blocking(move || self.child.wait()).await??;
        anyhow::ensure!(status.success(), "the pass-through worker failed: {status}");
        Ok(copied)
    }

    async fn wait_line(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> anyhow::Result<(String, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.try_recv() {
                Ok((line, at)) if line.starts_with(prefix) => return Ok((line, at)),
                Ok(_) => continue,
                Err(mpsc::TryRecvError::Disconnected) => {
                    anyhow::bail!(
                        "the pass-through worker exited before printing {prefix:?}; see its log"
                    )
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the pass-through worker did not print {prefix:?} within {} s",
                timeout.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for PassThrough {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Consumer context that prints `assigned` after the first assignment.
struct AssignmentContext {
    announced: AtomicBool,
}

impl ClientContext for AssignmentContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        eprintln!("librdkafka {level:?} {facility}: {message}");
    }
}

impl ConsumerContext for AssignmentContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            if partitions.count() > 0 && !self.announced.swap(true, Ordering::SeqCst) {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "assigned");
                let _ = stdout.flush();
            }
        }
    }
}

type WorkerConsumer = BaseConsumer<AssignmentContext>;

/// Producer context that stores the input offset of each acknowledged copy.
struct CopyContext {
    consumer: Arc<WorkerConsumer>,
    input_topic: String,
    copied: AtomicU64,
    failed: AtomicBool,
}

impl ClientContext for CopyContext {}

impl ProducerContext for CopyContext {
    /// Input partition and offset of the copied record; `None` for the
    /// warm-up record.
    type DeliveryOpaque = Box<Option<(i32, i64)>>;

    fn delivery(&self, result: &DeliveryResult<'_>, input: Self::DeliveryOpaque) {
        let Some((partition, offset)) = *input else {
            if let Err((error, _)) = result {
                eprintln!("error: the warm-up record failed: {error}");
                self.failed.store(true, Ordering::SeqCst);
            }
            return;
        };
        match result {
            Ok(_) => {
                self.copied.fetch_add(1, Ordering::Relaxed);
                // `rd_kafka_offset_store` stores `offset + 1`, the next
                // record to read.
                if let Err(error) = self
                    .consumer
                    .store_offset(&self.input_topic, partition, offset)
                {
                    eprintln!(
                        "warning: offset {offset} of partition {partition} not stored: {error}"
                    );
                }
            }
            Err((error, _)) => {
                eprintln!(
                    "error: the copy of partition {partition} offset {offset} failed: {error}"
                );
                self.failed.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Runs the worker until standard input ends, then flushes, commits and
/// prints `copied N`.
pub fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let consumer: Arc<WorkerConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &args.bootstrap_servers)
            .set("group.id", &args.group_id)
            .set("client.id", "e2e-pass-through")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "100")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", args.fetch_wait_max_ms.to_string())
            .create_with_context(AssignmentContext {
                announced: AtomicBool::new(false),
            })
            .context("cannot create the pass-through consumer")?,
    );
    let context = CopyContext {
        consumer: Arc::clone(&consumer),
        input_topic: args.input_topic.clone(),
        copied: AtomicU64::new(0),
        failed: AtomicBool::new(false),
    };
    let producer: ThreadedProducer<CopyContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap_servers)
        .set("client.id", "e2e-pass-through")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create_with_context(context)
        .context("cannot create the pass-through producer")?;
    // A new idempotent producer took about 1 s on tansu 0.6.0 to deliver
    // its first record. One acknowledged record before subscribing keeps
    // that start-up out of the measured time, as the hub creates its
    // producer before it subscribes.
    producer
        .send(
            BaseRecord::<(), _, _>::with_opaque_to(&args.warmup_topic, Box::new(None))
                .payload("warm-up"),
        )
        .map_err(|(error, _)| error)
        .context("cannot queue the warm-up record")?;
    producer
        .flush(Duration::from_secs(30))
        .context("the warm-up record was not acknowledged within 30 s")?;
    anyhow::ensure!(
        !producer.context().failed.load(Ordering::SeqCst),
        "the warm-up record failed"
    );
    consumer.subscribe(&[&args.input_topic])?;

    let stop = Arc::new(AtomicBool::new(false));
    let stop_on_eof = Arc::clone(&stop);
    std::thread::spawn(move || {
        // Any byte or the end of input stops the worker.
        let _ = std::io::stdin().read(&mut [0_u8; 1]);
        stop_on_eof.store(true, Ordering::SeqCst);
    });

    while !stop.load(Ordering::SeqCst) {
        anyhow::ensure!(
            !producer.context().failed.load(Ordering::SeqCst),
            "a copy failed; see the errors above"
        );
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(error)) => {
                eprintln!("warning: consumer error: {error}");
                continue;
            }
            Some(Ok(message)) => message,
        };
        let input = Box::new(Some((message.partition(), message.offset())));
        let mut record =
            BaseRecord::with_opaque_to(&args.output_topic, input).partition(message.partition());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        if let Some(headers) = message.headers() {
            record = record.headers(headers.detach());
        }
        // A full queue waits for deliveries to make room.
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(error).context("cannot queue a copy"),
            }
        }
    }

    producer
        .flush(Duration::from_secs(30))
        .context("copies still unacknowledged after 30 s")?;
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => return Err(error).context("the final commit failed"),
    }
    let copied = producer.context().copied.load(Ordering::SeqCst);
    println!("copied {copied}");
    Ok(())
}
