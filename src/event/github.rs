//! GitHub webhook deliveries (`github`/`webhook` sources).
//!
//! The record value is the raw webhook body and the headers are the ones
//! GitHub sends with it: `x-github-event` (required), `x-github-delivery`
//! (the event id when present) and `x-hub-signature-256` (required when the
//! source has a secret).
//!
//! The decoder derives a few fields from the payload so that one short
//! filter works for pushes, tags and pull requests alike:
//!
//! | field | derived from |
//! |---|---|
//! | `event_type` | `x-github-event`, except that a push of `refs/tags/...` is `tag` |
//! | `repo` | `repository.full_name` |
//! | `branch` | push: `ref` without `refs/heads/`; `pull_request*`: `pull_request.base.ref` (the target branch); `create`/`delete` of a branch: `ref`; `workflow_run`, `workflow_job`, `check_suite`: their `head_branch`; `check_run`: `check_run.check_suite.head_branch` |
//! | `tag` | push: `ref` without `refs/tags/`; `create`/`delete` of a tag: `ref`; `release`: `release.tag_name` |
//! | `action` | `action` |
//! | `sha` | push: `after`; `pull_request*`: `pull_request.head.sha` |
//! | `sender` | `sender.login` |
//!
//! The event document is the payload with `event_type`, `repo`, `branch` and
//! `tag` added at the top level, so `{"repo": "Codertocat/Hello-World",
//! "branch": "master", "event_type": "push"}` is a plain pattern over it.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::json::json_kind;
use super::{parse_fields, DecodeError, Event, EventSource, FieldSet, InboundRecord};

/// Header naming the webhook event, such as `push` or `pull_request`.
pub const EVENT_HEADER: &str = "x-github-event";
/// Header carrying the unique id of a delivery.
pub const DELIVERY_HEADER: &str = "x-github-delivery";
/// Header carrying `sha256=` and the hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

const SIGNATURE_PREFIX: &[u8] = b"sha256=";

/// Events whose payload has a `pull_request` object with `base` and `head`.
const PULL_REQUEST_EVENTS: [&str; 4] = [
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
];

/// The fields that [`decode`] reads, which a projected document must keep:
/// the inputs of the derived fields, and the top-level names they are
/// stored under, which a payload may carry itself. Keep it in step with
/// `DerivedFields::from_payload` and `DerivedFields::insert_into`.
pub(super) const DECODER_FIELDS: &[&[&str]] = &[
    &["action"],
    &["after"],
    &["branch"],
    &["check_run", "check_suite", "head_branch"],
    &["check_suite", "head_branch"],
    &["event_type"],
    &["pull_request", "base", "ref"],
    &["pull_request", "head", "sha"],
    &["ref"],
    &["ref_type"],
    &["release", "tag_name"],
    &["repo"],
    &["repository", "full_name"],
    &["sender", "login"],
    &["tag"],
    &["workflow_job", "head_branch"],
    &["workflow_run", "head_branch"],
];

/// Decodes a GitHub webhook delivery.
///
/// When the source has a secret, the signature is verified before the body
/// is parsed: a missing `x-hub-signature-256` is
/// [`DecodeError::MissingSignature`], and a malformed or wrong one is
/// [`DecodeError::InvalidSignature`]. The body must then be a JSON object
/// ([`DecodeError::EmptyValue`], [`DecodeError::InvalidJson`] or
/// [`DecodeError::InvalidEvent`] otherwise), and `x-github-event` must be
/// present ([`DecodeError::MissingHeader`]).
pub fn decode(source: &EventSource, record: &InboundRecord) -> Result<Event, DecodeError> {
    decode_fields(source, record, None)
}

