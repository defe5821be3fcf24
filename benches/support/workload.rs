//! The synthetic workload of the matching benchmarks, shared by
//! `benches/matching.rs` and `examples/matching_bench.rs`.
//!
//! Triggers: trigger K belongs to event source K mod 50 and has shape
//! K mod 8, with the repository `org/repo-K`, so every trigger names its
//! own repository. Events: each event goes to one of the 50 sources. A
//! matching event names the repository of trigger `s` or `s + 50` of its
//! source `s`, which exist with 100 triggers or more, and fits that
//! trigger's shape. A non-matching event names a repository drawn from
//! the 100,000 of its source's triggers at the largest size and misses
//! that trigger's shape by one field ([`Misses::NearMiss`]), so with
//! 100,000 triggers each such event finds one candidate that fails
//! verification. With [`Misses::UnknownRepository`], non-matching events
//! name repositories that no trigger has instead.

// Each binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chrono::DateTime;
use event_hub::event::{self, EventSource, InboundRecord};
use event_hub::matching::TriggerIndex;
use event_hub::store::entity::{action, event_source, trigger};
use serde_json::{json, Value};
use uuid::Uuid;

/// Number of event sources the triggers are spread over.
pub const SOURCES: usize = 50;

/// Largest trigger count of the benchmarks; non-matching events draw
/// their repository from this many triggers.
pub const MAX_TRIGGERS: usize = 100_000;

/// Number of trigger shapes, assigned round-robin.
const SHAPES: usize = 8;

/// Approximate size of a synthetic event in bytes.
const SYNTHETIC_EVENT_BYTES: usize = 1024;

/// The kind of events and triggers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// GitHub webhook payloads from `tests/fixtures/github-webhooks`.
    Github,
    /// Synthetic JSON objects of about 1 KB.
    Synthetic,
}

impl Kind {
    /// Both kinds, in table order.
    pub const ALL: [Kind; 2] = [Kind::Github, Kind::Synthetic];

    /// Returns the label used in tables and benchmark names.
    pub fn label(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Synthetic => "synthetic",
        }
    }

    fn tag(self) -> u128 {
        match self {
            Self::Github => 1,
            Self::Synthetic => 2,
        }
    }

    fn flavor(self) -> (&'static str, &'static str) {
        match self {
            Self::Github => ("github", "webhook"),
            Self::Synthetic => ("json", "kafka"),
        }
    }
}

/// The stored rows that a trigger index is built from.
pub struct Workload {
    /// The kind of triggers.
    pub kind: Kind,
    /// The 50 event sources.
    pub sources: Vec<event_source::Model>,
    /// The one action that every trigger requests.
    pub actions: Vec<action::Model>,
    /// The triggers.
    pub triggers: Vec<trigger::Model>,
}

impl Workload {
    /// Creates `trigger_count` triggers of `kind` over the 50 sources.
    pub fn new(kind: Kind, trigger_count: usize) -> Self {
        let sources = sources(kind);
        let action = action::Model {
            id: Uuid::from_u128(kind.tag() << 64),
            name: "run-pipeline".to_owned(),
            flavor: "builtin".to_owned(),
            plugin_subtype: "pipeline_run".to_owned(),
            description: None,
            configuration: json!({}),
            service_account: "sa-bench".to_owned(),
            auth_window_minutes: 60,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        };
        let triggers = (0..trigger_count)
            .map(|number| trigger_model(kind, &sources, action.id, number))
            .collect();
        Self {
            kind,
            sources,
            actions: vec![action],
            triggers,
        }
    }

    /// Returns trigger number `number`, which need not be in the workload.
    pub fn trigger(&self, number: usize) -> trigger::Model {
        trigger_model(self.kind, &self.sources, self.actions[0].id, number)
    }
}

