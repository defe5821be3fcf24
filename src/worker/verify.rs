//! Verification of an action request before its handler runs.
//!
//! A request is accepted only when its CloudEvents headers name it
//! (`ce_specversion: 1.0`, `ce_id` = execution id, `ce_type` =
//! `<flavor>.<subtype>` of the subscription) and its token is signed by one
//! of the hub's keys, unexpired, issued by the configured issuer, addressed
//! to this `(flavor, subtype)` and bound to this execution (`jti`).
//!
//! Concurrency: pure functions over one record; the verifier is shared
//! read-only.

use jsonwebtoken::errors::ErrorKind;
use uuid::Uuid;

use crate::auth::TokenVerifier;
use crate::dispatch::{ActionRequest, ATTEMPT_HEADER};
use crate::Error;

/// The reason a request was rejected without running its handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The execution the request names, when it names one; without it the
    /// rejection cannot be reported.
    pub execution_id: Option<Uuid>,
    /// The attempt the request names, 1 when unknown.
    pub attempt: u32,
    /// The failed check, in words.
    pub reason: String,
}

/// The parts of a Kafka record that verification reads.
pub struct RecordView<'a> {
    /// Headers in order; a header without value has `None`.
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
    /// The record value.
    pub payload: &'a [u8],
}

impl RecordView<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| value.and_then(|bytes| std::str::from_utf8(bytes).ok()))
    }
}

/// Verifies one record received on the topic of `action_type`
/// (`<flavor>.<subtype>`) and returns its request.
pub fn verify_request(
    record: &RecordView<'_>,
    action_type: &str,
    verifier: &TokenVerifier,
) -> Result<ActionRequest, Rejection> {
    let header_id = record
        .header("ce_id")
        .and_then(|id| Uuid::parse_str(id).ok());
    let reject = |execution_id: Option<Uuid>, attempt: u32, reason: String| Rejection {
        execution_id,
        attempt,
        reason,
    };

    let request: ActionRequest = serde_json::from_slice(record.payload).map_err(|error| {
        reject(
            header_id,
            1,
            format!("the value is not an action request: {error}"),
        )
    })?;
    let execution_id = request.execution_id;
    let attempt = request.attempt.max(1);
    let fail = |reason: String| Err(reject(Some(execution_id), attempt, reason));

    if request.attempt == 0 {
        return fail("attempt must be at least 1".to_owned());
    }
    match record.header("ce_specversion") {
        Some("1.0") => {}
        Some(other) => {
            return fail(format!(
                "header ce_specversion is {other:?}, expected \"1.0\""
            ))
        }
        None => return fail("header ce_specversion is missing".to_owned()),
    }
    match record.header("ce_id") {
        Some(id) if id == execution_id.to_string() => {}
        Some(id) => {
            return fail(format!(
                "header ce_id {id:?} differs from execution_id {execution_id}"
            ))
        }
        None => return fail("header ce_id is missing".to_owned()),
    }
    match record.header("ce_type") {
        Some(kind) if kind == action_type => {}
        Some(kind) => {
            return fail(format!(
                "header ce_type is {kind:?}, expected {action_type:?}"
            ))
        }
        None => return fail("header ce_type is missing".to_owned()),
    }
    let requested_type = format!("{}.{}", request.action.flavor, request.action.subtype);
    if requested_type != action_type {
        return fail(format!(
            "the request is for action type {requested_type:?}, expected {action_type:?}"
        ));
    }
    if let Some(header_attempt) = record.header(ATTEMPT_HEADER) {
        if header_attempt != request.attempt.to_string() {
            return fail(format!(
                "header {ATTEMPT_HEADER} is {header_attempt:?} but the request's attempt is {}",
                request.attempt
            ));
        }
    }

    let claims = match verifier.verify(&request.auth.token, action_type) {
        Ok(claims) => claims,
        Err(error) => return fail(describe_token_error(&error, action_type)),
    };
    if claims.jti != execution_id.to_string() {
        return fail(format!(
            "the token was issued for execution {}, not {execution_id}",
            claims.jti
        ));
    }
    if claims.sub != request.auth.service_account {
        return fail(format!(
            "the token's subject {:?} differs from auth.service_account {:?}",
            claims.sub, request.auth.service_account
        ));
    }
    Ok(request)
}

