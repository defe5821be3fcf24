//! Decodes every GitHub webhook payload in the fixtures and checks
//! which of them the short GitHub filters match, decoded whole and decoded
//! with only the fields that matching reads.
//!
//! The fixtures are real webhook bodies, one folder per `x-github-event`
//! value, kept in `tests/fixtures/github-webhooks`.

use std::fs;
use std::path::{Path, PathBuf};

use event_hub::event::{self, EventSource, FieldSet, Flavor, InboundRecord};
use event_hub::matching::Pattern;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::Sha256;
use uuid::Uuid;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/github-webhooks"
);
const SECRET: &str = "fixture secret";

/// Branch pushes to `master` of Codertocat/Hello-World; the other push
/// fixtures of that repository push or delete the tag `simple-tag`.
const MASTER_PUSHES: [&str; 2] = [
    "push/with-new-branch.payload.json",
    "push/with-no-username-committer.payload.json",
];

const PULL_REQUESTS_OPENED: [&str; 3] = [
    "pull_request/opened.payload.json",
    "pull_request/opened.with-null-body.json",
    "pull_request/opened.with-organization.payload.json",
];

struct Fixture {
    /// Path relative to the fixtures folder, such as `push/payload.json`.
    name: String,
    github_event: String,
    body: Vec<u8>,
}

/// Lists every `.json` file one folder below the fixtures folder, sorted.
fn fixtures() -> Vec<Fixture> {
    let root = Path::new(FIXTURES);
    let mut paths: Vec<PathBuf> = Vec::new();
    for folder in fs::read_dir(root)
        .unwrap_or_else(|error| panic!("cannot read fixtures folder {}: {error}", root.display()))
    {
        let folder = folder.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        for file in fs::read_dir(&folder).unwrap() {
            let file = file.unwrap().path();
            if file
                .extension()
                .is_some_and(|extension| extension == "json")
            {
                paths.push(file);
            }
        }
    }
    paths.sort();

    paths
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(root).unwrap();
            let github_event = relative.parent().unwrap().to_str().unwrap().to_owned();
            Fixture {
                name: relative.to_str().unwrap().replace('\\', "/"),
                github_event,
                body: fs::read(&path).unwrap(),
            }
        })
        .collect()
}

fn github_source(secret: Option<&str>) -> EventSource {
    EventSource {
        id: Uuid::nil(),
        name: "github".to_owned(),
        flavor: Flavor::Github,
        subtype: "webhook".to_owned(),
        topics: vec!["github".to_owned()],
        secret: secret.map(SecretString::from),
        is_active: true,
    }
}

/// Builds the record a webhook relay would produce for the fixture, signed
/// with [`SECRET`].
fn record(fixture: &Fixture, offset: i64) -> InboundRecord {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&fixture.body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let header = |name: &str, value: &str| (name.to_owned(), Some(value.as_bytes().to_vec()));
    InboundRecord {
        topic: "github".to_owned(),
        partition: 0,
        offset,
        payload: Some(fixture.body.clone()),
        headers: vec![
            header("x-github-event", &fixture.github_event),
            header("x-github-delivery", &format!("delivery-{offset}")),
            header("x-hub-signature-256", &signature),
        ],
        ..InboundRecord::default()
    }
}

/// Returns the names of the fixtures whose decoded document matches
/// `filter`, after checking that the projected document gives the same
/// result.
fn matching_fixtures(filter: &Value) -> Vec<String> {
    let pattern = Pattern::compile(filter).unwrap();
    let source = github_source(Some(SECRET));
    let mut fields = FieldSet::for_flavor(Flavor::Github).clone();
    pattern.add_fields_to(&mut fields);
    fixtures()
        .iter()
        .enumerate()
        .filter(|(offset, fixture)| {
            let record = record(fixture, *offset as i64);
            let event = event::decode(&source, &record).unwrap();
            let projected = event::decode_for_matching(&source, &record, &fields).unwrap();
            let matches = pattern.matches(&event.document);
            assert_eq!(
                pattern.matches(&projected.event().document),
                matches,
                "{}: {filter}",
                fixture.name
            );
            matches
        })
        .map(|(_, fixture)| fixture.name.clone())
        .collect()
}

