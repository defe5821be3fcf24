//! Keeps the trigger index in step with the database.
//!
//! [`refresh_loop`] polls the database fingerprint every
//! `pipeline.trigger_refresh_interval_ms`. When it changed, the loop
//! derives a new [`TriggerIndex`] on the blocking pool and publishes it on
//! the watch channel. Readers keep the previous index until they next
//! borrow the channel, so an update never blocks them. A failed poll keeps
//! the current index and is retried at the next tick.
//!
//! When only triggers were created or updated, the loop reads just those
//! rows and rebuilds the engines of their event sources
//! ([`TriggerIndex::with_trigger_changes`]). A change to an event source
//! or an action, a deleted trigger, or more than
//! [`MAX_INCREMENTAL_TRIGGERS`] changed triggers make it load every row
//! and build a whole new index instead.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::TriggerIndex;
use crate::store::entity::trigger;
use crate::store::resources::{self, Fingerprint};
use crate::Result;

/// Most changed triggers applied to the current index. More, as after a
/// bulk import, likely touch most event sources, whose engines would all be
/// rebuilt anyway, so the loop builds a whole new index instead. The figure
/// is a judgment, not a measurement.
pub const MAX_INCREMENTAL_TRIGGERS: u64 = 1000;

/// Loads every active trigger and builds a fresh index.
///
/// The build runs on tokio's blocking pool: with 100,000 triggers it takes
/// most of a second of CPU, which would otherwise stall a runtime worker
/// and the consumer tasks scheduled on it.
pub async fn load_index(db: &DatabaseConnection) -> Result<TriggerIndex> {
    let snapshot = resources::load_active(db).await?;
    on_blocking_pool(move || {
        TriggerIndex::build(
            &snapshot.event_sources,
            &snapshot.actions,
            &snapshot.triggers,
        )
    })
    .await
}

