//! The application state, the router and the middleware every response passes through.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, STRICT_TRANSPORT_SECURITY, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sessiond_core::Engine;
use tower_http::catch_panic::CatchPanicLayer;

use crate::api;
use crate::api_key::ApiKeys;
use crate::config::{BruteForceConfig, CsrfConfig, CsrfMode, RouteMatching, RouteRule};
use crate::cookie::{bearer, CookieSettings};
use crate::problem::{Problem, ProblemKind, PROBLEM_JSON};
use crate::throttle::{Kind, Source, Throttle, Verdict};

/// Settings of the HTTP layer (the engine has its own).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Cookie name and attributes.
    pub cookie: CookieSettings,
    /// Step-up rules for forward-auth.
    pub routes: Vec<RouteRule>,
    /// How paths are compared with the rules' prefixes.
    pub route_matching: RouteMatching,
    /// Take client IPs from `X-Forwarded-For` / `X-Real-IP`.
    pub trust_forwarded_headers: bool,
    /// Whether responses travel over TLS served by sessiond (adds HSTS).
    pub tls: bool,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// CSRF defences of the browser-facing endpoints.
    pub csrf: CsrfConfig,
    /// Brute-force throttling.
    pub brute_force: BruteForceConfig,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            cookie: CookieSettings::production(),
            routes: Vec::new(),
            route_matching: RouteMatching::default(),
            trust_forwarded_headers: false,
            tls: false,
            max_body_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
            csrf: CsrfConfig::default(),
            brute_force: BruteForceConfig::default(),
        }
    }
}

/// Shared state of all handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    engine: Engine,
    /// Keys from the data directory's file (reloaded when it changes).
    file_keys: std::sync::RwLock<ApiKeys>,
    /// Keys from the environment (fixed).
    env_keys: ApiKeys,
    http: HttpSettings,
    metrics: Option<PrometheusHandle>,
    throttle: Arc<Throttle>,
    /// Whether some forward-auth request may need the synchronizer token (then 200 responses
    /// carry `X-Session-Csrf-Token` for the application to embed).
    synchronizer_anywhere: bool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("env_keys", &self.inner.env_keys).field("http", &self.inner.http).finish()
    }
}

impl AppState {
    /// State over `engine`, accepting `api_keys` (fixed, e.g. from the environment) for
    /// service calls, plus the keys later set with [`AppState::replace_file_keys`].
    pub fn new(engine: Engine, api_keys: ApiKeys, http: HttpSettings) -> Self {
        Self::build(engine, api_keys, ApiKeys::default(), http, None)
    }

    fn build(
        engine: Engine,
        env_keys: ApiKeys,
        file_keys: ApiKeys,
        http: HttpSettings,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        let throttle = Arc::new(Throttle::new(http.brute_force.clone()));
        Self::build_with(engine, env_keys, file_keys, http, metrics, throttle)
    }

    fn build_with(
        engine: Engine,
        env_keys: ApiKeys,
        file_keys: ApiKeys,
        mut http: HttpSettings,
        metrics: Option<PrometheusHandle>,
        throttle: Arc<Throttle>,
    ) -> Self {
        if http.route_matching == RouteMatching::Folded {
            for r in &mut http.routes {
                r.prefix = crate::path::fold(&r.prefix).into_owned();
            }
        }
        // Longest prefix first, so the first match is the most specific rule.
        http.routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let synchronizer_anywhere = http.csrf.forward_auth == CsrfMode::Synchronizer
            || http.routes.iter().any(|r| r.csrf == Some(CsrfMode::Synchronizer));
        let file_keys = std::sync::RwLock::new(file_keys);
        Self {
            inner: Arc::new(StateInner { engine, file_keys, env_keys, http, metrics, throttle, synchronizer_anywhere }),
        }
    }

    /// Serves `/metrics` from `handle`.
    pub fn with_metrics(self, handle: PrometheusHandle) -> Self {
        let file = self.inner.file_keys.read().map(|k| k.clone()).unwrap_or_default();
        Self::build_with(
            self.inner.engine.clone(),
            self.inner.env_keys.clone(),
            file,
            self.inner.http.clone(),
            Some(handle),
            self.inner.throttle.clone(),
        )
    }

