//! Event sources, actions and triggers: validation, create, read, update,
//! delete, and the change fingerprint that the trigger index polls.
//!
//! This is the service layer shared by the CLI and the admin API, so it
//! returns entity models and [`Error`]s and prints nothing. Functions that
//! take a `key` accept an id or a name: the key is tried as a UUID first,
//! then as a name. Names are unique per resource kind and may not be UUIDs,
//! so among rows written through this module a key names at most one
//! resource of its kind.
//!
//! Every write sets `updated_at`. The daemon notices changes by polling
//! [`fingerprint`], the row count and the maximum `updated_at` of each table,
//! then reloads with [`load_active`].
//!
//! Names compare exactly, case included, on every backend: the MySQL tables
//! use the binary collation.

use std::str::FromStr;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use sea_orm::sea_query::{Alias, Asterisk, Expr, Query, SimpleExpr};
use sea_orm::{
    AccessMode, ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend,
    DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, IsolationLevel, PaginatorTrait,
    PrimaryKeyTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait, TryGetable,
};
use serde_json::Value;
use uuid::Uuid;

pub use super::entity::action::retry::Backoff;
use super::entity::{action, event_source, trigger};
use crate::event::{Flavor, SourceConfiguration};
use crate::matching::Pattern;
use crate::{Error, Result};

/// Maximum length of a resource name, in characters (the `name` columns are
/// `VARCHAR(255)`).
pub const MAX_NAME_CHARS: usize = 255;

/// Maximum length of a flavor or plugin subtype, in characters (the columns
/// are `VARCHAR(64)`).
pub const MAX_FLAVOR_CHARS: usize = 64;

/// Maximum length of an action's service account, in characters.
pub const MAX_SERVICE_ACCOUNT_CHARS: usize = 255;

/// Smallest accepted `auth_window_minutes` of an action.
pub const MIN_AUTH_WINDOW_MINUTES: i32 = 1;

/// Largest accepted `auth_window_minutes` of an action: one day, so that no
/// action request carries a token valid for longer.
pub const MAX_AUTH_WINDOW_MINUTES: i32 = 1440;

/// Replacement text for an event source's webhook secret in displayed
/// configurations.
pub const REDACTED_SECRET: &str = "********";

const EVENT_SOURCE: &str = "event source";
const ACTION: &str = "action";
const TRIGGER: &str = "trigger";

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// Fields of an event source to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEventSource {
    /// Unique name.
    pub name: String,
    /// Decoder family: `github`, `cloudevents` or `json`.
    pub flavor: String,
    /// Transport variant, one of the flavor's [`Flavor::subtypes`].
    pub plugin_subtype: String,
    /// Free text for operators. A blank text is stored as none.
    pub description: Option<String>,
    /// `{"topics": [...], "secret": "..."}`, validated by
    /// [`SourceConfiguration::from_json`].
    pub configuration: Value,
    /// Whether the source's records are matched at all.
    pub is_active: bool,
}

/// Changes to an event source. A `None` field stays as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventSourceUpdate {
    /// New unique name.
    pub name: Option<String>,
    /// New decoder family.
    pub flavor: Option<String>,
    /// New transport variant.
    pub plugin_subtype: Option<String>,
    /// New description. `Some(None)` or a blank text clears it.
    pub description: Option<Option<String>>,
    /// New configuration, replacing the whole object.
    pub configuration: Option<Value>,
    /// New active flag.
    pub is_active: Option<bool>,
}

/// Fields of an action to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAction {
    /// Unique name.
    pub name: String,
    /// Handler family, `[a-z0-9_-]+`. With the default prefix, the action
    /// topic is `event-hub.actions.<flavor>.<subtype>`.
    pub flavor: String,
    /// Handler variant, `[a-z0-9_-]+`.
    pub plugin_subtype: String,
    /// Free text for operators. A blank text is stored as none.
    pub description: Option<String>,
    /// JSON object handed to the worker in every action request.
    pub configuration: Value,
    /// Subject of the token in each action request.
    pub service_account: String,
    /// Lifetime of that token, from [`MIN_AUTH_WINDOW_MINUTES`] to
    /// [`MAX_AUTH_WINDOW_MINUTES`].
    pub auth_window_minutes: i32,
}

/// Changes to an action. A `None` field stays as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActionUpdate {
    /// New unique name.
    pub name: Option<String>,
    /// New handler family.
    pub flavor: Option<String>,
    /// New handler variant.
    pub plugin_subtype: Option<String>,
    /// New description. `Some(None)` or a blank text clears it.
    pub description: Option<Option<String>>,
    /// New configuration, replacing the whole object.
    pub configuration: Option<Value>,
    /// New service account.
    pub service_account: Option<String>,
    /// New token lifetime in minutes.
    pub auth_window_minutes: Option<i32>,
}

/// The retry policy of an action: how often and how soon a retryable
/// failure is delivered again, and when the request is dead-lettered
/// instead.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included, from 1 to [`MAX_ATTEMPTS`].
    pub max_attempts: i32,
    /// Growth of the delay between attempts.
    pub backoff: Backoff,
    /// Delay after the first failed attempt, in milliseconds, from 1 to
    /// [`MAX_RETRY_DELAY_MS`].
    pub initial_delay_ms: i64,
    /// Cap of the delay, in milliseconds, from `initial_delay_ms` to
    /// [`MAX_RETRY_DELAY_MS`].
    pub max_delay_ms: i64,
    /// Age in seconds after which a failed execution is dead-lettered
    /// instead of retried, from 1 to [`MAX_EVENT_AGE_SECS`]; `None` for no
    /// limit. The age counts from when the hub recorded the execution.
    pub max_event_age_secs: Option<i64>,
}

/// Largest accepted `max_attempts` of an action.
pub const MAX_ATTEMPTS: i32 = 100;

/// Largest accepted retry delay of an action: one day, in milliseconds.
pub const MAX_RETRY_DELAY_MS: i64 = 86_400_000;

/// Largest accepted `max_event_age_secs` of an action: 30 days.
pub const MAX_EVENT_AGE_SECS: i64 = 30 * 86_400;

