//! The server's outermost service: forward-auth's common case answered on the spot, every
//! other request through the v1 router.
//!
//! Forward-auth is the one endpoint on every request of every protected application, and most
//! of its answers need no waiting: the session is in memory and nothing is due
//! ([`sessiond_core::Engine::resolve_now`]). For those, going through axum's router and the
//! common middleware costs more than the answer itself (a route lookup, a clone of the boxed
//! route and of the handler's state, two boxed middleware futures with their own service
//! clones, and the matched-path extension). [`Front`] answers them directly, before the
//! router, and reproduces what the middleware would have done to the response:
//!
//! - the response is finished exactly as [`crate::app::with_common_layers`] finishes every
//!   response (problem+json for errors, `Cache-Control: no-store`, HSTS under TLS);
//! - the request is counted in `sessiond_http_requests_total` and
//!   `sessiond_http_request_duration_seconds` under the route `/v1/auth`, as the router's
//!   metrics layer counts it;
//! - the same `request` span and `DEBUG` events as the tracing layer are emitted, under the
//!   tracing layer's targets (`tower_http::trace::*`), so log filters select both paths alike;
//! - a panic becomes the same `500` problem as the panic layer's, and the connection stays up.
//!
//! Everything else, including every forward-auth request that needs the store, a write, or
//! the throttle and security log line of a token sessiond never issued, goes to the router
//! unchanged: the quick attempt has no side effects, so handing the request on after trying
//! it changes nothing. `tests/front.rs` sends the same requests through [`Front`] and through
//! the bare router and compares the responses byte for byte, and checks which requests
//! [`Front`] answered itself by giving it a router that only ever answers 418.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::header::CONTENT_LENGTH;
use axum::http::StatusCode;
use axum::http::{HeaderValue, Method, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::Router;
use futures_util::future::Either;
use tracing::Level;

use crate::app::{finish_response, route_metrics, AppState, RouteHandles};
use crate::problem::{Problem, ProblemKind};

/// The path answered before the router (the exact path of the `/v1/auth` route; Envoy's
/// `/v1/auth/{rest}` form goes through the router).
const FORWARD_AUTH: &str = "/v1/auth";

/// The v1 router with forward-auth's common case answered in front of it (see the module
/// docs). Cloning is one reference count, as cloning a [`Router`] is.
#[derive(Clone)]
pub struct Front {
    inner: Arc<Inner>,
}

struct Inner {
    router: Router,
    /// `None`: every request goes to the router (the benchmark's empty handler).
    state: Option<AppState>,
    hsts: bool,
    /// The metric handles of `/v1/auth` → 200, registered on first use (after the recorder
    /// is installed).
    ok: OnceLock<RouteHandles>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front").field("forward_auth", &self.inner.state.is_some()).finish()
    }
}

impl Front {
    /// `router` (built by [`crate::app::router`] over `state`) with forward-auth answered in
    /// front of it.
    pub fn new(state: AppState, router: Router) -> Self {
        let hsts = state.http().tls;
        Self { inner: Arc::new(Inner { router: prepared(router), state: Some(state), hsts, ok: OnceLock::new() }) }
    }

    /// Any router, with nothing answered in front of it: the same outer service (and the
    /// same per-request clone) as [`Front::new`], for the benchmark's baselines.
    pub fn router_only(router: Router) -> Self {
        Self { inner: Arc::new(Inner { router: prepared(router), state: None, hsts: false, ok: OnceLock::new() }) }
    }

    /// Forward-auth's answer when it is ready without waiting, finished, counted and traced
    /// as the router's middleware would finish, count and trace it; `None` when the request
    /// is for the router (and then nothing was counted or logged by this call).
    fn answer_now<B>(&self, req: &Request<B>) -> Option<Response> {
        let state = self.inner.state.as_ref()?;
        // CONNECT has its own response rules in axum; it goes to the router like any other
        // path.
        if req.uri().path() != FORWARD_AUTH || req.method() == Method::CONNECT {
            return None;
        }
        // Request latency for the metrics only, as in the router's metrics layer.
        #[allow(clippy::disallowed_methods)]
        let start = std::time::Instant::now();
        // The tracing layer's span, under its own target so that log filters select both
        // paths alike (disabled at the default `info` level: a level check).
        let span = tracing::span!(target: "tower_http::trace::make_span", Level::DEBUG, "request",
            method = %req.method(), uri = %req.uri(), version = ?req.version());
        let _entered = span.enter();
        let mut res = match catch_unwind(AssertUnwindSafe(|| crate::api::forward_auth_now(state, req))) {
            Ok(None) => return None,
            Ok(Some(r)) => {
                tracing::event!(target: "tower_http::trace::on_request", Level::DEBUG, "started processing request");
                finish_response(r.into_response(), self.inner.hsts)
            }
            // The panic layer sits outside the finishing step: its 500 is not finished.
            Err(_) => {
                tracing::error!("a request handler panicked");
                Problem::new(ProblemKind::Internal, "internal error").into_response()
            }
        };
        // What axum's route does last: a body of known size gets its `Content-Length`, and
        // a `HEAD` answer loses its body (after the length is set).
        if !res.headers().contains_key(CONTENT_LENGTH) {
            if let Some(n) = res.body().size_hint().exact() {
                res.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        if req.method() == Method::HEAD {
            *res.body_mut() = Body::empty();
        }
        let status = res.status();
        // The 200 handles are borrowed, not cloned: a clone is two reference counts that both
        // workers would write on every request.
        let other;
        let (count, latency) = if status == StatusCode::OK {
            self.inner.ok.get_or_init(|| route_metrics(FORWARD_AUTH, StatusCode::OK))
        } else {
            other = route_metrics(FORWARD_AUTH, status);
            &other
        };
        let elapsed = start.elapsed();
        count.increment(1);
        latency.record(elapsed.as_secs_f64());
        tracing::event!(target: "tower_http::trace::on_response", Level::DEBUG,
            latency = %format_args!("{} ms", elapsed.as_millis()), status = status.as_u16(),
            "finished processing request");
        Some(res)
    }
}

/// `router` with every route turned into its final service once, as
/// `Router::into_make_service*` does; otherwise axum converts the routes on every request.
fn prepared(router: Router) -> Router {
    router.with_state(())
}

impl<B> tower_service::Service<Request<B>> for Front
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.answer_now(&req) {
            Some(res) => Either::Left(ready(Ok(res))),
            None => Either::Right(self.inner.router.clone().call(req)),
        }
    }
}
