//! `event-hub-e2e-bench`: broker → hub → broker throughput and latency,
//! beside a plain consume→produce pass-through through the same broker.
//!
//! On this machine only, it starts one tansu broker with memory storage.
//! It runs these cases on it, one after another: the pass-through, the hub
//! with SQLite at 1% and 100% matching, the hub with PostgreSQL at 1% and
//! 100% matching, and the pass-through again. Each case gets fresh topics,
//! a fresh consumer group and, for the hub, a fresh database with one event
//! source and `--triggers` triggers.
//!
//! Per case: produce a backlog of `--events` events, start the consumer,
//! and time it from its partition assignment until the group has committed
//! the whole backlog (throughput). Then, with the consumer still running,
//! produce at `--latency-rate` events per second and measure each output
//! record's receive time minus its event's produce time (latency). At the
//! end, check that the database contains exactly the expected executions, or
//! that the pass-through copied every record.
//!
//! The bench runs on one tokio runtime. The consumers under test are child
//! processes: `event-hub run` started through [`faults::Replicas`], and this
//! binary started again with the hidden `pass-through` subcommand.

mod events;
mod measure;
mod pass_through;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use event_hub::store::entity::trigger_execution;
use event_hub_chaos::faults::{self, Replicas, Storage, Tansu};
use event_hub_chaos::workload;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

use events::EventSpec;
use measure::{Latency, LatencyReader, ReaderSpec};
use pass_through::{PassThrough, WorkerArgs};

/// Measures broker → hub → broker throughput and latency against a plain
/// pass-through through the same tansu broker.
#[derive(Debug, Parser)]
#[command(name = "event-hub-e2e-bench", version)]
struct Args {
    /// Events produced before each case's consumer starts; the throughput
    /// is this many records over the time to commit them.
    #[arg(long, default_value_t = 150_000)]
    events: usize,

    /// Events per second produced in each case's latency phase.
    #[arg(long, default_value_t = 1_000)]
    latency_rate: u64,

    /// Seconds of each case's latency phase, lengthened for 1% matching
    /// until it yields --min-latency-samples action requests.
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,

    /// Latency samples a case's phase is sized for.
    #[arg(long, default_value_t = 300)]
    min_latency_samples: u64,

    /// `fetch.wait.max.ms` of the hub's consumer, the pass-through's
    /// consumer and the latency reader, in milliseconds.
    #[arg(long, default_value_t = 10)]
    fetch_wait_max_ms: u64,

    /// Partitions of each event and output topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,

    /// Triggers over the event source, each naming its own repository.
    #[arg(long, default_value_t = 1_000)]
    triggers: usize,

    /// Admin URL of the PostgreSQL server; each PostgreSQL case creates and
    /// drops its own database there.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,

    /// Skip the PostgreSQL cases.
    #[arg(long)]
    skip_postgres: bool,

    /// The event-hub binary. Default: `event-hub` next to this binary.
    #[arg(long, value_name = "PATH")]
    hub_binary: Option<PathBuf>,

    /// The tansu binary. Default: `tansu` on PATH, else ~/.cargo/bin/tansu.
    #[arg(long, value_name = "PATH")]
    tansu_binary: Option<PathBuf>,

    /// Seconds a consumer may take to commit its backlog.
    #[arg(long, default_value_t = 300)]
    drain_timeout_secs: u64,

    /// Extra environment variable of the hub, as KEY=VALUE (repeatable),
    /// for example `EVENT_HUB__PIPELINE__BATCH_SIZE=2000`; applied after
    /// the bench's own settings.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    hub_env: Vec<(String, String)>,

    /// Keep the working directory (logs, SQLite files) after the run.
    #[arg(long)]
    keep: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copies an input topic to an output topic; started by the bench.
    #[command(hide = true)]
    PassThrough(WorkerArgs),
}

/// The database behind the hub in one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DatabaseKind {
    Sqlite,
    Postgres,
}

/// The consumer of the events in one case.
#[derive(Clone, Copy, Debug)]
enum Case {
    PassThrough,
    Hub {
        database: DatabaseKind,
        match_percent: u32,
    },
}

