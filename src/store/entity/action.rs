//! `actions`: what a trigger asks a handler worker to do.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of `actions`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "actions")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Unique name, usable wherever an id is.
    #[sea_orm(unique)]
    pub name: String,
    /// Handler family, the first part of the action topic name.
    pub flavor: String,
    /// Handler variant, the last part of the action topic name.
    pub plugin_subtype: String,
    /// Free text for operators.
    pub description: Option<String>,
    /// Opaque to the hub: handed to the worker in every action request.
    pub configuration: Json,
    /// Subject (`sub`) of the token in each action request.
    pub service_account: String,
    /// Lifetime of that token in minutes.
    pub auth_window_minutes: i32,
    /// Creation time, UTC.
    pub created_at: DateTimeUtc,
    /// Last change, UTC.
    pub updated_at: DateTimeUtc,
}

/// Relations of an action.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The triggers that request this action.
    #[sea_orm(has_many = "super::trigger::Entity")]
    Trigger,
}

impl Related<super::trigger::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Trigger.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
