//! [`SessionLayer`] and its [`SessionService`]: resolve the credential, check CSRF, run the
//! inner service, save pending changes, and set the cookie — in that order.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, HOST, ORIGIN, SET_COOKIE, USER_AGENT};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use axum::response::IntoResponse;
use sessiond_core::Engine;
use tower::{Layer, Service};

use crate::backend::{ClientInfo, InProcess, SecretToken, SessionBackend};
use crate::config::{SessionConfig, CSRF_HEADER, TOKEN_HEADER};
use crate::error::{CsrfFailure, Error};
use crate::extract::SlotHandle;
use crate::session::{CookieAction, Slot, Transport};

/// The tower layer that gives every request a session slot.
///
/// Per request it:
/// 1. takes the credential from `Authorization: Bearer sds_…` or else the session cookie;
///    anything that is not shaped like a token is "no session" (never a 500);
/// 2. resolves it with the backend (forged, unknown, expired and revoked tokens are refused,
///    never adopted; a refused cookie is expired in the response; a store outage is a 503);
/// 3. for cookie-authenticated `POST`/`PUT`/`PATCH`/`DELETE` (any method but `GET`, `HEAD`,
///    `OPTIONS`, `TRACE`): refuses `Sec-Fetch-Site: cross-site`, a foreign `Origin` and a
///    missing or wrong `X-CSRF-Token` with 403;
/// 4. runs the inner service with the slot in the request extensions (see
///    [`Session`](crate::Session), [`MaybeSession`](crate::MaybeSession));
/// 5. saves buffered data writes **before** returning the response — a 503 (store down) or
///    409 (concurrent change) replaces the response if that fails; nothing is saved after a
///    5xx from the handler;
/// 6. sets the cookie (`Set-Cookie` with exactly `Path=/; Secure; HttpOnly; SameSite=Lax`,
///    `Max-Age` only for persistent policies) or, for bearer clients, `X-Session-Token`,
///    when a token was issued; clears it with `Clear-Site-Data: "cookies"` on logout; adds
///    `Cache-Control: no-store` whenever a token travels.
///
/// # Examples
/// ```
/// use axum::{routing::get, Router};
/// use sessiond_tower::{Session, SessionLayer};
///
/// # fn app(engine: sessiond_core::Engine) -> Router {
/// async fn me(session: Session) -> String {
///     session.subject()
/// }
/// Router::new().route("/me", get(me)).layer(SessionLayer::in_process(engine))
/// # }
/// ```
#[derive(Clone)]
pub struct SessionLayer {
    backend: Arc<dyn SessionBackend>,
    config: Arc<SessionConfig>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer").field("backend", &self.backend).field("config", &self.config).finish()
    }
}

impl SessionLayer {
    /// A layer over any backend, with the production cookie ([`SessionConfig::production`]).
    pub fn new(backend: impl SessionBackend) -> Self {
        Self::from_backend(Arc::new(backend))
    }

    /// A layer over a shared backend.
    pub fn from_backend(backend: Arc<dyn SessionBackend>) -> Self {
        Self { backend, config: Arc::new(SessionConfig::production()) }
    }

    /// The in-process mode: sessions live in `engine`, in this process.
    pub fn in_process(engine: Engine) -> Self {
        Self::new(InProcess::new(engine))
    }

    /// The remote mode: sessions live in the sessiond server at `base_url` (for example
    /// `https://sessiond.internal:8443`), called with the service API key `api_key`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a base URL that is not `http(s)://…`.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn remote(base_url: &str, api_key: impl Into<String>) -> Result<Self, Error> {
        Ok(Self::new(crate::backend::Remote::new(base_url, api_key)?))
    }

    /// Replaces the cookie and CSRF settings.
    #[must_use]
    pub fn with_config(mut self, config: SessionConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// The cookie and CSRF settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn SessionBackend> {
        &self.backend
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService { inner, layer: self.clone() }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Use the service that was driven to readiness, leave a fresh clone in its place
        // (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let config = &layer.config;
            let (presented, transport) = credential(req.headers(), config);
            let client = ClientInfo {
                ip: req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
                user_agent: req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
            };
            let mut slot = Slot::new(layer.backend.clone(), client, presented.clone(), transport);
            if transport != Transport::Bearer && is_unsafe(req.method()) && !config.cross_site_login() {
                slot.login_refused = cross_site(req.headers(), config).err();
            }
            let slot = Arc::new(slot);

            if let Some(token) = presented.as_ref().filter(|t| SecretToken::looks_valid(t.expose())) {
                // Most requests are answered from memory with nothing to write; the rest
                // (a renewal or rotation due, a store round trip) take the full path.
                let resolved = match layer.backend.resolve_now(token.expose(), &slot.client) {
                    Some(r) => r,
                    None => layer.backend.resolve(token.expose(), &slot.client).await,
                };
                match resolved {
                    Ok(r) => slot.adopt(r.session, token.clone(), r.rotated),
                    Err(Error::Unauthenticated) => {
                        tracing::debug!(?transport, "presented session token refused");
                        slot.lock().cookie = refused_cookie(transport);
                    }
                    Err(e) => return Ok(finish_headers(&slot, config, e.into_response())),
                }
            } else if presented.is_some() {
                // Not even shaped like a token: "no session", and the cookie is expired.
                tracing::debug!(?transport, "malformed session credential ignored");
                slot.lock().cookie = refused_cookie(transport);
            }

            if transport == Transport::Cookie && is_unsafe(req.method()) {
                if let Err(f) = check_csrf(&slot, req.headers(), config) {
                    tracing::info!(failure = ?f, method = %req.method(), path = %req.uri().path(), "CSRF check refused a request");
                    return Ok(finish_headers(&slot, config, Error::CsrfRejected(f).into_response()));
                }
            }

            req.extensions_mut().insert(SlotHandle(slot.clone()));
            let res = inner.call(req).await?.map(Body::new);
            Ok(finish(&slot, config, res).await)
        })
    }
}