/// Decodes a delivery like [`decode`], keeping only `fields` of the payload
/// when given (see [`super::projection`]).
pub(super) fn decode_fields(
    source: &EventSource,
    record: &InboundRecord,
    fields: Option<&FieldSet>,
) -> Result<Event, DecodeError> {
    if let Some(secret) = &source.secret {
        verify_signature(secret, record)?;
    }

    let mut payload = match parse_fields(record, fields)? {
        Value::Object(payload) => payload,
        other => {
            return Err(DecodeError::InvalidEvent(format!(
                "GitHub webhook body must be a JSON object, found {}",
                json_kind(&other)
            )))
        }
    };
    let github_event = record
        .header_str(EVENT_HEADER)
        .filter(|value| !value.is_empty())
        .ok_or(DecodeError::MissingHeader(EVENT_HEADER))?;
    let delivery = record
        .header_str(DELIVERY_HEADER)
        .filter(|value| !value.is_empty());

    let fields = DerivedFields::from_payload(github_event, &payload);
    let metadata = fields.metadata(github_event, delivery);
    let event_type = fields.event_type.clone();
    fields.insert_into(&mut payload);

    Ok(Event {
        id: delivery.map_or_else(|| record.position(), str::to_owned),
        event_type,
        document: Value::Object(payload),
        metadata,
    })
}

/// Checks `x-hub-signature-256` against the HMAC-SHA256 of the raw value.
fn verify_signature(secret: &SecretString, record: &InboundRecord) -> Result<(), DecodeError> {
    verify_body_signature(
        secret,
        record.header(SIGNATURE_HEADER),
        record.payload.as_deref().unwrap_or_default(),
    )
}

/// Checks an `x-hub-signature-256` value (`sha256=` and hex digits) against
/// the HMAC-SHA256 of `body` keyed with `secret`, in constant time.
///
/// Fails with [`DecodeError::MissingSignature`] when `signature` is `None`
/// and with [`DecodeError::InvalidSignature`] when it is malformed or wrong.
/// The webhook ingress calls it before it accepts a delivery.
pub fn verify_body_signature(
    secret: &SecretString,
    signature: Option<&[u8]>,
    body: &[u8],
) -> Result<(), DecodeError> {
    let header = signature.ok_or(DecodeError::MissingSignature)?;
    let signature = header
        .strip_prefix(SIGNATURE_PREFIX)
        .and_then(|digits| hex::decode(digits).ok())
        .ok_or(DecodeError::InvalidSignature)?;

    // HMAC accepts keys of any length, so this error is unreachable in practice.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .map_err(|_| DecodeError::InvalidSignature)?;
    mac.update(body);
    // `verify_slice` compares in constant time and rejects a wrong length.
    mac.verify_slice(&signature)
        .map_err(|_| DecodeError::InvalidSignature)
}

/// Fields derived from a webhook payload, as listed in the module documentation.
#[derive(Debug, Default, PartialEq)]
struct DerivedFields {
    event_type: String,
    repo: Option<String>,
    branch: Option<String>,
    tag: Option<String>,
    action: Option<String>,
    sha: Option<String>,
    sender: Option<String>,
}