impl Case {
    fn label(self) -> &'static str {
        match self {
            Self::PassThrough => "pass-through",
            Self::Hub { .. } => "event-hub",
        }
    }

    fn database(self) -> &'static str {
        match self {
            Self::PassThrough => "-",
            Self::Hub {
                database: DatabaseKind::Sqlite,
                ..
            } => "SQLite",
            Self::Hub {
                database: DatabaseKind::Postgres,
                ..
            } => "PostgreSQL",
        }
    }

    /// Share of events that yield an output record, in percent.
    fn output_percent(self) -> u32 {
        match self {
            Self::PassThrough => 100,
            Self::Hub { match_percent, .. } => match_percent,
        }
    }
}

/// The figures of one case.
struct CaseResult {
    case: Case,
    records_per_sec: f64,
    drain: Duration,
    /// CPU seconds the consumer process used while draining the backlog.
    drain_cpu_secs: Option<f64>,
    latency: Latency,
    latency_events: usize,
    check: String,
    passed: bool,
}

/// State shared by every case: the flags, the broker, the hub binary, the
/// signing key and the warm-up topic.
struct Bench<'a> {
    args: &'a Args,
    work: PathBuf,
    tansu: Tansu,
    hub_binary: PathBuf,
    key_file: PathBuf,
    /// Topic of the records that new producers send before they are timed.
    warmup_topic: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Command::PassThrough(worker)) = args.command {
        return match pass_through::run_worker(worker) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs every case; returns whether every check passed.
async fn run(args: &Args) -> anyhow::Result<bool> {
    let work =
        std::env::temp_dir().join(format!("event-hub-e2e-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work)?;
    println!("working directory: {}", work.display());

    let tansu = Tansu::start(args.tansu_binary.clone(), &work, Storage::Memory).await?;
    tansu.create_topics(&workload::HUB_TOPICS, 3).await?;
    let warmup_topic = format!("e2e-warmup-{}", uuid::Uuid::new_v4().simple());
    tansu.create_topics(&[&warmup_topic], 1).await?;
    let key_file = work.join("signing-key.pem");
    let pair = event_hub::auth::generate_key_pair()?;
    std::fs::write(
        &key_file,
        secrecy::ExposeSecret::expose_secret(&pair.private_pem),
    )?;
    let mut bench = Bench {
        args,
        work: work.clone(),
        tansu,
        hub_binary: hub_binary(args)?,
        key_file,
        warmup_topic,
    };

    let mut cases = vec![
        Case::PassThrough,
        Case::Hub {
            database: DatabaseKind::Sqlite,
            match_percent: 1,
        },
        Case::Hub {
            database: DatabaseKind::Sqlite,
            match_percent: 100,
        },
    ];
    if !args.skip_postgres {
        for match_percent in [1, 100] {
            cases.push(Case::Hub {
                database: DatabaseKind::Postgres,
                match_percent,
            });
        }
    }
    cases.push(Case::PassThrough);

    println!(
        "{} cases, {} events of about 1 KB each, then {} events/s for the latency phase; \
         fetch.wait.max.ms={}",
        cases.len(),
        args.events,
        args.latency_rate,
        args.fetch_wait_max_ms
    );
    let outcome = run_cases(&mut bench, cases).await;
    bench.tansu.stop();
    let results = outcome?;
    print_table(args, &results);

    if args.keep {
        println!("--keep: logs stay in {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(results.iter().all(|result| result.passed))
}

/// Runs `cases` one after another and prints a line per case.
async fn run_cases(bench: &mut Bench<'_>, cases: Vec<Case>) -> anyhow::Result<Vec<CaseResult>> {
    let mut results = Vec::new();
    for (number, case) in cases.into_iter().enumerate() {
        let result = run_case(bench, number + 1, case).await?;
        println!(
            "case {}: {} {} {}% matching: {:.0} records/s, p50 {:.1} ms, p99 {:.1} ms, {}",
            number + 1,
            case.label(),
            case.database(),
            case.output_percent(),
            result.records_per_sec,
            result.latency.p50_us as f64 / 1000.0,
            result.latency.p99_us as f64 / 1000.0,
            result.check
        );
        results.push(result);
    }
    Ok(results)
}

/// The database of one hub case.
struct CaseDatabase {
    db: DatabaseConnection,
    url: String,
    postgres: Option<faults::Database>,
}

impl CaseDatabase {
    async fn create(
        bench: &Bench<'_>,
        kind: DatabaseKind,
        case_dir: &Path,
    ) -> anyhow::Result<Self> {
        match kind {
            DatabaseKind::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", case_dir.join("hub.db").display());
                let db = sea_orm::Database::connect(url.as_str()).await?;
                event_hub::store::migrate(&db).await?;
                Ok(Self {
                    db,
                    url,
                    postgres: None,
                })
            }
            DatabaseKind::Postgres => {
                let database = faults::Database::create(&bench.args.postgres_url).await?;
                Ok(Self {
                    db: database.db.clone(),
                    url: database.url(),
                    postgres: Some(database),
                })
            }
        }
    }

    async fn drop(self) {
        match self.postgres {
            Some(database) => database.drop().await,
            None => {
                let _ = self.db.close().await;
            }
        }
    }
}

/// A running consumer under test.
enum Running {
    PassThrough(PassThrough),
    Hub(Replicas),
}

/// Runs one case: backlog, throughput, latency, check.
async fn run_case(bench: &mut Bench<'_>, number: usize, case: Case) -> anyhow::Result<CaseResult> {
    let args = bench.args;
    let id = format!(
        "{number}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let case_dir = bench.work.join(format!("case-{number}"));
    std::fs::create_dir_all(&case_dir)?;
    let input_topic = format!("e2e-{id}-events");
    let group = format!("e2e-{id}");
    let actions_prefix = format!("e2e-{id}.actions.");
    let (output_topic, match_percent) = match case {
        Case::PassThrough => (format!("e2e-{id}-copies"), 1),
        Case::Hub { match_percent, .. } => (events::action_topic(&actions_prefix), match_percent),
    };
    let bootstrap = bench.tansu.bootstrap_servers.clone();
    bench
        .tansu
        .create_topics(&[&input_topic, &output_topic], args.partitions)
        .await?;
    let spec = EventSpec {
        bootstrap_servers: &bootstrap,
        topic: &input_topic,
        match_percent,
        triggers: args.triggers,
        warmup_topic: &bench.warmup_topic,
    };

    let database = match case {
        Case::PassThrough => None,
        Case::Hub { database, .. } => Some(CaseDatabase::create(bench, database, &case_dir).await?),
    };
    let topics = CaseTopics {
        input: &input_topic,
        output: &output_topic,
        group: &group,
        actions_prefix: &actions_prefix,
    };
    // The database is dropped whether or not the case succeeded.
    let outcome = measure_case(
        bench,
        number,
        case,
        &case_dir,
        &topics,
        spec,
        database.as_ref(),
    )
    .await;
    if let Some(database) = database {
        database.drop().await;
    }
    outcome
}

/// Names of one case's topics and consumer group.
struct CaseTopics<'a> {
    input: &'a str,
    output: &'a str,
    group: &'a str,
    actions_prefix: &'a str,
}

/// Runs the phases of one case on prepared topics and database.
async fn measure_case(
    bench: &Bench<'_>,
    number: usize,
    case: Case,
    case_dir: &Path,
    topics: &CaseTopics<'_>,
    spec: EventSpec<'_>,
    database: Option<&CaseDatabase>,
) -> anyhow::Result<CaseResult> {
    let args = bench.args;
    let bootstrap = spec.bootstrap_servers;
    let (input_topic, output_topic, group) = (topics.input, topics.output, topics.group);
    let match_percent = spec.match_percent;
    if let Some(database) = database {
        events::create_resources(&database.db, input_topic, args.triggers).await?;
    }

    // Throughput: the backlog, from the assignment to the last commit.
    println!(
        "case {number}: {} {}: producing {} events",
        case.label(),
        case.database(),
        args.events
    );
    let mut ends = events::produce_backlog(spec, 0..args.events).await?;
    let ready_timeout = Duration::from_secs(60);
    let (running, assigned_at, pid) = match database {
        None => {
            let worker = WorkerArgs {
                bootstrap_servers: bootstrap.to_owned(),
                group_id: group.to_owned(),
                input_topic: input_topic.to_owned(),
                output_topic: output_topic.to_owned(),
                fetch_wait_max_ms: args.fetch_wait_max_ms,
                warmup_topic: bench.warmup_topic.clone(),
            };
            let mut process = PassThrough::spawn(&worker, &case_dir.join("pass-through.log"))?;
            let assigned_at = process.wait_assigned(ready_timeout).await?;
            let pid = process.pid();
            (Running::PassThrough(process), assigned_at, pid)
        }
        Some(database) => {
            let port = free_port()?;
            let mut replicas = Replicas::new(
                bench.hub_binary.clone(),
                case_dir,
                bootstrap,
                &database.url,
                &bench.key_file,
            );
            hub_settings(&mut replicas, args, group, topics.actions_prefix, port);
            replicas.spawn_new()?;
            let assigned_at = measure::wait_ready(port, ready_timeout).await?;
            let pid = replicas.pids()[0];
            (Running::Hub(replicas), assigned_at, pid)
        }
    };
    let cpu_at_start = measure::cpu_seconds(pid);
    let drain_timeout = Duration::from_secs(args.drain_timeout_secs);
    measure::wait_committed(bootstrap, group, input_topic, &ends, drain_timeout).await?;
    let drain = assigned_at.elapsed();
    let drain_cpu_secs = cpu_at_start
        .zip(measure::cpu_seconds(pid))
        .map(|(start, end)| end - start);

    // Latency: a fixed rate while the consumer keeps running.
    let output_share = f64::from(case.output_percent()) / 100.0;
    let phase_secs = (args.min_latency_samples as f64 / (args.latency_rate as f64 * output_share))
        .ceil()
        .max(args.latency_secs as f64);
    let latency_events = (phase_secs * args.latency_rate as f64) as usize;
    let latency_range = args.events..args.events + latency_events;
    let expected_outputs = match case {
        Case::PassThrough => latency_events,
        Case::Hub { .. } => events::count_matching(latency_range.clone(), match_percent),
    };
    let reader = LatencyReader::start(&ReaderSpec {
        bootstrap_servers: bootstrap,
        topic: output_topic,
        sent_at_pointer: match case {
            Case::PassThrough => "/sent_at_us",
            Case::Hub { .. } => "/event/data/sent_at_us",
        },
        fetch_wait_max_ms: args.fetch_wait_max_ms,
        not_before_us: events::now_micros(),
    })?;
    println!(
        "case {number}: latency phase, {latency_events} events at {} events/s",
        args.latency_rate
    );
    let phase_ends = events::produce_at_rate(spec, latency_range, args.latency_rate).await?;
    let latency = reader
        .finish(expected_outputs as u64, Duration::from_secs(15))
        .await?;
    for (partition, end) in phase_ends {
        let entry = ends.entry(partition).or_insert(0);
        *entry = (*entry).max(end);
    }
    measure::wait_committed(bootstrap, group, input_topic, &ends, drain_timeout).await?;

    // Checks.
    let total_events = args.events + latency_events;
    let stop_timeout = Duration::from_secs(30);
    let (check, passed) = match (running, database) {
        (Running::PassThrough(process), _) => {
            let copied = process.stop(stop_timeout).await?;
            let passed = copied == total_events as u64;
            (format!("{copied}/{total_events} copied"), passed)
        }
        (Running::Hub(mut replicas), Some(database)) => {
            replicas.stop_all(stop_timeout);
            let expected = events::count_matching(0..total_events, match_percent) as u64;
            let recorded = trigger_execution::Entity::find()
                .count(&database.db)
                .await?;
            let pending = trigger_execution::Entity::find()
                .filter(
                    trigger_execution::Column::Status
                        .eq(trigger_execution::ExecutionStatus::Pending),
                )
                .count(&database.db)
                .await?;
            let passed = recorded == expected && pending == 0;
            let mut check = format!("{recorded}/{expected} executions");
            if pending > 0 {
                check.push_str(&format!(", {pending} pending"));
            }
            (check, passed)
        }
        (Running::Hub(_), None) => unreachable!("a hub case always has a database"),
    };
    let passed = passed && latency.samples == expected_outputs as u64;

    Ok(CaseResult {
        case,
        records_per_sec: args.events as f64 / drain.as_secs_f64(),
        drain,
        drain_cpu_secs,
        latency,
        latency_events,
        check: if passed {
            format!("{check}, ok")
        } else {
            format!("{check}, FAILED")
        },
        passed,
    })
}

/// Sets the hub's consumer group, Kafka tuning, action topic prefix and
/// HTTP port for one case.
fn hub_settings(
    replicas: &mut Replicas,
    args: &Args,
    group: &str,
    actions_prefix: &str,
    port: u16,
) {
    replicas.set_env("EVENT_HUB__KAFKA__GROUP_ID", group);
    replicas.set_env(
        "EVENT_HUB__KAFKA__CONSUMER_PROPERTIES__FETCH__WAIT__MAX__MS",
        &args.fetch_wait_max_ms.to_string(),
    );
    replicas.set_env(
        "EVENT_HUB__KAFKA__CONSUMER_PROPERTIES__AUTO__COMMIT__INTERVAL__MS",
        "100",
    );
    // The chaos run turns idempotence off for its broker restart; this run
    // has none, so the hub keeps its default producer.
    replicas.set_env(
        "EVENT_HUB__KAFKA__PRODUCER_PROPERTIES__ENABLE__IDEMPOTENCE",
        "true",
    );
    replicas.set_env("EVENT_HUB__PIPELINE__ACTIONS_TOPIC_PREFIX", actions_prefix);
    replicas.set_env("EVENT_HUB__HTTP__LISTEN", &format!("127.0.0.1:{port}"));
    for (key, value) in &args.hub_env {
        replicas.set_env(key, value);
    }
}

/// Parses a `--hub-env` value.
fn parse_env_pair(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, found {pair:?}")),
    }
}

/// Returns a loopback port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Returns the event-hub binary to run: `--hub-binary`, else the one next
/// to this binary.
fn hub_binary(args: &Args) -> anyhow::Result<PathBuf> {
    match &args.hub_binary {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe()?
            .with_file_name("event-hub")
            .canonicalize()
            .context(
                "event-hub binary not found next to event-hub-e2e-bench; build it or pass --hub-binary",
            ),
    }
}

/// Prints the table of all cases, with each hub case's throughput as a
/// share of the mean of the pass-through runs.
fn print_table(args: &Args, results: &[CaseResult]) {
    let ceilings: Vec<f64> = results
        .iter()
        .filter(|result| matches!(result.case, Case::PassThrough))
        .map(|result| result.records_per_sec)
        .collect();
    let ceiling = ceilings.iter().sum::<f64>() / ceilings.len().max(1) as f64;
    println!();
    println!(
        "event-hub end-to-end benchmark: {} backlog events per case, latency at {} events/s, \
         fetch.wait.max.ms={}, {} triggers",
        args.events, args.latency_rate, args.fetch_wait_max_ms, args.triggers
    );
    for (key, value) in &args.hub_env {
        println!("hub setting: {key}={value}");
    }
    println!(
        "| case | database | matching | records/s | ratio to pass-through | drain s | CPU s | CPU µs/record | p50 ms | p99 ms | max ms | samples | latency events | check |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for result in results {
        let matching = match result.case {
            Case::PassThrough => "-".to_owned(),
            Case::Hub { match_percent, .. } => format!("{match_percent}%"),
        };
        let (cpu, cpu_per_record) = match result.drain_cpu_secs {
            Some(seconds) => (
                format!("{seconds:.2}"),
                format!("{:.1}", seconds * 1e6 / args.events as f64),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {cpu} | {cpu_per_record} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
            result.case.label(),
            result.case.database(),
            matching,
            result.records_per_sec,
            result.records_per_sec / ceiling,
            result.drain.as_secs_f64(),
            result.latency.p50_us as f64 / 1000.0,
            result.latency.p99_us as f64 / 1000.0,
            result.latency.max_us as f64 / 1000.0,
            result.latency.samples,
            result.latency_events,
            result.check
        );
    }
    println!(
        "ratio: records/s over the mean of the {} pass-through runs ({ceiling:.0} records/s); \
         CPU: user and system time of the consumer process while it drained the backlog",
        ceilings.len()
    );
}
