//! Index of active triggers.
/// Placeholder.
pub struct TriggerIndex;