#[test]
fn every_fixture_decodes() {
    let fixtures = fixtures();
    assert!(
        fixtures.len() > 200,
        "expected the full fixture set in {FIXTURES}, found {} files",
        fixtures.len()
    );

    let signed = github_source(Some(SECRET));
    let unsigned = github_source(None);
    let mut failures = Vec::new();
    for (offset, fixture) in fixtures.iter().enumerate() {
        let record = record(fixture, offset as i64);
        for source in [&signed, &unsigned] {
            match event::decode(source, &record) {
                Ok(event) => {
                    assert_eq!(event.id, format!("delivery-{offset}"), "{}", fixture.name);
                    assert_eq!(
                        event.metadata["github_event"], fixture.github_event,
                        "{}",
                        fixture.name
                    );
                    assert_eq!(
                        event.document["event_type"], event.event_type,
                        "{}",
                        fixture.name
                    );
                }
                Err(error) => failures.push(format!("{}: {error}", fixture.name)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failed to decode:\n{}",
        failures.join("\n")
    );
}

/// Decoding for matching keeps the event's id, type and metadata, and
/// every filter below matches the projected document of each fixture
/// exactly when it matches the whole one.
#[test]
fn projected_decoding_agrees_on_every_fixture() {
    let filters = [
        json!({"repository": {"full_name": ["Codertocat/Hello-World"]}, "ref": ["refs/heads/main", "refs/heads/master"]}),
        json!({"ref": [{"prefix": "refs/tags/"}]}),
        json!({"action": ["opened", "synchronize", "reopened"], "pull_request": {"base": {"ref": ["main", "master"]}}}),
        json!({"action": [{"anything-but": ["deleted", "closed"]}]}),
        json!({"action": ["published", "released", "created"], "release": {"tag_name": [{"exists": true}]}}),
        json!({"installation": {"id": [{"numeric": [">", 0]}]}}),
        json!({"workflow_run": {"conclusion": ["failure", "success"], "head_branch": ["main", "master"]}}),
        json!({"action": ["created"], "comment": {"body": [{"prefix": "/deploy"}]}}),
        json!({"commits": {"author": {"username": ["Codertocat"]}}}),
        json!({"pull_request": {"labels": {"name": [{"wildcard": "*bug*"}]}}}),
        json!({"sender": [{"exists": true}], "organization": [{"exists": false}]}),
        json!({"$or": [{"branch": ["master"]}, {"tag": [{"exists": true}]}]}),
        json!({"repository": {"owner": {"login": [{"equals-ignore-case": "codertocat"}]}}}),
    ];
    let patterns: Vec<Pattern> = filters
        .iter()
        .map(|filter| Pattern::compile(filter).unwrap())
        .collect();
    let mut fields = FieldSet::for_flavor(Flavor::Github).clone();
    for pattern in &patterns {
        pattern.add_fields_to(&mut fields);
    }
    let flavor_only = FieldSet::for_flavor(Flavor::Github);

    let source = github_source(None);
    let mut matched = 0;
    let (mut projected_bytes, mut whole_bytes) = (0, 0);
    for (offset, fixture) in fixtures().iter().enumerate() {
        let record = record(fixture, offset as i64);
        let whole = event::decode(&source, &record).unwrap();
        for fields in [&fields, flavor_only] {
            let projected = event::decode_for_matching(&source, &record, fields)
                .unwrap()
                .into_event();
            assert_eq!(projected.id, whole.id, "{}", fixture.name);
            assert_eq!(projected.event_type, whole.event_type, "{}", fixture.name);
            assert_eq!(projected.metadata, whole.metadata, "{}", fixture.name);
        }
        let decoded = event::decode_for_matching(&source, &record, &fields).unwrap();
        assert_eq!(
            decoded.clone().into_whole(&record).unwrap(),
            whole,
            "{}: the whole event after matching",
            fixture.name
        );
        let projected = decoded.into_event();
        let (projected_size, whole_size) = (
            projected.document.to_string().len(),
            whole.document.to_string().len(),
        );
        assert!(projected_size <= whole_size, "{}", fixture.name);
        projected_bytes += projected_size;
        whole_bytes += whole_size;
        for (pattern, filter) in patterns.iter().zip(&filters) {
            let matches = pattern.matches(&whole.document);
            assert_eq!(
                pattern.matches(&projected.document),
                matches,
                "{}: {filter}",
                fixture.name
            );
            matched += usize::from(matches);
        }
    }
    assert!(matched > 100, "the filters match {matched} times in all");
    assert!(
        projected_bytes * 4 < whole_bytes,
        "projected documents take {projected_bytes} bytes as JSON, whole ones {whole_bytes}"
    );
}

#[test]
fn tampered_fixture_is_rejected() {
    let fixture = fixtures()
        .into_iter()
        .find(|fixture| fixture.name == "push/payload.json")
        .unwrap();
    let mut record = record(&fixture, 0);
    if let Some(payload) = record.payload.as_mut() {
        payload.push(b' ');
    }
    let error = event::decode(&github_source(Some(SECRET)), &record).unwrap_err();
    assert_eq!(error.reason(), "invalid_signature");
}

#[test]
fn master_pushes_are_the_expected_fixtures() {
    // Cross-check the expected list against the raw payloads.
    let from_payloads: Vec<String> = fixtures()
        .into_iter()
        .filter(|fixture| {
            let payload: Value = serde_json::from_slice(&fixture.body).unwrap();
            fixture.github_event == "push"
                && payload["ref"] == "refs/heads/master"
                && payload["repository"]["full_name"] == "Codertocat/Hello-World"
        })
        .map(|fixture| fixture.name)
        .collect();
    assert_eq!(from_payloads, MASTER_PUSHES);
}

#[test]
fn short_filter_matches_master_pushes() {
    let matched = matching_fixtures(&json!({
        "repo": "Codertocat/Hello-World",
        "branch": "master",
        "event_type": "push"
    }));
    assert_eq!(matched, MASTER_PUSHES);
}

#[test]
fn short_filter_matches_tag_pushes() {
    let matched = matching_fixtures(&json!({
        "repo": "Codertocat/Hello-World",
        "tag": "simple-tag",
        "event_type": "tag"
    }));
    assert_eq!(
        matched,
        [
            "push/1.payload.json",
            "push/payload.json",
            "push/with-installation.payload.json",
            "push/with-organization.payload.json",
        ]
    );
}

#[test]
fn opened_pull_request_filter() {
    let matched = matching_fixtures(&json!({"event_type": "pull_request", "action": "opened"}));
    assert_eq!(matched, PULL_REQUESTS_OPENED);
}

#[test]
fn raw_payload_fields_still_match() {
    let matched = matching_fixtures(&json!({
        "repository": {"full_name": "Codertocat/Hello-World"},
        "ref": [{"prefix": "refs/heads/"}]
    }));
    // Code scanning alerts carry a `ref` field too, which is why the short
    // filter also names the event type.
    assert_eq!(
        matched,
        [
            "code_scanning_alert/created.payload.json",
            "code_scanning_alert/reopened.payload.json",
            "code_scanning_alert/reopened.with-organization.payload.json",
            "push/with-new-branch.payload.json",
            "push/with-no-username-committer.payload.json",
        ]
    );

    let pushes_only = matching_fixtures(&json!({
        "repository": {"full_name": "Codertocat/Hello-World"},
        "ref": [{"prefix": "refs/heads/"}],
        "event_type": "push"
    }));
    assert_eq!(pushes_only, MASTER_PUSHES);
}
