//! The in-memory index of active triggers, rebuilt when the database changes.
//!
//! Every replica holds an immutable [`TriggerIndex`] behind a
//! `tokio::sync::watch` channel. A refresher task (`refresh.rs`) polls the
//! database's fingerprint, derives a new index when it changed, and
//! publishes it. The consumer takes the current index at the start of each
//! batch, so matching never waits for a rebuild.
//!
//! The triggers of each event source are compiled into one
//! [`MatchEngine`], so matching an event costs about the same with 100 or
//! 100,000 triggers (see the engine's documentation).
//! [`TriggerIndex::with_trigger`], [`TriggerIndex::with_trigger_changes`]
//! and [`TriggerIndex::without_trigger`] derive a new index from an
//! existing one by rebuilding only the engines of the sources concerned.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::engine::{EngineStats, MatchEngine, Matchable};
use super::{Mismatch, Pattern, PatternError};
use crate::event::{self, DecodeError, Event, EventSource, FieldSet, InboundRecord};
use crate::store::entity::{action, event_source, trigger};

/// Header that names the event source of a record, by id or name,
/// overriding the topic binding.
pub const EVENT_SOURCE_HEADER: &str = "event-source";

/// An active trigger with its compiled filter and its action.
#[derive(Debug)]
pub struct CompiledTrigger {
    /// The stored trigger, with `event_filter` set to null: [`Self::pattern`]
    /// is its compiled form.
    pub trigger: trigger::Model,
    /// The trigger's compiled event filter.
    pub pattern: Pattern,
    /// The action the trigger requests.
    pub action: Arc<action::Model>,
}

impl Matchable for CompiledTrigger {
    fn pattern(&self) -> &Pattern {
        &self.pattern
    }
}

/// Whether one trigger matches a document, and if not, why.
#[derive(Debug)]
pub struct Explanation<'a> {
    /// The trigger tested.
    pub trigger: &'a CompiledTrigger,
    /// `Ok` when the trigger's filter matches, else its first failed condition.
    pub result: Result<(), Mismatch>,
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

/// Why [`TriggerIndex::with_trigger`] cannot add a trigger.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TriggerRejected {
    /// The trigger's event source is not in the index.
    #[error("trigger {trigger}: event source {event_source_id} is not in the trigger index")]
    UnknownEventSource {
        /// The trigger's name.
        trigger: String,
        /// The missing event source.
        event_source_id: Uuid,
    },
    /// The trigger's action is not in the index.
    #[error("trigger {trigger}: action {action_id} is not in the trigger index")]
    UnknownAction {
        /// The trigger's name.
        trigger: String,
        /// The missing action.
        action_id: Uuid,
    },
    /// The trigger's filter does not compile.
    #[error("trigger {trigger}: invalid event filter: {error}")]
    InvalidFilter {
        /// The trigger's name.
        trigger: String,
        /// The compilation error.
        error: PatternError,
    },
}

/// Active triggers grouped by event source, with the sources themselves.
#[derive(Debug, Default)]
pub struct TriggerIndex {
    sources: HashMap<Uuid, Arc<EventSource>>,
    source_ids_by_name: HashMap<String, Uuid>,
    source_ids_by_topic: HashMap<String, Vec<Uuid>>,
    actions: HashMap<Uuid, Arc<action::Model>>,
    engines: HashMap<Uuid, Arc<SourceTriggers>>,
    trigger_count: usize,
}

/// The triggers of one event source: their engine, and their ids to find
/// a trigger's source without reading every trigger.
#[derive(Debug)]
struct SourceTriggers {
    engine: MatchEngine<CompiledTrigger>,
    trigger_ids: HashSet<Uuid>,
    /// The fields that the triggers' filters and the source's decoder
    /// read, which documents are projected on before matching.
    fields: FieldSet,
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
                    let topics: BTreeSet<&String> = source.topics.iter().collect();
                    for topic in topics {
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

        index.actions = actions
            .iter()
            .map(|action| (action.id, Arc::new(action.clone())))
            .collect();

        let mut triggers_by_source: HashMap<Uuid, Vec<Arc<CompiledTrigger>>> = HashMap::new();
        for model in triggers.iter().filter(|trigger| trigger.is_active) {
            if let Some(compiled) = index.compile_or_log(model) {
                triggers_by_source
                    .entry(model.event_source_id)
                    .or_default()
                    .push(Arc::new(compiled));
                index.trigger_count += 1;
            }
        }

        for (source_id, compiled) in triggers_by_source {
            index.insert_engine(source_id, compiled);
        }
        index
    }

