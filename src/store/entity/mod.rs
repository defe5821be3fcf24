//! sea-orm entities: one module per table.
//!
//! The schema itself is created by the `migrations` crate; these models must
//! stay in step with it.

pub mod action;
pub mod event_source;
pub mod trigger;
pub mod trigger_execution;
