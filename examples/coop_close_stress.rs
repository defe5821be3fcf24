//! Stress program for closing event consumers during cooperative-sticky
//! rebalances.
//!
//! The parent process starts a broker (librdkafka's mock cluster or a
//! `tansu` process on a free loopback port), creates a 12-partition topic,
//! produces records to it, and then runs child processes one after another.
//! Each child keeps a pool of consumers in one fresh group. In every round
//! `--burst` new members join, which starts a rebalance, and `--burst`
//! members are closed at a random point of it (half of them the newest).
//! Half of the members also add a second topic to their subscription
//! shortly after joining, as the daemon does when an event source names a
//! new topic. A child that librdkafka aborts dies with SIGABRT. The parent
//! counts those aborts and the closes the children completed.
//!
//! The consumers are built like the daemon's: [`kafka::consumer_config`],
//! [`kafka::EventConsumerContext`] (which commits synchronously before every
//! revoke) and an offset stored after each record.
//!
//! ```sh
//! cargo run --example coop_close_stress -- --broker mock --children 10 \
//!     --closes 30 --pool 4 --burst 2 --max-delay-ms 150 --close-mode drop
//! cargo run --example coop_close_stress -- --broker tansu --children 10 \
//!     --closes 30 --pool 4 --burst 2 --max-delay-ms 150 --close-mode close
//! ```
//!
//! `--close-mode drop` commits and then drops the consumer, which was the
//! daemon's close path before [`kafka::leave_group`]. `--close-mode close`
//! commits and runs [`kafka::leave_group`] before the drop. `--strategy` sets
//! `partition.assignment.strategy` (default `cooperative-sticky`).
//! `--children` child processes run `--closes` closes each, with a pool of
//! `--pool` members and random waits of up to `--max-delay-ms` before each
//! join and each close. `--log-dir DIR` keeps each child's log (warnings
//! and up, or `RUST_LOG`) as `DIR/child-N.log`. `--broker tansu` runs
//! `~/.cargo/bin/tansu` with in-memory storage.
//!
//! Concurrency: every consumer of a child runs in its own Tokio task on a
//! multi-threaded runtime; the children run one at a time.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_hub::config::KafkaSettings;
use event_hub::kafka::{self, EventConsumer, EventConsumerContext};
use rand::Rng as _;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use tokio::sync::oneshot;

/// Partitions of the stress topic.
const PARTITIONS: i32 = 12;
/// Records produced to the stress topic before the children start.
const RECORDS: usize = 3000;
/// Time after which the parent kills a child that does not exit.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// Command-line options of the parent and of a child.
#[derive(Clone, Debug)]
struct Options {
    broker: String,
    children: usize,
    closes: usize,
    pool: usize,
    burst: usize,
    max_delay_ms: u64,
    close_mode: String,
    strategy: String,
    child: bool,
    bootstrap_servers: String,
    topic: String,
    log_dir: Option<String>,
}

