//! The v1 handlers and their request and response shapes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HOST, IF_MATCH, ORIGIN, SET_COOKIE, USER_AGENT,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sessiond_core::event::Event;
use sessiond_core::record::DeviceInfo;
use sessiond_core::store::PageCursor;
use sessiond_core::{ClientError, CreateRequest, Error, MalformedInput, RevokeReason, SessionId, SessionRecord};
use utoipa::{IntoParams, ToSchema};

use crate::app::{AppState, Body, ClientMeta, PathParams, QueryParams, Service};
use crate::config::CsrfMode;
use crate::cookie::TokenSource;
use crate::problem::{Problem, ProblemKind};

type ApiResult = Result<Response, Problem>;

// ---------------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------------

/// Device facts of a session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceView {
    /// `User-Agent` at creation or of the latest accepted drift.
    pub user_agent: Option<String>,
    /// Client IP at creation.
    pub first_ip: Option<String>,
    /// Client IP of the latest renewal.
    pub last_ip: Option<String>,
}

/// A session as the API shows it. Times are Unix milliseconds. Never contains a token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    /// Public id (`ses_…`): safe to show and log; not a credential.
    pub id: String,
    /// The authenticated user.
    pub subject: String,
    /// The tenant (empty for single-tenant use).
    pub tenant: String,
    /// Policy class.
    pub policy: String,
    /// Creation time.
    pub created_at: u64,
    /// Last renewal (throttled).
    pub last_seen_at: u64,
    /// Idle deadline.
    pub idle_expires_at: u64,
    /// Absolute deadline.
    pub absolute_expires_at: u64,
    /// Time of the last authentication (login or step-up).
    pub auth_time: u64,
    /// Authenticator assurance level (0 to 3).
    pub aal: u8,
    /// Authentication methods (RFC 8176).
    pub amr: Vec<String>,
    /// Device facts.
    pub device: DeviceView,
    /// Application data.
    #[schema(value_type = Object)]
    pub data: BTreeMap<String, serde_json::Value>,
    /// Revision of `data`, for `If-Match`.
    pub revision: u64,
    /// Whether this is the caller's current session (lists only, when `current` was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_current: Option<bool>,
}

impl SessionView {
    /// The view of a stored record.
    pub fn of(r: &SessionRecord) -> Self {
        Self {
            id: r.id.to_string(),
            subject: r.subject.clone(),
            tenant: r.tenant.clone(),
            policy: r.policy.clone(),
            created_at: r.created_at.0,
            last_seen_at: r.last_seen_at.0,
            idle_expires_at: r.idle_expires_at.0,
            absolute_expires_at: r.absolute_expires_at.0,
            auth_time: r.auth_time.0,
            aal: r.aal,
            amr: r.amr.clone(),
            device: DeviceView {
                user_agent: r.device.user_agent.clone(),
                first_ip: r.device.first_ip.clone(),
                last_ip: r.device.last_ip.clone(),
            },
            data: r.data.clone(),
            revision: r.revision,
            is_current: None,
        }
    }
}

/// `POST /v1/sessions`: the outcome of the application's authentication.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// The authenticated user (1 to 256 bytes, no control characters).
    #[schema(min_length = 1, max_length = 256)]
    pub subject: String,
    /// The tenant (at most 256 bytes, no control characters); empty for single-tenant use.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub tenant: String,
    /// Policy class (a configured policy name, 1 to 256 bytes); `default` when absent.
    #[schema(min_length = 1, max_length = 256)]
    pub policy: Option<String>,
    /// Assurance level reached (0 to 3); default 1.
    #[serde(default = "one")]
    #[schema(minimum = 0, maximum = 3)]
    pub aal: u8,
    /// Authentication methods used (RFC 8176, at most 16), e.g. `["pwd", "otp"]`.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub amr: Vec<String>,
    /// When the user authenticated, Unix milliseconds; default now.
    pub auth_time: Option<u64>,
    /// The browser's `User-Agent`, as the application saw it.
    pub user_agent: Option<String>,
    /// The browser's IP, as the application saw it.
    pub ip: Option<String>,
    /// Initial application data (at most 64 keys, 8 KiB).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: BTreeMap<String, serde_json::Value>,
    /// A token the browser presented before logging in: its session is revoked (fixation
    /// defence), never adopted.
    pub previous_token: Option<String>,
}

fn one() -> u8 {
    1
}

/// `201` of `POST /v1/sessions`.
#[derive(Serialize, ToSchema)]
pub struct CreatedResponse {
    /// The session token: hand it to the client once (cookie or bearer). Never log it.
    pub token: String,
    /// The session.
    pub session: SessionView,
    /// The session's CSRF synchronizer token.
    pub csrf_token: String,
    /// A ready `Set-Cookie` header value carrying the token.
    pub set_cookie: String,
    /// Seconds until the session ends unless used.
    pub expires_in: u64,
    /// Sessions ended to make room under the concurrent limit.
    pub evicted: Vec<String>,
    /// The pre-login session revoked by this login, if any.
    pub replaced: Option<String>,
}

/// A route's demand on the session, checked by `resolve`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequirementBody {
    /// Minimum AAL.
    #[serde(default)]
    pub min_aal: u8,
    /// Maximum seconds since the last authentication.
    pub max_auth_age: Option<u64>,
}

/// `POST /v1/sessions/resolve`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// The session token the client presented.
    pub token: String,
    /// The client's `User-Agent` (for binding checks).
    pub user_agent: Option<String>,
    /// The client's IP (for binding checks).
    pub ip: Option<String>,
    /// An assurance demand; a 403 step-up problem when unmet.
    pub require: Option<RequirementBody>,
}

/// `200` of `POST /v1/sessions/resolve`.
#[derive(Serialize, ToSchema)]
pub struct ResolveResponse {
    /// The session.
    pub session: SessionView,
    /// Seconds until the session ends unless used again.
    pub expires_in: u64,
    /// Seconds until the absolute deadline.
    pub absolute_expires_in: u64,
    /// The effective AAL (0 when a binding rule forced re-authentication).
    pub aal: u8,
    /// Whether the idle deadline was renewed by this call.
    pub renewed: bool,
    /// The session's CSRF synchronizer token.
    pub csrf_token: String,
    /// A new token the client must use from now on, when the token was rotated.
    pub token: Option<String>,
    /// `Set-Cookie` value carrying the rotated token, when rotated.
    pub set_cookie: Option<String>,
}

/// `POST /v1/sessions/peek`: a token whose remaining time to report, without renewing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The session token.
    pub token: String,
}

/// `200` of `POST /v1/sessions/peek`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeekResponse {
    /// Seconds until the idle (or earlier absolute) deadline.
    pub idle_expires_in: u64,
    /// Seconds until the absolute deadline.
    pub absolute_expires_in: u64,
}

/// `POST /v1/sessions/{id}/elevate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElevateRequest {
    /// The session's current token.
    pub token: String,
    /// The AAL reached by the step-up (1 to 3).
    #[schema(minimum = 1, maximum = 3)]
    pub aal: u8,
    /// Methods used in the step-up (at most 16).
    #[serde(default)]
    #[schema(max_items = 16)]
    pub amr: Vec<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The client's IP.
    pub ip: Option<String>,
}

/// `200` of rotate and elevate.
#[derive(Serialize, ToSchema)]
pub struct RotatedResponse {
    /// The new token; the old one is a read-only alias for the grace window.
    pub token: String,
    /// The session.
    pub session: SessionView,
    /// The session's CSRF synchronizer token.
    pub csrf_token: String,
    /// A ready `Set-Cookie` value carrying the new token.
    pub set_cookie: String,
}

