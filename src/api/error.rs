//! JSON error responses and the request extractors that produce them.
//!
//! Every error of the HTTP server has the body
//! `{"error": {"message": "...", "field": "..."}}`, where `field` names the
//! request field at fault or is `null`. Library [`Error`]s map to statuses
//! by kind: invalid input 400, unknown resource 404, name conflict or
//! resource in use 409, anything else 500. A 500 response names only the
//! component that failed, and the log contains the details.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::Error;

/// An error response of the HTTP server.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
    www_authenticate: Option<&'static str>,
}

impl ApiError {
    /// Creates an error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
            www_authenticate: None,
        }
    }

    /// Creates a 400 error about the request field `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(StatusCode::BAD_REQUEST, message)
        }
    }

    /// Creates a 401 error with a `WWW-Authenticate` challenge.
    pub fn unauthorized(message: impl Into<String>, challenge: &'static str) -> Self {
        Self {
            www_authenticate: Some(challenge),
            ..Self::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    /// Returns the HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Returns the message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid { field, message } => Self::invalid(field, message),
            Error::Pattern(error) => Self::invalid("event_filter", error.to_string()),
            Error::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, error.to_string()),
            Error::AlreadyExists { .. } => Self {
                field: Some("name".to_owned()),
                ..Self::new(StatusCode::CONFLICT, error.to_string())
            },
            Error::InUse { .. } => Self::new(StatusCode::CONFLICT, error.to_string()),
            other => {
                let component = match &other {
                    Error::Database(_) => "database",
                    Error::Kafka(_) => "broker",
                    Error::Token(_) | Error::SigningKey(_) => "token signing",
                    Error::Config(_) => "configuration",
                    _ => "server",
                };
                tracing::error!(error = %other, "HTTP request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal {component} error; the event-hub log has the details"),
                )
            }
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(
                status,
                "request body is larger than http.max_body_bytes allows",
            );
        }
        Self::new(status, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "field": self.field}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(challenge) = self.www_authenticate {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// A JSON request body, read within the body size limit and decoded with
/// errors in the API's JSON format.
///
/// Unlike `axum::Json`, it accepts a request without `Content-Type`, but
/// like it rejects any type other than JSON with 415.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
            if !is_json_content_type(content_type) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "request body must be JSON (Content-Type: application/json)",
                ));
            }
        }
        let body = Bytes::from_request(request, state).await?;
        serde_json::from_slice(&body).map(ApiJson).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("invalid JSON request body: {error}"),
            )
        })
    }
}

/// Returns whether a `Content-Type` value is `application/json` or a
/// `+json` type, parameters such as `charset` aside.
fn is_json_content_type(value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_map_to_statuses() {
        let cases = [
            (Error::invalid("name", "bad"), StatusCode::BAD_REQUEST),
            (
                Error::NotFound {
                    kind: "trigger",
                    key: "x".into(),
                },
                StatusCode::NOT_FOUND,
            ),
            (
                Error::AlreadyExists {
                    kind: "trigger",
                    name: "x".into(),
                },
                StatusCode::CONFLICT,
            ),
            (
                Error::InUse {
                    kind: "action",
                    name: "x".into(),
                    count: 1,
                },
                StatusCode::CONFLICT,
            ),
            (Error::Config("x".into()), StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (error, expected) in cases {
            let text = error.to_string();
            assert_eq!(ApiError::from(error).status(), expected, "{text}");
        }
    }

    #[test]
    fn internal_errors_hide_details() {
        let error = ApiError::from(Error::Config("database.url: secret detail".into()));
        assert!(!error.message().contains("secret detail"));
    }

    #[test]
    fn json_content_types() {
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(
                is_json_content_type(&HeaderValue::from_static(accepted)),
                "{accepted}"
            );
        }
        for rejected in ["text/plain", "application/x-www-form-urlencoded"] {
            assert!(
                !is_json_content_type(&HeaderValue::from_static(rejected)),
                "{rejected}"
            );
        }
    }
}
