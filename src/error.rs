//! The error type of the `event-hub` library.

use crate::matching::PatternError;

/// Everything that can fail in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A database query or connection failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),

    /// A Kafka client call failed.
    ///
    /// Not marked as the error's source: the message of an invalid client
    /// property contains its value, which may be a password, so only the
    /// redacted description is shown.
    #[error("kafka error: {}", describe_kafka_error(.0))]
    Kafka(rdkafka::error::KafkaError),

    /// The database could not be reached; the message has no password.
    #[error("cannot connect to the database at {url}: {message}")]
    DatabaseConnect {
        /// The database URL with its password replaced by `********`.
        url: String,
        /// The failure, with the password removed.
        message: String,
    },

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

impl From<rdkafka::error::KafkaError> for Error {
    fn from(error: rdkafka::error::KafkaError) -> Self {
        Self::Kafka(error)
    }
}

/// Describes a Kafka error without the value of a client property.
fn describe_kafka_error(error: &rdkafka::error::KafkaError) -> String {
    match error {
        rdkafka::error::KafkaError::ClientConfig(_, description, property, _value) => {
            format!("invalid librdkafka property {property:?}: {description}")
        }
        other => other.to_string(),
    }
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

impl Error {
    /// Returns whether retrying the same work cannot succeed: the input
    /// itself is rejected (a value the database refuses, a record too large
    /// for the broker), as opposed to a dependency being unreachable.
    pub fn is_permanent(&self) -> bool {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as Code;

        match self {
            Self::Kafka(KafkaError::MessageProduction(code)) => matches!(
                code,
                Code::MessageSizeTooLarge
                    | Code::InvalidMessage
                    | Code::InvalidMessageSize
                    | Code::InvalidRecord
            ),
            Self::Database(error) => is_permanent_database_error(error),
            Self::Json(_) | Self::Token(_) | Self::Invalid { .. } | Self::Pattern(_) => true,
            _ => false,
        }
    }
}

/// Returns whether the database rejected the statement's data, judged by
/// the SQLSTATE class: 22 (data exception, such as a NUL byte in a
/// PostgreSQL text value) or 23 (integrity constraint violation). SQLite
/// reports numeric codes instead; its constraint failures start with 19.
fn is_permanent_database_error(error: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};

    let (DbErr::Exec(RuntimeErr::SqlxError(sea_orm::sqlx::Error::Database(database_error)))
    | DbErr::Query(RuntimeErr::SqlxError(sea_orm::sqlx::Error::Database(database_error)))) = error
    else {
        return false;
    };
    let Some(code) = database_error.code() else {
        return false;
    };
    code.starts_with("22") || code.starts_with("23") || code.starts_with("19")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_error_hides_the_value() {
        let error = Error::from(rdkafka::error::KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "not supported".to_owned(),
            "ssl.key.password".to_owned(),
            "hunter2".to_owned(),
        ));
        let shown = error.to_string();
        assert!(shown.contains("ssl.key.password"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(std::error::Error::source(&error).is_none());
    }
}