/// `200` of data writes.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionResponse {
    /// The data revision after the write (also in `ETag`).
    pub revision: u64,
}

/// Query of `GET /v1/subjects/{subject}/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The tenant (default empty; at most 256 bytes).
    #[param(max_length = 256)]
    pub tenant: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The caller's current session id, to flag `is_current`.
    pub current: Option<String>,
}

/// A page of a subject's sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    /// Sessions, oldest first.
    pub sessions: Vec<SessionView>,
    /// Cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
}

/// Query of `DELETE /v1/subjects/{subject}/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevokeSubjectQuery {
    /// The tenant (default empty; at most 256 bytes).
    #[param(max_length = 256)]
    pub tenant: Option<String>,
    /// A session id to keep ("log out my other devices").
    pub except: Option<String>,
}

/// Query with only a tenant.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// The tenant (default empty; at most 256 bytes).
    #[param(max_length = 256)]
    pub tenant: Option<String>,
}

/// Revoked sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedResponse {
    /// Ids of the revoked sessions.
    pub revoked: Vec<String>,
}

/// `200` of an epoch bump.
#[derive(Debug, Serialize, ToSchema)]
pub struct EpochResponse {
    /// The subject's new security epoch.
    pub epoch: u64,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Return events after this cursor (default 0: from the start).
    pub after: Option<u64>,
    /// At most this many (1 to 10000, default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// One lifecycle event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Position in the log.
    pub cursor: u64,
    /// When, Unix milliseconds.
    pub at: u64,
    /// What: `created`, `rotated`, `expired.idle`, `revoked.logout`, …
    pub kind: String,
    /// The session, when the event is about one.
    pub session_id: Option<String>,
    /// The subject.
    pub subject: String,
    /// The tenant.
    pub tenant: String,
    /// A short, safe detail.
    pub detail: Option<String>,
}

impl EventView {
    /// The view of an event.
    pub fn of(e: &Event) -> Self {
        Self {
            cursor: e.cursor,
            at: e.at.0,
            kind: e.kind.name(),
            session_id: e.session_id.map(|i| i.to_string()),
            subject: e.subject.clone(),
            tenant: e.tenant.clone(),
            detail: e.detail.clone(),
        }
    }
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// Events in cursor order.
    pub events: Vec<EventView>,
    /// Pass as `after` to continue (the last cursor, or the given one when empty).
    pub next_cursor: u64,
}

/// Health and readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok`.
    pub status: String,
}

/// RFC 9457 problem details (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDoc {
    /// Stable URI of the problem class, e.g. `https://sessiond.dev/problems/invalid-token`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Fixed summary of the class.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this case (never internal details).
    pub detail: String,
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn no_store_json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn with_cookie(mut res: Response, cookie: Option<&str>) -> Response {
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        res.headers_mut().append(SET_COOKIE, c);
    }
    res
}

fn parse_id(s: &str) -> Result<SessionId, Problem> {
    s.parse::<SessionId>().map_err(|_| Problem::malformed("the session id is malformed (expected ses_…)"))
}

fn parse_ip(s: Option<&str>) -> Result<Option<IpAddr>, Problem> {
    s.map(|s| s.trim().parse().map_err(|_| Problem::malformed("ip must be an IPv4 or IPv6 address"))).transpose()
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// The session of `token` must be `id`: looked up without side effects.
async fn ensure_owner(
    state: &AppState,
    ip: Option<IpAddr>,
    endpoint: &str,
    token: &str,
    id: &SessionId,
) -> Result<(), Problem> {
    let v = match state.engine().keys().verify(token) {
        Ok(v) => v,
        Err(e) => return Err(token_problem(state, ip, endpoint, Error::from(e)).await),
    };
    match state.engine().store().find_by_token(v.hash()).await? {
        Some(found) if found.record.id == *id => Ok(()),
        Some(_) => Err(Problem::new(ProblemKind::TokenMismatch, "the token does not belong to this session")),
        None => Err(Problem::from_client(&sessiond_core::ClientError::UnknownSession)),
    }
}

/// The problem for an engine error about a presented token. A token sessiond never issued
/// (bad format or tag: a guess, a forgery, garbage) counts against the source's brute-force
/// budget and becomes a 429 once the source is throttled; it is logged (never the token).
/// Tokens sessiond issued that have ended are not guesses and never count.
/// Whether a refusal is of a token sessiond never issued: those are throttled per source and
/// logged ([`token_problem`]); every other refusal is its plain problem.
fn is_forgery(e: &Error) -> bool {
    matches!(e, Error::Client(ClientError::Malformed(MalformedInput::Token)))
}

async fn token_problem(s: &AppState, ip: Option<IpAddr>, endpoint: &str, e: Error) -> Problem {
    if is_forgery(&e) {
        if let Some(p) = s.note_failure(ip, crate::throttle::Kind::Token, endpoint).await {
            return p;
        }
        tracing::info!(
            target: "sessiond::security",
            source = ?ip,
            endpoint,
            "a session token that sessiond never issued was presented"
        );
    }
    e.into()
}

fn parse_if_match(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(v) = headers.get(IF_MATCH) else { return Ok(None) };
    let bad = || Problem::malformed("If-Match must be a data revision such as \"3\"");
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s == "*" {
        return Ok(None);
    }
    if s.starts_with("W/") {
        // RFC 9110 §13.1.1: If-Match compares strongly, so a weak tag never matches; refused
        // here rather than treated as the strong tag it is not.
        return Err(Problem::malformed(
            "If-Match must be a strong entity tag such as \"3\"; a weak tag (W/) never matches",
        ));
    }
    let s = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s);
    s.parse().map(Some).map_err(|_| bad())
}

