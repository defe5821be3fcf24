//! Event sources as the pipeline uses them: parsed and validated rows of
//! `event_sources`.

use std::fmt;
use std::str::FromStr;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::entity::event_source;
use crate::{Error, Result};

/// Decoder family of an event source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// GitHub webhook deliveries.
    Github,
    /// CloudEvents in the Kafka protocol binding, binary or structured mode.
    Cloudevents,
    /// Any JSON object.
    Json,
}

impl Flavor {
    /// All flavors, in the order help text lists them.
    pub const ALL: [Flavor; 3] = [Flavor::Github, Flavor::Cloudevents, Flavor::Json];

    /// Returns the name stored in `event_sources.flavor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Cloudevents => "cloudevents",
            Self::Json => "json",
        }
    }

    /// Returns the plugin subtypes this flavor supports.
    pub fn subtypes(self) -> &'static [&'static str] {
        match self {
            Self::Github => &["webhook"],
            Self::Cloudevents | Self::Json => &["kafka"],
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Flavor {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|flavor| flavor.as_str() == value)
            .ok_or_else(|| {
                Error::invalid(
                    "flavor",
                    format!("unknown flavor {value:?}; expected one of github, cloudevents, json"),
                )
            })
    }
}

/// The `configuration` JSON of an event source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfiguration {
    /// Topics whose records belong to this source unless a record's
    /// `event-source` header names another one.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Webhook secret; when set, GitHub records must carry a valid
    /// `x-hub-signature-256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl SourceConfiguration {
    /// Parses and validates the `configuration` of an event source.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let mut configuration: Self = serde_json::from_value(value.clone())
            .map_err(|error| Error::invalid("configuration", error.to_string()))?;
        for topic in &configuration.topics {
            validate_topic_name(topic)
                .map_err(|message| Error::invalid("configuration.topics", message))?;
        }
        // A topic listed twice means the same as once; keep the first.
        let mut seen = std::collections::HashSet::new();
        configuration
            .topics
            .retain(|topic| seen.insert(topic.clone()));
        if configuration.secret.as_deref() == Some("") {
            return Err(Error::invalid(
                "configuration.secret",
                "must not be empty; omit it to accept unsigned records",
            ));
        }
        Ok(configuration)
    }
}

/// Checks a topic name against Kafka's rules: 1 to 249 characters of
/// `[a-zA-Z0-9._-]`, and neither `.` nor `..`.
pub fn validate_topic_name(topic: &str) -> std::result::Result<(), String> {
    let valid_chars = topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if topic.is_empty() || topic.len() > 249 || !valid_chars || topic == "." || topic == ".." {
        return Err(format!(
            "{topic:?} is not a valid topic name (1 to 249 characters of a-z, A-Z, 0-9, '.', '_', '-')"
        ));
    }
    Ok(())
}

/// An event source ready for decoding.
#[derive(Clone, Debug)]
pub struct EventSource {
    /// Primary key.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Decoder family.
    pub flavor: Flavor,
    /// Transport variant.
    pub subtype: String,
    /// Topics bound to this source.
    pub topics: Vec<String>,
    /// Webhook secret, never printed.
    pub secret: Option<SecretString>,
    /// Whether records of this source are matched at all.
    pub is_active: bool,
}

impl EventSource {
    /// Builds the decoding view of a stored event source.
    pub fn from_model(model: &event_source::Model) -> Result<Self> {
        let configuration = SourceConfiguration::from_json(&model.configuration)?;
        Ok(Self {
            id: model.id,
            name: model.name.clone(),
            flavor: model.flavor.parse()?,
            subtype: model.plugin_subtype.clone(),
            topics: configuration.topics,
            secret: configuration.secret.map(SecretString::from),
            is_active: model.is_active,
        })
    }
}
