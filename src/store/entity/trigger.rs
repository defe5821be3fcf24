//! `triggers`: an event filter on one event source that requests one action.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of `triggers`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "triggers")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Unique name, usable wherever an id is.
    #[sea_orm(unique)]
    pub name: String,
    /// Free text for operators.
    pub description: Option<String>,
    /// The source whose events this trigger sees.
    pub event_source_id: Uuid,
    /// The action requested for each matching event.
    pub action_id: Uuid,
    /// Event pattern; validated when the trigger is created or updated.
    pub event_filter: Json,
    /// Inactive triggers match nothing.
    pub is_active: bool,
    /// Creation time, UTC.
    pub created_at: DateTimeUtc,
    /// Last change, UTC.
    pub updated_at: DateTimeUtc,
}

/// Relations of a trigger.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The source the trigger listens to.
    #[sea_orm(
        belongs_to = "super::event_source::Entity",
        from = "Column::EventSourceId",
        to = "super::event_source::Column::Id"
    )]
    EventSource,
    /// The action the trigger requests.
    #[sea_orm(
        belongs_to = "super::action::Entity",
        from = "Column::ActionId",
        to = "super::action::Column::Id"
    )]
    Action,
    /// Executions recorded for this trigger.
    #[sea_orm(has_many = "super::trigger_execution::Entity")]
    TriggerExecution,
}

impl Related<super::event_source::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::EventSource.def()
    }
}

impl Related<super::action::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Action.def()
    }
}

impl Related<super::trigger_execution::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TriggerExecution.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