fn revision_response(rev: u64) -> Response {
    let mut res = no_store_json(StatusCode::OK, &RevisionResponse { revision: rev });
    if let Ok(v) = HeaderValue::from_str(&format!("\"{rev}\"")) {
        res.headers_mut().insert(ETAG, v);
    }
    res
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// Creates a session for an authenticated subject.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = CreateSessionRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created; hand `token` / `set_cookie` to the client", body = CreatedResponse),
        (status = 400, description = "Malformed request or unknown policy", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 409, description = "Concurrent session limit reached", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 408, response = crate::openapi::RequestTimeout),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn create(_: Service, State(s): State<AppState>, Body(req): Body<CreateSessionRequest>) -> ApiResult {
    let ip = parse_ip(req.ip.as_deref())?;
    let created = s
        .engine()
        .create(CreateRequest {
            subject: req.subject,
            tenant: req.tenant,
            policy: req.policy,
            aal: req.aal,
            amr: req.amr,
            auth_time: req.auth_time.map(sessiond_core::time::UnixMs),
            device: DeviceInfo { user_agent: req.user_agent, first_ip: ip.map(|i| i.to_string()), last_ip: None },
            data: req.data,
            previous_token: req.previous_token,
        })
        .await?;
    let session = &created.session;
    let token = created.token.expose();
    tracing::info!(session = %session.id, token_hash = %created.token.hash().short(), "session created");
    let body = CreatedResponse {
        token: token.to_owned(),
        set_cookie: s.set_cookie(token, created.policy.persistent, session.absolute_expires_at),
        session: SessionView::of(session),
        csrf_token: created.csrf_token.clone(),
        expires_in: secs(session.deadline().since(s.engine().now())),
        evicted: created.evicted.iter().map(ToString::to_string).collect(),
        replaced: created.replaced.map(|i| i.to_string()),
    };
    Ok(no_store_json(StatusCode::CREATED, &body))
}

/// Validates a token, renews its session and returns it (the application's hot path).
#[utoipa::path(post, path = "/v1/sessions/resolve", tag = "sessions", request_body = ResolveRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Valid; `token`/`set_cookie` present when rotated (also in `Set-Cookie`)", body = ResolveResponse),
        (status = 400, description = "Malformed request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Invalid, expired or revoked session, or missing API key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Step-up required by `require`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 408, response = crate::openapi::RequestTimeout),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn resolve(
    _: Service,
    State(s): State<AppState>,
    meta: ClientMeta,
    Body(req): Body<ResolveRequest>,
) -> ApiResult {
    let ip = parse_ip(req.ip.as_deref())?;
    let ctx = sessiond_core::RequestContext { ip, user_agent: req.user_agent.as_deref() };
    // Failures count against the end user's IP when the application passes it. The
    // non-waiting path first, as in `forward_auth`.
    let resolved = match s.engine().resolve_now(&req.token, &ctx) {
        Some(r) => r,
        None => s.engine().resolve(&req.token, &ctx).await,
    };
    let r = match resolved {
        Ok(r) => r,
        Err(e) => return Err(token_problem(&s, ip.or(meta.ip), "/v1/sessions/resolve", e).await),
    };
    let rec = &r.session;
    let cookie = r.rotated.as_ref().map(|t| s.set_cookie(t.expose(), r.policy.persistent, rec.absolute_expires_at));
    if let Some(want) = req.require {
        let need = sessiond_core::Requirement {
            min_aal: want.min_aal,
            max_auth_age: want.max_auth_age.map(Duration::from_secs),
        };
        if let Err(e) = r.require(&need) {
            return Ok(with_cookie(Problem::from(e).into_response(), cookie.as_deref()));
        }
    }
    let mut view = SessionView::of(rec);
    view.idle_expires_at = r.idle_expires_at.0;
    let body = ResolveResponse {
        expires_in: secs(r.expires_in()),
        absolute_expires_in: secs(rec.absolute_expires_at.since(r.now)),
        aal: r.aal(),
        renewed: r.renewed,
        csrf_token: s.engine().keys().csrf_token(&rec.id),
        token: r.rotated.as_ref().map(|t| t.expose().to_owned()),
        set_cookie: cookie.clone(),
        session: view,
    };
    Ok(with_cookie(no_store_json(StatusCode::OK, &body), cookie.as_deref()))
}

/// Remaining time of a session without renewing it.
#[utoipa::path(post, path = "/v1/sessions/peek", tag = "sessions", request_body = TokenRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Remaining time", body = PeekResponse),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, description = "Invalid, expired or revoked session, or missing API key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 408, response = crate::openapi::RequestTimeout),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn peek(_: Service, State(s): State<AppState>, meta: ClientMeta, Body(req): Body<TokenRequest>) -> ApiResult {
    let r = match s.engine().peek(&req.token).await {
        Ok(r) => r,
        Err(e) => return Err(token_problem(&s, meta.ip, "/v1/sessions/peek", e).await),
    };
    Ok(no_store_json(
        StatusCode::OK,
        &PeekResponse { idle_expires_in: secs(r.idle), absolute_expires_in: secs(r.absolute) },
    ))
}

