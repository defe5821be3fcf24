//! Trigger executions: recording matches, marking them dispatched, and
//! reading them back.
//!
//! An execution's id is a UUID v5 of the event id in the namespace of the
//! trigger id, so the same (trigger, event) pair always maps to the same row
//! and inserts are idempotent: a redelivered record finds its executions
//! already there.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveEnum, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend,
    EntityTrait, FromQueryResult, Iterable, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Select, TransactionTrait, TryInsert,
};
use serde_json::Value;
use uuid::Uuid;

use super::entity::trigger_execution::{self, ExecutionStatus};
use crate::{Error, Result};

/// Rows per INSERT or `IN (...)` list, well below the bind parameter limits
/// of SQLite (32766), PostgreSQL (65535) and MySQL (65535).
const CHUNK_ROWS: usize = 500;

/// Returns the deterministic id of the execution of `trigger_id` for `event_id`.
pub fn execution_id(trigger_id: Uuid, event_id: &str) -> Uuid {
    Uuid::new_v5(&trigger_id, event_id.as_bytes())
}

/// An execution to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewExecution {
    /// The trigger that matched.
    pub trigger_id: Uuid,
    /// The source the event came from.
    pub event_source_id: Uuid,
    /// Idempotency key of the event.
    pub event_id: String,
    /// Derived fields of the event.
    pub event_metadata: Value,
}

impl NewExecution {
    /// Returns the execution's deterministic id.
    pub fn id(&self) -> Uuid {
        execution_id(self.trigger_id, &self.event_id)
    }
}

/// Records `executions` in one transaction and returns the stored rows, in
/// the order given.
///
/// Executions that exist already are left as they are and returned with
/// their current status, so the caller can tell which still need
/// dispatching. Duplicates within `executions` are recorded once.
///
/// On PostgreSQL and SQLite the INSERT returns the rows it added, and only
/// the executions it skipped as existing are read back, which happens when
/// a record is redelivered. MySQL has no `INSERT ... RETURNING`, and
/// sea-query 0.32 writes none for MariaDB either, so there every execution
/// is read back after the INSERT.
pub async fn record(
    db: &DatabaseConnection,
    executions: &[NewExecution],
) -> Result<Vec<trigger_execution::Model>> {
    if executions.is_empty() {
        return Ok(Vec::new());
    }

    let now = Utc::now();
    let ids: Vec<Uuid> = executions.iter().map(NewExecution::id).collect();
    let returns_rows = matches!(
        db.get_database_backend(),
        DbBackend::Postgres | DbBackend::Sqlite
    );
    let transaction = db.begin().await?;

    let mut stored: HashMap<Uuid, trigger_execution::Model> = HashMap::with_capacity(ids.len());
    for chunk in executions.chunks(CHUNK_ROWS) {
        let insert = trigger_execution::Entity::insert_many(
            chunk.iter().map(|execution| pending_row(execution, now)),
        )
        .on_conflict_do_nothing();
        if returns_rows {
            let inserted = insert_returning(&transaction, insert).await?;
            stored.extend(inserted.into_iter().map(|row| (row.id, row)));
        } else {
            // `Conflicted`, no row added, is not an error: the rows are read
            // back below either way.
            insert.exec(&transaction).await?;
        }
    }

    // Executions the INSERT skipped were recorded by an earlier delivery.
    let mut existing: Vec<Uuid> = ids
        .iter()
        .filter(|id| !stored.contains_key(id))
        .copied()
        .collect();
    existing.sort_unstable();
    existing.dedup();
    if !existing.is_empty() {
        let found = find_many(&transaction, &existing).await?;
        stored.extend(found.into_iter().map(|row| (row.id, row)));
    }
    transaction.commit().await?;

    let mut ordered = Vec::with_capacity(stored.len());
    for id in ids {
        if let Some(row) = stored.remove(&id) {
            ordered.push(row);
        }
    }
    Ok(ordered)
}

