//! RFC 9457 `application/problem+json` errors with a stable `type` URI per class.
//!
//! Every error the server returns goes through [`Problem`]: a fixed status, a fixed title, a
//! safe detail and, where useful, extension members. Internal error text (store drivers,
//! bugs) goes to the log, never to the client.

use std::borrow::Cow;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sessiond_core::{ClientError, Error, MalformedInput};

/// Base of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://sessiond.dev/problems/";
/// The problem media type.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The class of a problem: decides the `type` URI, the status and the title.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// 409: a compare-and-set lost (the `If-Match` revision is stale).
    Conflict,
    /// 403: a cookie-authenticated state change came from another site.
    CsrfRejected,
    /// 500: a bug on our side; details are in the log only.
    Internal,
    /// 401: the session token is malformed, forged, unknown or ended.
    InvalidToken,
    /// 409: the subject is at its concurrent-session limit and the policy denies new ones.
    LimitReached,
    /// 400: the request does not parse or breaks a field rule.
    MalformedRequest,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 404: no such route or no live session with this id.
    NotFound,
    /// 413: the request body is larger than the configured limit.
    PayloadTooLarge,
    /// 408: the client did not send the request body in time.
    RequestTimeout,
    /// 401: the session passed its idle or absolute deadline.
    SessionExpired,
    /// 401: the session was revoked (security epoch, token replay, device binding).
    SessionRevoked,
    /// 403: the route demands a higher or fresher assurance level.
    StepUpRequired,
    /// 503: the session store cannot serve requests now; retry.
    StoreUnavailable,
    /// 403: the presented token belongs to a different session than the one addressed.
    TokenMismatch,
    /// 429: this source presented too many tokens sessiond never issued, or too many wrong
    /// API keys; retry after `Retry-After` seconds.
    TooManyRequests,
    /// 401: the service API key is missing or wrong.
    UnauthorizedClient,
    /// 400: the named policy class does not exist.
    UnknownPolicy,
    /// 415: the request body is not `application/json`.
    UnsupportedMediaType,
}

impl ProblemKind {
    /// Every kind, for documentation and tests.
    pub const ALL: [ProblemKind; 19] = [
        ProblemKind::Conflict,
        ProblemKind::CsrfRejected,
        ProblemKind::Internal,
        ProblemKind::InvalidToken,
        ProblemKind::LimitReached,
        ProblemKind::MalformedRequest,
        ProblemKind::MethodNotAllowed,
        ProblemKind::NotFound,
        ProblemKind::PayloadTooLarge,
        ProblemKind::RequestTimeout,
        ProblemKind::SessionExpired,
        ProblemKind::SessionRevoked,
        ProblemKind::StepUpRequired,
        ProblemKind::StoreUnavailable,
        ProblemKind::TokenMismatch,
        ProblemKind::TooManyRequests,
        ProblemKind::UnauthorizedClient,
        ProblemKind::UnknownPolicy,
        ProblemKind::UnsupportedMediaType,
    ];

