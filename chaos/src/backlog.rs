//! `--backlog N`: one replica drains a backlog of N records with no faults,
//! to measure its throughput and its highest memory use.

use std::time::{Duration, Instant};

use sea_orm::{EntityTrait, PaginatorTrait};

use crate::faults::{Database, Replicas, Stats, Storage, Tansu};
use crate::{verify, workload, Args};

/// Highest resident set size a replica may reach while draining.
const RSS_LIMIT_MIB: f64 = 256.0;

/// Runs the backlog measurement; returns whether the replica stayed under
/// the memory limit and recorded every execution.
pub async fn run(args: Args, records: usize) -> anyhow::Result<bool> {
    let work = crate::tempfile_dir(args.keep)?;
    let mut tansu = Tansu::start(args.tansu_binary.clone(), &work, Storage::Memory).await?;
    let topics = workload::Topics::default();
    tansu
        .create_topics(&[&topics.github, &topics.json], args.partitions)
        .await?;
    tansu.create_topics(&workload::HUB_TOPICS, 3).await?;
    let database = Database::create(&args.postgres_url).await?;
    workload::create_resources(&database.db, &topics).await?;

    println!("producing {records} JSON records");
    let produce_started = Instant::now();
    let produced = workload::produce_json(&tansu.bootstrap_servers, &topics.json, records).await?;
    println!(
        "produced {produced} records in {:.1} s",
        produce_started.elapsed().as_secs_f64()
    );

    let key_file = work.join("signing-key.pem");
    let pair = event_hub::auth::generate_key_pair()?;
    std::fs::write(
        &key_file,
        secrecy::ExposeSecret::expose_secret(&pair.private_pem),
    )?;
    let mut replicas = Replicas::new(
        crate::hub_binary(&args)?,
        &work,
        &tansu.bootstrap_servers,
        &database.url(),
        &key_file,
    );
    replicas.spawn_new()?;

    let started = Instant::now();
    let mut stats = Stats::default();
    verify::wait_for_zero_lag(
        &tansu.bootstrap_servers,
        &[&topics.json],
        Duration::from_secs(args.drain_timeout_secs),
        &mut replicas,
        &mut stats,
    )
    .await?;
    let drained = started.elapsed();
    replicas.stop_all(Duration::from_secs(15));

    let executions = event_hub::store::entity::trigger_execution::Entity::find()
        .count(&database.db)
        .await?;
    let rss_mib = stats.max_rss_kib as f64 / 1024.0;
    let passed = rss_mib < RSS_LIMIT_MIB;
    println!();
    println!("event-hub backlog report");
    println!("  records                   {produced}");
    println!("  executions recorded       {executions}");
    println!("  time to drain             {:.1} s", drained.as_secs_f64());
    println!(
        "  throughput                {:.0} records/s",
        produced as f64 / drained.as_secs_f64()
    );
    println!("  max lag (records)         {}", stats.max_lag);
    println!("  max RSS of the replica    {rss_mib:.1} MiB (limit {RSS_LIMIT_MIB} MiB)");
    println!(
        "  result                    {}",
        if passed { "PASSED" } else { "FAILED" }
    );

    database.drop().await;
    tansu.stop();
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(passed)
}
