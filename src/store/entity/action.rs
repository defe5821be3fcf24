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

/// The retry policy columns of `actions`, as a second entity over the same
/// table.
///
/// They live apart from [`Model`] so that code building an action row
/// field by field keeps compiling. Inserting through [`ActiveModel`] leaves
/// them at their column defaults. Read and write them by action id.
pub mod retry {
    use sea_orm::entity::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Growth of the delay before the next attempt with the attempt number.
    #[derive(
        Clone,
        Copy,
        Debug,
        Default,
        PartialEq,
        Eq,
        Hash,
        EnumIter,
        DeriveActiveEnum,
        Serialize,
        Deserialize,
    )]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
    #[serde(rename_all = "snake_case")]
    pub enum Backoff {
        /// `initial_delay_ms` doubled after every failed attempt.
        #[default]
        #[sea_orm(string_value = "exponential")]
        Exponential,
        /// `initial_delay_ms` times the number of failed attempts.
        #[sea_orm(string_value = "linear")]
        Linear,
    }

    /// The retry policy of one action.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
    #[sea_orm(table_name = "actions")]
    pub struct Model {
        /// The action's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Attempts in all, the first included, before the request is
        /// dead-lettered. Default: 3.
        pub max_attempts: i32,
        /// Growth of the delay between attempts. Default: exponential.
        pub backoff: Backoff,
        /// Delay before the second attempt, in milliseconds. Default: 1000.
        pub initial_delay_ms: i64,
        /// Cap of the delay between attempts, in milliseconds. Default: 60000.
        pub max_delay_ms: i64,
        /// Age of an execution, in seconds since it was recorded, after
        /// which a failed attempt is dead-lettered instead of retried.
        /// Default: none.
        pub max_event_age_secs: Option<i64>,
    }

    /// The retry view has no relations of its own.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
