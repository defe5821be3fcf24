//! Trigger matching: event patterns, the engine that indexes them, and the
//! index of active triggers.

pub mod engine;
pub mod explain;
pub mod index;
pub mod pattern;
pub mod refresh;

pub use engine::MatchEngine;
pub use explain::{Mismatch, MismatchKind};
pub use index::TriggerIndex;
pub use pattern::{Pattern, PatternError};
