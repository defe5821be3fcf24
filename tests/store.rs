//! Integration tests of the store: resources, executions, the change
//! fingerprint and the snapshot of active triggers, on SQLite and, when
//! reachable, PostgreSQL and MySQL/MariaDB (see `common::databases`).

mod common;

use std::fmt::Debug;

use chrono::{TimeDelta, Utc};
use event_hub::store::entity::{event_source, trigger_execution::ExecutionStatus};
use event_hub::store::executions::{self, ExecutionQuery, NewExecution};
use event_hub::store::resources::{
    self, ActionUpdate, EventSourceUpdate, Fingerprint, NewAction, NewEventSource, NewTrigger,
    TriggerUpdate, REDACTED_SECRET,
};
use event_hub::Error;
use std::time::Duration;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseConnection, TransactionTrait,
};
use serde_json::{json, Value};
use uuid::Uuid;

use common::databases::{fresh_databases, REQUIRE_DATABASES_ENV};

fn new_source(name: &str) -> NewEventSource {
    NewEventSource {
        name: name.to_owned(),
        flavor: "github".to_owned(),
        plugin_subtype: "webhook".to_owned(),
        description: None,
        configuration: json!({"topics": ["github-events"]}),
        is_active: true,
    }
}

fn new_action(name: &str) -> NewAction {
    NewAction {
        name: name.to_owned(),
        flavor: "builtin".to_owned(),
        plugin_subtype: "pipeline_run".to_owned(),
        description: None,
        configuration: json!({"template_id": "t-1"}),
        service_account: "sa-ci".to_owned(),
        auth_window_minutes: 60,
    }
}

fn push_filter() -> Value {
    json!({"repo": "Codertocat/Hello-World", "branch": "master", "event_type": "push"})
}

/// Creates the event source `gh` and the action `run` that [`new_trigger`]
/// rows usually name.
async fn create_source_and_action(db: &DatabaseConnection) {
    resources::create_event_source(db, new_source("gh"))
        .await
        .unwrap();
    resources::create_action(db, new_action("run"))
        .await
        .unwrap();
}

fn new_trigger(name: &str, source: &str, action: &str) -> NewTrigger {
    NewTrigger {
        name: name.to_owned(),
        description: None,
        event_source: source.to_owned(),
        action: action.to_owned(),
        event_filter: push_filter(),
        is_active: true,
    }
}

fn execution(trigger: &event_hub::store::entity::trigger::Model, event_id: &str) -> NewExecution {
    NewExecution {
        trigger_id: trigger.id,
        event_source_id: trigger.event_source_id,
        event_id: event_id.to_owned(),
        event_metadata: json!({"event_type": "push"}),
    }
}

#[track_caller]
fn assert_invalid<T: Debug>(result: Result<T, Error>, expected_field: &str, backend: &str) {
    match result {
        Err(Error::Invalid { field, .. }) => {
            assert_eq!(field, expected_field, "{backend}: wrong field")
        }
        other => panic!("{backend}: expected invalid {expected_field}, got {other:?}"),
    }
}

#[track_caller]
fn assert_not_found<T: Debug>(result: Result<T, Error>, backend: &str) {
    assert!(
        matches!(result, Err(Error::NotFound { .. })),
        "{backend}: expected not found, got {result:?}"
    );
}

#[track_caller]
fn assert_already_exists<T: Debug>(result: Result<T, Error>, expected_name: &str, backend: &str) {
    match result {
        Err(Error::AlreadyExists { name, .. }) => {
            assert_eq!(name, expected_name, "{backend}: wrong name")
        }
        other => panic!("{backend}: expected already exists, got {other:?}"),
    }
}

