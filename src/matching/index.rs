//! The in-memory index of active triggers, rebuilt when the database changes.
//!
//! Every replica holds an immutable [`TriggerIndex`] behind a
//! `tokio::sync::watch` channel. A refresher task polls the database's
//! fingerprint (row counts and latest `updated_at` of the three tables),
//! rebuilds the index when it changed, and publishes the new one; the
//! consumer takes the current index at the start of each batch, so matching
//! never waits for a rebuild.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::Pattern;
use crate::event::{EventSource, InboundRecord};
use crate::store::entity::{action, event_source, trigger};

/// Header that names the event source of a record, by id or name,
/// overriding the topic binding.
pub const EVENT_SOURCE_HEADER: &str = "event-source";

/// An active trigger with its compiled filter and its action.
#[derive(Debug)]
pub struct CompiledTrigger {
    /// The stored trigger.
    pub trigger: trigger::Model,
    /// The trigger's compiled event filter.
    pub pattern: Pattern,
    /// The action the trigger requests.
    pub action: Arc<action::Model>,
}

/// Why a record has no event source to be decoded with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The `event-source` header names no known source.
    #[error("event-source header {0:?} names no event source")]
    UnknownHeader(String),
    /// No event source reads the record's topic.
    #[error("no event source reads topic {0:?}")]
    UnboundTopic(String),
    /// Several event sources read the record's topic.
    #[error("event sources {names} all read topic {topic:?}; set the event-source header")]
    AmbiguousTopic {
        /// The topic.
        topic: String,
        /// The sources' names, comma-separated.
        names: String,
    },
}

impl SourceError {
    /// Returns a short, stable code for the `event-hub-error` header.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownHeader(_) | Self::UnboundTopic(_) => "unknown_event_source",
            Self::AmbiguousTopic { .. } => "ambiguous_event_source",
        }
    }
}

/// Active triggers grouped by event source, with the sources themselves.
#[derive(Debug, Default)]
pub struct TriggerIndex {
    sources: HashMap<Uuid, Arc<EventSource>>,
    source_ids_by_name: HashMap<String, Uuid>,
    source_ids_by_topic: HashMap<String, Vec<Uuid>>,
    triggers_by_source: HashMap<Uuid, Vec<CompiledTrigger>>,
    trigger_count: usize,
}

impl TriggerIndex {
    /// Builds the index from stored rows.
    ///
    /// A row that no longer validates (a filter or configuration edited
    /// directly in the database) is logged and left out, so one bad row
    /// cannot stop the daemon.
    pub fn build(
        event_sources: &[event_source::Model],
        actions: &[action::Model],
        triggers: &[trigger::Model],
    ) -> Self {
        let mut index = Self::default();

        for model in event_sources {
            match EventSource::from_model(model) {
                Ok(source) => {
                    index
                        .source_ids_by_name
                        .insert(source.name.clone(), source.id);
                    for topic in &source.topics {
                        index
                            .source_ids_by_topic
                            .entry(topic.clone())
                            .or_default()
                            .push(source.id);
                    }
                    index.sources.insert(source.id, Arc::new(source));
                }
                Err(error) => tracing::error!(
                    event_source = %model.name,
                    %error,
                    "event source left out of the trigger index: invalid configuration"
                ),
            }
        }

        let actions: HashMap<Uuid, Arc<action::Model>> = actions
            .iter()
            .map(|action| (action.id, Arc::new(action.clone())))
            .collect();

        for model in triggers.iter().filter(|trigger| trigger.is_active) {
            let Some(action) = actions.get(&model.action_id) else {
                tracing::error!(trigger = %model.name, action_id = %model.action_id, "trigger left out of the index: action not found");
                continue;
            };
            if !index.sources.contains_key(&model.event_source_id) {
                tracing::error!(trigger = %model.name, event_source_id = %model.event_source_id, "trigger left out of the index: event source not found");
                continue;
            }
            match Pattern::compile(&model.event_filter) {
                Ok(pattern) => {
                    index
                        .triggers_by_source
                        .entry(model.event_source_id)
                        .or_default()
                        .push(CompiledTrigger {
                            trigger: model.clone(),
                            pattern,
                            action: Arc::clone(action),
                        });
                    index.trigger_count += 1;
                }
                Err(error) => tracing::error!(
                    trigger = %model.name,
                    %error,
                    "trigger left out of the index: invalid event filter"
                ),
            }
        }

        index
    }

    /// Returns the number of active triggers in the index.
    pub fn trigger_count(&self) -> usize {
        self.trigger_count
    }

    /// Returns the topics read by active event sources, sorted.
    pub fn topics(&self) -> BTreeSet<String> {
        self.sources
            .values()
            .filter(|source| source.is_active)
            .flat_map(|source| source.topics.iter().cloned())
            .collect()
    }

    /// Finds the event source of `record`: the one named by its
    /// `event-source` header, else the one bound to its topic.
    pub fn resolve_source(&self, record: &InboundRecord) -> Result<&Arc<EventSource>, SourceError> {
        if let Some(key) = record.header_str(EVENT_SOURCE_HEADER) {
            let by_id = key
                .parse::<Uuid>()
                .ok()
                .and_then(|id| self.sources.get(&id));
            let by_name = || {
                self.source_ids_by_name
                    .get(key)
                    .and_then(|id| self.sources.get(id))
            };
            return by_id
                .or_else(by_name)
                .ok_or_else(|| SourceError::UnknownHeader(key.to_owned()));
        }

        let ids = self
            .source_ids_by_topic
            .get(&record.topic)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let active: Vec<&Arc<EventSource>> = ids
            .iter()
            .filter_map(|id| self.sources.get(id))
            .filter(|source| source.is_active)
            .collect();
        match active.as_slice() {
            [source] => Ok(source),
            [] => match ids.first().and_then(|id| self.sources.get(id)) {
                // Only inactive sources read the topic: the caller skips it.
                Some(inactive) => Ok(inactive),
                None => Err(SourceError::UnboundTopic(record.topic.clone())),
            },
            several => Err(SourceError::AmbiguousTopic {
                topic: record.topic.clone(),
                names: several
                    .iter()
                    .map(|source| source.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Returns the active triggers of `source_id` whose filter matches `document`.
    pub fn matching(&self, source_id: Uuid, document: &Value) -> Vec<&CompiledTrigger> {
        self.triggers_by_source
            .get(&source_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|compiled| compiled.pattern.matches(document))
            .collect()
    }
}
