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
        assert_eq!(found[0].trigger, trigger);
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
    fn empty_index() {
        let index = TriggerIndex::build(&[], &[], &[]);
        assert_eq!(index.trigger_count(), 0);
        assert!(index.topics().is_empty());
        assert!(index.matching(Uuid::new_v4(), &json!({})).is_empty());
    }
}