impl Default for RetryPolicy {
    /// Returns the column defaults: 3 attempts, exponential backoff from
    /// 1 s up to 60 s, no age limit.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Backoff::Exponential,
            initial_delay_ms: 1000,
            max_delay_ms: 60_000,
            max_event_age_secs: None,
        }
    }
}

impl RetryPolicy {
    /// Returns the delay before the attempt after failed attempt
    /// `failed_attempt` (1 for the first), before jitter: `initial_delay_ms`
    /// times 2^(n-1) (exponential) or times n (linear), capped at
    /// `max_delay_ms`.
    pub fn delay_after(&self, failed_attempt: u32) -> std::time::Duration {
        let initial = u64::try_from(self.initial_delay_ms).unwrap_or(0);
        let max = u64::try_from(self.max_delay_ms).unwrap_or(0);
        let step = u64::from(failed_attempt.max(1));
        let delay = match self.backoff {
            Backoff::Exponential => {
                let shift = u32::try_from(step - 1).unwrap_or(u32::MAX).min(63);
                initial.saturating_mul(1_u64 << shift)
            }
            Backoff::Linear => initial.saturating_mul(step),
        };
        std::time::Duration::from_millis(delay.min(max))
    }

    /// Builds the policy stored in a row of the retry view of `actions`.
    pub fn from_model(model: &action::retry::Model) -> Self {
        Self {
            max_attempts: model.max_attempts,
            backoff: model.backoff,
            initial_delay_ms: model.initial_delay_ms,
            max_delay_ms: model.max_delay_ms,
            max_event_age_secs: model.max_event_age_secs,
        }
    }
}

/// Changes to a retry policy. A `None` field stays as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryPolicyUpdate {
    /// New number of attempts.
    pub max_attempts: Option<i32>,
    /// New backoff.
    pub backoff: Option<Backoff>,
    /// New initial delay in milliseconds.
    pub initial_delay_ms: Option<i64>,
    /// New delay cap in milliseconds.
    pub max_delay_ms: Option<i64>,
    /// New age limit in seconds; `Some(None)` removes the limit.
    pub max_event_age_secs: Option<Option<i64>>,
}

impl RetryPolicyUpdate {
    /// Returns whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Returns `current` with this update's fields applied.
    pub fn apply(&self, current: &RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(current.max_attempts),
            backoff: self.backoff.unwrap_or(current.backoff),
            initial_delay_ms: self.initial_delay_ms.unwrap_or(current.initial_delay_ms),
            max_delay_ms: self.max_delay_ms.unwrap_or(current.max_delay_ms),
            max_event_age_secs: self
                .max_event_age_secs
                .unwrap_or(current.max_event_age_secs),
        }
    }
}

/// Fields of a trigger to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTrigger {
    /// Unique name.
    pub name: String,
    /// Free text for operators. A blank text is stored as none.
    pub description: Option<String>,
    /// Name or id of the event source whose events the trigger receives.
    pub event_source: String,
    /// Name or id of the action requested for each matching event.
    pub action: String,
    /// Event pattern, compiled by [`Pattern::compile`] to validate it.
    pub event_filter: Value,
    /// Whether the trigger matches events.
    pub is_active: bool,
}

/// Changes to a trigger. A `None` field stays as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriggerUpdate {
    /// New unique name.
    pub name: Option<String>,
    /// New description. `Some(None)` or a blank text clears it.
    pub description: Option<Option<String>>,
    /// Name or id of the new event source.
    pub event_source: Option<String>,
    /// Name or id of the new action.
    pub action: Option<String>,
    /// New event pattern.
    pub event_filter: Option<Value>,
    /// New active flag.
    pub is_active: Option<bool>,
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Checks a resource name: 1 to [`MAX_NAME_CHARS`] characters, no leading or
/// trailing whitespace, no control characters, and not a UUID.
pub fn validate_name(name: &str) -> Result<()> {
    let length = name.chars().count();
    if length == 0 {
        return Err(Error::invalid("name", "must not be empty"));
    }
    if length > MAX_NAME_CHARS {
        return Err(Error::invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters, got {length}"),
        ));
    }
    if name.trim() != name {
        return Err(Error::invalid(
            "name",
            format!("{name:?} must not start or end with whitespace"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            format!("{name:?} must not contain control characters"),
        ));
    }
    if Uuid::parse_str(name).is_ok() {
        return Err(Error::invalid(
            "name",
            format!("{name:?} must not be a UUID, because ids and names are both accepted as keys"),
        ));
    }
    Ok(())
}

/// Validates an event source's flavor, subtype and configuration together,
/// and returns the configuration in its normalized form (`topics` always
/// present, unknown keys rejected).
pub fn validate_event_source(flavor: &str, subtype: &str, configuration: &Value) -> Result<Value> {
    let parsed_flavor = Flavor::from_str(flavor)?;
    let subtypes = parsed_flavor.subtypes();
    if !subtypes.contains(&subtype) {
        return Err(Error::invalid(
            "plugin_subtype",
            format!(
                "{subtype:?} is not a subtype of flavor {parsed_flavor}; expected {}",
                subtypes.join(" or ")
            ),
        ));
    }
    if !configuration.is_object() {
        return Err(Error::invalid(
            "configuration",
            r#"must be a JSON object such as {"topics": ["github-events"]}"#,
        ));
    }
    let parsed = SourceConfiguration::from_json(configuration)?;
    Ok(serde_json::to_value(parsed)?)
}

/// Validates an action's fields other than its name.
pub fn validate_action(
    flavor: &str,
    subtype: &str,
    configuration: &Value,
    service_account: &str,
    auth_window_minutes: i32,
) -> Result<()> {
    validate_topic_part("flavor", flavor)?;
    validate_topic_part("plugin_subtype", subtype)?;
    if !configuration.is_object() {
        return Err(Error::invalid(
            "configuration",
            "must be a JSON object, for example {}",
        ));
    }
    validate_service_account(service_account)?;
    if !(MIN_AUTH_WINDOW_MINUTES..=MAX_AUTH_WINDOW_MINUTES).contains(&auth_window_minutes) {
        return Err(Error::invalid(
            "auth_window_minutes",
            format!(
                "must be from {MIN_AUTH_WINDOW_MINUTES} to {MAX_AUTH_WINDOW_MINUTES} minutes, got {auth_window_minutes}"
            ),
        ));
    }
    Ok(())
}