/// Returns the 50 event sources of `kind`, with deterministic ids so that
/// events fit every workload of that kind.
fn sources(kind: Kind) -> Vec<event_source::Model> {
    let (flavor, subtype) = kind.flavor();
    (0..SOURCES)
        .map(|number| event_source::Model {
            id: source_id(kind, number),
            name: format!("{}-{number:02}", kind.label()),
            flavor: flavor.to_owned(),
            plugin_subtype: subtype.to_owned(),
            description: None,
            configuration: json!({ "topics": [topic(kind, number)] }),
            is_active: true,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        })
        .collect()
}

fn source_id(kind: Kind, number: usize) -> Uuid {
    Uuid::from_u128((kind.tag() << 64) | (number as u128 + 1))
}

fn topic(kind: Kind, number: usize) -> String {
    format!("bench-{}-{number:02}", kind.label())
}

fn trigger_model(
    kind: Kind,
    sources: &[event_source::Model],
    action_id: Uuid,
    number: usize,
) -> trigger::Model {
    trigger::Model {
        id: Uuid::from_u128((kind.tag() << 96) | number as u128),
        name: format!("{}-trigger-{number:06}", kind.label()),
        description: None,
        event_source_id: sources[number % SOURCES].id,
        action_id,
        event_filter: filter(kind, number),
        is_active: true,
        created_at: DateTime::UNIX_EPOCH,
        updated_at: DateTime::UNIX_EPOCH,
    }
}

fn repository(number: usize) -> String {
    format!("org/repo-{number}")
}

/// Returns the filter of trigger `number`: shape `number mod 8`, numbered
/// from 1 as in the benchmark's description.
pub fn filter(kind: Kind, number: usize) -> Value {
    let repo = json!([repository(number)]);
    match (kind, number % SHAPES + 1) {
        (Kind::Github, 1) => {
            json!({"repository": {"full_name": repo}, "ref": ["refs/heads/main", "refs/heads/master"]})
        }
        (Kind::Github, 2) => {
            json!({"repository": {"full_name": repo}, "ref": [{"prefix": "refs/tags/"}]})
        }
        (Kind::Github, 3) => {
            json!({"repository": {"full_name": repo}, "action": ["opened", "synchronize", "reopened"], "pull_request": {"base": {"ref": ["main", "master"]}}})
        }
        (Kind::Github, 4) => {
            json!({"repository": {"full_name": repo}, "action": [{"anything-but": ["deleted", "closed"]}]})
        }
        (Kind::Github, 5) => {
            json!({"repository": {"full_name": repo}, "action": ["published", "released", "created"], "release": {"tag_name": [{"exists": true}]}})
        }
        (Kind::Github, 6) => {
            json!({"repository": {"full_name": repo}, "installation": {"id": [{"numeric": [">", 0]}]}})
        }
        (Kind::Github, 7) => {
            json!({"repository": {"full_name": repo}, "workflow_run": {"conclusion": ["failure", "success"], "head_branch": ["main", "master"]}})
        }
        (Kind::Github, _) => {
            json!({"repository": {"full_name": repo}, "action": ["created"], "comment": {"body": [{"prefix": "/deploy"}]}})
        }
        (Kind::Synthetic, 1) => json!({"repo": repo, "branch": ["main"]}),
        (Kind::Synthetic, 2) => json!({"repo": repo, "branch": [{"prefix": "release/"}]}),
        (Kind::Synthetic, 3) => {
            json!({"repo": repo, "type": ["pull_request"], "branch": ["main", "dev"]})
        }
        (Kind::Synthetic, 4) => {
            json!({"repo": repo, "type": [{"anything-but": ["delete", "issue_comment"]}]})
        }
        (Kind::Synthetic, 5) => {
            json!({"repo": repo, "detail": {"pr": {"number": [{"exists": true}]}}})
        }
        (Kind::Synthetic, 6) => json!({"repo": repo, "count": [{"numeric": [">=", 1, "<=", 5]}]}),
        (Kind::Synthetic, 7) => json!({"repo": repo, "source": ["src-3"], "type": ["push"]}),
        (Kind::Synthetic, _) => {
            json!({"repo": repo, "type": ["workflow_run"], "detail": {"conclusion": ["failure"]}})
        }
    }
}