fn refused_cookie(transport: Transport) -> CookieAction {
    if transport == Transport::Cookie {
        CookieAction::Expire
    } else {
        CookieAction::Keep
    }
}

/// The credential: a bearer `sds_…` token wins (it is explicit); otherwise the cookie.
/// A bearer credential that is not a sessiond token belongs to someone else (the app's own
/// API keys, say) and is ignored.
fn credential(headers: &HeaderMap, config: &SessionConfig) -> (Option<SecretToken>, Transport) {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, cred)| cred.trim())
        .filter(|cred| cred.starts_with(sessiond_core::token::TOKEN_PREFIX));
    if let Some(b) = bearer {
        return (Some(SecretToken::new(b)), Transport::Bearer);
    }
    match config.find_cookie(headers) {
        Some(c) => (Some(SecretToken::new(c)), Transport::Cookie),
        None => (None, Transport::None),
    }
}

fn is_unsafe(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// CSRF defences for a cookie-authenticated state change with a valid session. Without a
/// valid session there is no ambient authority to abuse (and `SameSite=Lax` keeps the cookie
/// off cross-site POSTs anyway).
fn check_csrf(slot: &Slot, headers: &HeaderMap, config: &SessionConfig) -> Result<(), CsrfFailure> {
    let Some(info) = slot.lock().current.as_ref().map(|c| c.info.clone()) else {
        return Ok(());
    };
    cross_site(headers, config)?;
    let Some(presented) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::trim) else {
        return Err(CsrfFailure::MissingToken);
    };
    if !slot.backend.verify_csrf(&info, presented) {
        return Err(CsrfFailure::WrongToken);
    }
    Ok(())
}

/// The Fetch-Metadata and `Origin` checks: refuses a request the browser marked
/// `Sec-Fetch-Site: cross-site` or whose `Origin` is not allowed. Guards state changes of a
/// cookie session, and logins (login CSRF) whatever the session.
fn cross_site(headers: &HeaderMap, config: &SessionConfig) -> Result<(), CsrfFailure> {
    if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site")) {
        return Err(CsrfFailure::CrossSite);
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let host = headers.get(HOST).and_then(|v| v.to_str().ok());
        if !origin.to_str().is_ok_and(|o| config.origin_allowed(o, host)) {
            return Err(CsrfFailure::OriginNotAllowed);
        }
    }
    Ok(())
}

/// Saves buffered writes (unless the handler failed), then sets the cookie headers.
async fn finish(slot: &Slot, config: &SessionConfig, res: Response<Body>) -> Response<Body> {
    let res = if res.status().is_server_error() {
        let dropped = slot.lock().current.as_mut().map(|c| std::mem::take(&mut c.pending).len()).unwrap_or(0);
        if dropped > 0 {
            tracing::debug!(dropped, "handler failed; session data writes not saved");
        }
        res
    } else {
        match slot.save().await {
            Ok(()) => res,
            Err(e) => {
                tracing::warn!(error = %e, "session data could not be saved; the response is replaced");
                e.into_response()
            }
        }
    };
    finish_headers(slot, config, res)
}

/// The cookie / token headers of whatever response goes out (a rotation that happened must
/// reach the client even on an error response, or it would lose its session).
fn finish_headers(slot: &Slot, config: &SessionConfig, mut res: Response<Body>) -> Response<Body> {
    let (action, transport) = {
        let s = slot.lock();
        (s.cookie.clone(), s.transport)
    };
    let h = res.headers_mut();
    match action {
        CookieAction::Keep => {}
        CookieAction::Expire => append(h, SET_COOKIE, &config.clear_cookie()),
        CookieAction::Logout => {
            append(h, SET_COOKIE, &config.clear_cookie());
            h.insert(HeaderName::from_static("clear-site-data"), HeaderValue::from_static("\"cookies\""));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        CookieAction::Set(issued) => {
            if transport == Transport::Bearer {
                if let Ok(mut v) = HeaderValue::from_str(issued.token.expose()) {
                    v.set_sensitive(true);
                    h.insert(HeaderName::from_static(TOKEN_HEADER), v);
                }
            } else {
                append(h, SET_COOKIE, &config.set_cookie(issued.token.expose(), issued.max_age));
            }
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    res
}

fn append(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(mut v) = HeaderValue::from_str(value) {
        v.set_sensitive(true);
        h.append(name, v);
    }
}