impl DerivedFields {
    /// Derives the fields from `payload`. Every path read here is listed in
    /// [`DECODER_FIELDS`], so that a projected payload gives the same result.
    fn from_payload(github_event: &str, payload: &Map<String, Value>) -> Self {
        let text = |path: &[&str]| string_at(payload, path).map(str::to_owned);
        let mut fields = Self {
            event_type: github_event.to_owned(),
            repo: text(&["repository", "full_name"]),
            action: text(&["action"]),
            sender: text(&["sender", "login"]),
            ..Self::default()
        };

        match github_event {
            "push" => {
                let git_ref = string_at(payload, &["ref"]).unwrap_or_default();
                if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
                    fields.event_type = "tag".to_owned();
                    fields.tag = Some(tag.to_owned());
                } else if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
                    fields.branch = Some(branch.to_owned());
                }
                fields.sha = text(&["after"]);
            }
            event if PULL_REQUEST_EVENTS.contains(&event) => {
                fields.branch = text(&["pull_request", "base", "ref"]);
                fields.sha = text(&["pull_request", "head", "sha"]);
            }
            "create" | "delete" => match string_at(payload, &["ref_type"]) {
                Some("branch") => fields.branch = text(&["ref"]),
                Some("tag") => fields.tag = text(&["ref"]),
                _ => {}
            },
            "workflow_run" | "workflow_job" | "check_suite" => {
                fields.branch = text(&[github_event, "head_branch"]);
            }
            "check_run" => {
                fields.branch = text(&["check_run", "check_suite", "head_branch"]);
            }
            "release" => fields.tag = text(&["release", "tag_name"]),
            _ => {}
        }
        fields
    }

    /// Builds `Event.metadata`, leaving out absent fields.
    fn metadata(&self, github_event: &str, delivery: Option<&str>) -> Value {
        let mut metadata = Map::new();
        let entries = [
            ("github_event", Some(github_event)),
            ("event_type", Some(self.event_type.as_str())),
            ("delivery", delivery),
            ("repo", self.repo.as_deref()),
            ("branch", self.branch.as_deref()),
            ("tag", self.tag.as_deref()),
            ("action", self.action.as_deref()),
            ("sha", self.sha.as_deref()),
            ("sender", self.sender.as_deref()),
        ];
        for (key, value) in entries {
            if let Some(value) = value {
                metadata.insert(key.to_owned(), Value::String(value.to_owned()));
            }
        }
        Value::Object(metadata)
    }

    /// Adds `event_type`, `repo`, `branch` and `tag` to the payload's top
    /// level. A key the payload already has is kept as GitHub sent it: a
    /// `repository_dispatch` payload, for one, carries the sender's own
    /// `branch` field.
    fn insert_into(self, payload: &mut Map<String, Value>) {
        let entries = [
            ("event_type", Some(self.event_type)),
            ("repo", self.repo),
            ("branch", self.branch),
            ("tag", self.tag),
        ];
        for (key, value) in entries {
            if let Some(value) = value {
                payload.entry(key).or_insert_with(|| Value::String(value));
            }
        }
    }
}

