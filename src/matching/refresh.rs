//! Keeps the trigger index in step with the database.
//!
//! [`refresh_loop`] polls the database fingerprint every
//! `pipeline.trigger_refresh_interval_ms` and, when it changed, loads the
//! active triggers, builds a new [`TriggerIndex`] on the blocking pool and
//! publishes it on the watch channel. Readers keep the previous index until
//! they next borrow the channel, so a rebuild never blocks them. A failed
//! poll keeps the current index and is retried at the next tick.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::TriggerIndex;
use crate::store::resources::{self, Fingerprint};
use crate::Result;

/// Loads every active trigger and builds a fresh index.
///
/// The build runs on tokio's blocking pool: with 100,000 triggers it takes
/// most of a second of CPU, which would otherwise stall a runtime worker
/// and the consumer tasks scheduled on it.
pub async fn load_index(db: &DatabaseConnection) -> Result<TriggerIndex> {
    let snapshot = resources::load_active(db).await?;
    let built = tokio::task::spawn_blocking(move || {
        TriggerIndex::build(
            &snapshot.event_sources,
            &snapshot.actions,
            &snapshot.triggers,
        )
    })
    .await;
    match built {
        Ok(index) => Ok(index),
        // A panic in the build is a bug, not bad input: surface it as if
        // the build had run on this task.
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(std::io::Error::other(
            "the runtime shut down during the trigger index build",
        )
        .into()),
    }
}

/// Loads the first index and returns the channel that later ones are sent on.
pub async fn initial_index(
    db: &DatabaseConnection,
) -> Result<(watch::Sender<Arc<TriggerIndex>>, Fingerprint)> {
    let fingerprint = resources::fingerprint(db).await?;
    let index = load_index(db).await?;
    tracing::info!(triggers = index.trigger_count(), "trigger index loaded");
    crate::metrics::set_trigger_index(index.trigger_count(), chrono::Utc::now());
    let (sender, _receiver) = watch::channel(Arc::new(index));
    Ok((sender, fingerprint))
}

/// Polls for changes until `shutdown` is cancelled.
pub async fn refresh_loop(
    db: DatabaseConnection,
    sender: watch::Sender<Arc<TriggerIndex>>,
    mut fingerprint: Fingerprint,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures: u32 = 0;

    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }

        let current = match resources::fingerprint(&db).await {
            Ok(current) => current,
            Err(error) => {
                failures += 1;
                // Log the first failure and then one in sixty, not every tick.
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(%error, failures, "cannot poll the database for trigger changes; keeping the current index");
                }
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(failures, "database reachable again for trigger changes");
            failures = 0;
        }
        if current == fingerprint {
            continue;
        }

        match load_index(&db).await {
            Ok(index) => {
                tracing::info!(triggers = index.trigger_count(), "trigger index rebuilt");
                crate::metrics::set_trigger_index(index.trigger_count(), chrono::Utc::now());
                fingerprint = current;
                sender.send_replace(Arc::new(index));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot reload triggers; keeping the current index");
            }
        }
    }
}
