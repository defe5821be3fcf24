//! Tests of the incremental trigger index refresh under stress. They cover
//! concurrent resource writes while the refresh loop runs, hosts whose
//! clocks differ, a database that drops its connections, and random
//! batches of trigger rows applied with `TriggerIndex::with_trigger_changes`.
//!
//! The database tests run on SQLite and, when reachable, PostgreSQL and
//! MySQL/MariaDB (see `common::databases`).

mod common;
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use event_hub::matching::{refresh, TriggerIndex};
use event_hub::store::entity::{action, event_source, trigger};
use event_hub::store::resources::{self, NewEventSource, NewTrigger, TriggerUpdate};
use event_hub::Error;
use harness::proxy::Proxy;
use harness::workload::create_json_pipeline;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ActiveModelTrait, ActiveValue, ConnectionTrait, DatabaseConnection};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::databases::{fresh_databases, TestDatabase};

/// Time allowed for the published index to reach the database state once
/// the writers stopped.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Event types that trigger filters select. Every filter names one of them.
const EVENT_TYPES: [&str; 4] = ["a", "b", "c", "d"];

/// One trigger as the index stores it: source, id, name, active flag and
/// the `updated_at` of the row it was compiled from.
type Entry = (Uuid, Uuid, String, bool, DateTime<Utc>);

/// What [`describe`] returns of an index: its trigger count, its triggers,
/// and the names of the triggers matching each event type of each source.
type Description = (usize, BTreeSet<Entry>, Vec<(String, Vec<String>)>);

/// Returns every trigger of `sources` in `index`, sorted, and the triggers
/// that match each event type, sorted by name.
fn describe(index: &TriggerIndex, sources: &[Uuid]) -> Description {
    let mut entries = BTreeSet::new();
    let mut matches = Vec::new();
    for source_id in sources {
        for explanation in index.explain(*source_id, &json!({})) {
            let row = &explanation.trigger.trigger;
            entries.insert((
                *source_id,
                row.id,
                row.name.clone(),
                row.is_active,
                row.updated_at,
            ));
        }
        for event_type in EVENT_TYPES {
            let mut names: Vec<String> = index
                .matching(*source_id, &json!({ "type": event_type }))
                .iter()
                .map(|compiled| compiled.trigger.name.clone())
                .collect();
            names.sort();
            matches.push((format!("{source_id}/{event_type}"), names));
        }
    }
    (index.trigger_count(), entries, matches)
}

