//! The crate's error, classed by who is at fault, and its HTTP mapping.
//!
//! | variant | who is at fault | status |
//! |---|---|---|
//! | [`Error::Unauthenticated`] | the client: no, malformed, forged, unknown, expired or revoked credential | 401 |
//! | [`Error::CsrfRejected`] | the client (or a cross-site attacker) | 403 |
//! | [`Error::StepUpRequired`] | the session's assurance is too low or too old | 403 |
//! | [`Error::Conflict`], [`Error::LimitReached`] | a concurrent writer / the subject's session limit | 409 |
//! | [`Error::InvalidInput`] | input that breaks a field rule (key, subject, AAL) | 400 |
//! | [`Error::Decode`], [`Error::Encode`], [`Error::ApiMisuse`], [`Error::MissingLayer`] | the application | 500 |
//! | [`Error::Remote`] | the sessiond server answered something unexpected (API key refused, protocol) | 502 |
//! | [`Error::Unavailable`] | the session store or server cannot be reached; retryable | 503 |
//!
//! Every error is also an axum response ([`IntoResponse`]): RFC 9457 `application/problem+json`
//! with the same stable `type` URIs as the sessiond server, a fixed title and a safe detail.
//! Cause chains (driver errors, serde messages) go to the log at DEBUG, never to the client.

use std::borrow::Cow;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sessiond_core::error::StepUp;

/// Base of every problem `type` URI (shared with the sessiond server).
pub const PROBLEM_BASE: &str = "https://sessiond.dev/problems/";
/// The problem media type.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A boxed cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which CSRF defence refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsrfFailure {
    /// The browser marked the request `Sec-Fetch-Site: cross-site`.
    CrossSite,
    /// The `X-CSRF-Token` header is missing.
    MissingToken,
    /// The `Origin` header names an origin that is not allowed.
    OriginNotAllowed,
    /// The `X-CSRF-Token` header is not this session's token.
    WrongToken,
}

impl CsrfFailure {
    fn detail(self) -> &'static str {
        match self {
            CsrfFailure::CrossSite => "a cookie-authenticated state change from another site was refused",
            CsrfFailure::MissingToken => "this state-changing request needs the session's X-CSRF-Token header",
            CsrfFailure::OriginNotAllowed => "a cookie-authenticated state change from a foreign origin was refused",
            CsrfFailure::WrongToken => "the X-CSRF-Token header does not match the session",
        }
    }
}

