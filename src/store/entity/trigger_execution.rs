//! `trigger_executions`: one row per (event, matching trigger).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Lifecycle of an execution.
///
/// `pending` is written in the same transaction that records the match;
/// `dispatched` once the broker acknowledged the action request. The later
/// states are reported by handler workers.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Recorded; its action request is not yet acknowledged by Kafka.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The action request is on its topic.
    #[sea_orm(string_value = "dispatched")]
    Dispatched,
    /// A worker reported that it started.
    #[sea_orm(string_value = "running")]
    Running,
    /// A worker reported success.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// A worker reported failure.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Retries ran out; the request went to the action dead letter topic.
    #[sea_orm(string_value = "dead_lettered")]
    DeadLettered,
}

/// A row of `trigger_executions`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "trigger_executions")]
pub struct Model {
    /// UUID v5 of the event id in the trigger id's namespace, so a
    /// redelivered event maps to the same execution.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The trigger that matched.
    pub trigger_id: Uuid,
    /// The source the event came from.
    pub event_source_id: Uuid,
    /// Idempotency key of the event (GitHub delivery, CloudEvents source and
    /// id, or topic/partition/offset).
    pub event_id: String,
    /// Fields derived from the event when it was decoded.
    pub event_metadata: Json,
    /// Where the execution is in its lifecycle.
    pub status: ExecutionStatus,
    /// Delivery attempts reported by workers.
    pub attempts: i32,
    /// Last error reported, if any.
    pub error: Option<String>,
    /// When the match was recorded, UTC.
    pub created_at: DateTimeUtc,
    /// Last change, UTC.
    pub updated_at: DateTimeUtc,
    /// When the broker acknowledged the action request, UTC.
    pub dispatched_at: Option<DateTimeUtc>,
    /// When a worker reported a final status, UTC.
    pub finished_at: Option<DateTimeUtc>,
}

/// Relations of an execution.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The trigger that matched.
    #[sea_orm(
        belongs_to = "super::trigger::Entity",
        from = "Column::TriggerId",
        to = "super::trigger::Column::Id"
    )]
    Trigger,
}

impl Related<super::trigger::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Trigger.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
