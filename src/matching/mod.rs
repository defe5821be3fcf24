//! Trigger matching: event patterns and the index of active triggers.

pub mod index;
pub mod pattern;
pub mod refresh;

pub use index::TriggerIndex;
pub use pattern::{Pattern, PatternError};