    /// Replaces the keys loaded from the data directory's key file.
    pub fn replace_file_keys(&self, keys: ApiKeys) {
        match self.inner.file_keys.write() {
            Ok(mut g) => *g = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    /// Whether `key` is an accepted API key.
    pub fn verify_api_key(&self, key: &str) -> bool {
        let in_file = match self.inner.file_keys.read() {
            Ok(g) => g.verify(key).is_some(),
            Err(poisoned) => poisoned.into_inner().verify(key).is_some(),
        };
        // Both sets are always checked, so timing does not tell which one matched.
        let in_env = self.inner.env_keys.verify(key).is_some();
        in_file | in_env
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The cookie settings.
    pub fn cookie(&self) -> &CookieSettings {
        &self.inner.http.cookie
    }

    /// The HTTP settings.
    pub fn http(&self) -> &HttpSettings {
        &self.inner.http
    }

    /// The Prometheus handle, when metrics are installed.
    pub fn metrics(&self) -> Option<&PrometheusHandle> {
        self.inner.metrics.as_ref()
    }

    /// The brute-force throttle.
    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }

    /// Whether forward-auth hands the application the CSRF token (`X-Session-Csrf-Token`).
    pub fn synchronizer_anywhere(&self) -> bool {
        self.inner.synchronizer_anywhere
    }

    /// Records a failure of `kind` by `ip` at `endpoint`. `Some` 429 problem when the source
    /// is now throttled; the first throttled failure per window raises a `brute_force` event
    /// and a warning.
    pub async fn note_failure(&self, ip: Option<IpAddr>, kind: Kind, endpoint: &str) -> Option<Problem> {
        let source = Source::of(ip);
        let what = kind.as_str();
        match self.inner.throttle.fail(kind, source, self.inner.engine.now()) {
            Verdict::Allowed => None,
            Verdict::Throttled { retry_after, alert } => {
                metrics::counter!("sessiond_brute_force_throttled_total", "what" => what).increment(1);
                if alert {
                    tracing::warn!(
                        target: "sessiond::security",
                        source = %source,
                        what,
                        endpoint,
                        "brute force suspected: source throttled"
                    );
                    let detail = format!("source={source} what={what} endpoint={endpoint}");
                    let event = sessiond_core::Event::new(
                        self.inner.engine.now(),
                        sessiond_core::EventKind::BruteForce,
                        None,
                        "",
                        "",
                    )
                    .with_detail(detail);
                    self.inner.engine.record_event(event).await;
                }
                Some(Problem::too_many(retry_after))
            }
        }
    }

    /// The most specific step-up rule covering `path` (a normalized path), compared as
    /// [`HttpSettings::route_matching`] says.
    pub fn rule_for(&self, path: &str) -> Option<&RouteRule> {
        let http = &self.inner.http;
        if http.routes.is_empty() {
            return None;
        }
        match http.route_matching {
            RouteMatching::Exact => http.routes.iter().find(|r| r.matches(path)),
            RouteMatching::Folded => {
                let folded = crate::path::fold(path);
                http.routes.iter().find(|r| r.matches(&folded))
            }
        }
    }

    /// The `Set-Cookie` value for `token` of a session that ends at `absolute_expires_at`
    /// under `policy` (persistent policies get `Max-Age`).
    pub fn set_cookie(
        &self,
        token: &str,
        persistent: bool,
        absolute_expires_at: sessiond_core::time::UnixMs,
    ) -> String {
        let max_age = persistent.then(|| absolute_expires_at.since(self.inner.engine.now()));
        self.inner.http.cookie.set(token, max_age)
    }
}

/// How often the metrics recorder's upkeep runs (see [`install_metrics`]).
pub const METRICS_UPKEEP_PERIOD: Duration = Duration::from_secs(1);

/// Installs the process-wide Prometheus recorder once and returns its handle (the same handle
/// on later calls). `None` when another recorder was installed first.
///
/// The recorder keeps every histogram sample (the request-duration histogram takes one per
/// request, 24 bytes) until its upkeep folds them into the buckets; `install_recorder` leaves
/// that upkeep to the caller, and a `/metrics` scrape runs it too. So that memory does not
/// grow with the requests served when nobody scrapes (decision D27), a thread of its own,
/// `sessiond-metrics`, runs the upkeep every [`METRICS_UPKEEP_PERIOD`] for the life of the
/// process: pending samples stay bounded by one period's requests.
pub fn install_metrics() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0])
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new().name("sessiond-metrics".into()).spawn(move || loop {
                std::thread::sleep(METRICS_UPKEEP_PERIOD);
                upkeep.run_upkeep();
            });
            if let Err(e) = spawned {
                // Only a scrape drains the samples then; say so rather than run without metrics.
                tracing::warn!(error = %e, "could not start the metrics upkeep thread: histogram samples are \
                    kept until /metrics is scraped");
            }
            Some(handle)
        })
        .clone()
}

