//! Readiness state shared by the consumer, the daemon and the HTTP probes.
//!
//! Components report what they observe (the database responded, the broker
//! responded, partitions are assigned) into one [`Health`] behind an `Arc`;
//! `/readyz` reads it. Every field is an atomic, so reporting never blocks
//! the pipeline. Before reading, `/readyz` refreshes the database and
//! broker flags with live checks ([`Health::check_database`],
//! [`Health::check_broker`]), so an idle replica notices an outage too.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer as _};
use sea_orm::DatabaseConnection;

/// Maximum wait for the database or the broker in one live check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Latest observed state of the replica's dependencies.
#[derive(Debug)]
pub struct Health {
    database_ok: AtomicBool,
    broker_ok: AtomicBool,
    assigned_partitions: AtomicUsize,
    consuming: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            database_ok: AtomicBool::new(true),
            broker_ok: AtomicBool::new(true),
            assigned_partitions: AtomicUsize::new(0),
            consuming: AtomicBool::new(false),
        }
    }
}

/// A snapshot of [`Health`], for probes and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HealthReport {
    /// The last database call succeeded.
    pub database_ok: bool,
    /// The last broker call succeeded.
    pub broker_ok: bool,
    /// Partitions of event topics assigned to this replica.
    pub assigned_partitions: usize,
    /// The consumer loop is running and not paused by retries.
    pub consuming: bool,
}

impl HealthReport {
    /// Returns whether the replica is ready: dependencies reachable,
    /// consuming, and holding at least one partition.
    pub fn is_ready(&self) -> bool {
        self.database_ok && self.broker_ok && self.consuming && self.assigned_partitions > 0
    }
}

impl Health {
    /// Records the outcome of a database call.
    pub fn set_database_ok(&self, ok: bool) {
        self.database_ok.store(ok, Ordering::Relaxed);
    }

    /// Records the outcome of a broker call.
    pub fn set_broker_ok(&self, ok: bool) {
        self.broker_ok.store(ok, Ordering::Relaxed);
    }

    /// Records how many partitions are assigned to the consumer after a rebalance.
    pub fn set_assigned_partitions(&self, count: usize) {
        self.assigned_partitions.store(count, Ordering::Relaxed);
    }

    /// Records whether the consumer loop is consuming (false while it is
    /// paused by retries or stopped).
    pub fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::Relaxed);
    }

    /// Returns a snapshot.
    pub fn report(&self) -> HealthReport {
        HealthReport {
            database_ok: self.database_ok.load(Ordering::Relaxed),
            broker_ok: self.broker_ok.load(Ordering::Relaxed),
            assigned_partitions: self.assigned_partitions.load(Ordering::Relaxed),
            consuming: self.consuming.load(Ordering::Relaxed),
        }
    }

    /// Pings the database, waiting at most [`CHECK_TIMEOUT`], and records
    /// whether it responded.
    pub async fn check_database(&self, db: &DatabaseConnection) -> bool {
        let ok = match tokio::time::timeout(CHECK_TIMEOUT, db.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::debug!(%error, "readiness check: database ping failed");
                false
            }
            Err(_elapsed) => {
                tracing::debug!("readiness check: database ping timed out");
                false
            }
        };
        self.set_database_ok(ok);
        ok
    }

    /// Requests cluster metadata through `producer`, waiting at most
    /// [`CHECK_TIMEOUT`], and records whether the broker responded.
    pub async fn check_broker(&self, producer: &FutureProducer) -> bool {
        let producer = producer.clone();
        // librdkafka's metadata call blocks its thread.
        let result = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, CHECK_TIMEOUT)
                .map(|_metadata| ())
        })
        .await;
        let ok = match result {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::debug!(%error, "readiness check: broker metadata request failed");
                false
            }
            Err(error) => {
                tracing::warn!(%error, "readiness check: broker metadata task failed");
                false
            }
        };
        self.set_broker_ok(ok);
        ok
    }
}