    /// Returns a copy of the index in which the trigger `model` is added,
    /// or replaces the trigger of the same id. An inactive `model` is
    /// removed instead, like [`TriggerIndex::without_trigger`].
    ///
    /// Only the engines of the trigger's old and new event sources are
    /// rebuilt, from their already compiled triggers, so the cost grows
    /// with the number of triggers of those sources, not of the index.
    pub fn with_trigger(&self, model: &trigger::Model) -> Result<Self, TriggerRejected> {
        if !model.is_active {
            return Ok(self.without_trigger(model.id));
        }
        let compiled = Arc::new(self.compile(model)?);

        let mut index = self.shallow_copy();
        let mut entries = self.entries_of(model.event_source_id).to_vec();
        match self.source_of(model.id) {
            // A replaced trigger keeps its place among the source's triggers.
            Some(source_id) if source_id == model.event_source_id => {
                match entries
                    .iter()
                    .position(|entry| entry.trigger.id == model.id)
                {
                    Some(position) => entries[position] = compiled,
                    None => entries.push(compiled),
                }
            }
            Some(old_source_id) => {
                index.remove_from(old_source_id, model.id);
                entries.push(compiled);
                index.trigger_count += 1;
            }
            None => {
                entries.push(compiled);
                index.trigger_count += 1;
            }
        }
        index.insert_engine(model.event_source_id, entries);
        Ok(index)
    }

    /// Returns a copy of the index with the trigger rows `models` applied, as
    /// [`TriggerIndex::with_trigger`] applies one: an active row adds its
    /// trigger or replaces the trigger of its id, an inactive one removes it.
    /// When several rows have the same id, the last one counts.
    ///
    /// The engine of each event source concerned is rebuilt once, however
    /// many of the rows belong to it, and the work grows with the triggers
    /// of those sources, not with the number of rows. A changed trigger goes
    /// to the end of its source's list, so matching may return the triggers
    /// of one event in another order than a fresh build, but the same ones.
    /// A row that is rejected, such as one whose filter no longer compiles,
    /// is logged and its trigger left out, as [`TriggerIndex::build`] does.
    pub fn with_trigger_changes(&self, models: &[trigger::Model]) -> Self {
        // The last row of each trigger, in the order of the rows.
        let mut seen = HashSet::new();
        let mut latest: Vec<&trigger::Model> = models
            .iter()
            .rev()
            .filter(|model| seen.insert(model.id))
            .collect();
        latest.reverse();

        // The sources that lose a changed trigger or gain one, with their
        // triggers left unchanged.
        let mut sources: HashSet<Uuid> = latest.iter().map(|model| model.event_source_id).collect();
        sources.extend(latest.iter().filter_map(|model| self.source_of(model.id)));
        let mut entries_by_source: HashMap<Uuid, Vec<Arc<CompiledTrigger>>> = sources
            .iter()
            .map(|&source_id| {
                let unchanged = self
                    .entries_of(source_id)
                    .iter()
                    .filter(|entry| !seen.contains(&entry.trigger.id))
                    .cloned()
                    .collect();
                (source_id, unchanged)
            })
            .collect();

        for model in latest.into_iter().filter(|model| model.is_active) {
            if let Some(compiled) = self.compile_or_log(model) {
                entries_by_source
                    .entry(model.event_source_id)
                    .or_default()
                    .push(Arc::new(compiled));
            }
        }

        let mut index = self.shallow_copy();
        for (source_id, entries) in entries_by_source {
            index.trigger_count -= self.entries_of(source_id).len();
            index.trigger_count += entries.len();
            index.insert_engine(source_id, entries);
        }
        index
    }

    /// Returns a copy of the index without the trigger `trigger_id`, or an
    /// unchanged copy when it has no such trigger.
    pub fn without_trigger(&self, trigger_id: Uuid) -> Self {
        let mut index = self.shallow_copy();
        if let Some(source_id) = self.source_of(trigger_id) {
            index.remove_from(source_id, trigger_id);
        }
        index
    }

    /// Returns the number of active triggers in the index.
    pub fn trigger_count(&self) -> usize {
        self.trigger_count
    }

    /// Returns the sizes of the matching engine of `source_id`.
    pub fn engine_stats(&self, source_id: Uuid) -> EngineStats {
        self.engines
            .get(&source_id)
            .map(|triggers| triggers.engine.stats())
            .unwrap_or_default()
    }

    /// Returns the topics bound to event sources, sorted.
    ///
    /// Topics of inactive sources are included: the consumer reads and skips
    /// their records, so that activating a source later does not replay the
    /// events produced while it was inactive.
    pub fn topics(&self) -> BTreeSet<String> {
        self.source_ids_by_topic.keys().cloned().collect()
    }