/// The full v1 router over `state`, with the common middleware.
pub fn router(state: AppState) -> Router {
    let http = state.http().clone();
    let routes = Router::new()
        .route("/v1/sessions", post(api::create))
        .route("/v1/sessions/resolve", post(api::resolve))
        .route("/v1/sessions/peek", post(api::peek))
        .route("/v1/auth", any(api::forward_auth))
        .route("/v1/auth/", any(api::forward_auth))
        .route("/v1/auth/{*rest}", any(api::forward_auth_rest))
        .route("/v1/sessions/{id}", get(api::show).delete(api::revoke))
        .route("/v1/sessions/{id}/rotate", post(api::rotate))
        .route("/v1/sessions/{id}/elevate", post(api::elevate))
        .route("/v1/sessions/{id}/data/{key}", put(api::set_data).delete(api::remove_data))
        .route("/v1/subjects/{subject}/sessions", get(api::list).delete(api::revoke_subject))
        .route("/v1/subjects/{subject}/epoch", post(api::bump_epoch))
        .route("/v1/tenants/{tenant}/sessions", delete(api::revoke_tenant))
        .route("/v1/logout", post(api::logout))
        .route("/v1/events", get(api::events))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(api::openapi))
        .with_state(state);
    with_common_layers(routes, &http)
}

/// The handler of the benchmark's [`empty_router`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyHandler {
    /// `GET /` does nothing: the baseline of the forward-auth bar.
    Empty,
    /// Answers with the six `X-Session-*` headers of a forward-auth `200` (fixed, typical
    /// values): a second baseline, to tell the cost of the larger response from the cost of
    /// the session work.
    SessionHeaders,
    /// Does nothing, but takes an `Arc` state from the router the way every v1 handler takes
    /// [`AppState`]: a third baseline, to tell what axum's per-request clones of a handler
    /// that has state cost (the empty handler is zero-sized, so cloning its route is nearly
    /// free).
    WithState,
    /// Does nothing, with none of the common middleware: the plainest empty axum handler
    /// (`Router::new().route("/", get(|| async {}))`), a fourth baseline. Forward-auth's
    /// common case is answered before the router and its middleware ([`crate::front`]), so
    /// the benchmark compares it with this one too.
    Bare,
}

/// An empty `GET /` handler behind [`with_common_layers`] (except [`EmptyHandler::Bare`]):
/// the baselines of the forward-auth benchmark (see [`EmptyHandler`] for the variants).
pub fn empty_router(http: &HttpSettings, handler: EmptyHandler) -> Router {
    // The same process-wide metrics recorder as `serve`, so the baseline pays for the same
    // per-request metrics as the real routes.
    let _ = install_metrics();
    let router = match handler {
        EmptyHandler::Empty => Router::new().route("/", get(|| async {})),
        EmptyHandler::SessionHeaders => Router::new().route("/", get(|| async { crate::api::fixed_session_headers() })),
        EmptyHandler::WithState => {
            Router::new().route("/", get(|_: axum::extract::State<Arc<u64>>| async {})).with_state(Arc::new(0u64))
        }
        EmptyHandler::Bare => return Router::new().route("/", get(|| async {})),
    };
    with_common_layers(router, http)
}

/// The middleware stack shared by the v1 router and the benchmark's empty handler: problem
/// fallbacks, body limit, `Cache-Control: no-store`, HSTS under TLS, panic catching, request
/// metrics and tracing.
pub fn with_common_layers(router: Router, http: &HttpSettings) -> Router {
    let hsts = http.tls;
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::map_response(move |res: Response| finish(res, hsts)))
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked");
            Problem::new(ProblemKind::Internal, "internal error").into_response()
        }))
        .layer(middleware::from_fn(track))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