#[tokio::test]
async fn event_source_lifecycle() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);

        let mut new = new_source("Événements GitHub");
        new.description = Some("deliveries of the CI org".to_owned());
        new.configuration = json!({"topics": ["github-events"], "secret": "s3cr3t"});
        let created = resources::create_event_source(db, new).await.unwrap();
        assert_eq!(created.name, "Événements GitHub", "{backend}");
        assert_eq!(created.flavor, "github", "{backend}");
        assert_eq!(created.plugin_subtype, "webhook", "{backend}");
        assert!(created.is_active, "{backend}");
        assert_eq!(created.created_at, created.updated_at, "{backend}");
        assert_eq!(
            created.configuration,
            json!({"topics": ["github-events"], "secret": "s3cr3t"}),
            "{backend}"
        );

        let by_name = resources::find_event_source(db, "Événements GitHub")
            .await
            .unwrap();
        assert_eq!(by_name, created, "{backend}: find by name");
        let by_id = resources::find_event_source(db, &created.id.to_string())
            .await
            .unwrap();
        assert_eq!(by_id, created, "{backend}: find by id");
        assert_not_found(resources::find_event_source(db, "missing").await, backend);
        assert_not_found(
            resources::find_event_source(db, &Uuid::new_v4().to_string()).await,
            backend,
        );

        resources::create_event_source(db, new_source("alpha"))
            .await
            .unwrap();
        let names: Vec<String> = resources::list_event_sources(db)
            .await
            .unwrap()
            .into_iter()
            .map(|source| source.name)
            .collect();
        assert_eq!(
            names,
            ["alpha", "Événements GitHub"],
            "{backend}: list order"
        );

        let update = EventSourceUpdate {
            name: Some("gh".to_owned()),
            description: Some(None),
            configuration: Some(json!({"topics": ["gh-1", "gh-2"]})),
            ..EventSourceUpdate::default()
        };
        let updated = resources::update_event_source(db, &created.id.to_string(), update)
            .await
            .unwrap();
        assert_eq!(updated.name, "gh", "{backend}");
        assert_eq!(updated.description, None, "{backend}");
        assert_eq!(
            updated.configuration,
            json!({"topics": ["gh-1", "gh-2"]}),
            "{backend}"
        );
        assert_eq!(updated.created_at, created.created_at, "{backend}");
        assert!(updated.updated_at > created.updated_at, "{backend}");
        assert_eq!(
            resources::find_event_source(db, "gh").await.unwrap(),
            updated,
            "{backend}: find after update"
        );
        assert_not_found(
            resources::find_event_source(db, "Événements GitHub").await,
            backend,
        );

        let update = EventSourceUpdate {
            flavor: Some("json".to_owned()),
            plugin_subtype: Some("kafka".to_owned()),
            ..EventSourceUpdate::default()
        };
        let switched = resources::update_event_source(db, "gh", update)
            .await
            .unwrap();
        assert_eq!(switched.flavor, "json", "{backend}");
        assert_eq!(switched.plugin_subtype, "kafka", "{backend}");

        let inactive = resources::set_event_source_active(db, "gh", false)
            .await
            .unwrap();
        assert!(!inactive.is_active, "{backend}");
        assert!(inactive.updated_at > switched.updated_at, "{backend}");
        let active = resources::set_event_source_active(db, "gh", true)
            .await
            .unwrap();
        assert!(active.is_active, "{backend}");
        assert!(active.updated_at > inactive.updated_at, "{backend}");

        let deleted = resources::delete_event_source(db, "gh").await.unwrap();
        assert_eq!(deleted.id, created.id, "{backend}");
        assert_not_found(resources::find_event_source(db, "gh").await, backend);
        assert_not_found(resources::delete_event_source(db, "gh").await, backend);
        assert_eq!(
            resources::list_event_sources(db).await.unwrap().len(),
            1,
            "{backend}"
        );

        database.drop_database().await;
    }
}

#[tokio::test]
async fn action_lifecycle() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);

        let created = resources::create_action(db, new_action("run-pipeline"))
            .await
            .unwrap();
        assert_eq!(created.flavor, "builtin", "{backend}");
        assert_eq!(created.plugin_subtype, "pipeline_run", "{backend}");
        assert_eq!(
            created.configuration,
            json!({"template_id": "t-1"}),
            "{backend}"
        );
        assert_eq!(created.service_account, "sa-ci", "{backend}");
        assert_eq!(created.auth_window_minutes, 60, "{backend}");

        assert_eq!(
            resources::find_action(db, "run-pipeline").await.unwrap(),
            created,
            "{backend}: find by name"
        );
        assert_eq!(
            resources::find_action(db, &created.id.to_string())
                .await
                .unwrap(),
            created,
            "{backend}: find by id"
        );

        let update = ActionUpdate {
            name: Some("deploy".to_owned()),
            plugin_subtype: Some("deploy".to_owned()),
            description: Some(Some("deploys main".to_owned())),
            configuration: Some(json!({"environment": "prod"})),
            service_account: Some("sa-deploy".to_owned()),
            auth_window_minutes: Some(1440),
            ..ActionUpdate::default()
        };
        let updated = resources::update_action(db, "run-pipeline", update)
            .await
            .unwrap();
        assert_eq!(updated.name, "deploy", "{backend}");
        assert_eq!(updated.flavor, "builtin", "{backend}");
        assert_eq!(updated.plugin_subtype, "deploy", "{backend}");
        assert_eq!(
            updated.description.as_deref(),
            Some("deploys main"),
            "{backend}"
        );
        assert_eq!(
            updated.configuration,
            json!({"environment": "prod"}),
            "{backend}"
        );
        assert_eq!(updated.service_account, "sa-deploy", "{backend}");
        assert_eq!(updated.auth_window_minutes, 1440, "{backend}");
        assert!(updated.updated_at > created.updated_at, "{backend}");
        assert_eq!(
            resources::list_actions(db).await.unwrap(),
            vec![updated.clone()],
            "{backend}: list"
        );

        let deleted = resources::delete_action(db, "deploy").await.unwrap();
        assert_eq!(deleted, updated, "{backend}");
        assert_not_found(resources::find_action(db, "deploy").await, backend);
        assert!(
            resources::list_actions(db).await.unwrap().is_empty(),
            "{backend}"
        );

        database.drop_database().await;
    }
}

