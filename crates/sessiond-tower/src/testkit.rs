//! A test kit for applications using the layer (feature `testkit`): an in-process layer over
//! a [`MemoryStore`] with a [`ManualClock`], seeded sessions with ready `Cookie` headers, and
//! time travel instead of sleeping.
//!
//! # Examples
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sessiond_tower::Error> {
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use sessiond_tower::{testkit::TestKit, Session};
//! use tower::ServiceExt as _;
//!
//! let kit = TestKit::new();
//! let app = Router::new()
//!     .route("/me", get(|s: Session| async move { s.subject() }))
//!     .layer(kit.layer());
//!
//! let alice = kit.seed("alice").await?;
//! let req = Request::get("/me").header("cookie", alice.cookie_header()).body(Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);
//!
//! kit.advance(std::time::Duration::from_secs(16 * 60)); // past the 15-minute idle timeout
//! let req = Request::get("/me").header("cookie", alice.cookie_header()).body(Body::empty()).unwrap();
//! assert_eq!(app.oneshot(req).await.unwrap().status(), 401);
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::SET_COOKIE;
use axum::http::HeaderMap;
use sessiond_core::id::SeededIdSource;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::time::{ManualClock, UnixMs};
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::{Engine, Policies, SessionId};

use crate::backend::{ClientInfo, InProcess, Login, SecretToken, SessionBackend};
use crate::config::SessionConfig;
use crate::error::Result;
use crate::service::SessionLayer;

/// Where the kit's clock starts: 2023-11-14T22:13:20Z.
pub const START: UnixMs = UnixMs(1_700_000_000_000);

/// An engine over a fresh [`MemoryStore`], a [`ManualClock`] at [`START`], seeded session ids
/// and a fresh signing key, plus the layer settings to test with.
#[derive(Debug, Clone)]
pub struct TestKit {
    engine: Engine,
    clock: Arc<ManualClock>,
    config: SessionConfig,
}

impl Default for TestKit {
    fn default() -> Self {
        Self::new()
    }
}

impl TestKit {
    /// A kit with the preset policies and the production cookie (`__Host-sid`).
    pub fn new() -> Self {
        Self::with_policies(Policies::default())
    }

    /// A kit with these policy classes.
    pub fn with_policies(policies: Policies) -> Self {
        let clock = Arc::new(ManualClock::new(START));
        let keys = KeyRing::single(KeyId(1), SigningKey::generate());
        let engine = Engine::builder(Arc::new(MemoryStore::new()), keys)
            .with_clock(clock.clone())
            .with_ids(Arc::new(SeededIdSource::new(7)))
            .with_policies(policies)
            .build();
        Self { engine, clock, config: SessionConfig::production() }
    }

    /// Uses these layer settings (e.g. [`SessionConfig::development`]).
    #[must_use]
    pub fn with_config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// The engine (to inspect the store, revoke, bump epochs, read events…).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<ManualClock> {
        &self.clock
    }

    /// Moves time forward.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// The layer settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// An in-process [`SessionLayer`] over the kit's engine and settings.
    pub fn layer(&self) -> SessionLayer {
        SessionLayer::in_process(self.engine.clone()).with_config(self.config.clone())
    }

    /// A session for `subject` (AAL 1, `pwd`), as if they had logged in.
    ///
    /// # Errors
    /// As [`TestKit::seed_with`].
    pub async fn seed(&self, subject: &str) -> Result<SeededSession> {
        self.seed_with(Login::new(subject).with_amr(["pwd"])).await
    }

    /// A session for `login`.
    ///
    /// # Errors
    /// Invalid login fields or an unknown policy.
    pub async fn seed_with(&self, login: Login) -> Result<SeededSession> {
        let issued = InProcess::new(self.engine.clone()).create(login, None, &ClientInfo::default()).await?;
        Ok(SeededSession {
            token: issued.token.token,
            id: issued.session.id,
            csrf_token: issued.session.csrf_token,
            cookie_name: self.config.cookie_name().to_owned(),
        })
    }
}

/// A session seeded by the [`TestKit`], with ready request headers.
#[derive(Clone)]
pub struct SeededSession {
    token: SecretToken,
    /// The session's public id.
    pub id: SessionId,
    /// The session's CSRF token (send it as `X-CSRF-Token`).
    pub csrf_token: String,
    cookie_name: String,
}

impl fmt::Debug for SeededSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeededSession").field("id", &self.id).finish_non_exhaustive()
    }
}

impl SeededSession {
    /// The token.
    pub fn token(&self) -> &str {
        self.token.expose()
    }

    /// A `Cookie` header value carrying the session: `__Host-sid=sds_…`.
    pub fn cookie_header(&self) -> String {
        format!("{}={}", self.cookie_name, self.token.expose())
    }

    /// An `Authorization` header value carrying the session: `Bearer sds_…`.
    pub fn bearer_header(&self) -> String {
        format!("Bearer {}", self.token.expose())
    }
}

/// A parsed `Set-Cookie` header, for asserting on attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    /// The cookie name.
    pub name: String,
    /// The cookie value.
    pub value: String,
    /// The attributes in order, names as sent, values when given (`("Max-Age", Some("0"))`).
    pub attributes: Vec<(String, Option<String>)>,
}

impl SetCookie {
    /// Parses one `Set-Cookie` value; `None` when there is no `name=value` pair.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.split(';');
        let (name, value) = parts.next()?.trim().split_once('=')?;
        let attributes = parts
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| match a.split_once('=') {
                Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
                None => (a.to_owned(), None),
            })
            .collect();
        Some(Self { name: name.trim().to_owned(), value: value.trim().to_owned(), attributes })
    }

    /// The `Set-Cookie` headers of a response, parsed.
    pub fn all(headers: &HeaderMap) -> Vec<Self> {
        headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).filter_map(Self::parse).collect()
    }

    /// The value of attribute `name` (case-insensitive): `Some(None)` for a flag like `Secure`.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }

    /// The attribute names, lowercased, in order.
    pub fn attribute_names(&self) -> Vec<String> {
        self.attributes.iter().map(|(k, _)| k.to_ascii_lowercase()).collect()
    }

    /// A `Cookie` request header value sending this cookie back.
    pub fn cookie_header(&self) -> String {
        format!("{}={}", self.name, self.value)
    }
}