/// The form of the events that match no trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misses {
    /// The repository of an existing trigger (at the largest size), with
    /// one field that the trigger's shape rejects.
    NearMiss,
    /// A repository that no trigger names.
    UnknownRepository,
    /// The repository of a trigger that exists at every size (trigger `s`
    /// or `s + 50` of source `s`), with one field that its shape rejects.
    /// Every index size then tests the same candidate for the same event.
    SharedNearMiss,
}

/// One event of a benchmark run.
pub struct BenchEvent {
    /// The event source the event belongs to.
    pub source_id: Uuid,
    /// The Kafka record, for decoding.
    pub record: InboundRecord,
    /// The decoded document, for matching alone.
    pub document: Value,
    /// Whether the event matches a trigger when that trigger exists.
    pub matches: bool,
}

/// Returns `count` events of `kind` of which `match_percent` percent match
/// one trigger (of every workload with 100 triggers or more).
pub fn events(kind: Kind, match_percent: usize, misses: Misses, count: usize) -> Vec<BenchEvent> {
    let fixtures = match kind {
        Kind::Github => Some(GithubFixtures::load()),
        Kind::Synthetic => None,
    };
    let sources = sources(kind);
    let mut random = SplitMix64(0x5eed ^ match_percent as u64);

    (0..count)
        .map(|index| {
            let source = (random.next() % SOURCES as u64) as usize;
            // Evenly spread: event i matches when the running share of
            // matching events falls behind the requested percentage.
            let matches = (index + 1) * match_percent / 100 > index * match_percent / 100;
            let number = if matches {
                source + SOURCES * (index % 2)
            } else if misses == Misses::SharedNearMiss {
                source + SOURCES * (random.next() % 2) as usize
            } else {
                source + SOURCES * (random.next() % (MAX_TRIGGERS / SOURCES) as u64) as usize
            };
            let repository = match (matches, misses) {
                (false, Misses::UnknownRepository) => format!("org/unknown-{number}"),
                _ => repository(number),
            };
            let (github_event, payload) = match &fixtures {
                Some(fixtures) => fixtures.payload(number, &repository, matches),
                None => (None, synthetic_payload(number, &repository, matches, index)),
            };

            let mut headers = Vec::new();
            if let Some(github_event) = github_event {
                headers.push((
                    "x-github-event".to_owned(),
                    Some(github_event.as_bytes().to_vec()),
                ));
                headers.push((
                    "x-github-delivery".to_owned(),
                    Some(format!("bench-{index}").into_bytes()),
                ));
            }
            let record = InboundRecord {
                topic: topic(kind, source),
                partition: 0,
                offset: index as i64,
                key: None,
                payload: Some(payload),
                headers,
                timestamp_ms: None,
                headers_unreadable: false,
            };
            let event_source = match EventSource::from_model(&sources[source]) {
                Ok(event_source) => event_source,
                Err(error) => panic!("benchmark event source is invalid: {error}"),
            };
            let document = match event::decode(&event_source, &record) {
                Ok(decoded) => decoded.document,
                Err(error) => panic!("benchmark event {index} does not decode: {error}"),
            };
            BenchEvent {
                source_id: event_source.id,
                record,
                document,
                matches,
            }
        })
        .collect()
}