#[tokio::test]
async fn trigger_lifecycle() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);

        let source = resources::create_event_source(db, new_source("gh"))
            .await
            .unwrap();
        let other_source = resources::create_event_source(db, new_source("gh-2"))
            .await
            .unwrap();
        let action = resources::create_action(db, new_action("run-pipeline"))
            .await
            .unwrap();
        let other_action = resources::create_action(db, new_action("notify"))
            .await
            .unwrap();

        let mut new = new_trigger("on-push", "gh", &action.id.to_string());
        new.description = Some("   ".to_owned());
        let created = resources::create_trigger(db, new).await.unwrap();
        assert_eq!(created.event_source_id, source.id, "{backend}");
        assert_eq!(created.action_id, action.id, "{backend}");
        assert_eq!(created.event_filter, push_filter(), "{backend}");
        assert_eq!(created.description, None, "{backend}: blank description");
        assert!(created.is_active, "{backend}");

        assert_eq!(
            resources::find_trigger(db, "on-push").await.unwrap(),
            created,
            "{backend}: find by name"
        );
        assert_eq!(
            resources::find_trigger(db, &created.id.to_string())
                .await
                .unwrap(),
            created,
            "{backend}: find by id"
        );

        let update = TriggerUpdate {
            name: Some("on-tag".to_owned()),
            description: Some(Some("release tags".to_owned())),
            event_source: Some(other_source.id.to_string()),
            action: Some("notify".to_owned()),
            event_filter: Some(json!({"event_type": "tag", "ref": [{"prefix": "v"}]})),
            is_active: None,
        };
        let updated = resources::update_trigger(db, "on-push", update)
            .await
            .unwrap();
        assert_eq!(updated.name, "on-tag", "{backend}");
        assert_eq!(
            updated.description.as_deref(),
            Some("release tags"),
            "{backend}"
        );
        assert_eq!(updated.event_source_id, other_source.id, "{backend}");
        assert_eq!(updated.action_id, other_action.id, "{backend}");
        assert_eq!(
            updated.event_filter,
            json!({"event_type": "tag", "ref": [{"prefix": "v"}]}),
            "{backend}"
        );
        assert!(updated.updated_at > created.updated_at, "{backend}");

        let inactive = resources::set_trigger_active(db, "on-tag", false)
            .await
            .unwrap();
        assert!(!inactive.is_active, "{backend}");
        assert!(inactive.updated_at > updated.updated_at, "{backend}");
        let active = resources::set_trigger_active(db, "on-tag", true)
            .await
            .unwrap();
        assert!(active.is_active, "{backend}");
        assert!(active.updated_at > inactive.updated_at, "{backend}");
        assert_eq!(
            resources::list_triggers(db).await.unwrap(),
            vec![active.clone()],
            "{backend}: list"
        );

        let deleted = resources::delete_trigger(db, "on-tag").await.unwrap();
        assert_eq!(deleted, active, "{backend}");
        assert_not_found(resources::find_trigger(db, "on-tag").await, backend);
        assert_not_found(resources::delete_trigger(db, "on-tag").await, backend);

        database.drop_database().await;
    }
}

#[tokio::test]
async fn duplicate_names_rejected() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);

        resources::create_event_source(db, new_source("gh"))
            .await
            .unwrap();
        resources::create_event_source(db, new_source("gh-2"))
            .await
            .unwrap();
        assert_already_exists(
            resources::create_event_source(db, new_source("gh")).await,
            "gh",
            backend,
        );
        let rename = EventSourceUpdate {
            name: Some("gh".to_owned()),
            ..EventSourceUpdate::default()
        };
        assert_already_exists(
            resources::update_event_source(db, "gh-2", rename).await,
            "gh",
            backend,
        );

        resources::create_action(db, new_action("run"))
            .await
            .unwrap();
        resources::create_action(db, new_action("run-2"))
            .await
            .unwrap();
        assert_already_exists(
            resources::create_action(db, new_action("run")).await,
            "run",
            backend,
        );
        let rename = ActionUpdate {
            name: Some("run".to_owned()),
            ..ActionUpdate::default()
        };
        assert_already_exists(
            resources::update_action(db, "run-2", rename).await,
            "run",
            backend,
        );

        resources::create_trigger(db, new_trigger("t", "gh", "run"))
            .await
            .unwrap();
        resources::create_trigger(db, new_trigger("t-2", "gh", "run"))
            .await
            .unwrap();
        assert_already_exists(
            resources::create_trigger(db, new_trigger("t", "gh", "run")).await,
            "t",
            backend,
        );
        let rename = TriggerUpdate {
            name: Some("t".to_owned()),
            ..TriggerUpdate::default()
        };
        assert_already_exists(
            resources::update_trigger(db, "t-2", rename).await,
            "t",
            backend,
        );

        // Keeping its own name is not a conflict.
        let same = TriggerUpdate {
            name: Some("t".to_owned()),
            ..TriggerUpdate::default()
        };
        resources::update_trigger(db, "t", same).await.unwrap();

        assert_eq!(
            resources::list_event_sources(db).await.unwrap().len(),
            2,
            "{backend}"
        );
        assert_eq!(
            resources::list_actions(db).await.unwrap().len(),
            2,
            "{backend}"
        );
        assert_eq!(
            resources::list_triggers(db).await.unwrap().len(),
            2,
            "{backend}"
        );

        database.drop_database().await;
    }
}

