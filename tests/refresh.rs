//! Tests of the trigger index refresh loop, on SQLite and, when reachable,
//! PostgreSQL and MySQL/MariaDB (see `common::databases`): each kind of
//! resource change reaches the published index, whether the loop applies
//! the changed triggers or builds a whole new index.

mod common;
mod harness;

use std::sync::Arc;
use std::time::Duration;

use event_hub::matching::{refresh, TriggerIndex};
use event_hub::store::resources::{self, EventSourceUpdate, NewTrigger, TriggerUpdate};
use harness::workload::create_json_pipeline;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::databases::fresh_databases;

/// Poll interval of the loop under test.
const REFRESH_INTERVAL: Duration = Duration::from_millis(20);

/// Time allowed for a change to reach the published index.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

fn new_trigger(name: &str, event_filter: Value) -> NewTrigger {
    NewTrigger {
        name: name.to_owned(),
        description: None,
        event_source: "app".to_owned(),
        action: "run-pipeline".to_owned(),
        event_filter,
        is_active: true,
    }
}

/// Returns the names of the triggers that match an order of type
/// `order_type`, sorted.
fn matching(index: &TriggerIndex, source_id: Uuid, order_type: &str) -> Vec<String> {
    let mut names: Vec<String> = index
        .matching(source_id, &json!({ "type": order_type }))
        .iter()
        .map(|compiled| compiled.trigger.name.clone())
        .collect();
    names.sort();
    names
}

/// Waits until the published index matches an order of each type in
/// `expected` with the triggers listed for it.
async fn wait_for_index(
    receiver: &mut watch::Receiver<Arc<TriggerIndex>>,
    source_id: Uuid,
    expected: &[(&str, &[&str])],
    context: &str,
) {
    let waited = tokio::time::timeout(
        CHANGE_TIMEOUT,
        receiver.wait_for(|index| {
            expected
                .iter()
                .all(|(order_type, names)| matching(index, source_id, order_type) == *names)
        }),
    )
    .await
    .map(|result| result.map(|_| ()));
    match waited {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => panic!("{context}: the refresh loop stopped: {error}"),
        Err(_) => {
            let index = receiver.borrow().clone();
            let found: Vec<(&str, Vec<String>)> = expected
                .iter()
                .map(|(order_type, _)| (*order_type, matching(&index, source_id, order_type)))
                .collect();
            panic!("{context}: expected {expected:?} within {CHANGE_TIMEOUT:?}, found {found:?}");
        }
    }
}

#[tokio::test]
async fn refresh_follows_every_change() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);
        let context = |step: &str| format!("{backend}: {step}");
        // A JSON source `app`, an action and a trigger on pushes.
        create_json_pipeline(db, "orders").await;
        let source_id = resources::find_event_source(db, "app").await.unwrap().id;
        resources::create_trigger(db, new_trigger("created", json!({ "type": ["created"] })))
            .await
            .unwrap();

        let (sender, fingerprint) = refresh::initial_index(db).await.unwrap();
        let mut receiver = sender.subscribe();
        let shutdown = CancellationToken::new();
        let refresher = tokio::spawn(refresh::refresh_loop(
            db.clone(),
            sender,
            fingerprint,
            REFRESH_INTERVAL,
            shutdown.clone(),
        ));
        assert_eq!(
            matching(&receiver.borrow(), source_id, "created"),
            ["created"],
            "{backend}: initial index"
        );

        // Trigger creates and updates: applied to the current index.
        resources::create_trigger(db, new_trigger("paid", json!({ "type": ["paid"] })))
            .await
            .unwrap();
        wait_for_index(
            &mut receiver,
            source_id,
            &[("created", &["created"]), ("paid", &["paid"])],
            &context("create"),
        )
        .await;

        let refilter = TriggerUpdate {
            event_filter: Some(json!({ "type": ["refunded"] })),
            ..TriggerUpdate::default()
        };
        resources::update_trigger(db, "created", refilter)
            .await
            .unwrap();
        wait_for_index(
            &mut receiver,
            source_id,
            &[("created", &[]), ("refunded", &["created"])],
            &context("update"),
        )
        .await;

        resources::set_trigger_active(db, "paid", false)
            .await
            .unwrap();
        wait_for_index(
            &mut receiver,
            source_id,
            &[("paid", &[]), ("refunded", &["created"])],
            &context("deactivate"),
        )
        .await;

        // A delete, alone and beside a create: a whole new index.
        resources::delete_trigger(db, "created").await.unwrap();
        wait_for_index(
            &mut receiver,
            source_id,
            &[("refunded", &[])],
            &context("delete"),
        )
        .await;

        resources::set_trigger_active(db, "paid", true)
            .await
            .unwrap();
        resources::delete_trigger(db, "paid").await.unwrap();
        resources::create_trigger(db, new_trigger("shipped", json!({ "type": ["shipped"] })))
            .await
            .unwrap();
        wait_for_index(
            &mut receiver,
            source_id,
            &[("paid", &[]), ("shipped", &["shipped"])],
            &context("delete and create"),
        )
        .await;

        // A change to the event source: a whole new index.
        let describe = EventSourceUpdate {
            description: Some(Some("orders of the shop".to_owned())),
            ..EventSourceUpdate::default()
        };
        resources::update_event_source(db, "app", describe)
            .await
            .unwrap();
        resources::create_trigger(
            db,
            new_trigger("cancelled", json!({ "type": ["cancelled"] })),
        )
        .await
        .unwrap();
        wait_for_index(
            &mut receiver,
            source_id,
            &[("shipped", &["shipped"]), ("cancelled", &["cancelled"])],
            &context("source change"),
        )
        .await;

        shutdown.cancel();
        refresher.await.unwrap();
        database.drop_database().await;
    }
}