/// Validates a retry policy, naming the field at fault.
pub fn validate_retry_policy(policy: &RetryPolicy) -> Result<()> {
    if !(1..=MAX_ATTEMPTS).contains(&policy.max_attempts) {
        return Err(Error::invalid(
            "max_attempts",
            format!(
                "must be from 1 to {MAX_ATTEMPTS}, got {}",
                policy.max_attempts
            ),
        ));
    }
    if !(1..=MAX_RETRY_DELAY_MS).contains(&policy.initial_delay_ms) {
        return Err(Error::invalid(
            "initial_delay_ms",
            format!(
                "must be from 1 to {MAX_RETRY_DELAY_MS} milliseconds, got {}",
                policy.initial_delay_ms
            ),
        ));
    }
    if !(policy.initial_delay_ms..=MAX_RETRY_DELAY_MS).contains(&policy.max_delay_ms) {
        return Err(Error::invalid(
            "max_delay_ms",
            format!(
                "must be from initial_delay_ms ({}) to {MAX_RETRY_DELAY_MS} milliseconds, got {}",
                policy.initial_delay_ms, policy.max_delay_ms
            ),
        ));
    }
    if let Some(age) = policy.max_event_age_secs {
        if !(1..=MAX_EVENT_AGE_SECS).contains(&age) {
            return Err(Error::invalid(
                "max_event_age_secs",
                format!("must be from 1 to {MAX_EVENT_AGE_SECS} seconds, got {age}"),
            ));
        }
    }
    Ok(())
}

/// Checks an action flavor or subtype, which become part of a Kafka topic name.
fn validate_topic_part(field: &str, value: &str) -> Result<()> {
    let length = value.chars().count();
    if length == 0 {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if length > MAX_FLAVOR_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_FLAVOR_CHARS} characters, got {length}"),
        ));
    }
    let valid = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        return Err(Error::invalid(
            field,
            format!("{value:?} must contain only a-z, 0-9, '_' and '-', because it becomes part of the action topic name"),
        ));
    }
    Ok(())
}

fn validate_service_account(service_account: &str) -> Result<()> {
    let length = service_account.chars().count();
    if service_account.trim().is_empty() {
        return Err(Error::invalid("service_account", "must not be empty"));
    }
    if length > MAX_SERVICE_ACCOUNT_CHARS {
        return Err(Error::invalid(
            "service_account",
            format!("must be at most {MAX_SERVICE_ACCOUNT_CHARS} characters, got {length}"),
        ));
    }
    if service_account.trim() != service_account || service_account.chars().any(char::is_control) {
        return Err(Error::invalid(
            "service_account",
            format!("{service_account:?} must not start or end with whitespace or contain control characters"),
        ));
    }
    Ok(())
}

/// Returns `None` for a missing or blank description.
fn normalize_description(description: Option<String>) -> Option<String> {
    description.filter(|text| !text.trim().is_empty())
}

/// Returns `configuration` with its `secret` replaced by [`REDACTED_SECRET`],
/// for display. Values without a non-null `secret` are returned unchanged.
pub fn redact_secret(configuration: &Value) -> Value {
    let mut redacted = configuration.clone();
    if let Some(secret) = redacted.get_mut("secret") {
        if !secret.is_null() {
            *secret = Value::String(REDACTED_SECRET.to_owned());
        }
    }
    redacted
}

// ---------------------------------------------------------------------------
// Event sources
// ---------------------------------------------------------------------------

/// Validates and inserts an event source.
pub async fn create_event_source(
    db: &DatabaseConnection,
    new: NewEventSource,
) -> Result<event_source::Model> {
    validate_name(&new.name)?;
    let configuration =
        validate_event_source(&new.flavor, &new.plugin_subtype, &new.configuration)?;
    ensure_name_free::<event_source::Entity>(
        db,
        EVENT_SOURCE,
        event_source::Column::Name,
        event_source::Column::Id,
        &new.name,
        None,
    )
    .await?;

    let transaction = begin_resource_write(db).await?;
    let now =
        next_updated_at::<event_source::Entity>(&transaction, event_source::Column::UpdatedAt)
            .await?;
    let row = event_source::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set(new.name.clone()),
        flavor: Set(new.flavor),
        plugin_subtype: Set(new.plugin_subtype),
        description: Set(normalize_description(new.description)),
        configuration: Set(configuration),
        is_active: Set(new.is_active),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let created = row
        .insert(&transaction)
        .await
        .map_err(|error| map_unique_violation(error, EVENT_SOURCE, &new.name))?;
    transaction.commit().await?;
    Ok(created)
}

/// Lists all event sources by name.
pub async fn list_event_sources(db: &DatabaseConnection) -> Result<Vec<event_source::Model>> {
    Ok(event_source::Entity::find()
        .order_by_asc(event_source::Column::Name)
        .all(db)
        .await?)
}

/// Returns the event source whose id or name is `key`.
pub async fn find_event_source(db: &DatabaseConnection, key: &str) -> Result<event_source::Model> {
    find_by_key::<event_source::Entity>(db, EVENT_SOURCE, event_source::Column::Name, key).await
}