/// Waits until [`describe`] returns the same for the published index as for
/// a fresh build from the database, and returns the difference after
/// [`SETTLE_TIMEOUT`].
async fn wait_until_settled(
    db: &DatabaseConnection,
    receiver: &watch::Receiver<Arc<TriggerIndex>>,
    sources: &[Uuid],
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        let expected = describe(&refresh::load_index(db).await.unwrap(), sources);
        let published = describe(&receiver.borrow().clone(), sources);
        if published == expected {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<&Entry> = expected.1.difference(&published.1).collect();
            let stale: Vec<&Entry> = published.1.difference(&expected.1).collect();
            return Err(format!(
                "the published index differs from a fresh build {SETTLE_TIMEOUT:?} \
                 after the last write: {} triggers published, {} expected; \
                 missing or outdated in the published index: {missing:?}; \
                 published but not in the database: {stale:?}",
                published.0, expected.0
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn new_trigger(name: &str, source: &str, event_type: &str) -> NewTrigger {
    NewTrigger {
        name: name.to_owned(),
        description: None,
        event_source: source.to_owned(),
        action: "run-pipeline".to_owned(),
        event_filter: json!({ "type": [event_type] }),
        is_active: true,
    }
}

/// Creates the source `app` (topic `orders`), a second JSON source
/// `other` (topic `others`) and the action `run-pipeline`, and returns the
/// ids of both sources.
async fn create_two_sources(db: &DatabaseConnection) -> [Uuid; 2] {
    create_json_pipeline(db, "orders").await;
    let app = resources::find_event_source(db, "app").await.unwrap().id;
    let other = resources::create_event_source(
        db,
        NewEventSource {
            name: "other".into(),
            flavor: "json".into(),
            plugin_subtype: "kafka".into(),
            description: None,
            configuration: json!({ "topics": ["others"] }),
            is_active: true,
        },
    )
    .await
    .unwrap();
    [app, other.id]
}

/// Starts a refresh loop on `db` and returns the receiver of its index,
/// the token that stops it and its task.
async fn start_loop(
    db: &DatabaseConnection,
    interval: Duration,
) -> (
    watch::Receiver<Arc<TriggerIndex>>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let (sender, fingerprint) = refresh::initial_index(db).await.unwrap();
    let receiver = sender.subscribe();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(refresh::refresh_loop(
        db.clone(),
        sender,
        fingerprint,
        interval,
        shutdown.clone(),
    ));
    (receiver, shutdown, task)
}

/// Runs `operations` random trigger writes on `db`, seeded by `seed`, one
/// in `delete_one_in` of them a delete, and returns the errors other than
/// a missing trigger or a taken name, which concurrent writers cause
/// legitimately.
async fn write_randomly(
    db: DatabaseConnection,
    seed: u64,
    operations: usize,
    delete_one_in: u32,
) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut unexpected = Vec::new();
    for _ in 0..operations {
        let name = format!("t{}", rng.gen_range(0..24));
        let event_type = EVENT_TYPES[rng.gen_range(0..EVENT_TYPES.len())];
        let source = if rng.gen_bool(0.5) { "app" } else { "other" };
        let operation = if rng.gen_ratio(1, delete_one_in) {
            5
        } else {
            rng.gen_range(0..5)
        };
        let outcome = match operation {
            0 | 1 => resources::create_trigger(&db, new_trigger(&name, source, event_type))
                .await
                .map(|_| ()),
            2 => {
                let update = TriggerUpdate {
                    event_filter: Some(json!({ "type": [event_type] })),
                    ..TriggerUpdate::default()
                };
                resources::update_trigger(&db, &name, update)
                    .await
                    .map(|_| ())
            }
            3 => {
                let update = TriggerUpdate {
                    event_source: Some(source.to_owned()),
                    ..TriggerUpdate::default()
                };
                resources::update_trigger(&db, &name, update)
                    .await
                    .map(|_| ())
            }
            4 => resources::set_trigger_active(&db, &name, rng.gen_bool(0.5))
                .await
                .map(|_| ()),
            _ => resources::delete_trigger(&db, &name).await.map(|_| ()),
        };
        match outcome {
            Ok(()) | Err(Error::NotFound { .. }) | Err(Error::AlreadyExists { .. }) => {}
            Err(error) => unexpected.push(format!("{name}: {error}")),
        }
    }
    unexpected
}

/// Runs `writers` concurrent random writers against `database` while a
/// refresh loop polls every `interval`, and checks that no write failed
/// and that the published index ends equal to a fresh build.
async fn concurrent_writes_settle(
    database: &TestDatabase,
    interval: Duration,
    writers: u64,
    delete_one_in: u32,
) {
    let (db, backend) = (&database.db, database.backend);
    let sources = create_two_sources(db).await;
    for number in 0..12 {
        let source = if number % 2 == 0 { "app" } else { "other" };
        resources::create_trigger(db, new_trigger(&format!("t{number}"), source, "a"))
            .await
            .unwrap();
    }
    let (receiver, shutdown, task) = start_loop(db, interval).await;

    let writers: Vec<_> = (0..writers)
        .map(|seed| tokio::spawn(write_randomly(db.clone(), seed, 80, delete_one_in)))
        .collect();
    let mut unexpected = Vec::new();
    for writer in writers {
        unexpected.extend(writer.await.unwrap());
    }
    assert!(
        unexpected.is_empty(),
        "{backend}: concurrent trigger writes failed: {unexpected:?}"
    );

    let settled = wait_until_settled(db, &receiver, &sources).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(settled, Ok(()), "{backend}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_reach_index() {
    for database in fresh_databases().await {
        concurrent_writes_settle(&database, Duration::from_millis(3), 8, 6).await;
        database.drop_database().await;
    }
}

/// Deletes are rare, so that most polls take the incremental path.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_reach_index() {
    for database in fresh_databases().await {
        concurrent_writes_settle(&database, Duration::from_millis(1), 16, 40).await;
        database.drop_database().await;
    }
}

/// Sets the timestamps of trigger `name` to `at`, counts the write in
/// `resource_version` and records `at` there as the last timestamp issued,
/// as `create_trigger` does on a host whose clock reads `at`.
async fn stamp_trigger(db: &DatabaseConnection, name: &str, at: DateTime<Utc>) {
    let row = resources::find_trigger(db, name).await.unwrap();
    trigger::ActiveModel {
        id: ActiveValue::Unchanged(row.id),
        created_at: ActiveValue::Set(at),
        updated_at: ActiveValue::Set(at),
        ..Default::default()
    }
    .update(db)
    .await
    .unwrap();
    let count_write = Query::update()
        .table(Alias::new("resource_version"))
        .value(
            Alias::new("version"),
            Expr::col(Alias::new("version")).add(1),
        )
        .value(Alias::new("issued_at"), at)
        .and_where(Expr::col(Alias::new("id")).eq(1))
        .to_owned();
    let backend = db.get_database_backend();
    db.execute(backend.build(&count_write)).await.unwrap();
}

/// Replica A, whose clock is ten minutes ahead, creates the newest trigger,
/// and the index is loaded. Replica B, on time, deletes it and creates
/// another before the next poll, and with `ahead_writes_again`, replica A
/// then creates one more. Then the loop runs, and the published index must
/// reach a fresh build on every backend.
async fn delete_newest_written_ahead(ahead_writes_again: bool) {
    let mut failures = Vec::new();
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);
        let sources = create_two_sources(db).await;
        resources::create_trigger(db, new_trigger("ahead", "app", "a"))
            .await
            .unwrap();
        let ahead = Utc::now().trunc_subsecs(6) + TimeDelta::minutes(10);
        stamp_trigger(db, "ahead", ahead).await;

        let (sender, fingerprint) = refresh::initial_index(db).await.unwrap();
        let receiver = sender.subscribe();

        // The writes between two polls of the loop.
        resources::delete_trigger(db, "ahead").await.unwrap();
        resources::create_trigger(db, new_trigger("later", "app", "b"))
            .await
            .unwrap();
        if ahead_writes_again {
            resources::create_trigger(db, new_trigger("further", "other", "c"))
                .await
                .unwrap();
            stamp_trigger(db, "further", ahead + TimeDelta::seconds(1)).await;
        }

        let shutdown = CancellationToken::new();
        let task = tokio::spawn(refresh::refresh_loop(
            db.clone(),
            sender,
            fingerprint,
            Duration::from_millis(20),
            shutdown.clone(),
        ));
        if let Err(difference) = wait_until_settled(db, &receiver, &sources).await {
            failures.push(format!("{backend}: {difference}"));
        }
        shutdown.cancel();
        task.await.unwrap();
        database.drop_database().await;
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Had the new trigger taken an `updated_at` earlier than the deleted
/// one's, the incremental read would miss it, and the row count,
/// unchanged, would hide the delete.
#[tokio::test]
async fn delete_newest_then_create_with_clock_behind() {
    delete_newest_written_ahead(false).await;
}

/// The newest `updated_at` then moves past the one the loop knew, so a
/// check that it never goes back would not reveal a missed trigger either.
#[tokio::test]
async fn delete_newest_hidden_by_later_write() {
    delete_newest_written_ahead(true).await;
}

/// Returns `url` with the server address `from` replaced by `to`.
fn through(url: &str, from: &str, to: SocketAddr) -> String {
    assert!(url.contains(from), "{url} does not contain {from}");
    url.replacen(from, &to.to_string(), 1)
}

/// The loop reads PostgreSQL or MariaDB through a proxy that drops every
/// connection again and again while writers change triggers directly.
/// Once the proxy stays up, the published index must catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outages_during_refresh_recover() {
    for database in fresh_databases().await {
        let server = match database.backend {
            "postgres" => "127.0.0.1:5432",
            "mysql" => "127.0.0.1:3306",
            _ => {
                database.drop_database().await;
                continue;
            }
        };
        let (db, backend) = (&database.db, database.backend);
        let sources = create_two_sources(db).await;
        let proxy = Proxy::start(server.parse().unwrap()).await;
        let mut options =
            sea_orm::ConnectOptions::new(through(&database.url, server, proxy.address));
        options
            .max_connections(2)
            .connect_timeout(Duration::from_secs(1))
            .acquire_timeout(Duration::from_secs(1))
            .sqlx_logging(false);
        let proxied = sea_orm::Database::connect(options).await.unwrap();
        let (receiver, shutdown, task) = start_loop(&proxied, Duration::from_millis(5)).await;

        let writer = tokio::spawn(write_randomly(db.clone(), 7, 150, 6));
        let mut rng = StdRng::seed_from_u64(11);
        while !writer.is_finished() {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(1..40))).await;
            proxy.cut();
            tokio::time::sleep(Duration::from_millis(rng.gen_range(1..40))).await;
            proxy.restore();
        }
        let unexpected = writer.await.unwrap();
        assert!(unexpected.is_empty(), "{backend}: {unexpected:?}");

        let settled = wait_until_settled(db, &receiver, &sources).await;
        shutdown.cancel();
        task.await.unwrap();
        proxied.close().await.unwrap();
        assert_eq!(settled, Ok(()), "{backend}");
        database.drop_database().await;
    }
}

