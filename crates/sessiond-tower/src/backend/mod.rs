//! The port between the layer and wherever sessions live: [`SessionBackend`], with an
//! in-process implementation over [`sessiond_core::Engine`] ([`InProcess`]) and a remote one
//! over a sessiond server's HTTP API ([`Remote`], feature `remote`).
//!
//! The layer, the extractors and the [`Session`](crate::Session) handle only ever talk to
//! `Arc<dyn SessionBackend>`, so both modes have exactly the same API and behaviour.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use sessiond_core::time::UnixMs;
use sessiond_core::{Requirement, SessionId};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

mod local;
#[cfg(feature = "remote")]
mod remote;

pub use local::InProcess;
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use remote::{Remote, DEFAULT_TIMEOUT};

/// A session token (`sds_…`): the secret a client holds.
///
/// Zeroized on drop; `Debug` and `Display` are redacted. [`SecretToken::expose`] is the one
/// way to the text: only to hand it to its owner (a cookie, a header, a response body).
#[derive(Clone)]
pub struct SecretToken(Zeroizing<String>);

impl SecretToken {
    /// Wraps token text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(Zeroizing::new(text.into()))
    }

    /// The token text. Only for sending to its owner; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `text` has the shape of a sessiond token (prefix and length), so that
    /// garbage is refused without asking any backend.
    pub fn looks_valid(text: &str) -> bool {
        text.len() == sessiond_core::token::TOKEN_LEN
            && text.starts_with(sessiond_core::token::TOKEN_PREFIX)
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

impl fmt::Display for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted session token>")
    }
}

/// A token issued to the client (login, elevation, rotation) and how long its cookie lives.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token.
    pub token: SecretToken,
    /// `Max-Age` for the cookie: `Some` only when the session's policy is persistent
    /// ("remember me"); `None` makes a browser-session cookie.
    pub max_age: Option<Duration>,
}

/// What the application knows about a session: a read-only snapshot, without the token.
#[derive(Clone, PartialEq)]
pub struct SessionInfo {
    /// Public id (`ses_…`): safe to show and log; not a credential.
    pub id: SessionId,
    /// The authenticated user.
    pub subject: String,
    /// The tenant (empty for single-tenant use).
    pub tenant: String,
    /// Policy class.
    pub policy: String,
    /// The effective authenticator assurance level (0 when a binding rule forced step-up).
    pub aal: u8,
    /// Authentication methods (RFC 8176).
    pub amr: Vec<String>,
    /// Time of the last authentication (login or step-up).
    pub auth_time: UnixMs,
    /// Creation time.
    pub created_at: UnixMs,
    /// Idle deadline after this request.
    pub idle_expires_at: UnixMs,
    /// Absolute deadline.
    pub absolute_expires_at: UnixMs,
    /// Application data as stored.
    pub data: BTreeMap<String, serde_json::Value>,
    /// Revision of `data`, for compare-and-set.
    pub revision: u64,
    /// The session's CSRF synchronizer token (not a credential, but keep it out of logs;
    /// `Debug` redacts it).
    pub csrf_token: String,
    /// The authority's time when this snapshot was taken (for step-up age checks, so that the
    /// application's clock never matters).
    pub as_of: UnixMs,
}

impl SessionInfo {
    /// Checks a route's demand for assurance against this snapshot.
    ///
    /// # Errors
    /// [`Error::StepUpRequired`] with the hint to return in a 403.
    pub fn require(&self, req: &Requirement) -> Result<()> {
        let too_low = self.aal < req.min_aal;
        let too_old = req.max_auth_age.is_some_and(|max| self.as_of.since(self.auth_time) > max);
        if too_low || too_old {
            return Err(Error::StepUpRequired(sessiond_core::error::StepUp {
                min_aal: req.min_aal,
                max_auth_age: req.max_auth_age,
            }));
        }
        Ok(())
    }

    /// Time until the session ends unless used again.
    pub fn expires_in(&self) -> Duration {
        self.idle_expires_at.min(self.absolute_expires_at).since(self.as_of)
    }
}

impl fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionInfo")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("tenant", &self.tenant)
            .field("policy", &self.policy)
            .field("aal", &self.aal)
            .field("amr", &self.amr)
            .field("auth_time", &self.auth_time)
            .field("revision", &self.revision)
            .field("data_keys", &self.data.len())
            .field("csrf_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A successful resolve.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The session.
    pub session: SessionInfo,
    /// A new token the client must use from now on (interval rotation, or the successor of
    /// a token presented inside its rotation grace window).
    pub rotated: Option<IssuedToken>,
}

/// A session with a freshly issued token (login or elevation).
#[derive(Debug, Clone)]
pub struct Issued {
    /// The session.
    pub session: SessionInfo,
    /// The new token.
    pub token: IssuedToken,
}