    /// The last segment of the `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::Conflict => "conflict",
            ProblemKind::CsrfRejected => "csrf-rejected",
            ProblemKind::Internal => "internal",
            ProblemKind::InvalidToken => "invalid-token",
            ProblemKind::LimitReached => "limit-reached",
            ProblemKind::MalformedRequest => "malformed-request",
            ProblemKind::MethodNotAllowed => "method-not-allowed",
            ProblemKind::NotFound => "not-found",
            ProblemKind::PayloadTooLarge => "payload-too-large",
            ProblemKind::RequestTimeout => "request-timeout",
            ProblemKind::SessionExpired => "session-expired",
            ProblemKind::SessionRevoked => "session-revoked",
            ProblemKind::StepUpRequired => "step-up-required",
            ProblemKind::StoreUnavailable => "store-unavailable",
            ProblemKind::TokenMismatch => "token-mismatch",
            ProblemKind::TooManyRequests => "too-many-requests",
            ProblemKind::UnauthorizedClient => "unauthorized-client",
            ProblemKind::UnknownPolicy => "unknown-policy",
            ProblemKind::UnsupportedMediaType => "unsupported-media-type",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ProblemKind::Conflict | ProblemKind::LimitReached => StatusCode::CONFLICT,
            ProblemKind::CsrfRejected | ProblemKind::StepUpRequired | ProblemKind::TokenMismatch => {
                StatusCode::FORBIDDEN
            }
            ProblemKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ProblemKind::InvalidToken
            | ProblemKind::SessionExpired
            | ProblemKind::SessionRevoked
            | ProblemKind::UnauthorizedClient => StatusCode::UNAUTHORIZED,
            ProblemKind::MalformedRequest | ProblemKind::UnknownPolicy => StatusCode::BAD_REQUEST,
            ProblemKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ProblemKind::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProblemKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ProblemKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    /// The short, fixed, human-readable summary.
    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::Conflict => "The resource changed concurrently",
            ProblemKind::CsrfRejected => "Cross-site request refused",
            ProblemKind::Internal => "Internal error",
            ProblemKind::InvalidToken => "Invalid session token",
            ProblemKind::LimitReached => "Concurrent session limit reached",
            ProblemKind::MalformedRequest => "Malformed request",
            ProblemKind::MethodNotAllowed => "Method not allowed",
            ProblemKind::NotFound => "Not found",
            ProblemKind::PayloadTooLarge => "Payload too large",
            ProblemKind::RequestTimeout => "Request timeout",
            ProblemKind::SessionExpired => "Session expired",
            ProblemKind::SessionRevoked => "Session revoked",
            ProblemKind::StepUpRequired => "Step-up authentication required",
            ProblemKind::StoreUnavailable => "Session store unavailable",
            ProblemKind::TokenMismatch => "Token does not belong to this session",
            ProblemKind::TooManyRequests => "Too many failed attempts",
            ProblemKind::UnauthorizedClient => "Unauthorized client",
            ProblemKind::UnknownPolicy => "Unknown policy class",
            ProblemKind::UnsupportedMediaType => "Unsupported media type",
        }
    }

    /// The full `type` URI.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug())
    }

    /// The kind whose status is `status`, for turning framework responses into problems.
    pub fn for_status(status: StatusCode) -> ProblemKind {
        match status {
            StatusCode::NOT_FOUND => ProblemKind::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ProblemKind::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ProblemKind::PayloadTooLarge,
            StatusCode::REQUEST_TIMEOUT => ProblemKind::RequestTimeout,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ProblemKind::UnsupportedMediaType,
            StatusCode::UNAUTHORIZED => ProblemKind::UnauthorizedClient,
            StatusCode::SERVICE_UNAVAILABLE => ProblemKind::StoreUnavailable,
            StatusCode::TOO_MANY_REQUESTS => ProblemKind::TooManyRequests,
            s if s.is_client_error() => ProblemKind::MalformedRequest,
            _ => ProblemKind::Internal,
        }
    }
}

