//! Recovery of executions left `pending`.
//!
//! An execution stays `pending` when its action request was never
//! acknowledged: the replica crashed between recording and publishing, and
//! the record's redelivery did not match the trigger again (the trigger was
//! deactivated or its filter changed meanwhile). [`sweep_loop`] publishes
//! such executions once they are older than a configured age, so none stays
//! pending forever.
//!
//! The sweep rebuilds the request from the stored execution: the event's
//! metadata is there, the full event document is not, so `event.data` of a
//! swept request is `null`. Several replicas may sweep the same execution at
//! once; workers drop the duplicate by its execution id.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dispatch::{DispatchInput, Dispatcher};
use crate::event::{Event, EventSource};
use crate::store::entity::{action, event_source, trigger, trigger_execution};
use crate::store::executions;
use crate::Result;

/// Most executions republished per sweep.
const SWEEP_LIMIT: u64 = 500;

/// Republishes stale pending executions every `interval` until `shutdown`.
pub async fn sweep_loop(
    db: DatabaseConnection,
    dispatcher: Dispatcher,
    interval: Duration,
    min_age: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match sweep_once(&db, &dispatcher, min_age).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(executions = count, "republished stale pending executions"),
            Err(error) => {
                tracing::warn!(%error, "sweep of pending executions failed; retrying at the next interval")
            }
        }
    }
}

/// Republishes the pending executions older than `min_age`; returns how many.
pub async fn sweep_once(
    db: &DatabaseConnection,
    dispatcher: &Dispatcher,
    min_age: Duration,
) -> Result<usize> {
    let age = chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::MAX);
    let stale = executions::pending_before(db, Utc::now() - age, SWEEP_LIMIT).await?;
    if stale.is_empty() {
        return Ok(0);
    }

    let mut resources = Resources::default();
    let mut records = Vec::with_capacity(stale.len());
    let mut ids = Vec::with_capacity(stale.len());
    for execution in &stale {
        let Some((trigger, action, source)) = resources.load(db, execution).await? else {
            continue;
        };
        let event = Event {
            id: execution.event_id.clone(),
            event_type: event_type_of(&execution.event_metadata),
            document: Value::Null,
            metadata: execution.event_metadata.clone(),
        };
        records.push(dispatcher.build(&DispatchInput {
            execution_id: execution.id,
            trigger: &trigger,
            action: &action,
            source: &source,
            event: &event,
            metadata: &execution.event_metadata,
        })?);
        ids.push(execution.id);
    }

    dispatcher.publish(&records).await?;
    executions::mark_dispatched(db, &ids).await?;
    Ok(ids.len())
}

/// Returns the event type stored in the metadata, or `unknown`.
fn event_type_of(metadata: &Value) -> String {
    ["event_type", "type"]
        .iter()
        .find_map(|key| metadata.get(key).and_then(Value::as_str))
        .unwrap_or("unknown")
        .to_owned()
}

/// Triggers, actions and event sources loaded once per sweep.
#[derive(Default)]
struct Resources {
    triggers: HashMap<Uuid, Option<Arc<trigger::Model>>>,
    actions: HashMap<Uuid, Option<Arc<action::Model>>>,
    sources: HashMap<Uuid, Option<Arc<EventSource>>>,
}

impl Resources {
    /// Returns the trigger, action and source of `execution`, or `None` if
    /// one of them no longer exists or is invalid (logged).
    async fn load(
        &mut self,
        db: &DatabaseConnection,
        execution: &trigger_execution::Model,
    ) -> Result<Option<(Arc<trigger::Model>, Arc<action::Model>, Arc<EventSource>)>> {
        if let Entry::Vacant(slot) = self.triggers.entry(execution.trigger_id) {
            let found = trigger::Entity::find_by_id(execution.trigger_id)
                .one(db)
                .await?;
            slot.insert(found.map(Arc::new));
        }
        let Some(trigger) = self.triggers[&execution.trigger_id].clone() else {
            return Ok(None);
        };

        if let Entry::Vacant(slot) = self.actions.entry(trigger.action_id) {
            let found = action::Entity::find_by_id(trigger.action_id)
                .one(db)
                .await?;
            slot.insert(found.map(Arc::new));
        }
        let Some(action) = self.actions[&trigger.action_id].clone() else {
            return Ok(None);
        };

        if let Entry::Vacant(slot) = self.sources.entry(execution.event_source_id) {
            let found = event_source::Entity::find_by_id(execution.event_source_id)
                .one(db)
                .await?;
            let source = match found.as_ref().map(EventSource::from_model) {
                Some(Ok(source)) => Some(Arc::new(source)),
                Some(Err(error)) => {
                    tracing::error!(execution_id = %execution.id, %error, "cannot sweep: invalid event source");
                    None
                }
                None => None,
            };
            slot.insert(source);
        }
        let Some(source) = self.sources[&execution.event_source_id].clone() else {
            return Ok(None);
        };

        Ok(Some((trigger, action, source)))
    }
}