/// Applies `update` to the event source `key` and returns the stored row.
///
/// Flavor, subtype and configuration are validated together as they will
/// be stored, so changing the flavor may require changing the subtype too.
pub async fn update_event_source(
    db: &DatabaseConnection,
    key: &str,
    update: EventSourceUpdate,
) -> Result<event_source::Model> {
    let current = find_event_source(db, key).await?;
    let id = current.id;
    let mut row: event_source::ActiveModel = current.clone().into();

    let name = match update.name {
        Some(name) if name != current.name => {
            validate_name(&name)?;
            ensure_name_free::<event_source::Entity>(
                db,
                EVENT_SOURCE,
                event_source::Column::Name,
                event_source::Column::Id,
                &name,
                Some(id),
            )
            .await?;
            row.name = Set(name.clone());
            name
        }
        _ => current.name.clone(),
    };

    if update.flavor.is_some() || update.plugin_subtype.is_some() || update.configuration.is_some()
    {
        let flavor = update.flavor.unwrap_or(current.flavor);
        let subtype = update.plugin_subtype.unwrap_or(current.plugin_subtype);
        let configuration = update.configuration.unwrap_or(current.configuration);
        let configuration = validate_event_source(&flavor, &subtype, &configuration)?;
        row.flavor = Set(flavor);
        row.plugin_subtype = Set(subtype);
        row.configuration = Set(configuration);
    }
    if let Some(description) = update.description {
        row.description = Set(normalize_description(description));
    }
    if let Some(is_active) = update.is_active {
        row.is_active = Set(is_active);
    }

    let transaction = begin_resource_write(db).await?;
    row.updated_at = Set(next_updated_at::<event_source::Entity>(
        &transaction,
        event_source::Column::UpdatedAt,
    )
    .await?);
    let updated = row
        .update(&transaction)
        .await
        .map_err(|error| map_update_error(error, EVENT_SOURCE, key, &name))?;
    transaction.commit().await?;
    Ok(updated)
}

/// Sets whether the event source `key` is active and returns the stored row.
pub async fn set_event_source_active(
    db: &DatabaseConnection,
    key: &str,
    is_active: bool,
) -> Result<event_source::Model> {
    let update = EventSourceUpdate {
        is_active: Some(is_active),
        ..EventSourceUpdate::default()
    };
    update_event_source(db, key, update).await
}

/// Deletes the event source `key` and returns the deleted row.
///
/// Fails with [`Error::InUse`] while triggers refer to it.
pub async fn delete_event_source(
    db: &DatabaseConnection,
    key: &str,
) -> Result<event_source::Model> {
    let current = find_event_source(db, key).await?;
    let users = trigger::Column::EventSourceId.eq(current.id);
    ensure_unused(db, EVENT_SOURCE, &current.name, users.clone()).await?;

    let transaction = begin_resource_write(db).await?;
    let deleted = event_source::Entity::delete_by_id(current.id)
        .exec(&transaction)
        .await;
    end_resource_write(transaction, &deleted).await?;
    finish_delete(db, deleted, EVENT_SOURCE, key, &current.name, users).await?;
    Ok(current)
}

// ---------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------

/// Validates and inserts an action with the default [`RetryPolicy`].
pub async fn create_action(db: &DatabaseConnection, new: NewAction) -> Result<action::Model> {
    create_action_with_retry_policy(db, new, RetryPolicy::default()).await
}

/// Validates and inserts an action with its retry policy, in one transaction.
pub async fn create_action_with_retry_policy(
    db: &DatabaseConnection,
    new: NewAction,
    retry_policy: RetryPolicy,
) -> Result<action::Model> {
    validate_name(&new.name)?;
    validate_retry_policy(&retry_policy)?;
    validate_action(
        &new.flavor,
        &new.plugin_subtype,
        &new.configuration,
        &new.service_account,
        new.auth_window_minutes,
    )?;
    ensure_name_free::<action::Entity>(
        db,
        ACTION,
        action::Column::Name,
        action::Column::Id,
        &new.name,
        None,
    )
    .await?;

    let transaction = begin_resource_write(db).await?;
    let now = next_updated_at::<action::Entity>(&transaction, action::Column::UpdatedAt).await?;
    let row = action::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set(new.name.clone()),
        flavor: Set(new.flavor),
        plugin_subtype: Set(new.plugin_subtype),
        description: Set(normalize_description(new.description)),
        configuration: Set(new.configuration),
        service_account: Set(new.service_account),
        auth_window_minutes: Set(new.auth_window_minutes),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let created = row
        .insert(&transaction)
        .await
        .map_err(|error| map_unique_violation(error, ACTION, &new.name))?;
    store_retry_policy(&transaction, created.id, &retry_policy).await?;
    transaction.commit().await?;
    Ok(created)
}

/// Writes `policy` to the retry columns of action `id`.
async fn store_retry_policy(
    db: &impl ConnectionTrait,
    id: Uuid,
    policy: &RetryPolicy,
) -> Result<()> {
    action::retry::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(id),
        max_attempts: Set(policy.max_attempts),
        backoff: Set(policy.backoff),
        initial_delay_ms: Set(policy.initial_delay_ms),
        max_delay_ms: Set(policy.max_delay_ms),
        max_event_age_secs: Set(policy.max_event_age_secs),
    }
    .update(db)
    .await?;
    Ok(())
}

/// Returns the retry policy of action `id`.
pub async fn find_retry_policy(db: &impl ConnectionTrait, id: Uuid) -> Result<RetryPolicy> {
    action::retry::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(|model| RetryPolicy::from_model(&model))
        .ok_or_else(|| Error::NotFound {
            kind: ACTION,
            key: id.to_string(),
        })
}

/// Lists all actions by name.
pub async fn list_actions(db: &DatabaseConnection) -> Result<Vec<action::Model>> {
    Ok(action::Entity::find()
        .order_by_asc(action::Column::Name)
        .all(db)
        .await?)
}

/// Returns the action whose id or name is `key`.
pub async fn find_action(db: &DatabaseConnection, key: &str) -> Result<action::Model> {
    find_by_key::<action::Entity>(db, ACTION, action::Column::Name, key).await
}

/// Applies `update` to the action `key` and returns the stored row.
pub async fn update_action(
    db: &DatabaseConnection,
    key: &str,
    update: ActionUpdate,
) -> Result<action::Model> {
    update_action_with_retry_policy(db, key, update, RetryPolicyUpdate::default()).await
}