/// Returns a short explanation of a token verification error.
pub fn describe_token_error(error: &Error, audience: &str) -> String {
    match error {
        Error::Token(error) => match error.kind() {
            ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
            ErrorKind::InvalidAudience => {
                format!("the token's audience is not {audience:?}")
            }
            ErrorKind::InvalidSignature => "the token's signature is invalid".to_owned(),
            ErrorKind::InvalidIssuer => "the token's issuer is not accepted".to_owned(),
            ErrorKind::ImmatureSignature => "the token is not valid yet".to_owned(),
            ErrorKind::MissingRequiredClaim(claim) => {
                format!("the token lacks the claim {claim:?}")
            }
            _ => format!("the token is invalid: {error}"),
        },
        Error::SigningKey(message) => format!("the token cannot be verified: {message}"),
        other => format!("the token cannot be verified: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::auth::{generate_key_pair, TokenSigner};
    use crate::dispatch::{ActionRef, AuthContext, EventRef, SourceRef, TriggerRef};

    const ACTION_TYPE: &str = "builtin.pipeline_run";

    /// A header name and value.
    type Header<'a> = (&'a str, &'a str);

    fn signer_and_verifier() -> (TokenSigner, TokenVerifier) {
        let pair = generate_key_pair().unwrap();
        let signer =
            TokenSigner::from_pem(pair.private_pem.expose_secret(), None, "event-hub".into())
                .unwrap();
        let mut verifier = TokenVerifier::new(Some("event-hub".into()));
        verifier.add_public_pem(&pair.public_pem).unwrap();
        (signer, verifier)
    }

    fn request(signer: &TokenSigner, token_execution: Uuid, execution_id: Uuid) -> ActionRequest {
        let (token, expires_at) = signer
            .sign(
                "sa-ci",
                ACTION_TYPE,
                token_execution,
                Utc::now(),
                Duration::minutes(5),
            )
            .unwrap();
        ActionRequest {
            execution_id,
            trigger: TriggerRef {
                id: Uuid::new_v4(),
                name: "on-push".into(),
            },
            action: ActionRef {
                id: Uuid::new_v4(),
                name: "run".into(),
                flavor: "builtin".into(),
                subtype: "pipeline_run".into(),
                configuration: serde_json::json!({}),
            },
            event: EventRef {
                id: "delivery-1".into(),
                source: SourceRef {
                    id: Uuid::new_v4(),
                    name: "gh".into(),
                    flavor: "github".into(),
                },
                event_type: "push".into(),
                metadata: serde_json::json!({}),
                data: serde_json::json!({}),
            },
            auth: AuthContext {
                service_account: "sa-ci".into(),
                token,
                expires_at,
            },
            created_at: Utc::now(),
            attempt: 1,
        }
    }

    fn verify(
        headers: &[(&str, &str)],
        payload: &[u8],
        verifier: &TokenVerifier,
    ) -> Result<ActionRequest, Rejection> {
        let view = RecordView {
            headers: headers
                .iter()
                .map(|(name, value)| (*name, Some(value.as_bytes())))
                .collect(),
            payload,
        };
        verify_request(&view, ACTION_TYPE, verifier)
    }

    #[test]
    fn valid_request_passes() {
        let (signer, verifier) = signer_and_verifier();
        let id = Uuid::new_v4();
        let payload = serde_json::to_vec(&request(&signer, id, id)).unwrap();
        let id_text = id.to_string();
        let headers = [
            ("ce_specversion", "1.0"),
            ("ce_id", id_text.as_str()),
            ("ce_type", ACTION_TYPE),
            ("event-hub-attempt", "1"),
        ];
        assert_eq!(
            verify(&headers, &payload, &verifier).unwrap().execution_id,
            id
        );
    }

    #[test]
    fn mismatches_are_rejected_with_reason() {
        let (signer, verifier) = signer_and_verifier();
        let id = Uuid::new_v4();
        let id_text = id.to_string();
        let valid = serde_json::to_vec(&request(&signer, id, id)).unwrap();
        let other_token = serde_json::to_vec(&request(&signer, Uuid::new_v4(), id)).unwrap();
        let good = [
            ("ce_specversion", "1.0"),
            ("ce_id", id_text.as_str()),
            ("ce_type", ACTION_TYPE),
        ];
        let wrong_type = [
            ("ce_specversion", "1.0"),
            ("ce_id", id_text.as_str()),
            ("ce_type", "builtin.deploy"),
        ];
        let wrong_attempt = [
            ("ce_specversion", "1.0"),
            ("ce_id", id_text.as_str()),
            ("ce_type", ACTION_TYPE),
            ("event-hub-attempt", "2"),
        ];
        let no_version = [("ce_id", id_text.as_str()), ("ce_type", ACTION_TYPE)];
        let cases: [(&[Header<'_>], &[u8], &str); 5] = [
            (&wrong_type, &valid, "ce_type"),
            (&wrong_attempt, &valid, "event-hub-attempt"),
            (&no_version, &valid, "ce_specversion is missing"),
            (&good, &other_token, "issued for execution"),
            (&good, b"not json", "not an action request"),
        ];
        for (headers, payload, expected) in cases {
            let rejection = verify(headers, payload, &verifier).unwrap_err();
            assert_eq!(rejection.execution_id, Some(id), "{expected}");
            assert!(
                rejection.reason.contains(expected),
                "{:?} does not mention {expected:?}",
                rejection.reason
            );
        }
    }
}