// ---------------------------------------------------------------------------
// with_trigger_changes against TriggerIndex::build, without a database
// ---------------------------------------------------------------------------

fn at(micros: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::microseconds(micros)
}

fn source_row(name: &str, is_active: bool) -> event_source::Model {
    event_source::Model {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        flavor: "json".to_owned(),
        plugin_subtype: "kafka".to_owned(),
        description: None,
        configuration: json!({ "topics": [name] }),
        is_active,
        created_at: at(0),
        updated_at: at(0),
    }
}

fn action_row(name: &str) -> action::Model {
    action::Model {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        flavor: "builtin".to_owned(),
        plugin_subtype: "pipeline_run".to_owned(),
        description: None,
        configuration: json!({}),
        service_account: "sa-ci".to_owned(),
        auth_window_minutes: 10,
        created_at: at(0),
        updated_at: at(0),
    }
}

/// A random version of trigger `id`: any of the sources (one unknown to
/// the index), any action (one unknown), active or not, and a filter that
/// compiles or, rarely, one that does not.
fn random_row(
    rng: &mut StdRng,
    id: Uuid,
    number: usize,
    sources: &[Uuid],
    actions: &[Uuid],
    written: i64,
) -> trigger::Model {
    let event_filter: Value = if rng.gen_ratio(1, 12) {
        json!({ "type": [] })
    } else {
        json!({ "type": [EVENT_TYPES[rng.gen_range(0..EVENT_TYPES.len())]] })
    };
    trigger::Model {
        id,
        name: format!("t{number}"),
        description: None,
        event_source_id: sources[rng.gen_range(0..sources.len())],
        action_id: actions[rng.gen_range(0..actions.len())],
        event_filter,
        is_active: rng.gen_ratio(3, 4),
        created_at: at(number as i64),
        updated_at: at(written),
    }
}

