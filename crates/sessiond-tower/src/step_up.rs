//! Step-up: [`RequireLayer`], a route layer that demands a [`Requirement`] (minimum AAL,
//! maximum age of the last authentication) and answers 401 without a session, 403 with a
//! step-up hint when the session falls short.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use sessiond_core::Requirement;
use tower::{Layer, Service};

use crate::error::Error;
use crate::extract::slot;
use crate::session::Session;

/// A route layer demanding a [`Requirement`]. Put it *inside* [`SessionLayer`](crate::SessionLayer)
/// (`route_layer` on the routes that need it, `layer(SessionLayer)` outside).
///
/// The 403 is `application/problem+json` of type `…/step-up-required` with `min_aal` and
/// `max_auth_age` members and `WWW-Authenticate: Bearer error="insufficient_user_authentication",
/// acr_values="aal2"` (RFC 9470), so the client knows what to re-authenticate with.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use axum::{routing::post, Router};
/// use sessiond_tower::{RequireLayer, SessionLayer};
///
/// # fn app(engine: sessiond_core::Engine) -> Router {
/// # async fn wire_money() {}
/// Router::new()
///     .route("/transfer", post(wire_money))
///     // AAL2 authenticated within the last 10 minutes:
///     .route_layer(RequireLayer::aal(2).within(Duration::from_secs(600)))
///     .layer(SessionLayer::in_process(engine))
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RequireLayer {
    requirement: Requirement,
}

impl RequireLayer {
    /// Demands `requirement`.
    pub fn new(requirement: Requirement) -> Self {
        Self { requirement }
    }

    /// Demands at least `min_aal`, whenever it was reached.
    pub fn aal(min_aal: u8) -> Self {
        Self::new(Requirement { min_aal, max_auth_age: None })
    }

    /// Also demands that the last authentication happened within `max_auth_age`.
    #[must_use]
    pub fn within(mut self, max_auth_age: Duration) -> Self {
        self.requirement.max_auth_age = Some(max_auth_age);
        self
    }

    /// The demand.
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }
}

impl<S> Layer<S> for RequireLayer {
    type Service = RequireService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireService { inner, requirement: self.requirement }
    }
}

/// The service made by [`RequireLayer`].
#[derive(Debug, Clone)]
pub struct RequireService<S> {
    inner: S,
    requirement: Requirement,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireService<S>
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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let requirement = self.requirement;
        Box::pin(async move {
            let verdict = slot(req.extensions())
                .and_then(|s| Session::from_slot(s).ok_or(Error::Unauthenticated))
                .and_then(|s| s.require(&requirement));
            match verdict {
                Ok(()) => Ok(inner.call(req).await?.map(Body::new)),
                Err(e) => Ok(e.into_response()),
            }
        })
    }
}