/// Forward-auth for reverse proxies (nginx `auth_request`, Traefik ForwardAuth, Caddy
/// `forward_auth`, Envoy `ext_authz`). Any method: Envoy's HTTP `ext_authz` keeps the
/// original method and appends the original path (`/v1/auth/{rest}`).
#[utoipa::path(method(get, head, post, put, patch, delete, options), path = "/v1/auth", tag = "forward-auth",
    security(("session_cookie" = []), ("session_bearer" = [])),
    params(
        ("X-Forwarded-Uri" = Option<String>, Header, description = "Original request URI (Traefik, Caddy); normalized (RFC 3986 dot-segments, merged slashes, unreserved escapes decoded) and matched against route rules; the proxy must overwrite any client-sent value"),
        ("X-Original-URI" = Option<String>, Header, description = "Original request URI (nginx); as `X-Forwarded-Uri`"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "Original method (default: this request's method); cookie-authenticated unsafe methods get CSRF checks"),
        ("X-CSRF-Token" = Option<String>, Header, description = "The session's CSRF token; required for cookie-authenticated unsafe methods where `csrf = \"synchronizer\"`"),
    ),
    responses(
        (status = 200, description = "Valid session; facts in `X-Session-Subject`, `X-Session-Id`, `X-Session-Tenant`, `X-Session-Aal`, `X-Session-Auth-Time` (Unix seconds), `X-Session-Expires-In` (seconds), and `X-Session-Csrf-Token` when the synchronizer mode is configured; a rotated token comes back in `Set-Cookie`"),
        (status = 400, description = "The original path cannot be normalized (encoded `/`, `\\` or NUL, malformed escape, invalid UTF-8)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No, invalid, expired or revoked session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Step-up required (hint in the body and `WWW-Authenticate`) or CSRF check failed", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many tokens sessiond never issued from this source (`Retry-After`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn forward_auth(State(s): State<AppState>, req: axum::extract::Request) -> ApiResult {
    // The request itself (not a `HeaderMap` extractor, which would clone every header), split
    // so that only `Sync` parts are borrowed across the `await`. The URI, method, path (when
    // already normal), cookie and user agent are borrowed: the success path allocates only in
    // the engine and for the response (and the CSRF token in synchronizer mode).
    let (parts, _body) = req.into_parts();
    let q = ForwardAuth::of(&s, &parts.method, &parts.uri, &parts.headers, &parts.extensions)?;
    // Most requests are answered from memory with nothing to write
    // (`Engine::resolve_now`); the rest (a renewal or rotation due, a device drift, a grace
    // alias or replay, a store round trip) take the full path, boxed so that its state does
    // not enlarge every request's future. Refusals from either path go to `token_problem`.
    let resolved = match s.engine().resolve_now(q.token, &q.ctx) {
        Some(r) => r,
        None => Box::pin(s.engine().resolve(q.token, &q.ctx)).await,
    };
    match resolved {
        Ok(r) => q.answer(&s, &r),
        Err(e) => Err(token_problem(&s, q.ctx.ip, "/v1/auth", e).await),
    }
}

/// Forward-auth's answer when it needs no waiting and no side effect: the request is
/// malformed, or its session (live, expired or revoked) is known from memory with nothing
/// due ([`sessiond_core::Engine::resolve_now`]). `None` when the full handler must run: a
/// store round trip, a write, or a token sessiond never issued (whose throttling and security
/// log line live in the handler, [`token_problem`]). Used by [`crate::front`] before the
/// router; the answer is the one [`forward_auth`] would give.
pub(crate) fn forward_auth_now<B>(s: &AppState, req: &axum::http::Request<B>) -> Option<ApiResult> {
    let q = match ForwardAuth::of(s, req.method(), req.uri(), req.headers(), req.extensions()) {
        Ok(q) => q,
        Err(p) => return Some(Err(p)),
    };
    match s.engine().resolve_now(q.token, &q.ctx)? {
        Ok(r) => Some(q.answer(s, &r)),
        Err(e) if is_forgery(&e) => None,
        // What `token_problem` gives for every other refusal.
        Err(e) => Some(Err(e.into())),
    }
}

/// A forward-auth request, checked up to the session lookup.
struct ForwardAuth<'r> {
    headers: &'r HeaderMap,
    token: &'r str,
    rule: Option<&'r crate::config::RouteRule>,
    /// A cookie-authenticated request for an unsafe method (CSRF checks apply).
    cookie_unsafe: bool,
    ctx: sessiond_core::RequestContext<'r>,
}

impl<'r> ForwardAuth<'r> {
    /// The original path (normalized), the token, the route rule and the fetch-metadata check
    /// of a cookie-authenticated unsafe request.
    fn of(
        s: &'r AppState,
        method: &'r Method,
        uri: &'r Uri,
        headers: &'r HeaderMap,
        extensions: &'r axum::http::Extensions,
    ) -> Result<Self, Problem> {
        let original = OriginalHeaders::of(headers);
        let path = crate::path::normalize_cow(original.uri(uri)?).map_err(|e| Problem::malformed(e.to_string()))?;
        let Some((token, source)) = s.cookie().token(headers) else {
            return Err(Problem::missing_token());
        };
        let rule = s.rule_for(&path);
        let cookie_unsafe = source == TokenSource::Cookie && !is_safe_method(original.method(method));
        if cookie_unsafe && !fetch_metadata_ok(s, headers) {
            return Err(csrf_problem());
        }
        // What the `ClientMeta` extractor gives, with the user agent borrowed instead of copied.
        let ip = crate::app::client_ip_of(headers, extensions, s);
        let ctx =
            sessiond_core::RequestContext { ip, user_agent: headers.get(USER_AGENT).and_then(|v| v.to_str().ok()) };
        Ok(Self { headers, token, rule, cookie_unsafe, ctx })
    }

    /// The answer for a live session: the CSRF token check (synchronizer mode), the route
    /// rule's requirement, then the session facts; a rotated token goes back in `Set-Cookie`.
    fn answer(&self, s: &AppState, r: &sessiond_core::Resolution) -> ApiResult {
        let rec = &r.session;
        let cookie = r.rotated.as_ref().map(|t| s.set_cookie(t.expose(), r.policy.persistent, rec.absolute_expires_at));
        let mode = self.rule.and_then(|r| r.csrf).unwrap_or(s.http().csrf.forward_auth);
        if self.cookie_unsafe && mode == CsrfMode::Synchronizer && !csrf_token_ok(s, self.headers, &rec.id) {
            let p = Problem::new(
                ProblemKind::CsrfRejected,
                "a cookie-authenticated state change needs the session's CSRF token in X-CSRF-Token",
            );
            return Ok(with_cookie(p.into_response(), cookie.as_deref()));
        }
        if let Some(rule) = self.rule {
            if let Err(e) = r.require(&rule.requirement()) {
                return Ok(with_cookie(Problem::from(e).into_response(), cookie.as_deref()));
            }
        }
        let csrf = s
            .synchronizer_anywhere()
            .then(|| HeaderValue::from_str(&s.engine().keys().csrf_token(&rec.id)).ok())
            .flatten();
        let mut id = [0u8; 26];
        let facts = SessionHeaders {
            subject: &rec.subject,
            id: rec.id.encode_into(&mut id),
            tenant: &rec.tenant,
            aal: u16::from(r.aal()),
            auth_time: rec.auth_time.as_secs(),
            expires_in: secs(r.expires_in()),
        }
        .header_map(csrf);
        let mut res = StatusCode::OK.into_response();
        *res.headers_mut() = facts;
        Ok(with_cookie(res, cookie.as_deref()))
    }
}

const X_SESSION_SUBJECT: HeaderName = HeaderName::from_static("x-session-subject");
const X_SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");
const X_SESSION_TENANT: HeaderName = HeaderName::from_static("x-session-tenant");
const X_SESSION_AAL: HeaderName = HeaderName::from_static("x-session-aal");
const X_SESSION_AUTH_TIME: HeaderName = HeaderName::from_static("x-session-auth-time");
const X_SESSION_EXPIRES_IN: HeaderName = HeaderName::from_static("x-session-expires-in");
const X_SESSION_CSRF_TOKEN: HeaderName = HeaderName::from_static("x-session-csrf-token");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_CSRF_TOKEN: HeaderName = HeaderName::from_static("x-csrf-token");
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The session facts of a forward-auth `200`, as response header values.
struct SessionHeaders<'a> {
    subject: &'a str,
    id: &'a str,
    tenant: &'a str,
    aal: u16,
    auth_time: u64,
    expires_in: u64,
}

impl SessionHeaders<'_> {
    /// The headers of a forward-auth `200`, in this order: `X-Session-Subject`, `-Id`,
    /// `-Tenant`, `-Aal`, `-Auth-Time`, `-Expires-In`, `-Csrf-Token` (when `csrf` is given),
    /// `Cache-Control: no-store` and `Content-Length: 0`.
    ///
    /// The map is a clone of a prebuilt one with these names, whose values are then replaced
    /// in place: no header name is hashed per request. Each value owns its bytes (one small
    /// allocation, freed without atomic reference counting; an empty tenant and the AAL are
    /// static), rather than being a slice of one shared buffer, whose reference count every
    /// slice increments and decrements. A subject or tenant that is not a valid header value
    /// becomes an empty value.
    fn header_map(&self, csrf: Option<HeaderValue>) -> HeaderMap {
        const AAL: [&str; 4] = ["0", "1", "2", "3"];
        let text = |s: &str| {
            if s.is_empty() {
                HeaderValue::from_static("")
            } else {
                HeaderValue::from_bytes(s.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
            }
        };
        let number = |n: u64| {
            let mut digits = [0u8; 20];
            HeaderValue::from_bytes(decimal(&mut digits, n)).unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        let aal = match AAL.get(usize::from(self.aal)) {
            Some(v) => HeaderValue::from_static(v),
            None => number(u64::from(self.aal)),
        };
        let facts = [
            text(self.subject),
            text(self.id),
            text(self.tenant),
            aal,
            number(self.auth_time),
            number(self.expires_in),
        ];
        let mut h = session_header_template(csrf.is_some()).clone();
        let mut values = h.values_mut();
        for fact in facts {
            if let Some(v) = values.next() {
                *v = fact;
            }
        }
        if let (Some(csrf), Some(v)) = (csrf, values.next()) {
            *v = csrf;
        }
        h
    }
}

/// A forward-auth `200` with fixed, typical session facts, built the way [`forward_auth`]
/// builds a real one: the response of the benchmark's second baseline (`bench-empty
/// --session-headers`).
pub fn fixed_session_headers() -> Response {
    let facts = SessionHeaders {
        subject: "user-1234",
        id: "ses_VYQhMlMiAvHdvvtsvocA5A",
        tenant: "",
        aal: 1,
        auth_time: 1_795_333_168,
        expires_in: 879,
    }
    .header_map(None);
    let mut res = StatusCode::OK.into_response();
    *res.headers_mut() = facts;
    res
}

/// The forward-auth `200` header names in order, with placeholder values (see
/// [`SessionHeaders::header_map`]); sized so that a `Set-Cookie` and HSTS still fit
/// without rehashing.
fn session_header_template(with_csrf: bool) -> &'static HeaderMap {
    static PLAIN: OnceLock<HeaderMap> = OnceLock::new();
    static WITH_CSRF: OnceLock<HeaderMap> = OnceLock::new();
    let build = |with_csrf: bool| {
        let mut h = HeaderMap::with_capacity(12);
        for name in SESSION_HEADER_NAMES {
            h.insert(name, HeaderValue::from_static(""));
        }
        if with_csrf {
            h.insert(X_SESSION_CSRF_TOKEN, HeaderValue::from_static(""));
        }
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The body is always empty. Present here, axum does not insert it per response,
        // which would hash the name and grow the cloned entries (a clone has no spare room).
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        h
    };
    if with_csrf {
        WITH_CSRF.get_or_init(|| build(true))
    } else {
        PLAIN.get_or_init(|| build(false))
    }
}

const SESSION_HEADER_NAMES: [HeaderName; 6] =
    [X_SESSION_SUBJECT, X_SESSION_ID, X_SESSION_TENANT, X_SESSION_AAL, X_SESSION_AUTH_TIME, X_SESSION_EXPIRES_IN];

/// The decimal digits of `n`, written at the end of `digits`.
fn decimal(digits: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// Envoy `ext_authz` variant: the original path is appended to `/v1/auth`.
#[utoipa::path(method(get, head, post, put, patch, delete, options), path = "/v1/auth/{rest}", tag = "forward-auth",
    security(("session_cookie" = []), ("session_bearer" = [])),
    params(
        ("rest" = String, Path, description = "The original request path without its leading `/` (Envoy `ext_authz` `path_prefix: /v1/auth`); used when no `X-Forwarded-Uri` / `X-Original-URI` header is present"),
    ),
    responses(
        (status = 200, description = "As `/v1/auth`"),
        (status = 400, description = "The original path cannot be normalized", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No, invalid, expired or revoked session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Step-up required or CSRF check failed", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Throttled source", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn forward_auth_rest(state: State<AppState>, req: axum::extract::Request) -> ApiResult {
    forward_auth(state, req).await
}

/// The proxy headers naming the original request, found in one pass over the request's
/// headers instead of up to four hashed lookups of custom names (each hashes the whole name).
/// Every field is what `HeaderMap::get` gives for that name (its first value); `repeated`
/// says whether one of the four names came more than once, which [`OriginalHeaders::uri`]
/// refuses (a proxy that appends instead of replacing would let the client's own value win),
/// as it refuses the two URI names (or the two method names) with different values.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct OriginalHeaders<'h> {
    forwarded_uri: Option<&'h HeaderValue>,
    original_uri: Option<&'h HeaderValue>,
    forwarded_method: Option<&'h HeaderValue>,
    original_method: Option<&'h HeaderValue>,
    repeated: bool,
}

impl<'h> OriginalHeaders<'h> {
    /// Above this many header values, hashed lookups are cheaper than the scan.
    const SCAN_LIMIT: usize = 24;

    fn of(headers: &'h HeaderMap) -> Self {
        if headers.len() > Self::SCAN_LIMIT {
            return Self::looked_up(headers);
        }
        let mut o = Self::default();
        // `iter` yields every name's first value before its other values, so the first value
        // seen for a name is the one `get` returns.
        for (name, value) in headers {
            let slot = if *name == X_FORWARDED_URI {
                &mut o.forwarded_uri
            } else if *name == X_ORIGINAL_URI {
                &mut o.original_uri
            } else if *name == X_FORWARDED_METHOD {
                &mut o.forwarded_method
            } else if *name == X_ORIGINAL_METHOD {
                &mut o.original_method
            } else {
                continue;
            };
            if slot.is_some() {
                o.repeated = true;
            }
            slot.get_or_insert(value);
        }
        o
    }

    fn looked_up(headers: &'h HeaderMap) -> Self {
        Self {
            forwarded_uri: headers.get(X_FORWARDED_URI),
            original_uri: headers.get(X_ORIGINAL_URI),
            forwarded_method: headers.get(X_FORWARDED_METHOD),
            original_method: headers.get(X_ORIGINAL_METHOD),
            repeated: [X_FORWARDED_URI, X_ORIGINAL_URI, X_FORWARDED_METHOD, X_ORIGINAL_METHOD]
                .iter()
                .any(|n| headers.get_all(n).iter().nth(1).is_some()),
        }
    }

    /// The original request URI: `X-Forwarded-Uri`, else `X-Original-URI`, else the path
    /// after `/v1/auth` of `uri` (Envoy), else `/`. A header that is not text is refused.
    /// Borrowed, not copied.
    fn uri<'u>(&self, uri: &'u axum::http::Uri) -> Result<&'u str, Problem>
    where
        'h: 'u,
    {
        if self.repeated {
            return Err(Problem::malformed(
                "a header naming the original request (X-Forwarded-Uri, X-Original-URI, X-Forwarded-Method, X-Original-Method) appears more than once",
            ));
        }
        // Proxies that set both names set them from the same variable; two different values
        // mean one of them came from the client.
        let differ = |a: Option<&HeaderValue>, b: Option<&HeaderValue>| matches!((a, b), (Some(a), Some(b)) if a != b);
        if differ(self.forwarded_uri, self.original_uri) || differ(self.forwarded_method, self.original_method) {
            return Err(Problem::malformed(
                "X-Forwarded-Uri and X-Original-URI (or X-Forwarded-Method and X-Original-Method) disagree",
            ));
        }
        if let Some(v) = self.forwarded_uri.or(self.original_uri) {
            return v.to_str().map_err(|_| Problem::malformed("the original request URI header must be ASCII text"));
        }
        Ok(match uri.path().strip_prefix("/v1/auth") {
            Some(rest) if rest.starts_with('/') => rest,
            _ => "/",
        })
    }

    /// The original method: `X-Forwarded-Method` (or `X-Original-Method`), else `method`.
    fn method<'m>(&self, method: &'m axum::http::Method) -> &'m str
    where
        'h: 'm,
    {
        match self.forwarded_method.or(self.original_method) {
            // A method header that is not text is treated as unsafe.
            Some(v) => v.to_str().unwrap_or("INVALID"),
            None => method.as_str(),
        }
    }
}

/// Whether `m` (surrounding whitespace ignored, any case) is a safe method.
fn is_safe_method(m: &str) -> bool {
    let m = m.trim();
    ["GET", "HEAD", "OPTIONS", "TRACE"].iter().any(|safe| m.eq_ignore_ascii_case(safe))
}

fn csrf_problem() -> Problem {
    Problem::new(ProblemKind::CsrfRejected, "a cookie-authenticated state change from another site was refused")
}

fn header_bytes<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h [u8]> {
    headers.get(name).map(HeaderValue::as_bytes)
}

/// Whether `headers` carry a valid CSRF token for session `id`.
fn csrf_token_ok(s: &AppState, headers: &HeaderMap, id: &SessionId) -> bool {
    headers.get(X_CSRF_TOKEN).and_then(|v| v.to_str().ok()).is_some_and(|t| s.engine().keys().verify_csrf(id, t.trim()))
}

/// `Some(true)` when `Origin` is the request's own origin or a trusted one, `Some(false)` when
/// it is another (or `null`), `None` when absent.
fn origin_verdict(s: &AppState, headers: &HeaderMap) -> Option<bool> {
    let origin = headers.get(ORIGIN)?;
    let Ok(origin) = origin.to_str() else { return Some(false) };
    let origin = origin.trim().trim_end_matches('/');
    if s.http().csrf.trusted_origins.iter().any(|t| t.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return Some(true);
    }
    let Some((scheme, authority)) = origin.split_once("://") else { return Some(false) };
    // A `Secure` cookie is only ever sent over HTTPS: a plain-HTTP origin is another origin.
    if s.cookie().secure() && !scheme.eq_ignore_ascii_case("https") {
        return Some(false);
    }
    let mut hosts = vec![headers.get(HOST)];
    if s.http().trust_forwarded_headers {
        hosts.push(headers.get(X_FORWARDED_HOST));
    }
    Some(hosts.into_iter().flatten().filter_map(|h| h.to_str().ok()).any(|h| h.trim().eq_ignore_ascii_case(authority)))
}

/// The fetch-metadata check of a cookie-authenticated unsafe request: refuse what the browser
/// marks cross-site, and, when trusted origins are configured, a foreign `Origin`.
fn fetch_metadata_ok(s: &AppState, headers: &HeaderMap) -> bool {
    if header_bytes(headers, &SEC_FETCH_SITE) == Some(b"cross-site") {
        return false;
    }
    if !s.http().csrf.trusted_origins.is_empty() && origin_verdict(s, headers) == Some(false) {
        return false;
    }
    true
}

/// The CSRF proof of a cookie-authenticated logout of a live session: a valid `X-CSRF-Token`,
/// or a same-origin signal (`Origin` equal to the request's own or a trusted origin, or
/// `Sec-Fetch-Site: same-origin`). A cross-site mark, a wrong token or a foreign `Origin` is
/// refused; so is a request with no proof at all.
fn logout_csrf_ok(s: &AppState, headers: &HeaderMap, id: &SessionId) -> bool {
    if header_bytes(headers, &SEC_FETCH_SITE) == Some(b"cross-site") {
        return false;
    }
    if headers.contains_key(X_CSRF_TOKEN) {
        return csrf_token_ok(s, headers, id);
    }
    match origin_verdict(s, headers) {
        Some(v) => v,
        None => header_bytes(headers, &SEC_FETCH_SITE) == Some(b"same-origin"),
    }
}

/// Issues a new token for the session (the old one is a read-only alias for the grace window).
#[utoipa::path(post, path = "/v1/sessions/{id}/rotate", tag = "sessions", request_body = TokenRequest,
    security(("api_key" = [])),
    params(("id" = String, Path, description = "Session id (`ses_…`)")),
    responses(
        (status = 200, description = "Rotated", body = RotatedResponse),
        (status = 400, description = "Malformed id or body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Invalid, expired or revoked session, or missing API key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The token belongs to another session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 408, response = crate::openapi::RequestTimeout),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn rotate(
    _: Service,
    State(s): State<AppState>,
    meta: ClientMeta,
    PathParams(id): PathParams<String>,
    Body(req): Body<TokenRequest>,
) -> ApiResult {
    let id = parse_id(&id)?;
    ensure_owner(&s, meta.ip, "/v1/sessions/{id}/rotate", &req.token, &id).await?;
    let (rec, token) = s.engine().rotate(&req.token).await?;
    Ok(rotated_response(&s, &rec, &token))
}

fn rotated_response(s: &AppState, rec: &SessionRecord, token: &sessiond_core::token::SessionToken) -> Response {
    let persistent = s.engine().policies().get(&rec.policy).is_some_and(|p| p.persistent);
    let body = RotatedResponse {
        token: token.expose().to_owned(),
        set_cookie: s.set_cookie(token.expose(), persistent, rec.absolute_expires_at),
        csrf_token: s.engine().keys().csrf_token(&rec.id),
        session: SessionView::of(rec),
    };
    no_store_json(StatusCode::OK, &body)
}

/// Records a step-up (new `auth_time`, AAL, AMR) and rotates the token.
#[utoipa::path(post, path = "/v1/sessions/{id}/elevate", tag = "sessions", request_body = ElevateRequest,
    security(("api_key" = [])),
    params(("id" = String, Path, description = "Session id (`ses_…`)")),
    responses(
        (status = 200, description = "Elevated and rotated", body = RotatedResponse),
        (status = 400, description = "Malformed id, AAL or AMR", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Invalid, expired or revoked session, or missing API key", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The token belongs to another session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 408, response = crate::openapi::RequestTimeout),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn elevate(
    _: Service,
    State(s): State<AppState>,
    meta: ClientMeta,
    PathParams(id): PathParams<String>,
    Body(req): Body<ElevateRequest>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let ip = parse_ip(req.ip.as_deref())?;
    ensure_owner(&s, ip.or(meta.ip), "/v1/sessions/{id}/elevate", &req.token, &id).await?;
    let ctx = sessiond_core::RequestContext { ip, user_agent: req.user_agent.as_deref() };
    let (rec, token) = s.engine().elevate(&req.token, req.aal, req.amr, &ctx).await?;
    Ok(rotated_response(&s, &rec, &token))
}

/// A live session by id.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "Session id (`ses_…`)")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 400, description = "Malformed id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "No live session with this id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn show(_: Service, State(s): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let rec = s.engine().get(&id).await?.ok_or_else(Problem::no_session)?;
    let mut res = no_store_json(StatusCode::OK, &SessionView::of(&rec));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", rec.revision)) {
        res.headers_mut().insert(ETAG, v);
    }
    Ok(res)
}

/// Revokes one session.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "Session id (`ses_…`)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Malformed id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "No such session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn revoke(_: Service, State(s): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult {
    let id = parse_id(&id)?;
    if s.engine().revoke(&id, RevokeReason::Admin).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::no_session())
    }
}

