//! Bearer token authentication of the admin API.
//!
//! A request passes when its `Authorization: Bearer TOKEN` header carries
//! one of `http.admin_tokens`. Tokens are compared by their SHA-256 digests
//! in constant time, against every configured token, so neither the
//! position of the first differing byte nor which token matched shows in
//! the response time. Any other request gets 401 with a
//! `WWW-Authenticate: Bearer` challenge before its body is read or its
//! handler runs, so it changes nothing.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::ApiState;

/// Challenge sent when the request carries no bearer token.
const CHALLENGE: &str = r#"Bearer realm="event-hub""#;

/// Challenge sent when the bearer token is not accepted (RFC 6750, section 3.1).
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer realm="event-hub", error="invalid_token""#;

/// The accepted admin tokens, kept as SHA-256 digests.
#[derive(Clone, Default)]
pub struct AdminTokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for AdminTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AdminTokens")
            .field("count", &self.digests.len())
            .finish()
    }
}

impl AdminTokens {
    /// Digests the configured tokens.
    pub fn new(tokens: &[SecretString]) -> Self {
        Self {
            digests: tokens
                .iter()
                .map(|token| digest(token.expose_secret().as_bytes()))
                .collect(),
        }
    }

    /// Returns whether no token is configured, which disables the admin API.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Returns whether `presented` is one of the tokens. Every configured
    /// token is compared, whatever the outcome.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        let matched = self
            .digests
            .iter()
            .fold(subtle::Choice::from(0), |matched, token| {
                matched | token.ct_eq(&presented)
            });
        matched.into()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Middleware that lets a request through only with an accepted bearer token.
pub async fn require_admin_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let tokens = &state.admin_tokens;
    if tokens.is_empty() {
        return ApiError::unauthorized(
            "the admin API is disabled because http.admin_tokens is empty",
            CHALLENGE,
        )
        .into_response();
    }

    let header = request.headers().get(header::AUTHORIZATION);
    let Some(presented) = header.and_then(|value| bearer_token(value.as_bytes())) else {
        return ApiError::unauthorized(
            "missing bearer token: send Authorization: Bearer TOKEN",
            CHALLENGE,
        )
        .into_response();
    };
    if !tokens.accepts(presented) {
        return ApiError::unauthorized("invalid bearer token", INVALID_TOKEN_CHALLENGE)
            .into_response();
    }
    next.run(request).await
}

/// Returns the token of an `Authorization: Bearer TOKEN` value. The scheme
/// name is case-insensitive (RFC 7235, section 2.1).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.strip_prefix(b" ")?.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_tokens() {
        let tokens = AdminTokens::new(&[
            SecretString::from("first-token-0123456789"),
            SecretString::from("second-token-0123456789"),
        ]);
        assert!(tokens.accepts(b"first-token-0123456789"));
        assert!(tokens.accepts(b"second-token-0123456789"));
        assert!(!tokens.accepts(b"first-token-012345678"));
        assert!(!tokens.accepts(b""));
        assert!(!AdminTokens::default().accepts(b""));
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }

    #[test]
    fn debug_hides_tokens() {
        let tokens = AdminTokens::new(&[SecretString::from("first-token-0123456789")]);
        assert_eq!(format!("{tokens:?}"), "AdminTokens { count: 1 }");
    }
}