/// Builds the row of a new execution: `pending`, recorded at `now`.
fn pending_row(
    execution: &NewExecution,
    now: chrono::DateTime<Utc>,
) -> trigger_execution::ActiveModel {
    trigger_execution::ActiveModel {
        id: Set(execution.id()),
        trigger_id: Set(execution.trigger_id),
        event_source_id: Set(execution.event_source_id),
        event_id: Set(execution.event_id.clone()),
        event_metadata: Set(execution.event_metadata.clone()),
        status: Set(ExecutionStatus::Pending),
        attempts: Set(0),
        error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        dispatched_at: Set(None),
        finished_at: Set(None),
    }
}

/// Runs `insert` with `RETURNING` the entity's columns and returns the rows
/// it added. Rows skipped by `ON CONFLICT DO NOTHING` are not returned.
///
/// sea-orm 1.1's `exec_with_returning_many` would do the same, but it panics
/// on SQLite unless sea-orm's `sqlite-use-returning-for-3_35` feature is
/// enabled. That feature also changes how sea-orm runs every other INSERT,
/// UPDATE and DELETE of event-hub on SQLite. PostgreSQL has `RETURNING` in
/// every supported version, and SQLite since 3.35. The SQLite that
/// libsqlite3-sys 0.30 bundles for sqlx 0.8 is 3.46.
async fn insert_returning(
    db: &impl ConnectionTrait,
    insert: TryInsert<trigger_execution::ActiveModel>,
) -> Result<Vec<trigger_execution::Model>> {
    let mut statement = insert.into_query();
    statement.returning(Query::returning().columns(trigger_execution::Column::iter()));
    let statement = db.get_database_backend().build(&statement);
    Ok(trigger_execution::Model::find_by_statement(statement)
        .all(db)
        .await?)
}

/// Marks `ids` dispatched, leaving executions that have moved further alone.
pub async fn mark_dispatched(db: &DatabaseConnection, ids: &[Uuid]) -> Result<()> {
    let now = Utc::now();
    for chunk in ids.chunks(CHUNK_ROWS) {
        trigger_execution::Entity::update_many()
            .col_expr(
                trigger_execution::Column::Status,
                Expr::value(ExecutionStatus::Dispatched.into_value()),
            )
            .col_expr(trigger_execution::Column::DispatchedAt, Expr::value(now))
            .col_expr(trigger_execution::Column::UpdatedAt, Expr::value(now))
            .filter(trigger_execution::Column::Id.is_in(chunk.iter().copied()))
            .filter(trigger_execution::Column::Status.eq(ExecutionStatus::Pending))
            .exec(db)
            .await?;
    }
    Ok(())
}

async fn find_many(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<Vec<trigger_execution::Model>> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK_ROWS) {
        let found = trigger_execution::Entity::find()
            .filter(trigger_execution::Column::Id.is_in(chunk.iter().copied()))
            .all(db)
            .await?;
        rows.extend(found);
    }
    Ok(rows)
}

/// Criteria of [`list`].
#[derive(Clone, Debug, Default)]
pub struct ExecutionQuery {
    /// Only executions of this trigger.
    pub trigger_id: Option<Uuid>,
    /// Only executions in this status.
    pub status: Option<ExecutionStatus>,
    /// Only executions of this event.
    pub event_id: Option<String>,
    /// Most rows returned; 0 means the default of 100.
    pub limit: u64,
    /// Rows skipped, for paging.
    pub offset: u64,
}

/// Lists executions matching `query`, newest first.
pub async fn list(
    db: &DatabaseConnection,
    query: &ExecutionQuery,
) -> Result<Vec<trigger_execution::Model>> {
    let limit = if query.limit == 0 { 100 } else { query.limit };
    Ok(filtered(query)
        .order_by_desc(trigger_execution::Column::CreatedAt)
        .order_by_asc(trigger_execution::Column::Id)
        .offset(query.offset)
        .limit(limit)
        .all(db)
        .await?)
}

