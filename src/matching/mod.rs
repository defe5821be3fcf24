//! Trigger matching: event patterns and the index of active triggers.

pub mod index;
pub mod pattern;

pub use index::TriggerIndex;
pub use pattern::{Pattern, PatternError};