/// Applies `update` and `retry_update` to the action `key` in one
/// transaction and returns the stored row.
///
/// The retry policy is validated as it will be stored, so lowering
/// `max_delay_ms` below the current `initial_delay_ms` needs both changed.
pub async fn update_action_with_retry_policy(
    db: &DatabaseConnection,
    key: &str,
    update: ActionUpdate,
    retry_update: RetryPolicyUpdate,
) -> Result<action::Model> {
    let current = find_action(db, key).await?;
    let retry_policy = if retry_update.is_empty() {
        None
    } else {
        let policy = retry_update.apply(&find_retry_policy(db, current.id).await?);
        validate_retry_policy(&policy)?;
        Some(policy)
    };
    let id = current.id;
    let mut row: action::ActiveModel = current.clone().into();

    let name = match update.name {
        Some(name) if name != current.name => {
            validate_name(&name)?;
            ensure_name_free::<action::Entity>(
                db,
                ACTION,
                action::Column::Name,
                action::Column::Id,
                &name,
                Some(id),
            )
            .await?;
            row.name = Set(name.clone());
            name
        }
        _ => current.name.clone(),
    };

    let flavor = update.flavor.unwrap_or(current.flavor);
    let subtype = update.plugin_subtype.unwrap_or(current.plugin_subtype);
    let configuration = update.configuration.unwrap_or(current.configuration);
    let service_account = update.service_account.unwrap_or(current.service_account);
    let auth_window_minutes = update
        .auth_window_minutes
        .unwrap_or(current.auth_window_minutes);
    validate_action(
        &flavor,
        &subtype,
        &configuration,
        &service_account,
        auth_window_minutes,
    )?;
    row.flavor = Set(flavor);
    row.plugin_subtype = Set(subtype);
    row.configuration = Set(configuration);
    row.service_account = Set(service_account);
    row.auth_window_minutes = Set(auth_window_minutes);
    if let Some(description) = update.description {
        row.description = Set(normalize_description(description));
    }

    let transaction = begin_resource_write(db).await?;
    row.updated_at =
        Set(next_updated_at::<action::Entity>(&transaction, action::Column::UpdatedAt).await?);
    let updated = row
        .update(&transaction)
        .await
        .map_err(|error| map_update_error(error, ACTION, key, &name))?;
    if let Some(policy) = &retry_policy {
        store_retry_policy(&transaction, id, policy).await?;
    }
    transaction.commit().await?;
    Ok(updated)
}

/// Deletes the action `key` and returns the deleted row.
///
/// Fails with [`Error::InUse`] while triggers refer to it.
pub async fn delete_action(db: &DatabaseConnection, key: &str) -> Result<action::Model> {
    let current = find_action(db, key).await?;
    let users = trigger::Column::ActionId.eq(current.id);
    ensure_unused(db, ACTION, &current.name, users.clone()).await?;

    let transaction = begin_resource_write(db).await?;
    let deleted = action::Entity::delete_by_id(current.id)
        .exec(&transaction)
        .await;
    end_resource_write(transaction, &deleted).await?;
    finish_delete(db, deleted, ACTION, key, &current.name, users).await?;
    Ok(current)
}

// ---------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------

/// Validates and inserts a trigger.
///
/// An event source or action that does not exist is reported as
/// [`Error::Invalid`] on the field `event_source` or `action`, because it is
/// a bad value in the request rather than a missing trigger.
pub async fn create_trigger(db: &DatabaseConnection, new: NewTrigger) -> Result<trigger::Model> {
    validate_name(&new.name)?;
    Pattern::compile(&new.event_filter)?;
    let source = resolve_reference(
        find_event_source(db, &new.event_source).await,
        "event_source",
    )?;
    let action = resolve_reference(find_action(db, &new.action).await, "action")?;
    ensure_name_free::<trigger::Entity>(
        db,
        TRIGGER,
        trigger::Column::Name,
        trigger::Column::Id,
        &new.name,
        None,
    )
    .await?;

    let transaction = begin_resource_write(db).await?;
    let now = next_updated_at::<trigger::Entity>(&transaction, trigger::Column::UpdatedAt).await?;
    let row = trigger::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set(new.name.clone()),
        description: Set(normalize_description(new.description)),
        event_source_id: Set(source.id),
        action_id: Set(action.id),
        event_filter: Set(new.event_filter),
        is_active: Set(new.is_active),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let created = row
        .insert(&transaction)
        .await
        .map_err(|error| map_unique_violation(error, TRIGGER, &new.name))?;
    transaction.commit().await?;
    Ok(created)
}

/// Lists all triggers by name.
pub async fn list_triggers(db: &DatabaseConnection) -> Result<Vec<trigger::Model>> {
    Ok(trigger::Entity::find()
        .order_by_asc(trigger::Column::Name)
        .all(db)
        .await?)
}

/// Returns the trigger whose id or name is `key`.
pub async fn find_trigger(db: &DatabaseConnection, key: &str) -> Result<trigger::Model> {
    find_by_key::<trigger::Entity>(db, TRIGGER, trigger::Column::Name, key).await
}

/// Applies `update` to the trigger `key` and returns the stored row.
pub async fn update_trigger(
    db: &DatabaseConnection,
    key: &str,
    update: TriggerUpdate,
) -> Result<trigger::Model> {
    let current = find_trigger(db, key).await?;
    let id = current.id;
    let mut row: trigger::ActiveModel = current.clone().into();

    let name = match update.name {
        Some(name) if name != current.name => {
            validate_name(&name)?;
            ensure_name_free::<trigger::Entity>(
                db,
                TRIGGER,
                trigger::Column::Name,
                trigger::Column::Id,
                &name,
                Some(id),
            )
            .await?;
            row.name = Set(name.clone());
            name
        }
        _ => current.name.clone(),
    };

    if let Some(event_filter) = update.event_filter {
        Pattern::compile(&event_filter)?;
        row.event_filter = Set(event_filter);
    }
    if let Some(key) = update.event_source {
        let source = resolve_reference(find_event_source(db, &key).await, "event_source")?;
        row.event_source_id = Set(source.id);
    }
    if let Some(key) = update.action {
        let action = resolve_reference(find_action(db, &key).await, "action")?;
        row.action_id = Set(action.id);
    }
    if let Some(description) = update.description {
        row.description = Set(normalize_description(description));
    }
    if let Some(is_active) = update.is_active {
        row.is_active = Set(is_active);
    }

    let transaction = begin_resource_write(db).await?;
    row.updated_at =
        Set(next_updated_at::<trigger::Entity>(&transaction, trigger::Column::UpdatedAt).await?);
    let updated = row
        .update(&transaction)
        .await
        .map_err(|error| map_update_error(error, TRIGGER, key, &name))?;
    transaction.commit().await?;
    Ok(updated)
}