    /// Finds the event source of `record`: the one named by its
    /// `event-source` header, else the one bound to its topic.
    pub fn resolve_source(&self, record: &InboundRecord) -> Result<&Arc<EventSource>, SourceError> {
        if let Some(raw) = record.header(EVENT_SOURCE_HEADER) {
            let Ok(key) = std::str::from_utf8(raw) else {
                return Err(SourceError::UnknownHeader(
                    String::from_utf8_lossy(raw).into_owned(),
                ));
            };
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

    /// Returns the active triggers of `source_id` whose filter matches
    /// `document`, in the order of the source's triggers in the index.
    pub fn matching(&self, source_id: Uuid, document: &Value) -> Vec<&CompiledTrigger> {
        self.engines
            .get(&source_id)
            .map(|triggers| triggers.engine.matching(document))
            .unwrap_or_default()
    }

    /// Decodes `record` as an event of `source` and returns it with the
    /// active triggers it matches, as the consumer does with each record.
    ///
    /// The record is first decoded with only the fields that matching
    /// reads ([`Self::matching_fields`]): most events match nothing, and
    /// building their whole document would cost several times more than
    /// matching it. The value of an event that matches is parsed again,
    /// whole, because its action requests carry the document. So the
    /// event returned has its whole document when some trigger matched,
    /// and may hold only the fields matching read when none did.
    ///
    /// Fails like [`crate::event::decode`], except for the limits that
    /// [`crate::event::projection`] lists.
    pub fn decode_and_match(
        &self,
        source: &EventSource,
        record: &InboundRecord,
    ) -> Result<(Event, Vec<&CompiledTrigger>), DecodeError> {
        let decoded = event::decode_for_matching(source, record, self.matching_fields(source))?;
        let triggers = self.matching(source.id, &decoded.event().document);
        let event = if triggers.is_empty() {
            decoded.into_event()
        } else {
            decoded.into_whole(record)?
        };
        Ok((event, triggers))
    }

    /// Returns the fields that matching an event of `source` reads: those
    /// that its triggers' filters name, and those that decoding its flavor
    /// reads. Decoding an event with them
    /// ([`crate::event::decode_for_matching`]) gives a document that
    /// [`matching`](Self::matching) treats like the whole one.
    pub fn matching_fields(&self, source: &EventSource) -> &FieldSet {
        match self.engines.get(&source.id) {
            Some(triggers) => &triggers.fields,
            None => FieldSet::for_flavor(source.flavor),
        }
    }

    /// Tests `document` against every active trigger of `source_id` and
    /// returns, for each, whether it matches and else its first failed
    /// condition. Matching triggers are those that
    /// [`matching`](Self::matching) returns.
    pub fn explain(&self, source_id: Uuid, document: &Value) -> Vec<Explanation<'_>> {
        self.entries_of(source_id)
            .iter()
            .map(|entry| Explanation {
                trigger: entry,
                result: entry.pattern.explain(document),
            })
            .collect()
    }

    /// Compiles an active trigger like [`Self::compile`], or logs why it is
    /// rejected and returns `None`, so that one bad row leaves out only its
    /// own trigger.
    fn compile_or_log(&self, model: &trigger::Model) -> Option<CompiledTrigger> {
        match self.compile(model) {
            Ok(compiled) => Some(compiled),
            Err(error) => {
                tracing::error!(trigger = %model.name, %error, "trigger left out of the trigger index");
                None
            }
        }
    }

    /// Compiles an active trigger, checking that its source and action are
    /// in the index.
    fn compile(&self, model: &trigger::Model) -> Result<CompiledTrigger, TriggerRejected> {
        let Some(action) = self.actions.get(&model.action_id) else {
            return Err(TriggerRejected::UnknownAction {
                trigger: model.name.clone(),
                action_id: model.action_id,
            });
        };
        if !self.sources.contains_key(&model.event_source_id) {
            return Err(TriggerRejected::UnknownEventSource {
                trigger: model.name.clone(),
                event_source_id: model.event_source_id,
            });
        }
        let pattern = Pattern::compile(&model.event_filter).map_err(|error| {
            TriggerRejected::InvalidFilter {
                trigger: model.name.clone(),
                error,
            }
        })?;
        // The copy leaves out the filter's JSON, because `pattern` replaces
        // it and the JSON took more than half of the index's memory.
        let trigger = trigger::Model {
            id: model.id,
            name: model.name.clone(),
            description: model.description.clone(),
            event_source_id: model.event_source_id,
            action_id: model.action_id,
            event_filter: Value::Null,
            is_active: model.is_active,
            created_at: model.created_at,
            updated_at: model.updated_at,
        };
        Ok(CompiledTrigger {
            trigger,
            pattern,
            action: Arc::clone(action),
        })
    }

    /// Returns the triggers of `source_id` in the order of its engine.
    fn entries_of(&self, source_id: Uuid) -> &[Arc<CompiledTrigger>] {
        self.engines
            .get(&source_id)
            .map(|triggers| triggers.engine.entries())
            .unwrap_or_default()
    }

    /// Returns the event source whose engine contains `trigger_id`.
    fn source_of(&self, trigger_id: Uuid) -> Option<Uuid> {
        self.engines
            .iter()
            .find(|(_, triggers)| triggers.trigger_ids.contains(&trigger_id))
            .map(|(source_id, _)| *source_id)
    }

    /// Rebuilds the engine of `source_id` without `trigger_id`.
    fn remove_from(&mut self, source_id: Uuid, trigger_id: Uuid) {
        let entries: Vec<Arc<CompiledTrigger>> = self
            .entries_of(source_id)
            .iter()
            .filter(|entry| entry.trigger.id != trigger_id)
            .cloned()
            .collect();
        let removed = self.entries_of(source_id).len() - entries.len();
        self.trigger_count -= removed;
        self.insert_engine(source_id, entries);
    }

    /// Builds and stores the engine of one source, or removes it when the
    /// source has no triggers left.
    fn insert_engine(&mut self, source_id: Uuid, entries: Vec<Arc<CompiledTrigger>>) {
        if entries.is_empty() {
            self.engines.remove(&source_id);
            return;
        }
        let trigger_ids = entries.iter().map(|entry| entry.trigger.id).collect();
        let mut fields = self
            .sources
            .get(&source_id)
            .map_or_else(FieldSet::default, |source| {
                FieldSet::for_flavor(source.flavor).clone()
            });
        for entry in &entries {
            entry.pattern.add_fields_to(&mut fields);
        }
        let engine = MatchEngine::new(entries);
        let stats = engine.stats();
        if stats.scanned > 0 {
            tracing::debug!(
                event_source_id = %source_id,
                triggers = stats.entries,
                scanned = stats.scanned,
                "triggers without an exact string condition are tested against every event of their source"
            );
        }
        self.engines.insert(
            source_id,
            Arc::new(SourceTriggers {
                engine,
                trigger_ids,
                fields,
            }),
        );
    }

    /// Copies the maps of the index. Sources, actions and engines are
    /// shared, not copied.
    fn shallow_copy(&self) -> Self {
        Self {
            sources: self.sources.clone(),
            source_ids_by_name: self.source_ids_by_name.clone(),
            source_ids_by_topic: self.source_ids_by_topic.clone(),
            actions: self.actions.clone(),
            engines: self.engines.clone(),
            trigger_count: self.trigger_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;

    fn timestamp() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    fn source_model(name: &str, topics: &[&str], is_active: bool) -> event_source::Model {
        event_source::Model {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            flavor: "json".to_owned(),
            plugin_subtype: "kafka".to_owned(),
            description: None,
            configuration: json!({ "topics": topics }),
            is_active,
            created_at: timestamp(),
            updated_at: timestamp(),
        }
    }

    fn action_model(name: &str) -> action::Model {
        action::Model {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            flavor: "builtin".to_owned(),
            plugin_subtype: "pipeline_run".to_owned(),
            description: None,
            configuration: json!({}),
            service_account: "sa-ci".to_owned(),
            auth_window_minutes: 60,
            created_at: timestamp(),
            updated_at: timestamp(),
        }
    }

    fn trigger_model(
        name: &str,
        source: &event_source::Model,
        action: &action::Model,
        event_filter: Value,
        is_active: bool,
    ) -> trigger::Model {
        trigger::Model {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            description: None,
            event_source_id: source.id,
            action_id: action.id,
            event_filter,
            is_active,
            created_at: timestamp(),
            updated_at: timestamp(),
        }
    }

    /// Builds a record on `topic`, with an `event-source` header when given.
    fn record(topic: &str, event_source: Option<&str>) -> InboundRecord {
        let headers = event_source
            .map(|value| {
                vec![(
                    EVENT_SOURCE_HEADER.to_owned(),
                    Some(value.as_bytes().to_vec()),
                )]
            })
            .unwrap_or_default();
        InboundRecord {
            topic: topic.to_owned(),
            payload: Some(b"{}".to_vec()),
            headers,
            ..InboundRecord::default()
        }
    }

    fn index_of(sources: &[event_source::Model]) -> TriggerIndex {
        TriggerIndex::build(sources, &[], &[])
    }

    /// Returns the names of the matching triggers, sorted.
    fn matching_names(index: &TriggerIndex, source_id: Uuid, document: &Value) -> Vec<String> {
        let mut names: Vec<String> = index
            .matching(source_id, document)
            .iter()
            .map(|compiled| compiled.trigger.name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn resolve_source_by_topic() {
        let orders = source_model("orders", &["orders"], true);
        let payments = source_model("payments", &["payments"], true);
        let index = index_of(&[orders.clone(), payments.clone()]);

        let resolved = index.resolve_source(&record("orders", None)).unwrap();
        assert_eq!(resolved.id, orders.id);
        assert_eq!(resolved.name, "orders");

        let resolved = index.resolve_source(&record("payments", None)).unwrap();
        assert_eq!(resolved.id, payments.id);
    }

    #[test]
    fn resolve_source_by_header_id() {
        let orders = source_model("orders", &["orders"], true);
        let payments = source_model("payments", &["payments"], true);
        let index = index_of(&[orders, payments.clone()]);

        let header = payments.id.to_string();
        let resolved = index
            .resolve_source(&record("orders", Some(&header)))
            .unwrap();
        assert_eq!(resolved.id, payments.id);
    }

    #[test]
    fn resolve_source_by_header_name() {
        let orders = source_model("orders", &["orders"], true);
        let payments = source_model("payments", &["payments"], true);
        let index = index_of(&[orders, payments.clone()]);

        let resolved = index
            .resolve_source(&record("orders", Some("payments")))
            .unwrap();
        assert_eq!(resolved.id, payments.id);
    }

    #[test]
    fn resolve_source_by_header_of_unbound_topic() {
        // A source without topics is reachable through the header only.
        let replay = source_model("replay", &[], true);
        let index = index_of(std::slice::from_ref(&replay));

        let resolved = index
            .resolve_source(&record("anything", Some("replay")))
            .unwrap();
        assert_eq!(resolved.id, replay.id);
    }

    #[test]
    fn resolve_source_unknown_header() {
        let orders = source_model("orders", &["orders"], true);
        let index = index_of(&[orders]);

        // The header wins over the topic binding, even when it names nothing.
        let error = index
            .resolve_source(&record("orders", Some("no-such-source")))
            .unwrap_err();
        assert_eq!(
            error,
            SourceError::UnknownHeader("no-such-source".to_owned())
        );
        assert_eq!(error.reason(), "unknown_event_source");

        let unknown_id = Uuid::new_v4().to_string();
        let error = index
            .resolve_source(&record("orders", Some(&unknown_id)))
            .unwrap_err();
        assert_eq!(error, SourceError::UnknownHeader(unknown_id));
    }

    #[test]
    fn resolve_source_unbound_topic() {
        let orders = source_model("orders", &["orders"], true);
        let index = index_of(&[orders]);

        let error = index.resolve_source(&record("invoices", None)).unwrap_err();
        assert_eq!(error, SourceError::UnboundTopic("invoices".to_owned()));
        assert_eq!(error.reason(), "unknown_event_source");
    }

    #[test]
    fn resolve_source_empty_index() {
        let index = TriggerIndex::default();
        let error = index.resolve_source(&record("orders", None)).unwrap_err();
        assert_eq!(error, SourceError::UnboundTopic("orders".to_owned()));
    }

    #[test]
    fn resolve_source_two_active_is_ambiguous() {
        let first = source_model("shop-a", &["shared"], true);
        let second = source_model("shop-b", &["shared"], true);
        let index = index_of(&[first, second.clone()]);

        let error = index.resolve_source(&record("shared", None)).unwrap_err();
        assert_eq!(
            error,
            SourceError::AmbiguousTopic {
                topic: "shared".to_owned(),
                names: "shop-a, shop-b".to_owned(),
            }
        );
        assert_eq!(error.reason(), "ambiguous_event_source");
        assert_eq!(
            error.to_string(),
            "event sources shop-a, shop-b all read topic \"shared\"; set the event-source header"
        );

        // The header settles the ambiguity.
        let resolved = index
            .resolve_source(&record("shared", Some("shop-b")))
            .unwrap();
        assert_eq!(resolved.id, second.id);
    }

    #[test]
    fn resolve_source_prefers_the_active_one() {
        let retired = source_model("shop-old", &["shared"], false);
        let current = source_model("shop-new", &["shared"], true);
        let index = index_of(&[retired, current.clone()]);

        let resolved = index.resolve_source(&record("shared", None)).unwrap();
        assert_eq!(resolved.id, current.id);
        assert!(resolved.is_active);
    }

    #[test]
    fn resolve_source_returns_inactive_source() {
        // The caller skips records of an inactive source instead of
        // dead-lettering them, so the source must be found.
        let paused = source_model("paused", &["paused-topic"], false);
        let index = index_of(std::slice::from_ref(&paused));

        let resolved = index.resolve_source(&record("paused-topic", None)).unwrap();
        assert_eq!(resolved.id, paused.id);
        assert!(!resolved.is_active);

        let resolved = index
            .resolve_source(&record("other-topic", Some("paused")))
            .unwrap();
        assert_eq!(resolved.id, paused.id);
        assert!(!resolved.is_active);
    }

    #[test]
    fn resolve_source_two_inactive_returns_one() {
        let first = source_model("old-a", &["shared"], false);
        let second = source_model("old-b", &["shared"], false);
        let index = index_of(&[first.clone(), second.clone()]);

        let resolved = index.resolve_source(&record("shared", None)).unwrap();
        assert!(!resolved.is_active);
        assert!(resolved.id == first.id || resolved.id == second.id);
    }

    // A configuration may list a topic twice; it still names one source.
    #[test]
    fn resolve_source_duplicate_topic_in_one_source() {
        let orders = source_model("orders", &["orders", "orders"], true);
        let index = index_of(std::slice::from_ref(&orders));

        let resolved = index.resolve_source(&record("orders", None));
        assert_eq!(resolved.map(|source| source.id), Ok(orders.id));
    }

    #[test]
    fn topics_of_all_sources_once() {
        let orders = source_model("orders", &["orders", "orders-eu"], true);
        let payments = source_model("payments", &["payments", "orders"], true);
        let paused = source_model("paused", &["paused-topic", "orders-eu"], false);
        let index = index_of(&[orders, payments, paused]);

        let topics: Vec<String> = index.topics().into_iter().collect();
        assert_eq!(topics, ["orders", "orders-eu", "paused-topic", "payments"]);
    }

    #[test]
    fn topics_include_inactive_sources() {
        let paused = source_model("paused", &["paused-topic"], false);
        let index = index_of(&[paused]);
        let topics: Vec<String> = index.topics().into_iter().collect();
        assert_eq!(topics, ["paused-topic"]);
    }

    #[test]
    fn resolve_source_rejects_non_utf8_header() {
        let orders = source_model("orders", &["orders"], true);
        let index = index_of(&[orders]);
        let mut record = record("orders", None);
        record
            .headers
            .push((EVENT_SOURCE_HEADER.to_owned(), Some(vec![0xff, 0xfe])));
        assert!(matches!(
            index.resolve_source(&record),
            Err(SourceError::UnknownHeader(_))
        ));
    }

    #[test]
    fn matching_only_active_triggers_of_source() {
        let orders = source_model("orders", &["orders"], true);
        let payments = source_model("payments", &["payments"], true);
        let run = action_model("run-pipeline");
        let filter = json!({ "type": ["created"] });
        let triggers = [
            trigger_model("orders-created", &orders, &run, filter.clone(), true),
            trigger_model(
                "orders-any",
                &orders,
                &run,
                json!({ "type": [{ "exists": true }] }),
                true,
            ),
            trigger_model("orders-paused", &orders, &run, filter.clone(), false),
            trigger_model("payments-created", &payments, &run, filter, true),
        ];
        let index = TriggerIndex::build(&[orders.clone(), payments.clone()], &[run], &triggers);
        assert_eq!(index.trigger_count(), 3);

        let created = json!({ "type": "created" });
        assert_eq!(
            matching_names(&index, orders.id, &created),
            ["orders-any", "orders-created"]
        );
        assert_eq!(
            matching_names(&index, payments.id, &created),
            ["payments-created"]
        );

        let deleted = json!({ "type": "deleted" });
        assert_eq!(matching_names(&index, orders.id, &deleted), ["orders-any"]);
        assert!(matching_names(&index, payments.id, &deleted).is_empty());
        assert!(matching_names(&index, Uuid::new_v4(), &created).is_empty());
    }

    #[test]
    fn matching_carries_trigger_and_action() {
        let orders = source_model("orders", &["orders"], true);
        let run = action_model("run-pipeline");
        let notify = action_model("notify");
        let trigger = trigger_model(
            "orders-created",
            &orders,
            &notify,
            json!({ "type": "created" }),
            true,
        );
        let index = TriggerIndex::build(
            std::slice::from_ref(&orders),
            &[run, notify.clone()],
            std::slice::from_ref(&trigger),
        );

        let found = index.matching(orders.id, &json!({ "type": "created" }));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].trigger.id, trigger.id);
        assert_eq!(found[0].trigger.name, trigger.name);
        assert_eq!(
            found[0].trigger.event_filter,
            Value::Null,
            "the index keeps the compiled pattern, not the filter's JSON"
        );
        assert_eq!(*found[0].action, notify);
    }

    #[test]
    fn triggers_of_inactive_source_stay_indexed() {
        // The pipeline skips records of inactive sources before matching,
        // so the index keeps their triggers.
        let paused = source_model("paused", &["paused-topic"], false);
        let run = action_model("run-pipeline");
        let trigger = trigger_model(
            "paused-any",
            &paused,
            &run,
            json!({ "type": "created" }),
            true,
        );
        let index = TriggerIndex::build(std::slice::from_ref(&paused), &[run], &[trigger]);

        assert_eq!(index.trigger_count(), 1);
        assert_eq!(
            matching_names(&index, paused.id, &json!({ "type": "created" })),
            ["paused-any"]
        );
    }

    #[test]
    fn invalid_rows_are_left_out() {
        let orders = source_model("orders", &["orders"], true);
        let mut broken_source = source_model("broken", &["broken-topic"], true);
        broken_source.configuration = json!({ "topics": ["not a topic!"] });
        let mut unknown_flavor = source_model("mystery", &["mystery-topic"], true);
        unknown_flavor.flavor = "xml".to_owned();
        let run = action_model("run-pipeline");
        let deleted_action = action_model("deleted");

        let triggers = [
            trigger_model("valid", &orders, &run, json!({ "type": "created" }), true),
            trigger_model("empty-filter", &orders, &run, json!({}), true),
            trigger_model(
                "bad-operator",
                &orders,
                &run,
                json!({ "type": [{ "prefx": "c" }] }),
                true,
            ),
            trigger_model("not-an-object", &orders, &run, json!("created"), true),
            trigger_model(
                "dangling-action",
                &orders,
                &deleted_action,
                json!({ "type": "created" }),
                true,
            ),
            trigger_model(
                "broken-source",
                &broken_source,
                &run,
                json!({ "type": "created" }),
                true,
            ),
            trigger_model(
                "dangling-source",
                &source_model("gone", &[], true),
                &run,
                json!({ "type": "created" }),
                true,
            ),
        ];
        let index = TriggerIndex::build(
            &[orders.clone(), broken_source.clone(), unknown_flavor],
            &[run],
            &triggers,
        );

        assert_eq!(index.trigger_count(), 1);
        assert_eq!(
            matching_names(&index, orders.id, &json!({ "type": "created" })),
            ["valid"]
        );
        assert!(matching_names(&index, broken_source.id, &json!({ "type": "created" })).is_empty());

        // Sources with an invalid configuration or flavor are left out too.
        let topics: Vec<String> = index.topics().into_iter().collect();
        assert_eq!(topics, ["orders"]);
        assert_eq!(
            index
                .resolve_source(&record("broken-topic", None))
                .unwrap_err(),
            SourceError::UnboundTopic("broken-topic".to_owned())
        );
        assert_eq!(
            index
                .resolve_source(&record("orders", Some("mystery")))
                .unwrap_err(),
            SourceError::UnknownHeader("mystery".to_owned())
        );
    }

    #[test]
    fn matching_uses_index_keys_and_scan() {
        let github = source_model("github", &["github-events"], true);
        let run = action_model("run-pipeline");
        let mut triggers: Vec<trigger::Model> = (0..50)
            .map(|n| {
                trigger_model(
                    &format!("repo-{n:02}"),
                    &github,
                    &run,
                    json!({ "repository": { "full_name": format!("o/r-{n}") }, "ref": ["refs/heads/main"] }),
                    true,
                )
            })
            .collect();
        triggers.push(trigger_model(
            "tags",
            &github,
            &run,
            json!({ "ref": [{ "prefix": "refs/tags/" }] }),
            true,
        ));
        let index = TriggerIndex::build(std::slice::from_ref(&github), &[run], &triggers);

        let stats = index.engine_stats(github.id);
        assert_eq!(stats.entries, 51);
        assert_eq!(stats.scanned, 1);
        assert_eq!(stats.key_paths, [("repository.full_name".to_owned(), 50)]);

        let push = json!({ "repository": { "full_name": "o/r-7" }, "ref": "refs/heads/main" });
        assert_eq!(matching_names(&index, github.id, &push), ["repo-07"]);
        let tag = json!({ "repository": { "full_name": "o/r-7" }, "ref": "refs/tags/v1" });
        assert_eq!(matching_names(&index, github.id, &tag), ["tags"]);
        let other = json!({ "repository": { "full_name": "o/x" }, "ref": "refs/heads/main" });
        assert!(matching_names(&index, github.id, &other).is_empty());
    }

    #[test]
    fn with_trigger_adds_replaces_and_removes() {
        let orders = source_model("orders", &["orders"], true);
        let payments = source_model("payments", &["payments"], true);
        let run = action_model("run-pipeline");
        let created = trigger_model("created", &orders, &run, json!({ "type": "created" }), true);
        let index = TriggerIndex::build(
            &[orders.clone(), payments.clone()],
            std::slice::from_ref(&run),
            std::slice::from_ref(&created),
        );

        // Add a trigger.
        let deleted = trigger_model("deleted", &orders, &run, json!({ "type": "deleted" }), true);
        let added = index.with_trigger(&deleted).unwrap();
        assert_eq!(added.trigger_count(), 2);
        assert_eq!(
            matching_names(&added, orders.id, &json!({ "type": "deleted" })),
            ["deleted"]
        );
        // The original index is unchanged.
        assert_eq!(index.trigger_count(), 1);
        assert!(matching_names(&index, orders.id, &json!({ "type": "deleted" })).is_empty());

        // Replace its filter: the old filter no longer matches.
        let mut updated = deleted.clone();
        updated.event_filter = json!({ "type": "archived" });
        let replaced = added.with_trigger(&updated).unwrap();
        assert_eq!(replaced.trigger_count(), 2);
        assert!(matching_names(&replaced, orders.id, &json!({ "type": "deleted" })).is_empty());
        assert_eq!(
            matching_names(&replaced, orders.id, &json!({ "type": "archived" })),
            ["deleted"]
        );

        // Move it to another source.
        let mut moved = updated.clone();
        moved.event_source_id = payments.id;
        let moved_index = replaced.with_trigger(&moved).unwrap();
        assert_eq!(moved_index.trigger_count(), 2);
        assert!(matching_names(&moved_index, orders.id, &json!({ "type": "archived" })).is_empty());
        assert_eq!(
            matching_names(&moved_index, payments.id, &json!({ "type": "archived" })),
            ["deleted"]
        );

        // Deactivate it, then remove the other one.
        let mut inactive = moved.clone();
        inactive.is_active = false;
        let deactivated = moved_index.with_trigger(&inactive).unwrap();
        assert_eq!(deactivated.trigger_count(), 1);
        assert!(
            matching_names(&deactivated, payments.id, &json!({ "type": "archived" })).is_empty()
        );
        let empty = deactivated.without_trigger(created.id);
        assert_eq!(empty.trigger_count(), 0);
        assert!(matching_names(&empty, orders.id, &json!({ "type": "created" })).is_empty());

        // Removing an unknown trigger changes nothing.
        assert_eq!(index.without_trigger(Uuid::new_v4()).trigger_count(), 1);
    }

    #[test]
    fn with_trigger_keeps_place_of_replaced_trigger() {
        let orders = source_model("orders", &["orders"], true);
        let run = action_model("run-pipeline");
        let triggers = [
            trigger_model("a", &orders, &run, json!({ "type": "x" }), true),
            trigger_model("b", &orders, &run, json!({ "type": "x" }), true),
            trigger_model("c", &orders, &run, json!({ "type": "x" }), true),
        ];
        let index = TriggerIndex::build(std::slice::from_ref(&orders), &[run], &triggers);
        let mut updated = triggers[1].clone();
        updated.event_filter = json!({ "type": ["x", "y"] });
        let replaced = index.with_trigger(&updated).unwrap();
        let names: Vec<&str> = replaced
            .matching(orders.id, &json!({ "type": "x" }))
            .iter()
            .map(|compiled| compiled.trigger.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn with_trigger_rejects_unknown_references_and_bad_filters() {
        let orders = source_model("orders", &["orders"], true);
        let run = action_model("run-pipeline");
        let index = TriggerIndex::build(
            std::slice::from_ref(&orders),
            std::slice::from_ref(&run),
            &[],
        );

        let unknown_action = trigger_model(
            "t",
            &orders,
            &action_model("gone"),
            json!({ "a": "x" }),
            true,
        );
        assert!(matches!(
            index.with_trigger(&unknown_action),
            Err(TriggerRejected::UnknownAction { .. })
        ));
        let unknown_source = trigger_model(
            "t",
            &source_model("gone", &[], true),
            &run,
            json!({ "a": "x" }),
            true,
        );
        assert!(matches!(
            index.with_trigger(&unknown_source),
            Err(TriggerRejected::UnknownEventSource { .. })
        ));
        let bad_filter = trigger_model("t", &orders, &run, json!({ "a": [] }), true);
        let error = index.with_trigger(&bad_filter).unwrap_err();
        assert_eq!(
            error.to_string(),
            "trigger t: invalid event filter: at $.a: array of alternatives is empty; \
             list at least one value or operator"
        );
    }

    #[test]
    fn trigger_changes_equal_a_fresh_build() {
        let orders = source_model("orders", &["orders"], true);
        let payments = source_model("payments", &["payments"], true);
        let run = action_model("run-pipeline");
        let sources = [orders.clone(), payments.clone()];
        let actions = [run.clone()];
        let created = trigger_model("created", &orders, &run, json!({ "type": "created" }), true);
        let paid = trigger_model("paid", &payments, &run, json!({ "type": "paid" }), true);
        let mut stopped = trigger_model("stopped", &orders, &run, json!({ "type": "x" }), false);
        let before = [created.clone(), paid.clone(), stopped.clone()];
        let index = TriggerIndex::build(&sources, &actions, &before);

        // A new trigger, a changed filter, a move to another source, an
        // activation and a deactivation, with two rows for one trigger.
        let added = trigger_model("added", &payments, &run, json!({ "type": "paid" }), true);
        let mut refiltered = created.clone();
        refiltered.event_filter = json!({ "type": "refunded" });
        let mut moved = refiltered.clone();
        moved.event_source_id = payments.id;
        stopped.is_active = true;
        let mut deactivated = paid.clone();
        deactivated.is_active = false;
        let mut broken = trigger_model("broken", &orders, &run, json!({ "type": "x" }), true);
        let changes = [
            added.clone(),
            refiltered,
            moved.clone(),
            stopped.clone(),
            deactivated.clone(),
        ];
        let updated = index.with_trigger_changes(&changes);
        let fresh = TriggerIndex::build(
            &sources,
            &actions,
            &[
                added.clone(),
                moved.clone(),
                stopped.clone(),
                deactivated.clone(),
            ],
        );

        assert_eq!(updated.trigger_count(), fresh.trigger_count());
        assert_eq!(updated.trigger_count(), 3);
        let documents = [
            (orders.id, json!({ "type": "created" })),
            (orders.id, json!({ "type": "x" })),
            (payments.id, json!({ "type": "paid" })),
            (payments.id, json!({ "type": "refunded" })),
        ];
        for (source_id, document) in &documents {
            assert_eq!(
                matching_names(&updated, *source_id, document),
                matching_names(&fresh, *source_id, document),
                "{document}"
            );
        }
        assert_eq!(
            matching_names(&updated, payments.id, &json!({ "type": "refunded" })),
            ["created"]
        );

        // A row whose filter no longer compiles takes its trigger out.
        let with_broken = updated.with_trigger_changes(std::slice::from_ref(&broken));
        assert_eq!(with_broken.trigger_count(), 4);
        broken.event_filter = json!({ "type": [] });
        let without_broken = with_broken.with_trigger_changes(&[broken]);
        assert_eq!(without_broken.trigger_count(), 3);
        assert!(
            matching_names(&without_broken, orders.id, &json!({ "type": "x" }))
                .iter()
                .all(|name| name != "broken")
        );

        // The index it was derived from is unchanged.
        assert_eq!(index.trigger_count(), 2);
        assert_eq!(
            matching_names(&index, orders.id, &json!({ "type": "created" })),
            ["created"]
        );
    }

    #[test]
    fn explain_reports_each_trigger() {
        let orders = source_model("orders", &["orders"], true);
        let run = action_model("run-pipeline");
        let triggers = [
            trigger_model("created", &orders, &run, json!({ "type": "created" }), true),
            trigger_model(
                "big",
                &orders,
                &run,
                json!({ "amount": [{ "numeric": [">", 100] }] }),
                true,
            ),
            trigger_model("paused", &orders, &run, json!({ "type": "created" }), false),
        ];
        let index = TriggerIndex::build(std::slice::from_ref(&orders), &[run], &triggers);

        let document = json!({ "type": "created", "amount": 20 });
        let explanations = index.explain(orders.id, &document);
        assert_eq!(explanations.len(), 2);
        assert_eq!(explanations[0].trigger.trigger.name, "created");
        assert_eq!(explanations[0].result, Ok(()));
        assert_eq!(explanations[1].trigger.trigger.name, "big");
        let mismatch = explanations[1].result.as_ref().unwrap_err();
        assert_eq!(mismatch.path, "$.amount");
        assert_eq!(mismatch.actual, Some(json!(20)));

        assert!(index.explain(Uuid::new_v4(), &document).is_empty());
    }

    #[test]
    fn empty_index() {
        let index = TriggerIndex::build(&[], &[], &[]);
        assert_eq!(index.trigger_count(), 0);
        assert!(index.topics().is_empty());
        assert!(index.matching(Uuid::new_v4(), &json!({})).is_empty());
    }
}
