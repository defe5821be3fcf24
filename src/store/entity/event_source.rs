//! `event_sources`: where events come from and how to decode them.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of `event_sources`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "event_sources")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Unique name, usable wherever an id is.
    #[sea_orm(unique)]
    pub name: String,
    /// Decoder family: `github`, `cloudevents` or `json`.
    pub flavor: String,
    /// Transport variant of the flavor: `webhook` or `kafka`.
    pub plugin_subtype: String,
    /// Free text for operators.
    pub description: Option<String>,
    /// Flavor settings: the topics the source reads and its webhook secret.
    pub configuration: Json,
    /// Inactive sources match no trigger; their records are skipped.
    pub is_active: bool,
    /// Creation time, UTC.
    pub created_at: DateTimeUtc,
    /// Last change, UTC; the trigger index polls it to notice changes.
    pub updated_at: DateTimeUtc,
}

/// Relations of an event source.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The triggers that listen to this source.
    #[sea_orm(has_many = "super::trigger::Entity")]
    Trigger,
}

impl Related<super::trigger::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Trigger.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
