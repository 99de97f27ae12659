//! # sessiond-tower
//!
//! sessiond for Rust web applications: a tower [`SessionLayer`] and axum extractors
//! ([`Session`], `Option<Session>`, [`MaybeSession`]) over the sessiond engine **in-process**
//! or over a sessiond **server** — the same API either way. What tower-sessions gives, plus
//! the whole secure lifecycle: login that always issues a new token and retires the
//! pre-login one, step-up, rotation with a grace window, logout that clears the cookie
//! properly, CSRF protection and typed session data saved with compare-and-set before the
//! response leaves.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{routing::{get, post}, Router};
//! use sessiond_core::{store::memory::MemoryStore, token::{KeyId, KeyRing, SigningKey}, Engine};
//! use sessiond_tower::{Login, MaybeSession, RequireLayer, Session, SessionLayer};
//!
//! async fn login(session: MaybeSession) -> Result<String, sessiond_tower::Error> {
//!     // … your app verified the password and the TOTP code …
//!     let s = session.login(Login::new("alice").with_aal(2).with_amr(["pwd", "otp"])).await?;
//!     Ok(s.csrf_token()) // the page sends it back as X-CSRF-Token
//! }
//!
//! async fn cart(session: Session) -> Result<String, sessiond_tower::Error> {
//!     let items: Vec<String> = session.get("cart")?.unwrap_or_default(); // typed; Err on mismatch
//!     Ok(format!("{} has {} items", session.subject(), items.len()))
//! }
//!
//! async fn logout(session: Session) -> Result<(), sessiond_tower::Error> {
//!     session.logout().await // cookie cleared + Clear-Site-Data
//! }
//!
//! // In-process: the engine lives in this process (keep the key somewhere durable).
//! let keys = KeyRing::single(KeyId(1), SigningKey::generate());
//! let engine = Engine::builder(Arc::new(MemoryStore::new()), keys).build();
//!
//! let app: Router = Router::new()
//!     .route("/admin", get(|| async { "secret" }))
//!     .route_layer(RequireLayer::aal(2)) // step-up: 403 with a hint below AAL2
//!     .route("/login", post(login))
//!     .route("/cart", get(cart))
//!     .route("/logout", post(logout))
//!     .layer(SessionLayer::in_process(engine));
//! // Remote: .layer(SessionLayer::remote("https://sessiond.internal", api_key)?)
//! ```
//!
//! ## How a request goes
//!
//! [`SessionLayer`] takes `Authorization: Bearer sds_…` or the cookie (`__Host-sid`, see
//! [`SessionConfig`]), resolves it through the [`SessionBackend`] (forged, unknown, expired
//! and revoked tokens are refused and never adopted; garbage is "no session", never a 500),
//! checks CSRF on cookie-authenticated state changes, runs your handler, saves buffered data
//! writes, and only then returns the response with `Set-Cookie` / `Cache-Control: no-store`
//! where a token travels. See [`guide`] for the full walk-through and `docs/decisions.md`
//! for the reasons.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc = include_str!("../../../docs/middleware.md")]
pub mod guide {}

pub mod backend;
pub mod config;
pub mod error;
mod extract;
pub mod service;
pub mod session;
pub mod step_up;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use backend::Remote;
pub use backend::{
    ClientInfo, InProcess, Issued, IssuedToken, Login, Resolved, SecretToken, SessionBackend, SessionInfo,
};
pub use config::SessionConfig;
pub use error::{CsrfFailure, Error, Result};
/// The reqwest version the remote backend uses, to build a custom client (root certificates,
/// proxies) for [`Remote::with_client`].
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use reqwest;
pub use service::{SessionLayer, SessionService};
pub use session::{MaybeSession, Session, Transport};
pub use sessiond_core::Requirement;
pub use step_up::{RequireLayer, RequireService};