#[tokio::test]
async fn delete_in_use_rejected() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);

        create_source_and_action(db).await;
        resources::create_trigger(db, new_trigger("t-1", "gh", "run"))
            .await
            .unwrap();
        resources::create_trigger(db, new_trigger("t-2", "gh", "run"))
            .await
            .unwrap();

        match resources::delete_action(db, "run").await {
            Err(Error::InUse { kind, name, count }) => {
                assert_eq!(kind, "action", "{backend}");
                assert_eq!(name, "run", "{backend}");
                assert_eq!(count, 2, "{backend}");
            }
            other => panic!("{backend}: expected in use, got {other:?}"),
        }
        match resources::delete_event_source(db, "gh").await {
            Err(Error::InUse { kind, name, count }) => {
                assert_eq!(kind, "event source", "{backend}");
                assert_eq!(name, "gh", "{backend}");
                assert_eq!(count, 2, "{backend}");
            }
            other => panic!("{backend}: expected in use, got {other:?}"),
        }
        resources::find_action(db, "run").await.unwrap();
        resources::find_event_source(db, "gh").await.unwrap();
        assert_eq!(
            resources::list_triggers(db).await.unwrap().len(),
            2,
            "{backend}"
        );

        resources::delete_trigger(db, "t-1").await.unwrap();
        resources::delete_trigger(db, "t-2").await.unwrap();
        resources::delete_action(db, "run").await.unwrap();
        resources::delete_event_source(db, "gh").await.unwrap();

        database.drop_database().await;
    }
}

#[tokio::test]
async fn invalid_inputs_name_the_field() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);

        let uuid_name = Uuid::new_v4().to_string();
        let long_name = "n".repeat(256);
        for name in [
            "",
            " gh",
            "gh ",
            "g\nh",
            long_name.as_str(),
            uuid_name.as_str(),
        ] {
            assert_invalid(
                resources::create_event_source(db, new_source(name)).await,
                "name",
                backend,
            );
            assert_invalid(
                resources::create_action(db, new_action(name)).await,
                "name",
                backend,
            );
        }

        let source_cases = [
            ("gitlab", "webhook", json!({}), "flavor"),
            ("github", "kafka", json!({}), "plugin_subtype"),
            ("json", "webhook", json!({}), "plugin_subtype"),
            (
                "github",
                "webhook",
                json!(["github-events"]),
                "configuration",
            ),
            ("github", "webhook", json!({"topic": "x"}), "configuration"),
            (
                "github",
                "webhook",
                json!({"topics": ["bad topic"]}),
                "configuration.topics",
            ),
            (
                "github",
                "webhook",
                json!({"topics": [], "secret": ""}),
                "configuration.secret",
            ),
        ];
        for (flavor, subtype, configuration, field) in source_cases {
            let new = NewEventSource {
                flavor: flavor.to_owned(),
                plugin_subtype: subtype.to_owned(),
                configuration,
                ..new_source("gh")
            };
            assert_invalid(
                resources::create_event_source(db, new).await,
                field,
                backend,
            );
        }

        let action_cases = [
            ("", "run", json!({}), "sa", 60, "flavor"),
            ("Builtin", "run", json!({}), "sa", 60, "flavor"),
            ("builtin", "", json!({}), "sa", 60, "plugin_subtype"),
            ("builtin", "run.now", json!({}), "sa", 60, "plugin_subtype"),
            ("builtin", "run", json!([1]), "sa", 60, "configuration"),
            ("builtin", "run", json!({}), "", 60, "service_account"),
            ("builtin", "run", json!({}), "sa", 0, "auth_window_minutes"),
            (
                "builtin",
                "run",
                json!({}),
                "sa",
                1441,
                "auth_window_minutes",
            ),
            ("builtin", "run", json!({}), "sa", -5, "auth_window_minutes"),
        ];
        for (flavor, subtype, configuration, account, window, field) in action_cases {
            let new = NewAction {
                flavor: flavor.to_owned(),
                plugin_subtype: subtype.to_owned(),
                configuration,
                service_account: account.to_owned(),
                auth_window_minutes: window,
                ..new_action("run")
            };
            assert_invalid(resources::create_action(db, new).await, field, backend);
        }
        assert!(
            resources::list_event_sources(db).await.unwrap().is_empty(),
            "{backend}"
        );
        assert!(
            resources::list_actions(db).await.unwrap().is_empty(),
            "{backend}"
        );

        create_source_and_action(db).await;
        assert_invalid(
            resources::create_trigger(db, new_trigger("", "gh", "run")).await,
            "name",
            backend,
        );
        assert_invalid(
            resources::create_trigger(db, new_trigger("t", "missing", "run")).await,
            "event_source",
            backend,
        );
        assert_invalid(
            resources::create_trigger(db, new_trigger("t", "gh", "missing")).await,
            "action",
            backend,
        );
        assert!(
            resources::list_triggers(db).await.unwrap().is_empty(),
            "{backend}"
        );

        // Updates are validated as the row will be stored.
        let update = EventSourceUpdate {
            flavor: Some("json".to_owned()),
            ..EventSourceUpdate::default()
        };
        assert_invalid(
            resources::update_event_source(db, "gh", update).await,
            "plugin_subtype",
            backend,
        );
        let update = EventSourceUpdate {
            name: Some(String::new()),
            ..EventSourceUpdate::default()
        };
        assert_invalid(
            resources::update_event_source(db, "gh", update).await,
            "name",
            backend,
        );
        let update = ActionUpdate {
            auth_window_minutes: Some(0),
            ..ActionUpdate::default()
        };
        assert_invalid(
            resources::update_action(db, "run", update).await,
            "auth_window_minutes",
            backend,
        );
        resources::create_trigger(db, new_trigger("t", "gh", "run"))
            .await
            .unwrap();
        let update = TriggerUpdate {
            action: Some("missing".to_owned()),
            ..TriggerUpdate::default()
        };
        assert_invalid(
            resources::update_trigger(db, "t", update).await,
            "action",
            backend,
        );

        let source = resources::find_event_source(db, "gh").await.unwrap();
        assert_eq!(
            source.flavor, "github",
            "{backend}: unchanged after rejection"
        );
        let action = resources::find_action(db, "run").await.unwrap();
        assert_eq!(
            action.auth_window_minutes, 60,
            "{backend}: unchanged after rejection"
        );

        database.drop_database().await;
    }
}

