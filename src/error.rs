//! The error type of the `event-hub` library.

use crate::matching::PatternError;

/// Everything that can fail in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A database query or connection failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),

    /// A Kafka client call failed.
    #[error("kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),

    /// The configuration could not be loaded or is invalid; the message names the key.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A resource looked up by name or id does not exist.
    #[error("{kind} not found: {key}")]
    NotFound {
        /// Resource kind, such as `trigger`.
        kind: &'static str,
        /// The name or id that was looked up.
        key: String,
    },

    /// A resource with that name exists already.
    #[error("{kind} named {name:?} already exists")]
    AlreadyExists {
        /// Resource kind, such as `action`.
        kind: &'static str,
        /// The name in conflict.
        name: String,
    },

    /// A resource cannot be deleted because triggers still use it.
    #[error("{kind} {name:?} is used by {count} trigger(s); delete or move them first")]
    InUse {
        /// Resource kind, `action` or `event source`.
        kind: &'static str,
        /// The resource's name.
        name: String,
        /// How many triggers refer to it.
        count: u64,
    },

    /// A field of a request has an invalid value.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field, such as `flavor` or `configuration.topics`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },

    /// A trigger's event filter is not a valid pattern.
    #[error("invalid event filter: {0}")]
    Pattern(#[from] PatternError),

    /// A token could not be signed or verified.
    #[error("token error: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),

    /// A signing key could not be read or generated.
    #[error("signing key error: {0}")]
    SigningKey(String),

    /// A file could not be read or written.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// JSON could not be encoded or decoded.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// Builds an [`Error::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
