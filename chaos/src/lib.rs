//! Parts shared by `event-hub-chaos` and `event-hub-e2e-bench`.
//!
//! [`faults`] starts the tansu broker, the PostgreSQL database and the
//! `event-hub run` replicas that both binaries use. [`workload`] contains
//! the chaos run's resources and events. [`Args`] contains the chaos run's
//! flags, which [`faults::inject`] reads.
//!
//! Nothing here spawns threads of its own. The async functions run on the
//! caller's tokio runtime, and the child processes run beside it.

pub mod faults;
pub mod workload;

use std::path::PathBuf;

use clap::Parser;

/// Runs event-hub replicas under faults and checks that no execution is
/// lost or recorded twice.
#[derive(Debug, Parser)]
#[command(name = "event-hub-chaos", version, about)]
pub struct Args {
    /// Events to produce, half GitHub webhooks and half JSON objects.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,

    /// Hub replicas in the consumer group.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,

    /// Partitions of each event topic.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,

    /// Seconds between two replica kills. Each kill costs the group a
    /// rebalance that lasts about the session timeout (6 s here), so a much
    /// shorter interval keeps the group rebalancing most of the time.
    #[arg(long, default_value_t = 10)]
    pub kill_interval_secs: u64,

    /// Seconds the database stays unreachable.
    #[arg(long, default_value_t = 10)]
    pub database_outage_secs: u64,

    /// Events produced per second; 0 produces as fast as the broker takes them.
    #[arg(long, default_value_t = 2_000)]
    pub produce_rate: u64,

    /// Admin URL of the PostgreSQL server; the run creates and drops its own
    /// database there.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,

    /// The event-hub binary. Default: `event-hub` next to this binary.
    #[arg(long, value_name = "PATH")]
    pub hub_binary: Option<PathBuf>,

    /// The tansu binary. Default: `tansu` on PATH, else ~/.cargo/bin/tansu.
    #[arg(long, value_name = "PATH")]
    pub tansu_binary: Option<PathBuf>,

    /// Seconds to wait for the lag to reach zero after the faults.
    #[arg(long, default_value_t = 600)]
    pub drain_timeout_secs: u64,

    /// Skip the broker restart, and run the broker on memory storage instead
    /// of SQLite: several times faster, for quick runs of the other faults.
    #[arg(long)]
    pub skip_broker_restart: bool,

    /// Keep the working directory (logs, broker data) after the run.
    #[arg(long)]
    pub keep: bool,

    /// Instead of the fault run: produce this many JSON records first, then
    /// start one replica with no faults and report how fast it drains the
    /// backlog and its highest memory use.
    #[arg(long, value_name = "RECORDS")]
    pub backlog: Option<usize>,
}