#[tokio::test]
async fn invalid_filter_rejected() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);

        create_source_and_action(db).await;

        for filter in [json!({"repo": []}), json!("push"), json!([{"repo": "x"}])] {
            let new = NewTrigger {
                event_filter: filter.clone(),
                ..new_trigger("t", "gh", "run")
            };
            let result = resources::create_trigger(db, new).await;
            assert!(
                matches!(result, Err(Error::Pattern(_))),
                "{backend}: filter {filter} gave {result:?}"
            );
        }
        assert!(
            resources::list_triggers(db).await.unwrap().is_empty(),
            "{backend}"
        );

        resources::create_trigger(db, new_trigger("t", "gh", "run"))
            .await
            .unwrap();
        let update = TriggerUpdate {
            event_filter: Some(json!({"repo": []})),
            ..TriggerUpdate::default()
        };
        let result = resources::update_trigger(db, "t", update).await;
        assert!(
            matches!(result, Err(Error::Pattern(_))),
            "{backend}: update gave {result:?}"
        );
        let stored = resources::find_trigger(db, "t").await.unwrap();
        assert_eq!(
            stored.event_filter,
            push_filter(),
            "{backend}: filter unchanged"
        );

        database.drop_database().await;
    }
}

#[tokio::test]
async fn executions_recorded_once() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);

        create_source_and_action(db).await;
        let trigger = resources::create_trigger(db, new_trigger("t", "gh", "run"))
            .await
            .unwrap();

        let first = executions::record(db, &[execution(&trigger, "delivery-1")])
            .await
            .unwrap();
        assert_eq!(first.len(), 1, "{backend}");
        assert_eq!(first[0].status, ExecutionStatus::Pending, "{backend}");
        assert_eq!(first[0].trigger_id, trigger.id, "{backend}");

        let second = executions::record(db, &[execution(&trigger, "delivery-1")])
            .await
            .unwrap();
        assert_eq!(second.len(), 1, "{backend}");
        assert_eq!(second[0].id, first[0].id, "{backend}: same execution");
        assert_eq!(second[0].status, ExecutionStatus::Pending, "{backend}");

        let query = ExecutionQuery {
            trigger_id: Some(trigger.id),
            ..ExecutionQuery::default()
        };
        assert_eq!(executions::count(db, &query).await.unwrap(), 1, "{backend}");

        executions::mark_dispatched(db, &[first[0].id])
            .await
            .unwrap();
        let again = executions::record(db, &[execution(&trigger, "delivery-1")])
            .await
            .unwrap();
        assert_eq!(again[0].status, ExecutionStatus::Dispatched, "{backend}");
        assert!(again[0].dispatched_at.is_some(), "{backend}");
        let found = executions::find(db, first[0].id).await.unwrap();
        assert_eq!(found.status, ExecutionStatus::Dispatched, "{backend}");
        assert_eq!(executions::count(db, &query).await.unwrap(), 1, "{backend}");

        database.drop_database().await;
    }
}