/// Runs `build` on tokio's blocking pool and returns the index it built.
async fn on_blocking_pool(
    build: impl FnOnce() -> TriggerIndex + Send + 'static,
) -> Result<TriggerIndex> {
    match tokio::task::spawn_blocking(build).await {
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

/// A new index, and the fingerprint of a database state no later than the
/// one it reflects.
struct Refreshed {
    index: TriggerIndex,
    fingerprint: Fingerprint,
    /// The number of trigger rows applied to the previous index, or `None`
    /// for a whole new index.
    applied: Option<usize>,
}

/// Derives the index for the database state after `known`, from `index`,
/// which reflects `known`, and `current`, the fingerprint just read.
async fn refresh(
    db: &DatabaseConnection,
    index: Arc<TriggerIndex>,
    known: &Fingerprint,
    current: Fingerprint,
) -> Result<Refreshed> {
    if current.event_sources == known.event_sources && current.actions == known.actions {
        let changes = resources::trigger_changes(
            db,
            known.triggers.max_updated_at,
            MAX_INCREMENTAL_TRIGGERS + 1,
        )
        .await?;
        if applies_incrementally(known, &changes) {
            let fingerprint = changes.fingerprint;
            let triggers: Vec<trigger::Model> = changes.triggers;
            let applied = triggers.len();
            let index = on_blocking_pool(move || index.with_trigger_changes(&triggers)).await?;
            return Ok(Refreshed {
                index,
                fingerprint,
                applied: Some(applied),
            });
        }
    }

    // Read the fingerprint before the rows, so that a change committed
    // between the two shows up at the next poll.
    Ok(Refreshed {
        index: load_index(db).await?,
        fingerprint: current,
        applied: None,
    })
}

/// Returns whether `changes`, read after `known`, contain every trigger
/// change since then: event sources and actions are as they were, no
/// trigger was deleted, and there are at most [`MAX_INCREMENTAL_TRIGGERS`]
/// of them.
///
/// A trigger created since `known` has a `created_at` later than every
/// `updated_at` then, because resource writes take their timestamps one
/// after the other, each past every one given before. So the row count
/// must have grown by exactly the number of such triggers, and is lower
/// when one was deleted.
fn applies_incrementally(known: &Fingerprint, changes: &resources::TriggerChanges) -> bool {
    let now = &changes.fingerprint;
    if now.event_sources != known.event_sources || now.actions != known.actions {
        return false;
    }
    if changes.triggers.len() as u64 > MAX_INCREMENTAL_TRIGGERS {
        return false;
    }
    let created = changes
        .triggers
        .iter()
        .filter(|trigger| {
            known
                .triggers
                .max_updated_at
                .is_none_or(|newest| trigger.created_at > newest)
        })
        .count() as u64;
    known.triggers.count + created == now.triggers.count
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

        // Poll, and derive a new index when the fingerprint changed.
        let polled = resources::fingerprint(&db).await;
        let refreshed = match polled {
            Ok(current) if current == fingerprint => Ok(None),
            Ok(current) => {
                let index = sender.borrow().clone();
                refresh(&db, index, &fingerprint, current).await.map(Some)
            }
            Err(error) => Err(error),
        };

        let refreshed = match refreshed {
            Ok(refreshed) => refreshed,
            Err(error) => {
                failures += 1;
                // Log the first failure and then one in sixty, not every tick.
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(%error, failures, "cannot read trigger changes from the database; keeping the current index");
                }
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(failures, "trigger changes readable again");
            failures = 0;
        }
        let Some(refreshed) = refreshed else {
            continue;
        };

        let triggers = refreshed.index.trigger_count();
        match refreshed.applied {
            Some(changed) => tracing::info!(triggers, changed, "trigger index updated"),
            None => tracing::info!(triggers, "trigger index rebuilt"),
        }
        crate::metrics::set_trigger_index(triggers, chrono::Utc::now());
        fingerprint = refreshed.fingerprint;
        sender.send_replace(Arc::new(refreshed.index));
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::store::resources::{TableFingerprint, TriggerChanges};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + TimeDelta::seconds(seconds)
    }

    fn fingerprint(version: i64, triggers: u64, newest: i64) -> Fingerprint {
        Fingerprint {
            version,
            event_sources: TableFingerprint {
                count: 1,
                max_updated_at: Some(at(1)),
            },
            actions: TableFingerprint {
                count: 1,
                max_updated_at: Some(at(2)),
            },
            triggers: TableFingerprint {
                count: triggers,
                max_updated_at: Some(at(newest)),
            },
        }
    }

    fn trigger_row(created: i64, updated: i64) -> trigger::Model {
        trigger::Model {
            id: Uuid::new_v4(),
            name: format!("t-{created}"),
            description: None,
            event_source_id: Uuid::new_v4(),
            action_id: Uuid::new_v4(),
            event_filter: json!({}),
            is_active: true,
            created_at: at(created),
            updated_at: at(updated),
        }
    }

    fn changes(now: Fingerprint, triggers: Vec<trigger::Model>) -> TriggerChanges {
        TriggerChanges {
            fingerprint: now,
            triggers,
        }
    }

    #[test]
    fn creates_and_updates_apply_incrementally() {
        let known = fingerprint(5, 10, 100);
        let created = changes(fingerprint(6, 11, 101), vec![trigger_row(101, 101)]);
        assert!(applies_incrementally(&known, &created));
        let updated = changes(fingerprint(6, 10, 101), vec![trigger_row(50, 101)]);
        assert!(applies_incrementally(&known, &updated));
        // Created after `known`, then updated: still a new row.
        let both = changes(fingerprint(7, 11, 102), vec![trigger_row(101, 102)]);
        assert!(applies_incrementally(&known, &both));
        let nothing = changes(fingerprint(6, 10, 100), Vec::new());
        assert!(applies_incrementally(&known, &nothing));
    }

    #[test]
    fn deletes_and_other_tables_rebuild() {
        let known = fingerprint(5, 10, 100);
        let deleted = changes(fingerprint(6, 9, 100), Vec::new());
        assert!(!applies_incrementally(&known, &deleted));
        // One row deleted, another created and then updated.
        let replaced = changes(fingerprint(8, 10, 102), vec![trigger_row(101, 102)]);
        assert!(!applies_incrementally(&known, &replaced));

        let mut source_changed = fingerprint(6, 10, 100);
        source_changed.event_sources.max_updated_at = Some(at(103));
        assert!(!applies_incrementally(
            &known,
            &changes(source_changed, Vec::new())
        ));
        let mut action_changed = fingerprint(6, 10, 100);
        action_changed.actions.count = 2;
        assert!(!applies_incrementally(
            &known,
            &changes(action_changed, Vec::new())
        ));
    }

    #[test]
    fn many_changes_rebuild() {
        let known = fingerprint(5, 10, 100);
        let rows: Vec<trigger::Model> = (0..=MAX_INCREMENTAL_TRIGGERS)
            .map(|_| trigger_row(50, 101))
            .collect();
        assert!(!applies_incrementally(
            &known,
            &changes(fingerprint(6, 10, 101), rows)
        ));
    }

    #[test]
    fn empty_table_counts_every_row_as_created() {
        let mut known = fingerprint(5, 0, 0);
        known.triggers.max_updated_at = None;
        let first = changes(
            fingerprint(6, 2, 101),
            vec![trigger_row(100, 100), trigger_row(101, 101)],
        );
        assert!(applies_incrementally(&known, &first));
    }
}