/// The GitHub payload used for each trigger shape, parsed once.
struct GithubFixtures {
    /// `(x-github-event, payload)` per shape, in shape order.
    by_shape: Vec<(&'static str, Value)>,
}

impl GithubFixtures {
    fn load() -> Self {
        let files = [
            ("push", "push/with-new-branch.payload.json"),
            ("push", "push/with-installation.payload.json"),
            ("pull_request", "pull_request/opened.payload.json"),
            ("issues", "issues/opened.payload.json"),
            ("release", "release/published.payload.json"),
            ("release", "release/created.with-installation.payload.json"),
            ("workflow_run", "workflow_run/completed.payload.json"),
            ("issue_comment", "issue_comment/created.payload.json"),
        ];
        let by_shape = files
            .iter()
            .map(|(github_event, file)| {
                let path = fixture_dir().join(file);
                let text = std::fs::read(&path)
                    .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
                let payload = serde_json::from_slice(&text)
                    .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()));
                (*github_event, payload)
            })
            .collect();
        Self { by_shape }
    }

    /// Returns the event name and body for the shape of trigger `number`,
    /// naming `repository`: one that fits the shape, or one that misses it
    /// by one field.
    fn payload(
        &self,
        number: usize,
        repository: &str,
        fits: bool,
    ) -> (Option<&'static str>, Vec<u8>) {
        let shape = number % SHAPES + 1;
        let (github_event, template) = &self.by_shape[shape - 1];
        let mut payload = template.clone();
        payload["repository"]["full_name"] = json!(repository);
        match (shape, fits) {
            (1, false) => payload["ref"] = json!("refs/heads/develop"),
            (2, false) => payload["ref"] = json!("refs/heads/feature"),
            (3, false) => payload["action"] = json!("closed"),
            (4, false) => payload["action"] = json!("closed"),
            (5, false) => payload["action"] = json!("edited"),
            (6, false) => payload["installation"]["id"] = json!(0),
            (7, false) => payload["workflow_run"]["conclusion"] = json!("cancelled"),
            (8, true) => payload["comment"]["body"] = json!("/deploy production"),
            (8, false) => payload["comment"]["body"] = json!("Looks good to me"),
            _ => {}
        }
        let bytes = serde_json::to_vec(&payload).unwrap_or_default();
        (Some(github_event), bytes)
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-webhooks")
}

/// Builds a synthetic event of about 1 KB for the shape of trigger
/// `number`, naming `repository`: one that fits the shape, or one that
/// misses it by one field.
fn synthetic_payload(number: usize, repository: &str, fits: bool, index: usize) -> Vec<u8> {
    let mut event = json!({
        "source": "src-1",
        "type": "push",
        "repo": repository,
        "branch": "feature/login",
        "count": 9,
        "time": "2026-12-04T21:46:19Z",
        "actor": {"login": format!("user-{}", index % 997), "id": 1000 + index, "type": "User", "site_admin": false},
        "detail": {"sha": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "conclusion": "success", "labels": ["ci", "backend"], "size": 42}
    });
    match (number % SHAPES + 1, fits) {
        (1, true) => event["branch"] = json!("main"),
        (1, false) => event["branch"] = json!("dev"),
        (2, true) => event["branch"] = json!("release/2.1"),
        (2, false) => event["branch"] = json!("main"),
        (3, true) => {
            event["type"] = json!("pull_request");
            event["branch"] = json!("dev");
        }
        (3, false) => event["branch"] = json!("dev"),
        (4, true) => event["type"] = json!("push"),
        (4, false) => event["type"] = json!("delete"),
        (5, true) => event["detail"]["pr"] = json!({"number": 12, "draft": false}),
        (6, true) => event["count"] = json!(3),
        (7, true) => event["source"] = json!("src-3"),
        (7, false) => event["source"] = json!("src-4"),
        (8, true) => {
            event["type"] = json!("workflow_run");
            event["detail"]["conclusion"] = json!("failure");
        }
        (8, false) => event["type"] = json!("workflow_run"),
        _ => {}
    }
    let length = event.to_string().len();
    let padding = SYNTHETIC_EVENT_BYTES.saturating_sub(length + 14);
    event["message"] = json!("lorem ipsum ".repeat(padding / 12 + 1)[..padding].to_owned());
    serde_json::to_vec(&event).unwrap_or_default()
}

/// A small deterministic random number generator (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Resolves, decodes and matches one record as the consumer does, and
/// returns the number of triggers matched.
pub fn decode_and_match(index: &TriggerIndex, event: &BenchEvent) -> usize {
    let Ok(source) = index.resolve_source(&event.record) else {
        return 0;
    };
    index
        .decode_and_match(source, &event.record)
        .map_or(0, |(_, triggers)| triggers.len())
}
