//! Event patterns.
use serde_json::Value;

/// A compiled event pattern.
#[derive(Clone, Debug)]
pub struct Pattern {}

/// Why an event filter is not a valid pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at {path}: {message}")]
pub struct PatternError {
    /// JSON path of the offending part, such as `$.repository.full_name[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Pattern {
    /// Compiles an event filter.
    pub fn compile(_filter: &Value) -> Result<Self, PatternError> {
        todo!()
    }

    /// Tests an event document against the pattern.
    pub fn matches(&self, _document: &Value) -> bool {
        todo!()
    }
}