/// An error response: RFC 9457 problem details.
#[derive(Debug, Clone)]
pub struct Problem {
    kind: ProblemKind,
    detail: Cow<'static, str>,
    extensions: serde_json::Map<String, serde_json::Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem of `kind` with a safe, client-facing `detail`.
    pub fn new(kind: ProblemKind, detail: impl Into<Cow<'static, str>>) -> Self {
        let mut p = Self { kind, detail: detail.into(), extensions: serde_json::Map::new(), headers: Vec::new() };
        match kind {
            ProblemKind::InvalidToken | ProblemKind::SessionExpired | ProblemKind::SessionRevoked => {
                p.headers.push((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\"")));
            }
            ProblemKind::UnauthorizedClient => {
                p.headers.push((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"sessiond\"")));
            }
            ProblemKind::StoreUnavailable => p.headers.push((RETRY_AFTER, HeaderValue::from_static("1"))),
            _ => {}
        }
        p
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The class.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }

    /// The client-facing detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The response body as JSON.
    pub fn body(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), self.kind.type_uri().into());
        m.insert("title".into(), self.kind.title().into());
        m.insert("status".into(), self.kind.status().as_u16().into());
        m.insert("detail".into(), self.detail.as_ref().into());
        for (k, v) in &self.extensions {
            m.insert(k.clone(), v.clone());
        }
        serde_json::Value::Object(m)
    }

    /// A 400 with `detail`.
    pub fn malformed(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ProblemKind::MalformedRequest, detail)
    }

    /// The 401 for a missing or wrong API key.
    pub fn unauthorized_client() -> Self {
        Self::new(ProblemKind::UnauthorizedClient, "a valid service API key is required (Authorization: Bearer sdk_…)")
    }

    /// The 401 for a request that carries no session token at all.
    pub fn missing_token() -> Self {
        Self::new(ProblemKind::InvalidToken, "no session token was presented (cookie or Authorization: Bearer)")
    }

    /// The 429 for a throttled source, retrying after `retry_after` seconds.
    pub fn too_many(retry_after: u64) -> Self {
        let p = Self::new(
            ProblemKind::TooManyRequests,
            "too many invalid session tokens or API keys from this source; retry later",
        )
        .with("retry_after", retry_after);
        match HeaderValue::from_str(&retry_after.to_string()) {
            Ok(v) => p.with_header(RETRY_AFTER, v),
            Err(_) => p,
        }
    }

    /// The 404 for an id that names no live session.
    pub fn no_session() -> Self {
        Self::new(ProblemKind::NotFound, "no live session has this id")
    }

    /// Maps a client fault of the engine; every variant explicitly.
    pub fn from_client(e: &ClientError) -> Self {
        match e {
            ClientError::Malformed(MalformedInput::Token) => {
                Self::new(ProblemKind::InvalidToken, "the session token is malformed or forged")
            }
            ClientError::Malformed(MalformedInput::SessionId) => Self::malformed("the session id is malformed"),
            ClientError::Malformed(MalformedInput::Field(m)) => Self::malformed(*m),
            ClientError::Malformed(_) => Self::malformed("the request holds a malformed value"),
            ClientError::UnknownSession => {
                Self::new(ProblemKind::InvalidToken, "the session does not exist or has ended")
            }
            ClientError::IdleExpired => {
                Self::new(ProblemKind::SessionExpired, "the session expired after inactivity").with("reason", "idle")
            }
            ClientError::AbsoluteExpired => {
                Self::new(ProblemKind::SessionExpired, "the session reached its maximum lifetime")
                    .with("reason", "absolute")
            }
            ClientError::EpochRevoked => Self::new(
                ProblemKind::SessionRevoked,
                "the session was invalidated by a security change of its subject",
            )
            .with("reason", "epoch"),
            ClientError::TokenReplayed => {
                Self::new(ProblemKind::SessionRevoked, "a retired session token was replayed; the session was revoked")
                    .with("reason", "token_replayed")
            }
            ClientError::BindingRevoked => {
                Self::new(ProblemKind::SessionRevoked, "the session was revoked because the client's device changed")
                    .with("reason", "binding")
            }
            ClientError::LimitReached => {
                Self::new(ProblemKind::LimitReached, "the subject already has the maximum number of sessions")
            }
            ClientError::StepUpRequired(s) => {
                let max_age = s.max_auth_age.map(|d| d.as_secs());
                let mut challenge =
                    format!("Bearer error=\"insufficient_user_authentication\", acr_values=\"aal{}\"", s.min_aal);
                if let Some(m) = max_age {
                    challenge.push_str(&format!(", max_age={m}"));
                }
                let mut p =
                    Self::new(ProblemKind::StepUpRequired, "this route requires a higher or fresher authentication")
                        .with("min_aal", s.min_aal)
                        .with("max_auth_age", max_age);
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    p = p.with_header(WWW_AUTHENTICATE, v);
                }
                p
            }
            ClientError::UnknownPolicy => {
                Self::new(ProblemKind::UnknownPolicy, "the named policy class does not exist")
            }
            // `ClientError` is non-exhaustive: a future variant is still the client's fault.
            _ => Self::malformed("the request was refused"),
        }
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        match e {
            Error::Client(c) => Problem::from_client(&c),
            Error::Conflict { current } => {
                Problem::new(ProblemKind::Conflict, "the session data changed; re-read it and retry")
                    .with("current_revision", current)
            }
            Error::NotFound(_) => Problem::no_session(),
            Error::Store(s) => {
                tracing::warn!(error = %s, "session store failure");
                metrics::counter!("sessiond_store_errors_total").increment(1);
                let detail = match s {
                    // Applied, not confirmed (docs/decisions.md D29): the caller must not
                    // report it done, and a retry is safe.
                    sessiond_core::StoreError::Unconfirmed { .. } => {
                        "the revocation was applied but the session store could not confirm it; retry"
                    }
                    _ => "the session store is unavailable; retry shortly",
                };
                Problem::new(ProblemKind::StoreUnavailable, detail)
            }
            Error::ApiMisuse(m) => {
                tracing::error!(error = m, "engine API misuse");
                Problem::new(ProblemKind::Internal, "internal error")
            }
            other => {
                tracing::error!(error = %other, "unclassified engine error");
                Problem::new(ProblemKind::Internal, "internal error")
            }
        }
    }
}

impl From<sessiond_core::StoreError> for Problem {
    fn from(e: sessiond_core::StoreError) -> Self {
        Error::Store(e).into()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut res = (status, body).into_response();
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (k, v) in self.headers {
            h.append(k, v);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_distinct_slug_and_consistent_status() {
        let mut slugs: Vec<_> = ProblemKind::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), ProblemKind::ALL.len());
        for k in ProblemKind::ALL {
            assert!(k.type_uri().starts_with(PROBLEM_BASE));
            assert!(k.status().is_client_error() || k.status().is_server_error());
        }
        assert_eq!(ProblemKind::StoreUnavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn store_errors_are_503_and_never_echo_the_cause() {
        let p: Problem = sessiond_core::StoreError::Corrupt("secret internal detail".into()).into();
        assert_eq!(p.kind(), ProblemKind::StoreUnavailable);
        assert!(!p.body().to_string().contains("secret internal detail"));
    }

    #[test]
    fn step_up_carries_the_hint() {
        let e = ClientError::StepUpRequired(sessiond_core::error::StepUp {
            min_aal: 2,
            max_auth_age: Some(std::time::Duration::from_secs(600)),
        });
        let p = Problem::from_client(&e);
        assert_eq!(p.body()["min_aal"], 2);
        assert_eq!(p.body()["max_auth_age"], 600);
        assert_eq!(p.kind().status(), StatusCode::FORBIDDEN);
    }
}