/// Sets whether the trigger `key` is active and returns the stored row.
pub async fn set_trigger_active(
    db: &DatabaseConnection,
    key: &str,
    is_active: bool,
) -> Result<trigger::Model> {
    let update = TriggerUpdate {
        is_active: Some(is_active),
        ..TriggerUpdate::default()
    };
    update_trigger(db, key, update).await
}

/// Deletes the trigger `key` with its executions and returns the deleted row.
///
/// The executions go through the `ON DELETE CASCADE` foreign key of
/// `trigger_executions.trigger_id`.
pub async fn delete_trigger(db: &DatabaseConnection, key: &str) -> Result<trigger::Model> {
    let current = find_trigger(db, key).await?;
    let transaction = begin_resource_write(db).await?;
    let result = trigger::Entity::delete_by_id(current.id)
        .exec(&transaction)
        .await?;
    transaction.commit().await?;
    if result.rows_affected == 0 {
        return Err(Error::NotFound {
            kind: TRIGGER,
            key: key.to_owned(),
        });
    }
    Ok(current)
}

// ---------------------------------------------------------------------------
// Change detection and loading for the trigger index
// ---------------------------------------------------------------------------

/// Row count and newest `updated_at` of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TableFingerprint {
    /// Number of rows.
    pub count: u64,
    /// Maximum `updated_at`, or `None` when the table is empty.
    pub max_updated_at: Option<DateTime<Utc>>,
}

/// The resource version and the [`TableFingerprint`]s of the three
/// resource tables. Any create, update, activation, deactivation or delete
/// changes it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// Number of writes to the three tables through this module, from the
    /// one-row table `resource_version`. Each write increments it in its
    /// own transaction, so it moves on every committed write, whatever the
    /// timestamps are. The table fingerprints beside it catch changes made
    /// with SQL outside event-hub, as long as they set `updated_at`.
    pub version: i64,
    /// `event_sources`.
    pub event_sources: TableFingerprint,
    /// `actions`.
    pub actions: TableFingerprint,
    /// `triggers`.
    pub triggers: TableFingerprint,
}

/// Reads the [`Fingerprint`] of the resource tables: the resource version
/// and one aggregate query per table.
///
/// Read it before [`load_active`], so that a change made between the two
/// calls shows up as a different fingerprint at the next poll.
pub async fn fingerprint(db: &impl ConnectionTrait) -> Result<Fingerprint> {
    Ok(Fingerprint {
        version: resource_version(db).await?,
        event_sources: table_fingerprint::<event_source::Entity>(
            db,
            event_source::Column::UpdatedAt,
        )
        .await?,
        actions: table_fingerprint::<action::Entity>(db, action::Column::UpdatedAt).await?,
        triggers: table_fingerprint::<trigger::Entity>(db, trigger::Column::UpdatedAt).await?,
    })
}

/// The resources that the trigger index is built from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// All event sources, active or not, by name.
    pub event_sources: Vec<event_source::Model>,
    /// All actions, by name.
    pub actions: Vec<action::Model>,
    /// Active triggers only, by name.
    pub triggers: Vec<trigger::Model>,
}

/// Reads all event sources, all actions and the active triggers in one
/// read-only transaction, so every trigger's source and action are present.
///
/// PostgreSQL and MySQL run it at `REPEATABLE READ`. A SQLite transaction
/// reads one consistent state of the database anyway.
pub async fn load_active(db: &DatabaseConnection) -> Result<Snapshot> {
    let transaction = begin_consistent_read(db).await?;
    let triggers = trigger::Entity::find()
        .filter(trigger::Column::IsActive.eq(true))
        .order_by_asc(trigger::Column::Name)
        .all(&transaction)
        .await?;
    let event_sources = event_source::Entity::find()
        .order_by_asc(event_source::Column::Name)
        .all(&transaction)
        .await?;
    let actions = action::Entity::find()
        .order_by_asc(action::Column::Name)
        .all(&transaction)
        .await?;
    transaction.commit().await?;

    Ok(Snapshot {
        event_sources,
        actions,
        triggers,
    })
}

/// Triggers written since a given time, with the fingerprint of the
/// database state they were read from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriggerChanges {
    /// The fingerprint of the state the triggers were read from.
    pub fingerprint: Fingerprint,
    /// Triggers, active or not, in the order they were written.
    pub triggers: Vec<trigger::Model>,
}