#[tokio::test]
async fn executions_redelivered_in_part() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);
        create_source_and_action(db).await;
        let trigger = resources::create_trigger(db, new_trigger("t", "gh", "run"))
            .await
            .unwrap();

        let earlier = executions::record(
            db,
            &[
                execution(&trigger, "pending-before"),
                execution(&trigger, "dispatched-before"),
            ],
        )
        .await
        .unwrap();
        executions::mark_dispatched(db, &[earlier[1].id])
            .await
            .unwrap();

        // New, existing and repeated executions in one call.
        let delivered = [
            "new-1",
            "pending-before",
            "dispatched-before",
            "new-1",
            "new-2",
        ];
        let new: Vec<_> = delivered.iter().map(|id| execution(&trigger, id)).collect();
        let stored = executions::record(db, &new).await.unwrap();

        let event_ids: Vec<&str> = stored.iter().map(|row| row.event_id.as_str()).collect();
        assert_eq!(
            event_ids,
            ["new-1", "pending-before", "dispatched-before", "new-2"],
            "{backend}: in the order given, repeats once"
        );
        let statuses: Vec<ExecutionStatus> = stored.iter().map(|row| row.status).collect();
        assert_eq!(
            statuses,
            [
                ExecutionStatus::Pending,
                ExecutionStatus::Pending,
                ExecutionStatus::Dispatched,
                ExecutionStatus::Pending,
            ],
            "{backend}"
        );
        assert_eq!(
            stored[1], earlier[0],
            "{backend}: an existing pending execution is returned unchanged"
        );
        for row in &stored {
            assert_eq!(
                row.id,
                executions::execution_id(trigger.id, &row.event_id),
                "{backend}: id of {}",
                row.event_id
            );
            assert_eq!(row.trigger_id, trigger.id, "{backend}");
            assert_eq!(
                row.event_metadata,
                json!({"event_type": "push"}),
                "{backend}"
            );
            assert_eq!(row.attempts, 0, "{backend}");
        }
        let new_row = executions::find(db, stored[0].id).await.unwrap();
        assert_eq!(
            new_row, stored[0],
            "{backend}: a new execution is returned as stored"
        );
        let query = ExecutionQuery {
            trigger_id: Some(trigger.id),
            ..ExecutionQuery::default()
        };
        assert_eq!(executions::count(db, &query).await.unwrap(), 4, "{backend}");

        database.drop_database().await;
    }
}

#[tokio::test]
async fn executions_recorded_in_chunks() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);
        create_source_and_action(db).await;
        let trigger = resources::create_trigger(db, new_trigger("t", "gh", "run"))
            .await
            .unwrap();

        // More than the 500 rows of one INSERT or IN list, both among the
        // new executions and among the existing ones.
        let all: Vec<_> = (0..1_300)
            .map(|n| execution(&trigger, &format!("delivery-{n}")))
            .collect();
        let earlier = executions::record(db, &all[..700]).await.unwrap();
        assert_eq!(earlier.len(), 700, "{backend}");
        let dispatched: Vec<Uuid> = earlier.iter().step_by(2).map(|row| row.id).collect();
        executions::mark_dispatched(db, &dispatched).await.unwrap();

        let stored = executions::record(db, &all).await.unwrap();
        assert_eq!(stored.len(), all.len(), "{backend}");
        for (n, (row, new)) in stored.iter().zip(&all).enumerate() {
            assert_eq!(row.id, new.id(), "{backend}: row {n} in order");
            let expected = if n < 700 && n % 2 == 0 {
                ExecutionStatus::Dispatched
            } else {
                ExecutionStatus::Pending
            };
            assert_eq!(row.status, expected, "{backend}: row {n}");
        }
        let query = ExecutionQuery {
            trigger_id: Some(trigger.id),
            ..ExecutionQuery::default()
        };
        assert_eq!(
            executions::count(db, &query).await.unwrap(),
            1_300,
            "{backend}"
        );

        database.drop_database().await;
    }
}

#[tokio::test]
async fn event_ids_compare_exactly() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);
        create_source_and_action(db).await;
        let trigger = resources::create_trigger(db, new_trigger("t", "gh", "run"))
            .await
            .unwrap();

        // Ids that a case- or accent-insensitive collation would merge.
        let ids = [
            "order-a1",
            "order-A1",
            "order-e",
            "order-é",
            "order-b2",
            "order-b2 ",
        ];
        let new: Vec<_> = ids.iter().map(|id| execution(&trigger, id)).collect();
        let stored = executions::record(db, &new).await.unwrap();
        assert_eq!(
            stored.len(),
            ids.len(),
            "{backend}: one execution per distinct id"
        );

        let names_differing_in_case = resources::create_event_source(db, new_source("GH")).await;
        assert!(
            names_differing_in_case.is_ok(),
            "{backend}: gh and GH are distinct names"
        );
        database.drop_database().await;
    }
}