/// Returns the string at `path` below `object`, if every step exists.
fn string_at<'a>(object: &'a Map<String, Value>, path: &[&str]) -> Option<&'a str> {
    let (first, rest) = path.split_first()?;
    let mut value = object.get(*first)?;
    for key in rest {
        value = value.get(key)?;
    }
    value.as_str()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::event::Flavor;

    const SECRET: &str = "It's a Secret to Everybody";

    fn source(secret: Option<&str>) -> EventSource {
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

    fn record(event: Option<&str>, payload: &Value) -> InboundRecord {
        let mut headers = Vec::new();
        if let Some(event) = event {
            headers.push((EVENT_HEADER.to_owned(), Some(event.as_bytes().to_vec())));
        }
        InboundRecord {
            topic: "github".to_owned(),
            partition: 0,
            offset: 7,
            payload: Some(serde_json::to_vec(payload).unwrap()),
            headers,
            ..InboundRecord::default()
        }
    }

    fn with_header(mut record: InboundRecord, name: &str, value: &[u8]) -> InboundRecord {
        record.headers.push((name.to_owned(), Some(value.to_vec())));
        record
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn signed(record: InboundRecord) -> InboundRecord {
        let signature = sign(SECRET, record.payload.as_deref().unwrap_or_default());
        with_header(record, SIGNATURE_HEADER, signature.as_bytes())
    }

    fn push(git_ref: &str) -> Value {
        json!({
            "ref": git_ref,
            "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            "repository": {"full_name": "Codertocat/Hello-World"},
            "sender": {"login": "Codertocat"}
        })
    }

    #[test]
    fn signature_known_answer() {
        // Computed independently with Python's hmac module.
        let mut record = record(Some("ping"), &json!({}));
        record.payload = Some(br#"{"zen":"Keep it logically awesome."}"#.to_vec());
        let record = with_header(
            record,
            SIGNATURE_HEADER,
            b"sha256=34b7a9864882c8f45c8c9ea0bbf182b6b1aba679973fae5f6a0063d5a6838730",
        );
        let event = decode(&source(Some("topsecret")), &record).unwrap();
        assert_eq!(event.document["zen"], "Keep it logically awesome.");
    }

    #[test]
    fn branch_push() {
        let record = with_header(
            record(Some("push"), &push("refs/heads/master")),
            DELIVERY_HEADER,
            b"delivery-1",
        );
        let event = decode(&source(None), &record).unwrap();
        assert_eq!(event.id, "delivery-1");
        assert_eq!(event.event_type, "push");
        assert_eq!(event.document["event_type"], "push");
        assert_eq!(event.document["repo"], "Codertocat/Hello-World");
        assert_eq!(event.document["branch"], "master");
        assert_eq!(event.document["ref"], "refs/heads/master");
        assert!(event.document.get("tag").is_none());
        assert_eq!(
            event.metadata,
            json!({
                "github_event": "push",
                "event_type": "push",
                "delivery": "delivery-1",
                "repo": "Codertocat/Hello-World",
                "branch": "master",
                "sha": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                "sender": "Codertocat"
            })
        );
    }

    #[test]
    fn tag_push() {
        let event = decode(
            &source(None),
            &record(Some("push"), &push("refs/tags/v1.2")),
        )
        .unwrap();
        assert_eq!(event.event_type, "tag");
        assert_eq!(event.document["event_type"], "tag");
        assert_eq!(event.document["tag"], "v1.2");
        assert!(event.document.get("branch").is_none());
        assert_eq!(event.metadata["github_event"], "push");
        assert_eq!(event.metadata["event_type"], "tag");
        assert_eq!(event.metadata["tag"], "v1.2");
    }

    #[test]
    fn push_of_other_ref() {
        let event = decode(&source(None), &record(Some("push"), &push("refs/notes/x"))).unwrap();
        assert_eq!(event.event_type, "push");
        assert!(event.document.get("branch").is_none());
        assert!(event.document.get("tag").is_none());
    }

    #[test]
    fn pull_request_family_uses_base_branch() {
        let payload = json!({
            "action": "opened",
            "pull_request": {"base": {"ref": "main"}, "head": {"ref": "feature", "sha": "abc"}},
            "repository": {"full_name": "o/r"}
        });
        for github_event in PULL_REQUEST_EVENTS {
            let event = decode(&source(None), &record(Some(github_event), &payload)).unwrap();
            assert_eq!(event.event_type, github_event);
            assert_eq!(event.document["branch"], "main", "{github_event}");
            assert_eq!(event.metadata["sha"], "abc", "{github_event}");
            assert_eq!(event.metadata["action"], "opened", "{github_event}");
        }
    }

    #[test]
    fn create_and_delete_refs() {
        for github_event in ["create", "delete"] {
            let branch = json!({"ref": "topic", "ref_type": "branch"});
            let event = decode(&source(None), &record(Some(github_event), &branch)).unwrap();
            assert_eq!(event.document["branch"], "topic");
            assert!(event.document.get("tag").is_none());

            let tag = json!({"ref": "v1", "ref_type": "tag"});
            let event = decode(&source(None), &record(Some(github_event), &tag)).unwrap();
            assert_eq!(event.event_type, github_event);
            assert_eq!(event.document["tag"], "v1");
            assert!(event.document.get("branch").is_none());
        }
    }

    #[test]
    fn head_branch_events() {
        let cases = [
            (
                "workflow_run",
                json!({"workflow_run": {"head_branch": "dev"}}),
            ),
            (
                "workflow_job",
                json!({"workflow_job": {"head_branch": "dev"}}),
            ),
            (
                "check_suite",
                json!({"check_suite": {"head_branch": "dev"}}),
            ),
            (
                "check_run",
                json!({"check_run": {"check_suite": {"head_branch": "dev"}}}),
            ),
        ];
        for (github_event, payload) in cases {
            let event = decode(&source(None), &record(Some(github_event), &payload)).unwrap();
            assert_eq!(event.document["branch"], "dev", "{github_event}");
            assert_eq!(event.metadata["branch"], "dev", "{github_event}");
        }
    }

    #[test]
    fn null_head_branch_is_absent() {
        let payload = json!({"workflow_run": {"head_branch": null}});
        let event = decode(&source(None), &record(Some("workflow_run"), &payload)).unwrap();
        assert!(event.document.get("branch").is_none());
        assert!(event.metadata.get("branch").is_none());
    }

    #[test]
    fn release_tag() {
        let payload = json!({"action": "published", "release": {"tag_name": "0.0.1"}});
        let event = decode(&source(None), &record(Some("release"), &payload)).unwrap();
        assert_eq!(event.event_type, "release");
        assert_eq!(event.document["tag"], "0.0.1");
        assert_eq!(event.metadata["action"], "published");
    }

    #[test]
    fn payload_keys_are_not_overwritten() {
        let payload = json!({"branch": "client-branch", "repository": {"full_name": "o/r"}});
        let event = decode(
            &source(None),
            &record(Some("repository_dispatch"), &payload),
        )
        .unwrap();
        assert_eq!(event.document["branch"], "client-branch");
        assert_eq!(event.document["repo"], "o/r");
        assert!(event.metadata.get("branch").is_none());
    }

    #[test]
    fn minimal_payload_metadata() {
        let event = decode(&source(None), &record(Some("ping"), &json!({"zen": "x"}))).unwrap();
        assert_eq!(event.id, "github/0/7");
        assert_eq!(
            event.metadata,
            json!({"github_event": "ping", "event_type": "ping"})
        );
        assert_eq!(event.document, json!({"zen": "x", "event_type": "ping"}));
    }

    #[test]
    fn empty_delivery_falls_back_to_position() {
        let record = with_header(record(Some("ping"), &json!({})), DELIVERY_HEADER, b"");
        let event = decode(&source(None), &record).unwrap();
        assert_eq!(event.id, "github/0/7");
        assert!(event.metadata.get("delivery").is_none());
    }

    #[test]
    fn missing_event_header() {
        let error = decode(&source(None), &record(None, &json!({}))).unwrap_err();
        assert_eq!(error, DecodeError::MissingHeader(EVENT_HEADER));

        let empty = with_header(record(None, &json!({})), EVENT_HEADER, b"");
        let error = decode(&source(None), &empty).unwrap_err();
        assert_eq!(error, DecodeError::MissingHeader(EVENT_HEADER));

        let not_utf8 = with_header(record(None, &json!({})), EVENT_HEADER, b"\xff");
        let error = decode(&source(None), &not_utf8).unwrap_err();
        assert_eq!(error, DecodeError::MissingHeader(EVENT_HEADER));
    }

    #[test]
    fn value_errors() {
        let mut empty = record(Some("push"), &json!({}));
        empty.payload = Some(Vec::new());
        assert_eq!(decode(&source(None), &empty), Err(DecodeError::EmptyValue));

        empty.payload = None;
        assert_eq!(decode(&source(None), &empty), Err(DecodeError::EmptyValue));

        let mut bad = record(Some("push"), &json!({}));
        bad.payload = Some(b"{\"ref\":".to_vec());
        let error = decode(&source(None), &bad).unwrap_err();
        assert!(matches!(error, DecodeError::InvalidJson(_)), "{error:?}");

        let array = record(Some("push"), &json!([1]));
        let error = decode(&source(None), &array).unwrap_err();
        assert_eq!(
            error,
            DecodeError::InvalidEvent(
                "GitHub webhook body must be a JSON object, found an array".to_owned()
            )
        );
    }

    #[test]
    fn valid_signature() {
        let record = signed(record(Some("push"), &push("refs/heads/main")));
        let event = decode(&source(Some(SECRET)), &record).unwrap();
        assert_eq!(event.document["branch"], "main");
    }

    #[test]
    fn uppercase_hex_signature_is_accepted() {
        let body = serde_json::to_vec(&push("refs/heads/main")).unwrap();
        let signature = sign(SECRET, &body);
        let upper = format!("sha256={}", signature["sha256=".len()..].to_uppercase());
        let record = with_header(
            record(Some("push"), &push("refs/heads/main")),
            SIGNATURE_HEADER,
            upper.as_bytes(),
        );
        assert!(decode(&source(Some(SECRET)), &record).is_ok());
    }

    #[test]
    fn missing_signature() {
        let record = record(Some("push"), &push("refs/heads/main"));
        assert_eq!(
            decode(&source(Some(SECRET)), &record),
            Err(DecodeError::MissingSignature)
        );

        let mut valueless = record.clone();
        valueless.headers.push((SIGNATURE_HEADER.to_owned(), None));
        assert_eq!(
            decode(&source(Some(SECRET)), &valueless),
            Err(DecodeError::MissingSignature)
        );
    }

    #[test]
    fn signature_is_ignored_without_secret() {
        let record = with_header(
            record(Some("push"), &push("refs/heads/main")),
            SIGNATURE_HEADER,
            b"sha256=00",
        );
        assert!(decode(&source(None), &record).is_ok());
    }

    #[test]
    fn wrong_signature() {
        let base = record(Some("push"), &push("refs/heads/main"));

        let other_secret = sign("another secret", base.payload.as_deref().unwrap());
        let record = with_header(base.clone(), SIGNATURE_HEADER, other_secret.as_bytes());
        assert_eq!(
            decode(&source(Some(SECRET)), &record),
            Err(DecodeError::InvalidSignature)
        );

        let mut tampered = signed(base);
        tampered.payload = Some(serde_json::to_vec(&push("refs/heads/evil")).unwrap());
        assert_eq!(
            decode(&source(Some(SECRET)), &tampered),
            Err(DecodeError::InvalidSignature)
        );
    }

    #[test]
    fn malformed_signatures() {
        let base = record(Some("push"), &push("refs/heads/main"));
        let valid = sign(SECRET, base.payload.as_deref().unwrap());
        let digits = &valid["sha256=".len()..];
        let malformed = [
            digits.to_owned(),
            format!("sha1={digits}"),
            format!("SHA256={digits}"),
            format!("sha256={}", &digits[..62]),
            format!("sha256={digits}00"),
            format!("sha256={}zz", &digits[..62]),
            format!("sha256= {digits}"),
            "sha256=".to_owned(),
            String::new(),
        ];
        for signature in malformed {
            let record = with_header(base.clone(), SIGNATURE_HEADER, signature.as_bytes());
            assert_eq!(
                decode(&source(Some(SECRET)), &record),
                Err(DecodeError::InvalidSignature),
                "{signature:?}"
            );
        }
        let not_utf8 = with_header(base, SIGNATURE_HEADER, b"sha256=\xff\xfe");
        assert_eq!(
            decode(&source(Some(SECRET)), &not_utf8),
            Err(DecodeError::InvalidSignature)
        );
    }

    #[test]
    fn signature_is_checked_before_json() {
        let mut record = record(Some("push"), &json!({}));
        record.payload = Some(b"not json".to_vec());
        let record = with_header(record, SIGNATURE_HEADER, b"sha256=00");
        assert_eq!(
            decode(&source(Some(SECRET)), &record),
            Err(DecodeError::InvalidSignature)
        );

        let signed_bad_json = signed(InboundRecord {
            headers: Vec::new(),
            ..record
        });
        let error = decode(&source(Some(SECRET)), &signed_bad_json).unwrap_err();
        assert!(matches!(error, DecodeError::InvalidJson(_)), "{error:?}");
    }
}
