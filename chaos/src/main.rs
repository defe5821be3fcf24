//! `event-hub-chaos`: a repeatable chaos run that checks event-hub's
//! delivery guarantee.
//!
//! On this machine only, it starts a `tansu` broker with SQLite storage, a
//! fresh PostgreSQL database behind a TCP proxy it can cut, and several
//! `event-hub run` replicas in one consumer group. While a producer writes
//! GitHub and JSON events, it kills a random replica with SIGKILL every few
//! seconds and restarts it, restarts the broker once, and makes the
//! database unreachable once. Then it waits for the consumer lag to reach
//! zero, reads every event topic back, derives which (event, trigger) pairs
//! must exist, and compares them with the database and the action topics.
//!
//! The run fails (exit status 1) on a missing execution, a duplicate
//! execution row, or a missing action request.

mod backlog;
mod verify;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use event_hub_chaos::{faults, workload, Args};
use faults::{Proxy, Replicas, Tansu};

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = match args.backlog {
        Some(records) => runtime.block_on(backlog::run(args, records)),
        None => runtime.block_on(run(args)),
    };
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the whole scenario; returns whether the guarantee held.
async fn run(args: Args) -> anyhow::Result<bool> {
    let work = tempfile_dir(args.keep)?;
    println!("working directory: {}", work.display());

    // The broker, the database behind its proxy, the resources.
    // Memory storage is several times faster, and enough when the broker
    // is not restarted.
    let storage = if args.skip_broker_restart {
        faults::Storage::Memory
    } else {
        faults::Storage::Sqlite
    };
    let mut tansu = Tansu::start(args.tansu_binary.clone(), &work, storage).await?;
    let topics = workload::Topics::default();
    tansu
        .create_topics(&[&topics.github, &topics.json], args.partitions)
        .await?;
    tansu.create_topics(&workload::HUB_TOPICS, 3).await?;

    let database = faults::Database::create(&args.postgres_url).await?;
    let proxy = Proxy::start("127.0.0.1:5432".parse()?).await?;
    let hub_url = database.url_through(&proxy);
    let triggers = workload::create_resources(&database.db, &topics).await?;

    // The replicas.
    let hub_binary = hub_binary(&args)?;
    let key_file = work.join("signing-key.pem");
    let pair = event_hub::auth::generate_key_pair()?;
    std::fs::write(
        &key_file,
        secrecy::ExposeSecret::expose_secret(&pair.private_pem),
    )?;
    let mut replicas = Replicas::new(
        hub_binary,
        &work,
        &tansu.bootstrap_servers,
        &hub_url,
        &key_file,
    );
    for _ in 0..args.replicas {
        replicas.spawn_new()?;
    }

    // Produce while the faults happen.
    let lag = verify::LagSampler::start(&tansu.bootstrap_servers, &[&topics.github, &topics.json])?;
    let started = Instant::now();
    let producer = tokio::spawn(workload::produce(
        tansu.bootstrap_servers.clone(),
        topics.clone(),
        args.events,
        args.produce_rate,
    ));
    let mut stats = faults::Stats::default();
    faults::inject(
        &args,
        &mut replicas,
        &mut tansu,
        &proxy,
        &producer,
        &mut stats,
    )
    .await?;
    let produced = producer.await??;
    println!("produced {produced} events; waiting for the lag to reach zero");

    // Drain, then check.
    let drain_started = Instant::now();
    verify::wait_for_zero_lag(
        &tansu.bootstrap_servers,
        &[&topics.github, &topics.json],
        Duration::from_secs(args.drain_timeout_secs),
        &mut replicas,
        &mut stats,
    )
    .await?;
    let drain_time = drain_started.elapsed();
    stats.max_lag = stats.max_lag.max(lag.max_lag());
    drop(lag);
    replicas.stop_all(Duration::from_secs(15));

    let report = verify::check(&tansu.bootstrap_servers, &topics, &triggers, &database.db).await?;
    let passed = report.passed();
    report.print(produced, &stats, drain_time, started.elapsed());

    drop(proxy);
    database.drop().await;
    tansu.stop();
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(passed)
}

/// Returns the event-hub binary to run: `--hub-binary`, else the one next
/// to this binary.
pub fn hub_binary(args: &Args) -> anyhow::Result<PathBuf> {
    match &args.hub_binary {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe()?
            .with_file_name("event-hub")
            .canonicalize()
            .context(
                "event-hub binary not found next to event-hub-chaos; build it or pass --hub-binary",
            ),
    }
}

/// Creates the run's working directory under the system temporary directory.
pub fn tempfile_dir(keep: bool) -> anyhow::Result<PathBuf> {
    let path =
        std::env::temp_dir().join(format!("event-hub-chaos-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&path)?;
    if keep {
        println!("--keep: logs and broker data stay in {}", path.display());
    }
    Ok(path)
}