#[tokio::test]
async fn trigger_delete_removes_executions() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);

        create_source_and_action(db).await;
        let doomed = resources::create_trigger(db, new_trigger("doomed", "gh", "run"))
            .await
            .unwrap();
        let kept = resources::create_trigger(db, new_trigger("kept", "gh", "run"))
            .await
            .unwrap();
        let recorded = executions::record(
            db,
            &[
                execution(&doomed, "delivery-1"),
                execution(&doomed, "delivery-2"),
                execution(&kept, "delivery-1"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(recorded.len(), 3, "{backend}");

        resources::delete_trigger(db, "doomed").await.unwrap();

        let doomed_query = ExecutionQuery {
            trigger_id: Some(doomed.id),
            ..ExecutionQuery::default()
        };
        assert_eq!(
            executions::count(db, &doomed_query).await.unwrap(),
            0,
            "{backend}: executions of the deleted trigger"
        );
        assert_not_found(executions::find(db, recorded[0].id).await, backend);
        let kept_query = ExecutionQuery {
            trigger_id: Some(kept.id),
            ..ExecutionQuery::default()
        };
        assert_eq!(
            executions::count(db, &kept_query).await.unwrap(),
            1,
            "{backend}: executions of the other trigger"
        );

        database.drop_database().await;
    }
}

/// Asserts that `after` differs from `before` in exactly the table named
/// `table`, and that the resource version counted one write.
#[track_caller]
fn assert_changed_only(before: &Fingerprint, after: &Fingerprint, table: &str, context: &str) {
    assert_eq!(
        after.version,
        before.version + 1,
        "{context}: resource version"
    );
    let changed = |name: &str| match name {
        "event_sources" => before.event_sources != after.event_sources,
        "actions" => before.actions != after.actions,
        _ => before.triggers != after.triggers,
    };
    for name in ["event_sources", "actions", "triggers"] {
        assert_eq!(
            changed(name),
            name == table,
            "{context}: fingerprint of {name} changed={}",
            changed(name)
        );
    }
}

#[tokio::test]
async fn fingerprint_follows_changes() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);
        let context = |step: &str| format!("{backend}: {step}");

        let empty = resources::fingerprint(db).await.unwrap();
        assert_eq!(empty, Fingerprint::default(), "{backend}: empty tables");
        assert_eq!(
            resources::fingerprint(db).await.unwrap(),
            empty,
            "{backend}: stable without changes"
        );

        let mut last = empty;

        resources::create_event_source(db, new_source("gh"))
            .await
            .unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "event_sources", &context("create source"));
        assert_eq!(now.event_sources.count, 1, "{backend}");
        last = now;

        resources::create_action(db, new_action("run"))
            .await
            .unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "actions", &context("create action"));
        last = now;

        resources::create_trigger(db, new_trigger("t", "gh", "run"))
            .await
            .unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "triggers", &context("create trigger"));
        last = now;

        let update = EventSourceUpdate {
            description: Some(Some("changed".to_owned())),
            ..EventSourceUpdate::default()
        };
        resources::update_event_source(db, "gh", update)
            .await
            .unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "event_sources", &context("update source"));
        last = now;

        let update = ActionUpdate {
            auth_window_minutes: Some(5),
            ..ActionUpdate::default()
        };
        resources::update_action(db, "run", update).await.unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "actions", &context("update action"));
        last = now;

        let update = TriggerUpdate {
            event_filter: Some(json!({"event_type": "tag"})),
            ..TriggerUpdate::default()
        };
        resources::update_trigger(db, "t", update).await.unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "triggers", &context("update trigger"));
        last = now;

        resources::set_trigger_active(db, "t", false).await.unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "triggers", &context("deactivate trigger"));
        last = now;

        resources::set_trigger_active(db, "t", true).await.unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "triggers", &context("activate trigger"));
        last = now;

        resources::set_event_source_active(db, "gh", false)
            .await
            .unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "event_sources", &context("deactivate source"));
        last = now;

        resources::delete_trigger(db, "t").await.unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "triggers", &context("delete trigger"));
        assert_eq!(now.triggers.count, 0, "{backend}");
        last = now;

        resources::delete_action(db, "run").await.unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "actions", &context("delete action"));
        last = now;

        resources::delete_event_source(db, "gh").await.unwrap();
        let now = resources::fingerprint(db).await.unwrap();
        assert_changed_only(&last, &now, "event_sources", &context("delete source"));

        database.drop_database().await;
    }
}

