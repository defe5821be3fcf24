//! Trigger executions: recording matches, marking them dispatched, and
//! reading them back.
//!
//! An execution's id is a UUID v5 of the event id in the namespace of the
//! trigger id, so the same (trigger, event) pair always maps to the same row
//! and inserts are idempotent: a redelivered record finds its executions
//! already there.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveEnum, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select, TransactionTrait,
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
pub async fn record(
    db: &DatabaseConnection,
    executions: &[NewExecution],
) -> Result<Vec<trigger_execution::Model>> {
    if executions.is_empty() {
        return Ok(Vec::new());
    }

    let now = Utc::now();
    let ids: Vec<Uuid> = executions.iter().map(NewExecution::id).collect();
    let transaction = db.begin().await?;

    for chunk in executions.chunks(CHUNK_ROWS) {
        let rows = chunk
            .iter()
            .map(|execution| trigger_execution::ActiveModel {
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
            });
        trigger_execution::Entity::insert_many(rows)
            .on_conflict_do_nothing()
            .exec(&transaction)
            .await?;
    }

    let stored = find_many(&transaction, &ids).await?;
    transaction.commit().await?;

    let mut by_id: std::collections::HashMap<Uuid, trigger_execution::Model> =
        stored.into_iter().map(|row| (row.id, row)).collect();
    let mut ordered = Vec::with_capacity(by_id.len());
    for id in ids {
        if let Some(row) = by_id.remove(&id) {
            ordered.push(row);
        }
    }
    Ok(ordered)
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