fn parse_options() -> Options {
    let mut options = Options {
        broker: "mock".to_owned(),
        children: 10,
        closes: 25,
        pool: 4,
        burst: 1,
        max_delay_ms: 400,
        close_mode: "drop".to_owned(),
        strategy: "cooperative-sticky".to_owned(),
        child: false,
        bootstrap_servers: String::new(),
        topic: String::new(),
        log_dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--child" {
            options.child = true;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| panic!("missing value after {flag}"));
        let count = || -> usize {
            value
                .parse()
                .unwrap_or_else(|_| panic!("invalid number {value:?} for {flag}"))
        };
        match flag.as_str() {
            "--broker" => options.broker = value.clone(),
            "--children" => options.children = count(),
            "--closes" => options.closes = count(),
            "--pool" => options.pool = count(),
            "--burst" => options.burst = count(),
            "--max-delay-ms" => options.max_delay_ms = count() as u64,
            "--close-mode" => options.close_mode = value.clone(),
            "--strategy" => options.strategy = value.clone(),
            "--bootstrap-servers" => options.bootstrap_servers = value.clone(),
            "--topic" => options.topic = value.clone(),
            "--log-dir" => options.log_dir = Some(value.clone()),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(
        matches!(options.close_mode.as_str(), "drop" | "close"),
        "--close-mode must be drop or close"
    );
    options
}

fn main() {
    let options = parse_options();
    if options.child {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_writer(std::io::stderr)
            .init();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("Tokio runtime starts");
        runtime.block_on(run_child(&options));
    } else {
        run_parent(&options);
    }
}

/// A broker that lives as long as the parent.
enum Broker {
    Mock {
        _cluster: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    },
    Tansu {
        process: std::process::Child,
        _directory: tempfile::TempDir,
    },
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Tansu { process, .. } = self {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

fn start_tansu() -> (Broker, String) {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let binary = std::path::PathBuf::from(home).join(".cargo/bin/tansu");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let directory = tempfile::tempdir().expect("temporary directory");
    let log = std::fs::File::create(directory.path().join("tansu.log")).expect("tansu log file");
    let child = Command::new(binary)
        .current_dir(directory.path())
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("tansu starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "tansu did not listen within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        Broker::Tansu {
            process: child,
            _directory: directory,
        },
        format!("127.0.0.1:{port}"),
    )
}

fn run_parent(options: &Options) {
    let topic = format!(
        "stress-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let runtime = tokio::runtime::Runtime::new().expect("Tokio runtime starts");
    let (_broker, bootstrap_servers) = match options.broker.as_str() {
        "mock" => {
            let cluster = rdkafka::mocking::MockCluster::new(3).expect("mock cluster starts");
            for name in [topic.clone(), second_topic(&topic)] {
                cluster
                    .create_topic(&name, PARTITIONS, 1)
                    .expect("topic created");
            }
            let servers = cluster.bootstrap_servers();
            (Broker::Mock { _cluster: cluster }, servers)
        }
        "tansu" => {
            let (broker, servers) = start_tansu();
            runtime.block_on(create_topic(&servers, &topic));
            runtime.block_on(create_topic(&servers, &second_topic(&topic)));
            (broker, servers)
        }
        other => panic!("unknown broker {other}: use mock or tansu"),
    };
    runtime.block_on(produce_records(&bootstrap_servers, &topic));
    runtime.block_on(produce_records(&bootstrap_servers, &second_topic(&topic)));

    let executable = std::env::current_exe().expect("path of this program");
    let mut aborts = 0usize;
    let mut other_failures = 0usize;
    let mut closes = 0usize;
    let started = Instant::now();
    for index in 0..options.children {
        let mut command = Command::new(&executable);
        command
            .arg("--child")
            .args(["--bootstrap-servers", &bootstrap_servers])
            .args(["--topic", &topic])
            .args(["--closes", &options.closes.to_string()])
            .args(["--pool", &options.pool.to_string()])
            .args(["--burst", &options.burst.to_string()])
            .args(["--max-delay-ms", &options.max_delay_ms.to_string()])
            .args(["--close-mode", &options.close_mode])
            .args(["--strategy", &options.strategy])
            .stdout(Stdio::piped());
        let stderr_path = options
            .log_dir
            .as_ref()
            .map(|directory| format!("{directory}/child-{index}.log"));
        match &stderr_path {
            Some(path) => {
                command.stderr(std::fs::File::create(path).expect("child log file"));
            }
            None => {
                command.stderr(Stdio::null());
            }
        }
        let mut child = command.spawn().expect("child starts");
        let stdout = child.stdout.take().expect("child stdout is piped");
        let deadline = Instant::now() + CHILD_TIMEOUT;
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter(|line| line.starts_with("closed"))
                .count()
        });
        let status = loop {
            if let Some(status) = child.try_wait().expect("child status") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break child.wait().expect("child status");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let completed = reader.join().expect("stdout reader does not panic");
        closes += completed;
        let signal = {
            use std::os::unix::process::ExitStatusExt as _;
            status.signal()
        };
        match (status.success(), signal) {
            (true, _) => {}
            (false, Some(6)) => {
                aborts += 1;
                println!("child {index}: aborted (SIGABRT) after {completed} closes");
            }
            (false, _) => {
                other_failures += 1;
                println!("child {index}: failed with {status} after {completed} closes");
            }
        }
    }
    println!(
        "broker={} strategy={} close_mode={} children={} closes={} aborts={} other_failures={} elapsed_s={:.0}",
        options.broker,
        options.strategy,
        options.close_mode,
        options.children,
        closes,
        aborts,
        other_failures,
        started.elapsed().as_secs_f64()
    );
}

/// Returns the topic that members add to their subscription, as the daemon
/// does when an event source names a new topic.
fn second_topic(topic: &str) -> String {
    format!("{topic}-b")
}

async fn create_topic(bootstrap_servers: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()
        .expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .expect("CreateTopics request");
    for result in results {
        result.unwrap_or_else(|(topic, error)| panic!("creating {topic} failed: {error:?}"));
    }
}

async fn produce_records(bootstrap_servers: &str, topic: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let sends = (0..RECORDS).map(|index| {
        let key = format!("key-{index}");
        let producer = &producer;
        async move {
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload("{}"),
                    Timeout::After(Duration::from_secs(30)),
                )
                .await
        }
    });
    for result in futures::future::join_all(sends).await {
        result.unwrap_or_else(|(error, _)| panic!("produce failed: {error}"));
    }
}

fn settings(options: &Options, group_id: &str) -> KafkaSettings {
    let consumer_properties = BTreeMap::from([
        (
            "partition.assignment.strategy".to_owned(),
            options.strategy.clone(),
        ),
        ("session.timeout.ms".to_owned(), "6000".to_owned()),
        ("fetch.wait.max.ms".to_owned(), "10".to_owned()),
        ("auto.commit.interval.ms".to_owned(), "100".to_owned()),
    ]);
    KafkaSettings {
        bootstrap_servers: options.bootstrap_servers.clone(),
        group_id: group_id.to_owned(),
        topics: vec![options.topic.clone()],
        properties: BTreeMap::new(),
        consumer_properties,
        producer_properties: BTreeMap::new(),
    }
}

/// A running pool member: its stop signal and its task.
struct Member {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn start_member(options: &Options, group_id: &str) -> Member {
    let consumer: EventConsumer = kafka::consumer_config(&settings(options, group_id))
        .create_with_context(EventConsumerContext::new(Arc::default()))
        .expect("consumer");
    consumer
        .subscribe(&[options.topic.as_str()])
        .expect("subscription");
    let (stop, mut stopped) = oneshot::channel();
    let close_mode = options.close_mode.clone();
    let topics = [options.topic.clone(), second_topic(&options.topic)];
    // Half of the members change their subscription shortly after joining.
    let resubscribe_after = {
        let mut random = rand::thread_rng();
        random
            .gen_bool(0.5)
            .then(|| Duration::from_millis(random.gen_range(0..=options.max_delay_ms)))
    };
    let task = tokio::spawn(async move {
        let resubscribe = tokio::time::sleep(resubscribe_after.unwrap_or(Duration::MAX / 4));
        tokio::pin!(resubscribe);
        let mut resubscribed = resubscribe_after.is_none();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                () = &mut resubscribe, if !resubscribed => {
                    resubscribed = true;
                    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                    consumer.subscribe(&names).expect("subscription");
                }
                message = consumer.recv() => {
                    if let Ok(message) = message {
                        // A failed store means the partition was revoked.
                        let _ = consumer.store_offset_from_message(&message);
                    }
                }
            }
        }
        if close_mode == "close" {
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
            kafka::leave_group(&consumer, Duration::from_secs(5)).await;
        } else {
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
        }
        // The drop closes the consumer: it blocks until librdkafka closed it.
        tokio::task::block_in_place(move || drop(consumer));
    });
    Member { stop, task }
}

async fn run_child(options: &Options) {
    let group_id = format!(
        "stress-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut pool: Vec<Member> = (0..options.pool)
        .map(|_| start_member(options, &group_id))
        .collect();
    // The mock cluster delays the first generation of a group by 3 s: the
    // first closes fall into that wait or just after it.
    let first_wait = rand::thread_rng().gen_range(0..4000);
    tokio::time::sleep(Duration::from_millis(first_wait)).await;

    let mut close = 0;
    while close < options.closes {
        let (join_delay, close_delay) = {
            let mut random = rand::thread_rng();
            (
                random.gen_range(0..=options.max_delay_ms),
                random.gen_range(0..=options.max_delay_ms),
            )
        };
        // New members join, which starts a rebalance, and random members
        // are closed at the same time at a random point of that rebalance.
        tokio::time::sleep(Duration::from_millis(join_delay)).await;
        for _ in 0..options.burst {
            pool.push(start_member(options, &group_id));
        }
        tokio::time::sleep(Duration::from_millis(close_delay)).await;
        let mut victims = Vec::new();
        for _ in 0..options.burst {
            // Half of the victims are members that have just joined.
            let victim = {
                let mut random = rand::thread_rng();
                if random.gen_bool(0.5) {
                    pool.len() - 1
                } else {
                    random.gen_range(0..pool.len())
                }
            };
            let member = pool.swap_remove(victim);
            let _ = member.stop.send(());
            victims.push(member.task);
        }
        for task in victims {
            task.await.expect("member task does not panic");
            println!("closed {close}");
            close += 1;
        }
    }
    for member in pool {
        let _ = member.stop.send(());
        member.task.await.expect("member task does not panic");
    }
}