#[tokio::test]
async fn fingerprint_moves_past_future_timestamps() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);

        // A row written by a host whose clock is an hour ahead.
        let ahead = Utc::now() + TimeDelta::hours(1);
        let ahead = ahead - TimeDelta::nanoseconds(i64::from(ahead.timestamp_subsec_nanos()));
        event_source::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set("ahead".to_owned()),
            flavor: Set("json".to_owned()),
            plugin_subtype: Set("kafka".to_owned()),
            description: Set(None),
            configuration: Set(json!({"topics": []})),
            is_active: Set(true),
            created_at: Set(ahead),
            updated_at: Set(ahead),
        }
        .insert(db)
        .await
        .unwrap();
        resources::create_event_source(db, new_source("gh"))
            .await
            .unwrap();
        let before = resources::fingerprint(db).await.unwrap();

        let updated = resources::set_event_source_active(db, "gh", false)
            .await
            .unwrap();
        let after = resources::fingerprint(db).await.unwrap();
        assert!(updated.updated_at > ahead, "{backend}: {updated:?}");
        assert_ne!(
            before.event_sources, after.event_sources,
            "{backend}: fingerprint after an update"
        );

        database.drop_database().await;
    }
}

/// A resource write waits while another one has the resource version row
/// locked, so writes commit in the order they took their `updated_at`, and
/// the trigger index cannot read a later write before an earlier one.
#[tokio::test]
async fn resource_writes_wait_for_one_another() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);
        create_source_and_action(db).await;
        resources::create_trigger(db, new_trigger("t", "gh", "run"))
            .await
            .unwrap();
        let before = resources::fingerprint(db).await.unwrap();

        // Another writer, played by the test, locks the row.
        let other = db.begin().await.unwrap();
        other
            .execute_unprepared("UPDATE resource_version SET version = version + 1 WHERE id = 1")
            .await
            .unwrap();
        let deactivate = {
            let db = db.clone();
            tokio::spawn(async move { resources::set_trigger_active(&db, "t", false).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !deactivate.is_finished(),
            "{backend}: the write did not wait for the open one"
        );

        other.commit().await.unwrap();
        let updated = deactivate.await.unwrap().unwrap();
        assert!(!updated.is_active, "{backend}");
        let after = resources::fingerprint(db).await.unwrap();
        assert_eq!(after.version, before.version + 2, "{backend}");
        assert_ne!(after.triggers, before.triggers, "{backend}");

        database.drop_database().await;
    }
}

#[tokio::test]
async fn load_active_skips_inactive_triggers() {
    for database in fresh_databases().await {
        let (db, backend) = (&database.db, database.backend);

        resources::create_event_source(db, new_source("gh"))
            .await
            .unwrap();
        let inactive_source = NewEventSource {
            is_active: false,
            ..new_source("gh-off")
        };
        resources::create_event_source(db, inactive_source)
            .await
            .unwrap();
        resources::create_action(db, new_action("run"))
            .await
            .unwrap();
        resources::create_action(db, new_action("unused"))
            .await
            .unwrap();

        resources::create_trigger(db, new_trigger("active", "gh", "run"))
            .await
            .unwrap();
        let created_inactive = NewTrigger {
            is_active: false,
            ..new_trigger("created-inactive", "gh", "run")
        };
        resources::create_trigger(db, created_inactive)
            .await
            .unwrap();
        resources::create_trigger(db, new_trigger("deactivated", "gh-off", "run"))
            .await
            .unwrap();
        resources::set_trigger_active(db, "deactivated", false)
            .await
            .unwrap();

        let snapshot = resources::load_active(db).await.unwrap();
        let source_names: Vec<&str> = snapshot
            .event_sources
            .iter()
            .map(|source| source.name.as_str())
            .collect();
        assert_eq!(source_names, ["gh", "gh-off"], "{backend}");
        let action_names: Vec<&str> = snapshot
            .actions
            .iter()
            .map(|action| action.name.as_str())
            .collect();
        assert_eq!(action_names, ["run", "unused"], "{backend}");
        let trigger_names: Vec<&str> = snapshot
            .triggers
            .iter()
            .map(|trigger| trigger.name.as_str())
            .collect();
        assert_eq!(trigger_names, ["active"], "{backend}");

        resources::set_trigger_active(db, "created-inactive", true)
            .await
            .unwrap();
        let snapshot = resources::load_active(db).await.unwrap();
        let trigger_names: Vec<&str> = snapshot
            .triggers
            .iter()
            .map(|trigger| trigger.name.as_str())
            .collect();
        assert_eq!(trigger_names, ["active", "created-inactive"], "{backend}");

        database.drop_database().await;
    }
}

#[test]
fn redacted_configuration_hides_secret() {
    let configuration = json!({"topics": ["github-events"], "secret": "s3cr3t"});
    let redacted = resources::redact_secret(&configuration);
    assert_eq!(redacted["secret"], json!(REDACTED_SECRET));
    assert_eq!(redacted["topics"], json!(["github-events"]));
    assert!(!redacted.to_string().contains("s3cr3t"));
}

#[tokio::test]
async fn required_backends_present() {
    let databases = fresh_databases().await;
    let backends: Vec<&str> = databases.iter().map(|database| database.backend).collect();
    if std::env::var(REQUIRE_DATABASES_ENV).as_deref() == Ok("1") {
        assert_eq!(backends, ["sqlite", "postgres", "mysql"]);
    } else {
        assert_eq!(backends.first(), Some(&"sqlite"));
    }
    for database in databases {
        database.drop_database().await;
    }
}