async fn not_found() -> Problem {
    Problem::new(ProblemKind::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> Problem {
    Problem::new(ProblemKind::MethodNotAllowed, "this endpoint does not support this method")
}

async fn finish(res: Response, hsts: bool) -> Response {
    finish_response(res, hsts)
}

/// Every response: errors become problem+json (whatever produced them), nothing is cached,
/// and TLS responses carry HSTS. (The last step of [`with_common_layers`], also applied by
/// [`crate::front::Front`] to the answers it gives before the router.)
pub(crate) fn finish_response(res: Response, hsts: bool) -> Response {
    let status = res.status();
    let is_problem = res.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    let mut res = if (status.is_client_error() || status.is_server_error()) && !is_problem {
        let kind = ProblemKind::for_status(status);
        let detail = match kind {
            ProblemKind::PayloadTooLarge => "the request body is larger than the limit",
            ProblemKind::Internal => "internal error",
            _ => "the request was refused",
        };
        let mut p = Problem::new(kind, detail).into_response();
        *p.status_mut() = status;
        p
    } else {
        res
    };
    let h = res.headers_mut();
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if hsts {
        h.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    res
}

/// Request count and latency per matched route and status.
///
/// The metric handles are registered once per (route template, status) and cached, so the
/// per-request cost is one read-locked map lookup and two atomic updates — no label strings
/// are built on the hot path.
async fn track(req: Request, next: Next) -> Response {
    // Request latency for the metrics only; session logic reads time through the engine.
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    let route = req.extensions().get::<axum::extract::MatchedPath>().cloned();
    let res = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", |p| p.as_str());
    let (count, latency) = route_metrics(route, res.status());
    count.increment(1);
    latency.record(start.elapsed().as_secs_f64());
    res
}

/// A route's request counter and latency histogram.
pub(crate) type RouteHandles = (metrics::Counter, metrics::Histogram);

/// The metric handles of `route` (a route template) answering `status`, registered once.
pub(crate) fn route_metrics(route: &str, status: StatusCode) -> RouteHandles {
    type Cache = std::sync::RwLock<std::collections::HashMap<String, Vec<(u16, RouteHandles)>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let code = status.as_u16();
    let hit = cache
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(route)
        .and_then(|v| v.iter().find(|(c, _)| *c == code).map(|(_, h)| h.clone()));
    if let Some(h) = hit {
        return h;
    }
    // Route templates come from the router (a fixed set), so the cache stays small.
    let handles = (
        metrics::counter!("sessiond_http_requests_total", "route" => route.to_owned(), "status" => status.as_str().to_owned()),
        metrics::histogram!("sessiond_http_request_duration_seconds", "route" => route.to_owned()),
    );
    cache.write().unwrap_or_else(|e| e.into_inner()).entry(route.to_owned()).or_default().push((code, handles.clone()));
    handles
}

/// A JSON body whose rejections are problems: 415 for a wrong content type, 413 for an
/// oversized body (once the limit has been read), 408 when the body does not arrive within
/// [`BODY_READ_TIMEOUT`] (whatever `Content-Length` announced), 400 for JSON that does not
/// parse or does not fit. The 400 messages name where the body went wrong (line, column,
/// field path) and what was expected, never the value the client sent: a body may hold a
/// pasted token or secret.
#[derive(Debug)]
pub struct Body<T>(pub T);

/// How long a client may take to send a request body once its head has arrived.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl<T, S> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Problem::new(
                ProblemKind::UnsupportedMediaType,
                "the request body must be JSON with Content-Type: application/json",
            ));
        }
        let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::Bytes::from_request(req, state)).await {
            Err(_) => return Err(Problem::new(ProblemKind::RequestTimeout, "the request body did not arrive in time")),
            Ok(Err(rej)) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(Problem::new(ProblemKind::PayloadTooLarge, "the request body is larger than the limit"))
            }
            Ok(Err(_)) => return Err(Problem::malformed("the request body could not be read")),
            Ok(Ok(b)) => b,
        };
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| json_problem(&e))?;
        de.end().map_err(|e| {
            Problem::malformed(format!(
                "the request body has data after the JSON value (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        Ok(Body(value))
    }
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn json_problem(e: &serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let inner = e.inner();
    let at = format!("line {}, column {}", inner.line(), inner.column());
    if !inner.is_data() {
        return Problem::malformed(format!("the request body is not valid JSON ({at})"));
    }
    let reason = data_reason(inner);
    // The path of an unknown field ends with the client's key: name its parent instead.
    let mut segments: Vec<_> = e.path().iter().collect();
    if reason.starts_with("unknown field") {
        segments.pop();
    }
    let mut path = String::new();
    for seg in segments {
        match seg {
            serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            serde_path_to_error::Segment::Enum { variant } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(variant);
            }
            serde_path_to_error::Segment::Unknown => path.push_str(".?"),
        }
    }
    let field = if path.is_empty() { String::new() } else { format!(" at `{}`", short(path)) };
    Problem::malformed(format!("the request body does not have the expected shape{field} ({at}): {reason}"))
}

/// What serde says was wrong with a value, without the value: serde's messages quote what the
/// client sent (`invalid type: string "…", expected u8`), and a body may hold a secret. The
/// expectation comes from our own types and is kept.
fn data_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // serde_json appends " at line L column C"; the caller states the position itself.
    let msg = msg.rsplit_once(" at line ").map_or(msg.as_str(), |(m, _)| m);
    if msg.starts_with("missing field `") {
        return short(msg.to_owned());
    }
    let kind = ["invalid type", "invalid value", "invalid length", "unknown field", "unknown variant"]
        .into_iter()
        .find(|k| msg.starts_with(k))
        .unwrap_or("invalid value");
    match msg.rsplit_once(", expected ") {
        Some((_, expected)) => short(format!("{kind}, expected {expected}")),
        None => kind.to_owned(),
    }
}

fn short(s: String) -> String {
    let mut s = s;
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Path parameters whose rejections are 400 problems.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| PathParams(v))
            .map_err(|e: PathRejection| Problem::malformed(short(format!("bad path parameter: {}", e.body_text()))))
    }
}