/// Applies random batches of trigger rows and compares each result with a
/// fresh build from the newest row of every trigger. The batches repeat
/// triggers, move them between sources, deactivate and reactivate them,
/// and name unknown sources and actions and invalid filters.
#[test]
fn random_trigger_changes_equal_build() {
    let event_sources = vec![
        source_row("one", true),
        source_row("two", true),
        source_row("off", false),
    ];
    let actions = vec![action_row("run"), action_row("other")];
    let mut source_ids: Vec<Uuid> = event_sources.iter().map(|source| source.id).collect();
    source_ids.push(Uuid::new_v4());
    let mut action_ids: Vec<Uuid> = actions.iter().map(|action| action.id).collect();
    action_ids.push(Uuid::new_v4());
    let trigger_ids: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();

    for seed in 0..300 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut written = 100;
        let mut rows: BTreeMap<Uuid, trigger::Model> = BTreeMap::new();
        for (number, id) in trigger_ids.iter().enumerate().take(rng.gen_range(0..6)) {
            written += 1;
            let row = random_row(&mut rng, *id, number, &source_ids, &action_ids, written);
            rows.insert(*id, row);
        }
        let all: Vec<trigger::Model> = rows.values().cloned().collect();
        let mut index = TriggerIndex::build(&event_sources, &actions, &all);

        for batch in 0..4 {
            let mut changes = Vec::new();
            for _ in 0..rng.gen_range(0..8) {
                let number = rng.gen_range(0..trigger_ids.len());
                written += 1;
                let row = random_row(
                    &mut rng,
                    trigger_ids[number],
                    number,
                    &source_ids,
                    &action_ids,
                    written,
                );
                rows.insert(row.id, row.clone());
                changes.push(row);
            }
            index = index.with_trigger_changes(&changes);

            let all: Vec<trigger::Model> = rows.values().cloned().collect();
            let fresh = TriggerIndex::build(&event_sources, &actions, &all);
            assert_eq!(
                describe(&index, &source_ids),
                describe(&fresh, &source_ids),
                "seed {seed}, batch {batch}: {changes:#?}"
            );
        }
    }
}