/// Counts executions matching `query`, ignoring its limit and offset.
pub async fn count(db: &DatabaseConnection, query: &ExecutionQuery) -> Result<u64> {
    Ok(filtered(query).count(db).await?)
}

fn filtered(query: &ExecutionQuery) -> Select<trigger_execution::Entity> {
    let mut select = trigger_execution::Entity::find();
    if let Some(trigger_id) = query.trigger_id {
        select = select.filter(trigger_execution::Column::TriggerId.eq(trigger_id));
    }
    if let Some(status) = query.status {
        select = select.filter(trigger_execution::Column::Status.eq(status));
    }
    if let Some(event_id) = &query.event_id {
        select = select.filter(trigger_execution::Column::EventId.eq(event_id.as_str()));
    }
    select
}

/// Marks the `pending` executions of `event_id` failed with `error`;
/// returns how many changed.
pub async fn fail_pending_of_event(
    db: &DatabaseConnection,
    event_id: &str,
    error: &str,
) -> Result<u64> {
    let now = Utc::now();
    let result = trigger_execution::Entity::update_many()
        .col_expr(
            trigger_execution::Column::Status,
            Expr::value(ExecutionStatus::Failed.into_value()),
        )
        .col_expr(
            trigger_execution::Column::Error,
            Expr::value(error.to_owned()),
        )
        .col_expr(trigger_execution::Column::FinishedAt, Expr::value(now))
        .col_expr(trigger_execution::Column::UpdatedAt, Expr::value(now))
        .filter(trigger_execution::Column::EventId.eq(event_id))
        .filter(trigger_execution::Column::Status.eq(ExecutionStatus::Pending))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Returns up to `limit` executions still `pending` that were recorded
/// before `cutoff`, oldest first.
pub async fn pending_before(
    db: &DatabaseConnection,
    cutoff: chrono::DateTime<Utc>,
    limit: u64,
) -> Result<Vec<trigger_execution::Model>> {
    Ok(trigger_execution::Entity::find()
        .filter(trigger_execution::Column::Status.eq(ExecutionStatus::Pending))
        .filter(trigger_execution::Column::CreatedAt.lt(cutoff))
        .order_by_asc(trigger_execution::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// Returns the execution `id`.
pub async fn find(db: &DatabaseConnection, id: Uuid) -> Result<trigger_execution::Model> {
    trigger_execution::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound {
            kind: "execution",
            key: id.to_string(),
        })
}

// ---------------------------------------------------------------------------
// Statuses reported by workers, and retries
// ---------------------------------------------------------------------------
//
// A status moves an execution forward only. Each update carries an attempt
// number and a status, and its WHERE clause compares them with the stored
// pair. Concurrent writers on several replicas therefore cannot move a row
// backwards, and a repeated report changes nothing. `succeeded` and
// `dead_lettered` are final.
//
// The columns added by the retry policy migration (`next_attempt_at` and
// the request position) are addressed by name, because the entity
// `trigger_execution::Model` does not carry them.

/// Column: when a failed execution is due for its next attempt or for
/// dead-lettering; NULL when nothing is scheduled.
const NEXT_ATTEMPT_AT: &str = "next_attempt_at";
/// Columns: the Kafka position of the last action request a worker reported on.
const REQUEST_TOPIC: &str = "request_topic";
const REQUEST_PARTITION: &str = "request_partition";
const REQUEST_OFFSET: &str = "request_offset";

fn column(name: &'static str) -> sea_orm::sea_query::Alias {
    sea_orm::sea_query::Alias::new(name)
}

/// Returns the order of `status` within one attempt: a report is applied
/// only when its (attempt, rank) pair is greater than the stored one.
pub fn status_rank(status: ExecutionStatus) -> i32 {
    match status {
        ExecutionStatus::Pending => 0,
        ExecutionStatus::Dispatched => 1,
        ExecutionStatus::Running => 2,
        ExecutionStatus::Failed => 3,
        ExecutionStatus::Succeeded => 4,
        ExecutionStatus::DeadLettered => 5,
    }
}

/// Builds `CASE status WHEN ... END`, the SQL form of [`status_rank`].
fn stored_rank() -> sea_orm::sea_query::SimpleExpr {
    use sea_orm::sea_query::CaseStatement;
    use sea_orm::Iterable as _;

    let mut case = CaseStatement::new();
    for status in ExecutionStatus::iter() {
        case = case.case(
            trigger_execution::Column::Status.eq(status),
            Expr::val(status_rank(status)),
        );
    }
    case.finally(Expr::val(0)).into()
}

/// The Kafka position of the action request a worker reports on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestPosition {
    /// The action topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the request record.
    pub offset: i64,
}

/// A change of an execution's status, applied by [`apply_status`].
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    /// The execution.
    pub execution_id: Uuid,
    /// The new status.
    pub status: ExecutionStatus,
    /// The attempt the status belongs to, 1 for the first delivery.
    pub attempt: i32,
    /// The error to store; `None` clears it.
    pub error: Option<String>,
    /// When the retry sweep should act on a failed execution; `None` for
    /// every other change.
    pub next_attempt_at: Option<chrono::DateTime<Utc>>,
    /// The request the status is about, stored when given.
    pub request: Option<RequestPosition>,
}

impl StatusChange {
    /// Returns whether the change ends the execution: success, a failure
    /// with nothing scheduled, or a dead letter. Such a change sets
    /// `finished_at`.
    pub fn is_final(&self) -> bool {
        match self.status {
            ExecutionStatus::Succeeded | ExecutionStatus::DeadLettered => true,
            ExecutionStatus::Failed => self.next_attempt_at.is_none(),
            _ => false,
        }
    }
}

/// Applies `change` if it moves the execution forward, and returns whether
/// it did.
///
/// The row changes only when it is neither `succeeded` nor
/// `dead_lettered`, and its stored attempt is lower than the change's, or
/// equal with a lower [`status_rank`]. The test is part of the UPDATE, so
/// it stays correct under concurrent updates from several replicas. A `running`
/// report that arrives after `failed` of the same attempt is therefore
/// ignored, while `running` of the next attempt replaces it.
pub async fn apply_status(db: &impl ConnectionTrait, change: &StatusChange) -> Result<bool> {
    use sea_orm::Condition;

    let now = Utc::now();
    let finished_at = change.is_final().then_some(now);
    let mut update = trigger_execution::Entity::update_many()
        .col_expr(
            trigger_execution::Column::Status,
            Expr::value(change.status.into_value()),
        )
        .col_expr(
            trigger_execution::Column::Attempts,
            Expr::value(change.attempt),
        )
        .col_expr(
            trigger_execution::Column::Error,
            Expr::value(change.error.clone()),
        )
        .col_expr(trigger_execution::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            trigger_execution::Column::FinishedAt,
            Expr::value(finished_at),
        )
        .col_expr(column(NEXT_ATTEMPT_AT), Expr::value(change.next_attempt_at));
    if change.status == ExecutionStatus::Dispatched {
        update = update.col_expr(trigger_execution::Column::DispatchedAt, Expr::value(now));
    }
    if let Some(request) = &change.request {
        update = update
            .col_expr(column(REQUEST_TOPIC), Expr::value(request.topic.clone()))
            .col_expr(column(REQUEST_PARTITION), Expr::value(request.partition))
            .col_expr(column(REQUEST_OFFSET), Expr::value(request.offset));
    }

    let moves_forward = Condition::any()
        .add(trigger_execution::Column::Attempts.lt(change.attempt))
        .add(
            Condition::all()
                .add(trigger_execution::Column::Attempts.eq(change.attempt))
                .add(Expr::expr(stored_rank()).lt(status_rank(change.status))),
        );
    let result = update
        .filter(trigger_execution::Column::Id.eq(change.execution_id))
        .filter(
            trigger_execution::Column::Status
                .is_not_in([ExecutionStatus::Succeeded, ExecutionStatus::DeadLettered]),
        )
        .filter(moves_forward)
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// A failed execution claimed by [`claim_due`] for its next step.
#[derive(Clone, Debug, PartialEq)]
pub struct DueExecution {
    /// The execution as stored when it was claimed.
    pub execution: trigger_execution::Model,
    /// The last request a worker reported on, if any worker reported one.
    pub request: Option<RequestPosition>,
}

/// Claims up to `limit` failed executions whose `next_attempt_at` has
/// passed, oldest first.
///
/// Claiming moves `next_attempt_at` to `now + lease` with a conditional
/// UPDATE, so among replicas sweeping at once only one claims each row. If
/// the claimant dies before it publishes or dead-letters, the row is due
/// again when the lease ends.
pub async fn claim_due(
    db: &DatabaseConnection,
    now: chrono::DateTime<Utc>,
    lease: std::time::Duration,
    limit: u64,
) -> Result<Vec<DueExecution>> {
    let due_filter = || {
        Expr::col(column(NEXT_ATTEMPT_AT))
            .is_not_null()
            .and(Expr::col(column(NEXT_ATTEMPT_AT)).lte(now))
    };
    let candidates = trigger_execution::Entity::find()
        .filter(trigger_execution::Column::Status.eq(ExecutionStatus::Failed))
        .filter(due_filter())
        .order_by_asc(Expr::col(column(NEXT_ATTEMPT_AT)))
        .limit(limit)
        .all(db)
        .await?;

    let lease_end = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    let mut claimed = Vec::with_capacity(candidates.len());
    for execution in candidates {
        let result = trigger_execution::Entity::update_many()
            .col_expr(column(NEXT_ATTEMPT_AT), Expr::value(Some(lease_end)))
            .filter(trigger_execution::Column::Id.eq(execution.id))
            .filter(trigger_execution::Column::Status.eq(ExecutionStatus::Failed))
            .filter(trigger_execution::Column::Attempts.eq(execution.attempts))
            .filter(due_filter())
            .exec(db)
            .await?;
        if result.rows_affected == 0 {
            continue;
        }
        let request = request_position(db, execution.id).await?;
        claimed.push(DueExecution { execution, request });
    }
    Ok(claimed)
}

/// Returns the stored request position of execution `id`, if any.
pub async fn request_position(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<RequestPosition>> {
    let row: Option<(Option<String>, Option<i32>, Option<i64>)> = trigger_execution::Entity::find()
        .select_only()
        .column_as(Expr::col(column(REQUEST_TOPIC)), "request_topic")
        .column_as(Expr::col(column(REQUEST_PARTITION)), "request_partition")
        .column_as(Expr::col(column(REQUEST_OFFSET)), "request_offset")
        .filter(trigger_execution::Column::Id.eq(id))
        .into_tuple()
        .one(db)
        .await?;
    Ok(match row {
        Some((Some(topic), Some(partition), Some(offset))) => Some(RequestPosition {
            topic,
            partition,
            offset,
        }),
        _ => None,
    })
}

/// Returns when execution `id` is due for its next attempt, if scheduled.
pub async fn next_attempt_at(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<chrono::DateTime<Utc>>> {
    let row: Option<Option<chrono::DateTime<Utc>>> = trigger_execution::Entity::find()
        .select_only()
        .column_as(Expr::col(column(NEXT_ATTEMPT_AT)), "next_attempt_at")
        .filter(trigger_execution::Column::Id.eq(id))
        .into_tuple()
        .one(db)
        .await?;
    Ok(row.flatten())
}