/// Query parameters whose rejections are 400 problems.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryParams(v))
            .map_err(|e: QueryRejection| Problem::malformed(short(format!("bad query string: {}", e.body_text()))))
    }
}

/// A service call authenticated with an API key (`Authorization: Bearer sdk_…`).
#[derive(Debug, Clone, Copy)]
pub struct Service;

impl FromRequestParts<AppState> for Service {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = client_ip(parts, state);
        // A source throttled for wrong keys is refused before its key is even checked, so
        // that guessing gets no faster than the refill rate.
        if let Some(retry) = state.throttle().blocked(Kind::ApiKey, Source::of(peer), state.engine().now()) {
            metrics::counter!("sessiond_brute_force_throttled_total", "what" => "api_key").increment(1);
            return Err(Problem::too_many(retry));
        }
        if bearer(&parts.headers).is_some_and(|k| state.verify_api_key(k)) {
            return Ok(Service);
        }
        // Never log the presented key; the path and peer are enough to investigate.
        tracing::warn!(path = %parts.uri.path(), peer = ?peer, "service call refused: missing or wrong API key");
        metrics::counter!("sessiond_api_key_rejections_total").increment(1);
        if let Some(p) = state.note_failure(peer, Kind::ApiKey, parts.uri.path()).await {
            return Err(p);
        }
        Err(Problem::unauthorized_client())
    }
}

/// The client's IP and user agent, as far as this request tells.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    /// Client IP: forwarded headers when trusted, else the peer address.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, if it is text.
    pub user_agent: Option<String>,
}

impl ClientMeta {
    /// The engine's request context.
    pub fn context(&self) -> sessiond_core::RequestContext<'_> {
        sessiond_core::RequestContext { ip: self.ip, user_agent: self.user_agent.as_deref() }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

fn forwarded_ip(headers: &HeaderMap) -> Option<IpAddr> {
    let xff = headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next());
    let real = headers.get(X_REAL_IP).and_then(|v| v.to_str().ok());
    xff.or(real).and_then(|s| s.trim().parse().ok())
}

/// The client IP: forwarded headers when trusted, else the peer address.
fn client_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    client_ip_of(&parts.headers, &parts.extensions, state)
}

/// [`client_ip`] from a request's headers and extensions.
pub(crate) fn client_ip_of(headers: &HeaderMap, extensions: &Extensions, state: &AppState) -> Option<IpAddr> {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if state.inner.http.trust_forwarded_headers {
        forwarded_ip(headers).or(peer)
    } else {
        peer
    }
}

impl FromRequestParts<AppState> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts, state);
        let user_agent = parts.headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Self { ip, user_agent })
    }
}