/// Reads the triggers, active or not, whose `updated_at` is later than
/// `since` (all of them when it is `None`), at most `limit` of them, and the
/// fingerprint, in one read-only transaction.
///
/// Resource writes take their `updated_at` one after the other, each past
/// every one given before (see `next_updated_at`). So these are the
/// triggers created or updated since the state whose newest trigger
/// `updated_at` is `since`. A deleted trigger leaves no row, and the caller
/// compares row counts to notice it.
pub async fn trigger_changes(
    db: &DatabaseConnection,
    since: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<TriggerChanges> {
    let transaction = begin_consistent_read(db).await?;
    let fingerprint = fingerprint(&transaction).await?;
    let mut query = trigger::Entity::find();
    if let Some(since) = since {
        query = query.filter(trigger::Column::UpdatedAt.gt(since));
    }
    let triggers = query
        .order_by_asc(trigger::Column::UpdatedAt)
        .limit(limit)
        .all(&transaction)
        .await?;
    transaction.commit().await?;
    Ok(TriggerChanges {
        fingerprint,
        triggers,
    })
}

/// Starts a read-only transaction that reads one consistent state of the
/// database: `REPEATABLE READ` on PostgreSQL and MySQL. A SQLite
/// transaction reads one consistent state anyway.
async fn begin_consistent_read(db: &DatabaseConnection) -> Result<DatabaseTransaction> {
    Ok(match db.get_database_backend() {
        // sea-orm logs a warning for each isolation level or access mode
        // requested on SQLite, which supports neither.
        DatabaseBackend::Sqlite => db.begin().await?,
        DatabaseBackend::Postgres | DatabaseBackend::MySql => {
            db.begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?
        }
    })
}

async fn table_fingerprint<E: EntityTrait>(
    db: &impl ConnectionTrait,
    updated_at: E::Column,
) -> Result<TableFingerprint> {
    let row: Option<(i64, Option<DateTime<Utc>>)> = E::find()
        .select_only()
        .column_as(Expr::col(Asterisk).count(), "row_count")
        .column_as(Expr::col(updated_at).max(), "max_updated_at")
        .into_tuple()
        .one(db)
        .await?;
    let (count, max_updated_at) = row.unwrap_or((0, None));
    Ok(TableFingerprint {
        count: u64::try_from(count).unwrap_or_default(),
        max_updated_at,
    })
}

/// Name of the one-row table counting resource writes.
const RESOURCE_VERSION_TABLE: &str = "resource_version";

/// Starts the transaction of a write to event sources, actions or
/// triggers, and increments the resource version first.
///
/// The increment locks the version row until the transaction ends, so
/// resource writes run one at a time, each seeing every earlier one
/// committed. Without that, a write could take its `updated_at` before a
/// concurrent write took a later one, and commit after the trigger index
/// had read the later one. `MAX(updated_at)` would then not move, and the
/// index would miss the change until the next one.
///
/// On SQLite the increment is the transaction's first statement, so the
/// transaction takes the write lock at once. A transaction that read first
/// would have to upgrade its read lock, and SQLite fails such an upgrade
/// with `SQLITE_BUSY` instead of waiting when another writer holds the lock.
async fn begin_resource_write(db: &DatabaseConnection) -> Result<DatabaseTransaction> {
    let transaction = db.begin().await?;
    let increment = Expr::col(Alias::new("version")).add(1);
    write_version_row(&transaction, "version", increment).await?;
    Ok(transaction)
}

/// Commits a resource write whose statement succeeded, and rolls it back
/// otherwise, before the caller turns the statement's error into its own.
async fn end_resource_write<T>(
    transaction: DatabaseTransaction,
    outcome: &std::result::Result<T, DbErr>,
) -> Result<()> {
    if outcome.is_ok() {
        transaction.commit().await?;
    } else {
        transaction.rollback().await?;
    }
    Ok(())
}

/// Reads the resource version, the number of resource writes so far.
async fn resource_version(db: &impl ConnectionTrait) -> Result<i64> {
    read_version_row(db, "version").await
}

/// Reads `column` of the one row of `resource_version`.
async fn read_version_row<T: TryGetable>(db: &impl ConnectionTrait, column: &str) -> Result<T> {
    let select = Query::select()
        .column(Alias::new(column))
        .from(Alias::new(RESOURCE_VERSION_TABLE))
        .and_where(Expr::col(Alias::new("id")).eq(1))
        .to_owned();
    let backend = db.get_database_backend();
    let row = db
        .query_one(backend.build(&select))
        .await?
        .ok_or_else(missing_version_row)?;
    Ok(row.try_get::<T>("", column)?)
}

/// Sets `column` of the one row of `resource_version` to `value`.
async fn write_version_row(
    db: &impl ConnectionTrait,
    column: &str,
    value: SimpleExpr,
) -> Result<()> {
    let update = Query::update()
        .table(Alias::new(RESOURCE_VERSION_TABLE))
        .value(Alias::new(column), value)
        .and_where(Expr::col(Alias::new("id")).eq(1))
        .to_owned();
    let backend = db.get_database_backend();
    let result = db.execute(backend.build(&update)).await?;
    if result.rows_affected() != 1 {
        return Err(missing_version_row().into());
    }
    Ok(())
}

/// Returns the error for a database whose `resource_version` row is missing.
fn missing_version_row() -> DbErr {
    DbErr::RecordNotFound(format!(
        "the row of table {RESOURCE_VERSION_TABLE} is missing; run `event-hub migrate`"
    ))
}

/// Returns the `updated_at` for a write to table `E`, and records it as the
/// last one issued. It is now, in microseconds (the precision every backend
/// stores), but at least one microsecond after the table's newest
/// `updated_at` and after the last timestamp issued to any resource write.
///
/// The bounds make timestamps increase in commit order even when this
/// host's clock is behind the clock of the host that wrote last. The last
/// issued one also survives the delete of the row that carried it, so a
/// trigger created after the delete still gets a later timestamp than any
/// the trigger index has seen. Call it inside [`begin_resource_write`]'s
/// transaction, which makes the read and the update of the last issued
/// timestamp atomic.
async fn next_updated_at<E: EntityTrait>(
    transaction: &DatabaseTransaction,
    updated_at: E::Column,
) -> Result<DateTime<Utc>> {
    let now = Utc::now().trunc_subsecs(6);
    let newest_row = table_fingerprint::<E>(transaction, updated_at)
        .await?
        .max_updated_at;
    let last_issued: Option<DateTime<Utc>> = read_version_row(transaction, "issued_at").await?;
    let next = match newest_row.max(last_issued) {
        Some(newest) if newest >= now => newest.trunc_subsecs(6) + TimeDelta::microseconds(1),
        _ => now,
    };

    write_version_row(transaction, "issued_at", Expr::value(next)).await?;
    Ok(next)
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

async fn find_by_key<E>(
    db: &DatabaseConnection,
    kind: &'static str,
    name_column: E::Column,
    key: &str,
) -> Result<E::Model>
where
    E: EntityTrait,
    E::PrimaryKey: PrimaryKeyTrait<ValueType = Uuid>,
{
    if let Ok(id) = Uuid::parse_str(key) {
        if let Some(model) = E::find_by_id(id).one(db).await? {
            return Ok(model);
        }
    }
    E::find()
        .filter(name_column.eq(key))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound {
            kind,
            key: key.to_owned(),
        })
}

/// Fails with [`Error::AlreadyExists`] when another row of `E`, other than
/// `except`, is named `name`.
async fn ensure_name_free<E>(
    db: &DatabaseConnection,
    kind: &'static str,
    name_column: E::Column,
    id_column: E::Column,
    name: &str,
    except: Option<Uuid>,
) -> Result<()>
where
    E: EntityTrait,
    E::Model: Sync,
{
    let mut query = E::find().filter(name_column.eq(name));
    if let Some(id) = except {
        query = query.filter(id_column.ne(id));
    }
    if query.count(db).await? > 0 {
        return Err(Error::AlreadyExists {
            kind,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Fails with [`Error::InUse`] when triggers match `users`.
async fn ensure_unused(
    db: &DatabaseConnection,
    kind: &'static str,
    name: &str,
    users: sea_orm::sea_query::SimpleExpr,
) -> Result<()> {
    let count = trigger::Entity::find().filter(users).count(db).await?;
    if count > 0 {
        return Err(Error::InUse {
            kind,
            name: name.to_owned(),
            count,
        });
    }
    Ok(())
}

/// Turns the result of deleting an event source or action into the
/// library's errors. A foreign key violation means that a trigger started
/// using the row after [`ensure_unused`] checked it.
async fn finish_delete(
    db: &DatabaseConnection,
    deleted: std::result::Result<sea_orm::DeleteResult, DbErr>,
    kind: &'static str,
    key: &str,
    name: &str,
    users: sea_orm::sea_query::SimpleExpr,
) -> Result<()> {
    match deleted {
        Ok(result) if result.rows_affected == 0 => Err(Error::NotFound {
            kind,
            key: key.to_owned(),
        }),
        Ok(_) => Ok(()),
        Err(error) => match error.sql_err() {
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                let count = trigger::Entity::find().filter(users).count(db).await?;
                Err(Error::InUse {
                    kind,
                    name: name.to_owned(),
                    count,
                })
            }
            _ => Err(error.into()),
        },
    }
}

/// Reports a referenced resource that does not exist as an invalid `field`.
fn resolve_reference<T>(found: Result<T>, field: &str) -> Result<T> {
    match found {
        Err(Error::NotFound { kind, key }) => {
            Err(Error::invalid(field, format!("{kind} not found: {key}")))
        }
        other => other,
    }
}

/// Maps a unique violation on insert, which a concurrent insert of the same
/// name causes after [`ensure_name_free`] passed, to [`Error::AlreadyExists`].
fn map_unique_violation(error: DbErr, kind: &'static str, name: &str) -> Error {
    match error.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => Error::AlreadyExists {
            kind,
            name: name.to_owned(),
        },
        _ => error.into(),
    }
}

/// Maps the errors of an update: a concurrent rename to the same name, or
/// the row deleted since it was read.
fn map_update_error(error: DbErr, kind: &'static str, key: &str, name: &str) -> Error {
    if matches!(error, DbErr::RecordNotUpdated) {
        return Error::NotFound {
            kind,
            key: key.to_owned(),
        };
    }
    map_unique_violation(error, kind, name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn name_rules() {
        assert!(validate_name("github-push").is_ok());
        assert!(validate_name("Événements GitHub").is_ok());
        assert!(validate_name(&"n".repeat(MAX_NAME_CHARS)).is_ok());

        for bad in [
            String::new(),
            " leading".to_owned(),
            "trailing ".to_owned(),
            "tab\tinside".to_owned(),
            "n".repeat(MAX_NAME_CHARS + 1),
            Uuid::new_v4().to_string(),
        ] {
            let error = validate_name(&bad).expect_err(&bad);
            assert!(
                matches!(&error, Error::Invalid { field, .. } if field == "name"),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn event_source_flavor_and_subtype() {
        let configuration = json!({"topics": ["github-events"]});
        assert!(validate_event_source("github", "webhook", &configuration).is_ok());
        assert!(validate_event_source("json", "kafka", &configuration).is_ok());

        let error = validate_event_source("gitlab", "webhook", &configuration).unwrap_err();
        assert!(matches!(&error, Error::Invalid { field, .. } if field == "flavor"));
        let error = validate_event_source("github", "kafka", &configuration).unwrap_err();
        assert!(matches!(&error, Error::Invalid { field, .. } if field == "plugin_subtype"));
        let error = validate_event_source("github", "webhook", &json!([])).unwrap_err();
        assert!(matches!(&error, Error::Invalid { field, .. } if field == "configuration"));
    }

    #[test]
    fn event_source_configuration_normalized() {
        let stored = validate_event_source("github", "webhook", &json!({})).unwrap();
        assert_eq!(stored, json!({"topics": []}));
    }

    #[test]
    fn action_fields() {
        let configuration = json!({"template_id": "t-1"});
        assert!(validate_action("builtin", "pipeline_run", &configuration, "sa-ci", 60).is_ok());

        let cases = [
            (
                "",
                "pipeline_run",
                configuration.clone(),
                "sa-ci",
                60,
                "flavor",
            ),
            (
                "Builtin",
                "pipeline_run",
                configuration.clone(),
                "sa-ci",
                60,
                "flavor",
            ),
            (
                "builtin",
                "pipeline.run",
                configuration.clone(),
                "sa-ci",
                60,
                "plugin_subtype",
            ),
            (
                "builtin",
                "pipeline_run",
                json!("text"),
                "sa-ci",
                60,
                "configuration",
            ),
            (
                "builtin",
                "pipeline_run",
                configuration.clone(),
                "",
                60,
                "service_account",
            ),
            (
                "builtin",
                "pipeline_run",
                configuration.clone(),
                " sa",
                60,
                "service_account",
            ),
            (
                "builtin",
                "pipeline_run",
                configuration.clone(),
                "sa-ci",
                0,
                "auth_window_minutes",
            ),
            (
                "builtin",
                "pipeline_run",
                configuration.clone(),
                "sa-ci",
                1441,
                "auth_window_minutes",
            ),
        ];
        for (flavor, subtype, configuration, account, window, expected) in cases {
            let error = validate_action(flavor, subtype, &configuration, account, window)
                .expect_err(expected);
            assert!(
                matches!(&error, Error::Invalid { field, .. } if field == expected),
                "expected invalid {expected}, got {error}"
            );
        }
    }

    #[test]
    fn redact_secret_replaces_only_secret() {
        let configuration = json!({"topics": ["a"], "secret": "s3cr3t"});
        assert_eq!(
            redact_secret(&configuration),
            json!({"topics": ["a"], "secret": REDACTED_SECRET})
        );
        let without = json!({"topics": ["a"]});
        assert_eq!(redact_secret(&without), without);
        assert_eq!(redact_secret(&json!("text")), json!("text"));
    }
}