/// Facts about the client making the request, for the policy's device binding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client IP (from axum's `ConnectInfo<SocketAddr>` when the app serves with it).
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// The engine's request context.
    pub fn context(&self) -> sessiond_core::RequestContext<'_> {
        sessiond_core::RequestContext { ip: self.ip, user_agent: self.user_agent.as_deref() }
    }
}

/// The outcome of the application's authentication, for [`crate::MaybeSession::login`].
///
/// # Examples
/// ```
/// use sessiond_tower::Login;
/// let login = Login::new("alice").with_aal(2).with_amr(["pwd", "otp"]);
/// assert_eq!(login.aal, 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    /// The authenticated user.
    pub subject: String,
    /// The tenant (empty for single-tenant use).
    pub tenant: String,
    /// Policy class; `None` is `default`.
    pub policy: Option<String>,
    /// Authenticator assurance level reached (1 to 3).
    pub aal: u8,
    /// Authentication methods used (RFC 8176 values: `pwd`, `otp`, `hwk`, …).
    pub amr: Vec<String>,
    /// Initial application data.
    pub data: BTreeMap<String, serde_json::Value>,
}

impl Login {
    /// A login of `subject` at AAL 1 with no methods recorded, on the `default` policy.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            tenant: String::new(),
            policy: None,
            aal: 1,
            amr: Vec::new(),
            data: BTreeMap::new(),
        }
    }

    /// Sets the assurance level reached.
    #[must_use]
    pub fn with_aal(mut self, aal: u8) -> Self {
        self.aal = aal;
        self
    }

    /// Sets the authentication methods used.
    #[must_use]
    pub fn with_amr<I, S>(mut self, amr: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.amr = amr.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Sets the policy class (e.g. `remember-me` for a persistent cookie).
    #[must_use]
    pub fn with_policy(mut self, policy: impl Into<String>) -> Self {
        self.policy = Some(policy.into());
        self
    }

    /// Adds initial application data.
    ///
    /// # Errors
    /// [`Error::Encode`] when `value` does not encode as JSON.
    pub fn with_data<T: serde::Serialize>(mut self, key: impl Into<String>, value: &T) -> Result<Self> {
        self.data.insert(key.into(), serde_json::to_value(value).map_err(Error::Encode)?);
        Ok(self)
    }
}

/// Where sessions live: the engine in this process, or a sessiond server.
///
/// Object-safe (`Arc<dyn SessionBackend>`), so the layer, the extractors and the handle are
/// the same in both modes.
///
/// # Contract
/// - Tokens are untrusted input and secrets: implementations never log them, and refuse a
///   malformed, forged, unknown, expired or revoked one with [`Error::Unauthenticated`] —
///   never by adopting it.
/// - [`Error::Unavailable`] means "could not tell" (store or network down): the layer answers
///   503 rather than pretending the user is logged out or that a write succeeded.
/// - `create` always issues a new session and a new token; a `previous_token` that names a
///   session ends that session (fixation defence).
#[async_trait]
pub trait SessionBackend: Send + Sync + fmt::Debug + 'static {
    /// Validates `token` and renews its session (the per-request hot path).
    async fn resolve(&self, token: &str, client: &ClientInfo) -> Result<Resolved>;

    /// [`SessionBackend::resolve`] when it can answer without waiting: the session is in
    /// memory and the request writes nothing (no renewal, rotation or device change is due).
    /// `None` sends the caller to `resolve`. Whenever it answers, the answer is the one
    /// `resolve` would give at that moment. The default never answers.
    fn resolve_now(&self, token: &str, client: &ClientInfo) -> Option<Result<Resolved>> {
        let _ = (token, client);
        None
    }

    /// Creates a session for an authenticated subject, retiring `previous_token`.
    async fn create(&self, login: Login, previous_token: Option<&str>, client: &ClientInfo) -> Result<Issued>;

    /// Records a step-up on the session of `token` (id `session.id`) and rotates the token.
    async fn elevate(
        &self,
        session: &SessionInfo,
        token: &str,
        aal: u8,
        amr: Vec<String>,
        client: &ClientInfo,
    ) -> Result<Issued>;

    /// Ends the session of `token`. Idempotent: an already-ended session is not an error.
    async fn logout(&self, token: &str) -> Result<()>;

    /// Sets (`Some`) or removes (`None`) one data key, only if the data is still at
    /// `expected_revision` (when given). Returns the new revision.
    async fn write_data(
        &self,
        id: &SessionId,
        key: &str,
        value: Option<serde_json::Value>,
        expected_revision: Option<u64>,
    ) -> Result<u64>;

    /// Whether `presented` is the CSRF synchronizer token of `session`, compared in constant
    /// time.
    fn verify_csrf(&self, session: &SessionInfo, presented: &str) -> bool;
}