/// The error of every fallible operation of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The application broke a documented rule (a bug in the caller).
    #[error("API misuse: {0}")]
    ApiMisuse(&'static str),
    /// A compare-and-set on the session's data lost against a concurrent change; re-read and
    /// retry. `current` is the data revision now stored, when known.
    #[error("the session data changed concurrently")]
    Conflict {
        /// The current data revision.
        current: Option<u64>,
    },
    /// A cookie-authenticated state change failed a CSRF check.
    #[error("CSRF check failed: {0:?}")]
    CsrfRejected(CsrfFailure),
    /// A stored value is not of the requested type.
    #[error("session data key {key:?} does not decode as the requested type")]
    Decode {
        /// The data key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be encoded as JSON.
    #[error("the value does not encode as JSON")]
    Encode(#[source] serde_json::Error),
    /// Input that breaks a field rule (data key, subject, AAL, AMR, data size, unknown policy).
    /// The message is fixed text, safe to show.
    #[error("{0}")]
    InvalidInput(Cow<'static, str>),
    /// The subject already holds the maximum number of sessions and the policy denies new ones.
    #[error("the subject already has the maximum number of sessions")]
    LimitReached,
    /// A session extractor ran on a route without [`crate::SessionLayer`].
    #[error("no session handle in the request: is `SessionLayer` enabled on this route?")]
    MissingLayer,
    /// The sessiond server answered something this client does not expect (the API key was
    /// refused, or a protocol mismatch). The message is for logs.
    #[error("the sessiond server answered unexpectedly: {0}")]
    Remote(String),
    /// A route demands a higher or fresher authentication than the session has.
    #[error("step-up authentication required")]
    StepUpRequired(StepUp),
    /// There is no valid session: none was presented, or the credential is malformed, forged,
    /// unknown, expired or revoked, or the session ended during this request.
    #[error("no valid session")]
    Unauthenticated,
    /// The session store or the sessiond server cannot serve the request now. Retryable.
    #[error("the session store is unavailable")]
    Unavailable(#[source] Option<BoxError>),
}

impl Error {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthenticated => StatusCode::UNAUTHORIZED,
            Error::CsrfRejected(_) | Error::StepUpRequired(_) => StatusCode::FORBIDDEN,
            Error::Conflict { .. } | Error::LimitReached => StatusCode::CONFLICT,
            Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Error::ApiMisuse(_) | Error::Decode { .. } | Error::Encode(_) | Error::MissingLayer => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Error::Remote(_) => StatusCode::BAD_GATEWAY,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Conflict { .. })
    }

    fn slug_title_detail(&self) -> (&'static str, &'static str, Cow<'static, str>) {
        match self {
            Error::Unauthenticated => {
                ("invalid-token", "Invalid session token", "there is no valid session for this request".into())
            }
            Error::CsrfRejected(f) => ("csrf-rejected", "Cross-site request refused", f.detail().into()),
            Error::StepUpRequired(_) => (
                "step-up-required",
                "Step-up authentication required",
                "this route requires a higher or fresher authentication".into(),
            ),
            Error::Conflict { .. } => (
                "conflict",
                "The resource changed concurrently",
                "the session data changed concurrently; reload and retry".into(),
            ),
            Error::LimitReached => (
                "limit-reached",
                "Concurrent session limit reached",
                "the account already has the maximum number of sessions".into(),
            ),
            Error::InvalidInput(m) => ("malformed-request", "Malformed request", m.clone()),
            Error::MissingLayer => (
                "internal",
                "Internal error",
                "can't extract the session: is `SessionLayer` enabled on this route?".into(),
            ),
            Error::ApiMisuse(_) | Error::Decode { .. } | Error::Encode(_) => {
                ("internal", "Internal error", "internal error".into())
            }
            Error::Remote(_) => ("bad-gateway", "Bad gateway", "the session service answered unexpectedly".into()),
            Error::Unavailable(_) => (
                "store-unavailable",
                "Session store unavailable",
                "the session store is unavailable; retry later".into(),
            ),
        }
    }
}

impl From<sessiond_core::Error> for Error {
    fn from(e: sessiond_core::Error) -> Self {
        use sessiond_core::{ClientError, Error as E, MalformedInput, StoreError};
        match e {
            E::Client(ClientError::StepUpRequired(s)) => Error::StepUpRequired(s),
            E::Client(ClientError::LimitReached) => Error::LimitReached,
            E::Client(ClientError::UnknownPolicy) => Error::InvalidInput("unknown policy class".into()),
            E::Client(ClientError::Malformed(MalformedInput::Field(m))) => Error::InvalidInput(m.into()),
            E::Client(_) => Error::Unauthenticated,
            E::Conflict { current } => Error::Conflict { current: Some(current) },
            E::ApiMisuse(m) => Error::ApiMisuse(m),
            E::NotFound(_) => Error::Unauthenticated,
            E::Store(StoreError::Unavailable { message, source }) => {
                tracing::debug!(%message, "session store unavailable");
                Error::Unavailable(source)
            }
            E::Store(other) => Error::Unavailable(Some(Box::new(other))),
            other => Error::Remote(other.to_string()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(target: "sessiond_tower::rejection", error = %self, source = ?std::error::Error::source(&self), status = status.as_u16(), "session request failed");
        } else {
            tracing::trace!(target: "sessiond_tower::rejection", error = %self, status = status.as_u16(), "session rejection");
        }
        let (slug, title, detail) = self.slug_title_detail();
        let mut body = serde_json::json!({
            "type": format!("{PROBLEM_BASE}{slug}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        });
        let mut www_authenticate = None;
        match &self {
            Error::StepUpRequired(s) => {
                body["min_aal"] = s.min_aal.into();
                body["max_auth_age"] = s.max_auth_age.map(|d| d.as_secs()).into();
                // RFC 9470: tell OAuth-style clients what to re-authenticate with.
                let mut v =
                    format!("Bearer error=\"insufficient_user_authentication\", acr_values=\"aal{}\"", s.min_aal);
                if let Some(age) = s.max_auth_age {
                    v.push_str(&format!(", max_age={}", age.as_secs()));
                }
                www_authenticate = HeaderValue::from_str(&v).ok();
            }
            Error::Conflict { current: Some(c) } => body["current_revision"] = (*c).into(),
            _ => {}
        }
        let mut res = (status, body.to_string()).into_response();
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(v) = www_authenticate {
            h.insert(WWW_AUTHENTICATE, v);
        }
        res
    }
}