/// Sets one key of the session's data (compare-and-set with `If-Match`).
#[utoipa::path(put, path = "/v1/sessions/{id}/data/{key}", tag = "data",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "Session id"),
        ("key" = String, Path, min_length = 1, max_length = 256, description = "Data key (1 to 256 bytes, no control characters)"),
        ("If-Match" = Option<String>, Header, description = "Expected data revision, e.g. `\"3\"`"),
    ),
    request_body(content = serde_json::Value, description = "Any JSON value", content_type = "application/json"),
    responses(
        (status = 200, description = "Written; new revision (also in `ETag`)", body = RevisionResponse),
        (status = 400, description = "Malformed key, value or If-Match", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "No live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Revision conflict; `current_revision` in the body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 408, response = crate::openapi::RequestTimeout),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn set_data(
    _: Service,
    State(s): State<AppState>,
    PathParams((id, key)): PathParams<(String, String)>,
    headers: HeaderMap,
    Body(value): Body<serde_json::Value>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let expected = parse_if_match(&headers)?;
    let rev = s.engine().set_data(&id, &key, value, expected).await?;
    Ok(revision_response(rev))
}

/// Removes one key of the session's data (compare-and-set with `If-Match`).
#[utoipa::path(delete, path = "/v1/sessions/{id}/data/{key}", tag = "data",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "Session id"),
        ("key" = String, Path, description = "Data key"),
        ("If-Match" = Option<String>, Header, description = "Expected data revision"),
    ),
    responses(
        (status = 200, description = "Removed; new revision", body = RevisionResponse),
        (status = 400, description = "Malformed id, key or If-Match", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "No live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Revision conflict", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn remove_data(
    _: Service,
    State(s): State<AppState>,
    PathParams((id, key)): PathParams<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let id = parse_id(&id)?;
    let expected = parse_if_match(&headers)?;
    let rev = s.engine().remove_data(&id, &key, expected).await?;
    Ok(revision_response(rev))
}

/// A page of a subject's live sessions ("your active sessions").
#[utoipa::path(get, path = "/v1/subjects/{subject}/sessions", tag = "subjects",
    security(("api_key" = [])),
    params(("subject" = String, Path, min_length = 1, max_length = 256, description = "Subject (1 to 256 bytes)"), ListQuery),
    responses(
        (status = 200, description = "A page", body = SessionPage),
        (status = 400, description = "Malformed subject, tenant, cursor, limit or id, or an unknown query parameter", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn list(
    _: Service,
    State(s): State<AppState>,
    PathParams(subject): PathParams<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult {
    let after =
        q.cursor.as_deref().map(str::parse::<PageCursor>).transpose().map_err(|e| Problem::malformed(e.to_string()))?;
    let current = q.current.as_deref().map(parse_id).transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=sessiond_core::engine::MAX_PAGE).contains(&limit) {
        return Err(Problem::malformed("limit must be 1 to 1000"));
    }
    let page = s.engine().list(q.tenant.as_deref().unwrap_or(""), &subject, after, limit).await?;
    let sessions = page
        .sessions
        .iter()
        .map(|r| {
            let mut v = SessionView::of(r);
            v.is_current = current.map(|c| c == r.id);
            v
        })
        .collect();
    Ok(no_store_json(StatusCode::OK, &SessionPage { sessions, next_cursor: page.next.map(|c| c.to_string()) }))
}

/// Revokes all of a subject's sessions, optionally except one.
#[utoipa::path(delete, path = "/v1/subjects/{subject}/sessions", tag = "subjects",
    security(("api_key" = [])),
    params(("subject" = String, Path, min_length = 1, max_length = 256, description = "Subject (1 to 256 bytes)"), RevokeSubjectQuery),
    responses(
        (status = 200, description = "Revoked", body = RevokedResponse),
        (status = 400, description = "Malformed subject, tenant or `except`, or an unknown query parameter", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn revoke_subject(
    _: Service,
    State(s): State<AppState>,
    PathParams(subject): PathParams<String>,
    QueryParams(q): QueryParams<RevokeSubjectQuery>,
) -> ApiResult {
    let except = q.except.as_deref().map(parse_id).transpose()?;
    let gone = s
        .engine()
        .revoke_subject(q.tenant.as_deref().unwrap_or(""), &subject, except.as_ref(), RevokeReason::Subject)
        .await?;
    Ok(no_store_json(StatusCode::OK, &RevokedResponse { revoked: gone.iter().map(ToString::to_string).collect() }))
}

/// Revokes every session of a tenant.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/sessions", tag = "subjects",
    security(("api_key" = [])),
    params(("tenant" = String, Path, min_length = 1, max_length = 256, description = "Tenant (1 to 256 bytes; the default, empty tenant is revoked per subject)")),
    responses(
        (status = 200, description = "Revoked", body = RevokedResponse),
        (status = 400, description = "Malformed tenant", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn revoke_tenant(_: Service, State(s): State<AppState>, PathParams(tenant): PathParams<String>) -> ApiResult {
    let gone = s.engine().revoke_tenant(&tenant).await?;
    Ok(no_store_json(StatusCode::OK, &RevokedResponse { revoked: gone.iter().map(ToString::to_string).collect() }))
}

/// Bumps the subject's security epoch: all its existing sessions stop resolving at once.
#[utoipa::path(post, path = "/v1/subjects/{subject}/epoch", tag = "subjects",
    security(("api_key" = [])),
    params(("subject" = String, Path, min_length = 1, max_length = 256, description = "Subject (1 to 256 bytes)"), TenantQuery),
    responses(
        (status = 200, description = "Bumped", body = EpochResponse),
        (status = 400, description = "Malformed subject or tenant, or an unknown query parameter", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn bump_epoch(
    _: Service,
    State(s): State<AppState>,
    PathParams(subject): PathParams<String>,
    QueryParams(q): QueryParams<TenantQuery>,
) -> ApiResult {
    let epoch = s.engine().bump_epoch(q.tenant.as_deref().unwrap_or(""), &subject).await?;
    Ok(no_store_json(StatusCode::OK, &EpochResponse { epoch }))
}

/// Browser logout: revokes the session of the cookie or bearer token, clears the cookie with
/// identical attributes and `Max-Age=0`, and sends `Clear-Site-Data: "cookies"`. Idempotent:
/// it answers 204 even when the session had already ended or the cookie was garbage. A
/// cookie logout of a live session needs a CSRF proof: the session's `X-CSRF-Token`, or a
/// same-origin `Origin` / `Sec-Fetch-Site: same-origin`.
#[utoipa::path(post, path = "/v1/logout", tag = "forward-auth",
    security(("session_cookie" = []), ("session_bearer" = [])),
    params(
        ("X-CSRF-Token" = Option<String>, Header, description = "The session's CSRF token (cookie logout without a same-origin `Origin` / `Sec-Fetch-Site`)"),
    ),
    responses(
        (status = 204, description = "Logged out; cookie cleared"),
        (status = 403, description = "Cookie logout without a CSRF proof, or cross-site", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many tokens sessiond never issued from this source (`Retry-After`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn logout(State(s): State<AppState>, meta: ClientMeta, headers: HeaderMap) -> ApiResult {
    if let Some((token, source)) = s.cookie().token(&headers) {
        if source == TokenSource::Cookie && header_bytes(&headers, &SEC_FETCH_SITE) == Some(b"cross-site") {
            return Err(csrf_problem());
        }
        match s.engine().keys().verify(token) {
            // Garbage or a forgery: nothing to revoke; still the clearing response, unless
            // the source is throttled.
            Err(e) => {
                let p = token_problem(&s, meta.ip, "/v1/logout", Error::from(e)).await;
                if p.kind() == ProblemKind::TooManyRequests {
                    return Err(p);
                }
            }
            Ok(v) => {
                if source == TokenSource::Cookie {
                    if let Some(found) = s.engine().store().find_by_token(v.hash()).await? {
                        if !logout_csrf_ok(&s, &headers, &found.record.id) {
                            return Err(Problem::new(
                                ProblemKind::CsrfRejected,
                                "a cookie logout needs the session's CSRF token (X-CSRF-Token) or a same-origin request",
                            ));
                        }
                    }
                }
                match s.engine().logout(token).await {
                    Ok(Some(id)) => tracing::info!(session = %id, "logged out"),
                    Ok(None) => {}
                    Err(Error::Client(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&s.cookie().clear()) {
        h.insert(SET_COOKIE, v);
    }
    h.insert(HeaderName::from_static("clear-site-data"), HeaderValue::from_static("\"cookies\""));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Lifecycle events after a cursor.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    security(("api_key" = [])),
    params(EventsQuery),
    responses(
        (status = 200, description = "Events", body = EventPage),
        (status = 400, description = "Malformed query, `limit` out of bounds, or an unknown query parameter", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn events(_: Service, State(s): State<AppState>, QueryParams(q): QueryParams<EventsQuery>) -> ApiResult {
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(Problem::malformed("limit must be 1 to 10000"));
    }
    let events = s.engine().events(after, limit).await?;
    let next_cursor = events.last().map_or(after, |e| e.cursor);
    Ok(no_store_json(StatusCode::OK, &EventPage { events: events.iter().map(EventView::of).collect(), next_cursor }))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Status)))]
pub async fn healthz() -> Response {
    Json(Status { status: "ok".into() }).into_response()
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, response = crate::openapi::StoreUnavailable),
    ))]
pub async fn readyz(State(s): State<AppState>) -> ApiResult {
    s.engine().store().ping().await?;
    Ok(Json(Status { status: "ok".into() }).into_response())
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    let text = s.metrics().map(|h| h.render()).unwrap_or_default();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(crate::openapi::json);
    ([(CONTENT_TYPE, "application/json")], doc.as_str()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_methods_match_in_any_case_without_allocating() {
        for m in ["GET", "get", " Head ", "OPTIONS", "tRaCe", "\tGET"] {
            assert!(is_safe_method(m), "{m:?}");
        }
        for m in ["POST", "PUT", "DELETE", "PATCH", "CONNECT", "INVALID", "", "GETX", "G ET", "GE"] {
            assert!(!is_safe_method(m), "{m:?}");
        }
        // Agrees with the allocating definition it replaced.
        for m in ["gEt", " trace", "options ", "Delete", "x", "HEAD\t"] {
            let old = matches!(m.trim().to_ascii_uppercase().as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE");
            assert_eq!(is_safe_method(m), old, "{m:?}");
        }
    }

    #[test]
    fn one_pass_original_headers_equal_hashed_lookups() {
        let names = [X_FORWARDED_URI, X_ORIGINAL_URI, X_FORWARDED_METHOD, X_ORIGINAL_METHOD];
        let mut h = HeaderMap::new();
        assert_eq!(OriginalHeaders::of(&h), OriginalHeaders::looked_up(&h));
        h.append(axum::http::header::HOST, HeaderValue::from_static("app"));
        h.append(X_ORIGINAL_METHOD, HeaderValue::from_static("POST"));
        h.append(axum::http::header::COOKIE, HeaderValue::from_static("sid=x"));
        assert_eq!(OriginalHeaders::of(&h), OriginalHeaders::looked_up(&h));
        // Repeated names: the first value wins, as with `get`.
        for (i, n) in names.iter().enumerate() {
            h.append(n.clone(), HeaderValue::from_str(&format!("/first{i}")).expect("valid"));
            h.append(HeaderName::from_static("x-other"), HeaderValue::from_static("o"));
            h.append(n.clone(), HeaderValue::from_str(&format!("/second{i}")).expect("valid"));
            assert_eq!(OriginalHeaders::of(&h), OriginalHeaders::looked_up(&h));
        }
        let o = OriginalHeaders::of(&h);
        assert_eq!(o.forwarded_uri.map(HeaderValue::as_bytes), Some(&b"/first0"[..]));
        assert_eq!(o.original_method.map(HeaderValue::as_bytes), Some(&b"POST"[..]));
        assert!(o.repeated);
        assert!(o.uri(&"/v1/auth".parse().expect("uri")).is_err(), "a repeated name is refused, not resolved");
        // Each of the four names alone, repeated, is refused; different names are not.
        for n in &names {
            let mut one = HeaderMap::new();
            one.append(n.clone(), HeaderValue::from_static("/ok"));
            assert!(!OriginalHeaders::of(&one).repeated);
            one.append(n.clone(), HeaderValue::from_static("/admin"));
            assert!(OriginalHeaders::of(&one).repeated && OriginalHeaders::looked_up(&one).repeated, "{n}");
        }
        // Past the scan limit, the hashed lookups are used; same answer.
        for i in 0..OriginalHeaders::SCAN_LIMIT {
            h.append(
                HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).expect("valid"),
                HeaderValue::from_static("p"),
            );
        }
        assert!(h.len() > OriginalHeaders::SCAN_LIMIT);
        let o = OriginalHeaders::of(&h);
        assert_eq!(o, OriginalHeaders::looked_up(&h));
        assert_eq!(o.forwarded_uri.map(HeaderValue::as_bytes), Some(&b"/first0"[..]));
    }

    #[test]
    fn original_uri_and_method_fall_back_to_the_request() {
        let h = HeaderMap::new();
        let o = OriginalHeaders::of(&h);
        let uri: axum::http::Uri = "/v1/auth/admin/x?y=1".parse().expect("uri");
        assert_eq!(o.uri(&uri).ok(), Some("/admin/x"));
        for (u, want) in [("/v1/auth", "/"), ("/v1/auth/", "/"), ("/v1/authx", "/"), ("/v1/auth?x=/a", "/")] {
            let uri: axum::http::Uri = u.parse().expect("uri");
            assert_eq!(o.uri(&uri).ok(), Some(want), "{u}");
        }
        assert_eq!(o.method(&axum::http::Method::PUT), "PUT");
        let mut h = HeaderMap::new();
        h.insert(X_ORIGINAL_URI, HeaderValue::from_static("/b"));
        h.insert(X_FORWARDED_URI, HeaderValue::from_static("/a"));
        assert!(OriginalHeaders::of(&h).uri(&uri).is_err(), "the two URI names disagree");
        h.insert(X_ORIGINAL_URI, HeaderValue::from_static("/a"));
        h.insert(X_ORIGINAL_METHOD, HeaderValue::from_static("GET"));
        h.insert(X_FORWARDED_METHOD, HeaderValue::from_static("POST"));
        assert!(OriginalHeaders::of(&h).uri(&uri).is_err(), "the two method names disagree");
        h.remove(X_ORIGINAL_METHOD);
        h.insert(X_FORWARDED_METHOD, HeaderValue::from_bytes(b"P\xffST").expect("obs-text"));
        let o = OriginalHeaders::of(&h);
        assert_eq!(o.uri(&uri).ok(), Some("/a"), "both URI names, the same value");
        assert_eq!(o.method(&axum::http::Method::GET), "INVALID");
        h.insert(X_FORWARDED_URI, HeaderValue::from_bytes(b"/\xff").expect("obs-text"));
        assert!(OriginalHeaders::of(&h).uri(&uri).is_err());
    }

    #[test]
    fn session_headers_are_the_values_of_the_former_one_by_one_inserts() {
        for (subject, tenant) in [("alice", ""), ("user-1", "acme"), ("caf\u{e9}", "t"), ("bad\nsubject", "ok")] {
            for csrf in [None, Some(HeaderValue::from_static("csrf-tok"))] {
                let h =
                    SessionHeaders { subject, id: "ses_0123", tenant, aal: 2, auth_time: 1_700_000_000, expires_in: 0 }
                        .header_map(csrf.clone());
                // What the former code built: one insert per header, in this order.
                let text =
                    |v: &str| HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""));
                let mut want = HeaderMap::new();
                want.insert(X_SESSION_SUBJECT, text(subject));
                want.insert(X_SESSION_ID, HeaderValue::from_static("ses_0123"));
                want.insert(X_SESSION_TENANT, text(tenant));
                want.insert(X_SESSION_AAL, HeaderValue::from(2u16));
                want.insert(X_SESSION_AUTH_TIME, HeaderValue::from(1_700_000_000u64));
                want.insert(X_SESSION_EXPIRES_IN, HeaderValue::from(0u64));
                if let Some(c) = csrf {
                    want.insert(X_SESSION_CSRF_TOKEN, c);
                }
                want.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                want.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
                let pairs = |m: &HeaderMap| m.iter().map(|(n, v)| (n.clone(), v.clone())).collect::<Vec<_>>();
                assert_eq!(pairs(&h), pairs(&want), "{subject:?}");
                // Room for a Set-Cookie and HSTS.
                let mut h = h;
                let cap = h.capacity();
                h.append(SET_COOKIE, HeaderValue::from_static("sid=x"));
                h.insert(axum::http::header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=1"));
                assert_eq!(h.capacity(), cap);
            }
        }
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            let mut digits = [0u8; 20];
            assert_eq!(decimal(&mut digits, n), n.to_string().as_bytes());
        }
        // An AAL outside 0-3 (not produced by the engine) is still written as a number.
        let h =
            SessionHeaders { subject: "s", id: "i", tenant: "", aal: 7, auth_time: 0, expires_in: 0 }.header_map(None);
        assert_eq!(h.get(X_SESSION_AAL).and_then(|v| v.to_str().ok()), Some("7"));
    }
}
