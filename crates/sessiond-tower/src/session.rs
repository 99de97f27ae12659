//! The per-request session handle: [`Session`] (a valid session) and [`MaybeSession`] (any
//! request, for pages that work logged out and for login).
//!
//! Both are cheap clones of one per-request slot that the layer creates. Data writes are
//! buffered in the slot and saved by the layer before the response leaves (or earlier with
//! [`Session::save`]); login, elevation and logout go to the backend at once, because the
//! handler needs their outcome.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sessiond_core::record::{check_name, MAX_DATA_BYTES, MAX_DATA_KEYS};
use sessiond_core::time::UnixMs;
use sessiond_core::{Requirement, SessionId};

use crate::backend::{ClientInfo, IssuedToken, Login, SecretToken, SessionBackend, SessionInfo};
use crate::error::{CsrfFailure, Error, Result};

/// How the request presented its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `Authorization: Bearer` (no ambient credential: CSRF-exempt; rotated tokens come back in
    /// the `X-Session-Token` header).
    Bearer,
    /// The session cookie.
    Cookie,
    /// No credential.
    None,
}

/// What the response must do with the cookie.
#[derive(Debug, Clone, Default)]
pub(crate) enum CookieAction {
    /// Nothing.
    #[default]
    Keep,
    /// The presented cookie was refused: expire it (same attributes, `Max-Age=0`).
    Expire,
    /// Logout: expire it and send `Clear-Site-Data: "cookies"`.
    Logout,
    /// Carry a new token.
    Set(IssuedToken),
}

#[derive(Debug)]
pub(crate) struct Current {
    pub(crate) info: Arc<SessionInfo>,
    pub(crate) token: SecretToken,
    /// Buffered data writes, newest value per key (`None` removes).
    pub(crate) pending: BTreeMap<String, Option<serde_json::Value>>,
}

#[derive(Debug)]
pub(crate) struct State {
    /// The credential the request presented, valid or not (the pre-login token of a login).
    pub(crate) presented: Option<SecretToken>,
    pub(crate) transport: Transport,
    pub(crate) current: Option<Current>,
    /// The last session this handle described (kept after logout for the accessors).
    pub(crate) last: Option<Arc<SessionInfo>>,
    pub(crate) cookie: CookieAction,
}

/// The per-request slot the layer puts into the request extensions.
pub(crate) struct Slot {
    pub(crate) backend: Arc<dyn SessionBackend>,
    pub(crate) client: ClientInfo,
    state: Mutex<State>,
    /// Why this request may not log in (a cross-site state change: login CSRF), if so.
    pub(crate) login_refused: Option<CsrfFailure>,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").field("backend", &self.backend).field("state", &self.state).finish()
    }
}

impl Slot {
    pub(crate) fn new(
        backend: Arc<dyn SessionBackend>,
        client: ClientInfo,
        presented: Option<SecretToken>,
        transport: Transport,
    ) -> Self {
        let state = State { presented, transport, current: None, last: None, cookie: CookieAction::Keep };
        Self { backend, client, state: Mutex::new(state), login_refused: None }
    }

    /// The state. A poisoned lock only means a handler panicked while holding it; the state
    /// itself is always consistent between statements, so keep going.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn adopt(&self, info: SessionInfo, token: SecretToken, rotated: Option<IssuedToken>) {
        let info = Arc::new(info);
        let mut s = self.lock();
        let token = rotated.as_ref().map_or(token, |r| r.token.clone());
        if let Some(r) = rotated {
            s.cookie = CookieAction::Set(r);
        }
        s.last = Some(info.clone());
        s.current = Some(Current { info, token, pending: BTreeMap::new() });
    }

    fn info(&self) -> Option<Arc<SessionInfo>> {
        self.lock().current.as_ref().map(|c| c.info.clone())
    }

    async fn login(&self, login: Login) -> Result<()> {
        if let Some(f) = self.login_refused {
            tracing::info!(failure = ?f, "a cross-site request tried to log in; refused (login CSRF)");
            return Err(Error::CsrfRejected(f));
        }
        let previous = {
            let s = self.lock();
            // The presented token (valid or not) and the current one (after a rotation) are
            // both retired; the current one is what names the live session.
            s.current.as_ref().map(|c| c.token.clone()).or_else(|| s.presented.clone())
        };
        let previous = previous.filter(|t| SecretToken::looks_valid(t.expose()));
        let issued = self.backend.create(login, previous.as_ref().map(SecretToken::expose), &self.client).await?;
        tracing::debug!(session = %issued.session.id, "logged in");
        let info = Arc::new(issued.session);
        let mut s = self.lock();
        s.last = Some(info.clone());
        s.current = Some(Current { info, token: issued.token.token.clone(), pending: BTreeMap::new() });
        s.cookie = CookieAction::Set(issued.token);
        Ok(())
    }

    async fn elevate(&self, aal: u8, amr: Vec<String>) -> Result<()> {
        let (info, token) = {
            let s = self.lock();
            let c = s.current.as_ref().ok_or(Error::Unauthenticated)?;
            (c.info.clone(), c.token.clone())
        };
        let issued = self.backend.elevate(&info, token.expose(), aal, amr, &self.client).await?;
        let new = Arc::new(issued.session);
        let mut s = self.lock();
        s.last = Some(new.clone());
        if let Some(c) = s.current.as_mut().filter(|c| c.info.id == new.id) {
            c.info = new;
            c.token = issued.token.token.clone();
        }
        s.cookie = CookieAction::Set(issued.token);
        Ok(())
    }

    async fn logout(&self) -> Result<()> {
        let token = {
            let s = self.lock();
            s.current.as_ref().map(|c| c.token.clone()).or_else(|| s.presented.clone())
        };
        if let Some(t) = token.filter(|t| SecretToken::looks_valid(t.expose())) {
            self.backend.logout(t.expose()).await?;
        }
        let mut s = self.lock();
        if let Some(c) = s.current.take() {
            tracing::debug!(session = %c.info.id, "logged out");
        }
        s.cookie = CookieAction::Logout;
        Ok(())
    }

    /// Saves the buffered data writes, with compare-and-set on the revision.
    pub(crate) async fn save(&self) -> Result<()> {
        let (id, mut revision, pending) = {
            let mut s = self.lock();
            let Some(c) = s.current.as_mut() else { return Ok(()) };
            if c.pending.is_empty() {
                return Ok(());
            }
            (c.info.id, c.info.revision, std::mem::take(&mut c.pending))
        };
        let mut written = BTreeMap::new();
        let mut result = Ok(());
        for (key, value) in pending {
            match self.backend.write_data(&id, &key, value.clone(), Some(revision)).await {
                Ok(rev) => {
                    revision = rev;
                    written.insert(key, value);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let mut s = self.lock();
        if let Some(c) = s.current.as_mut().filter(|c| c.info.id == id) {
            let mut info = (*c.info).clone();
            for (k, v) in written {
                match v {
                    Some(v) => info.data.insert(k, v),
                    None => info.data.remove(&k),
                };
            }
            info.revision = revision;
            c.info = Arc::new(info);
            s.last = s.current.as_ref().map(|c| c.info.clone());
        }
        result
    }

    fn with_current<T>(&self, f: impl FnOnce(&mut Current) -> Result<T>) -> Result<T> {
        let mut s = self.lock();
        let c = s.current.as_mut().ok_or(Error::Unauthenticated)?;
        f(c)
    }
}

/// A valid session of the current request.
///
/// As an axum extractor it answers **401** when the request has no valid session; use
/// `Option<Session>` or [`MaybeSession`] on pages that work logged out. It needs
/// [`SessionLayer`](crate::SessionLayer) on the route (otherwise a 500 that says so).
///
/// Accessors describe the session the handle was created for (after [`Session::elevate`],
/// the elevated one); data operations fail with [`Error::Unauthenticated`] once the session
/// ended in this request ([`Session::logout`]).
///
/// # Examples
/// ```
/// use sessiond_tower::Session;
///
/// async fn profile(session: Session) -> Result<String, sessiond_tower::Error> {
///     let visits: u64 = session.get("visits")?.unwrap_or(0);
///     session.insert("visits", &(visits + 1))?; // saved before the response is sent
///     Ok(format!("{} has been here {visits} times", session.subject()))
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    slot: Arc<Slot>,
    /// The snapshot at extraction, for the accessors (refreshed on elevation).
    info: Arc<Mutex<Arc<SessionInfo>>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.snapshot();
        f.debug_struct("Session").field("id", &info.id).field("subject", &info.subject).finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn from_slot(slot: Arc<Slot>) -> Option<Self> {
        let info = slot.info()?;
        Some(Self { slot, info: Arc::new(Mutex::new(info)) })
    }

    /// The request's current session, if it is still this handle's: after a login in the
    /// same request the slot holds a new session, and an old handle must not read or write
    /// its data.
    fn with_mine<T>(&self, f: impl FnOnce(&mut Current) -> Result<T>) -> Result<T> {
        let id = self.info.lock().unwrap_or_else(PoisonError::into_inner).id;
        self.slot.with_current(|c| if c.info.id == id { f(c) } else { Err(Error::Unauthenticated) })
    }

    fn snapshot(&self) -> Arc<SessionInfo> {
        let newest = self.slot.lock().last.clone();
        let mut mine = self.info.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = newest.filter(|n| n.id == mine.id) {
            *mine = n;
        }
        mine.clone()
    }

    /// The session's snapshot: id, subject, assurance, data as stored, and so on.
    pub fn info(&self) -> Arc<SessionInfo> {
        self.snapshot()
    }

    /// Public id (`ses_…`): safe to show and log; not a credential.
    pub fn id(&self) -> SessionId {
        self.snapshot().id
    }

    /// The authenticated user.
    pub fn subject(&self) -> String {
        self.snapshot().subject.clone()
    }

    /// The tenant (empty for single-tenant use).
    pub fn tenant(&self) -> String {
        self.snapshot().tenant.clone()
    }

    /// The effective assurance level.
    pub fn aal(&self) -> u8 {
        self.snapshot().aal
    }

    /// The authentication methods (RFC 8176).
    pub fn amr(&self) -> Vec<String> {
        self.snapshot().amr.clone()
    }

    /// Time of the last authentication (login or step-up).
    pub fn auth_time(&self) -> UnixMs {
        self.snapshot().auth_time
    }

    /// The session's CSRF synchronizer token: put it in pages (a `<meta>` tag) and send it
    /// back in the `X-CSRF-Token` header of state-changing requests. It survives token
    /// rotation.
    pub fn csrf_token(&self) -> String {
        self.snapshot().csrf_token.clone()
    }

    /// Whether the session is still live in this request (false after [`Session::logout`]).
    pub fn is_active(&self) -> bool {
        let id = self.snapshot().id;
        self.slot.lock().current.as_ref().is_some_and(|c| c.info.id == id)
    }

    /// The token issued to the client during this request (login, elevation, rotation), for
    /// APIs that return it in a body to native clients. `Set-Cookie` (cookie clients) and
    /// `X-Session-Token` (bearer clients) carry it anyway. Never log it.
    pub fn issued_token(&self) -> Option<SecretToken> {
        match &self.slot.lock().cookie {
            CookieAction::Set(t) => Some(t.token.clone()),
            _ => None,
        }
    }

    /// Checks a route's demand for assurance ("AAL2 within 10 minutes").
    ///
    /// # Errors
    /// [`Error::StepUpRequired`], which answers 403 with a step-up hint.
    pub fn require(&self, req: &Requirement) -> Result<()> {
        self.snapshot().require(req)
    }

    /// The value of `key`, decoded as `T`, with this request's pending writes applied.
    ///
    /// # Errors
    /// [`Error::Decode`] when the stored value is not a `T` (never a silent `None`);
    /// [`Error::Unauthenticated`] after logout.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let value = self.with_mine(|c| {
            Ok(match c.pending.get(key) {
                Some(pending) => pending.clone(),
                None => c.info.data.get(key).cloned(),
            })
        })?;
        value
            .map(|v| serde_json::from_value(v).map_err(|source| Error::Decode { key: key.to_owned(), source }))
            .transpose()
    }

    /// Sets `key` to `value`. The write is buffered and saved (compare-and-set on the data
    /// revision) before the response is sent; [`Session::save`] saves at once.
    ///
    /// # Errors
    /// [`Error::Encode`]; [`Error::InvalidInput`] for a key that breaks the rules (1 to 256
    /// bytes, no control characters) or data beyond 64 keys / 8 KiB; [`Error::Unauthenticated`]
    /// after logout.
    pub fn insert<T: serde::Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        check_name(key, "data key").map_err(|e| Error::InvalidInput(e.to_string().into()))?;
        let value = serde_json::to_value(value).map_err(Error::Encode)?;
        self.with_mine(|c| {
            let mut merged = merged_data(c);
            merged.insert(key.to_owned(), value.clone());
            if merged.len() > MAX_DATA_KEYS {
                return Err(Error::InvalidInput("session data holds at most 64 keys".into()));
            }
            if serde_json::to_vec(&merged).map_or(usize::MAX, |v| v.len()) > MAX_DATA_BYTES {
                return Err(Error::InvalidInput("session data is larger than 8 KiB".into()));
            }
            c.pending.insert(key.to_owned(), Some(value));
            Ok(())
        })
    }

    /// Removes `key`, returning its previous value. Buffered like [`Session::insert`].
    ///
    /// # Errors
    /// [`Error::Decode`] when the previous value is not a `T`; [`Error::Unauthenticated`]
    /// after logout.
    pub fn remove<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let old = self.get::<serde_json::Value>(key)?;
        self.with_mine(|c| {
            if old.is_some() || c.info.data.contains_key(key) {
                c.pending.insert(key.to_owned(), None);
            } else {
                c.pending.remove(key);
            }
            Ok(())
        })?;
        old.map(|v| serde_json::from_value(v).map_err(|source| Error::Decode { key: key.to_owned(), source }))
            .transpose()
    }

    /// Saves the buffered data writes now (the layer does it anyway before the response).
    ///
    /// # Errors
    /// [`Error::Conflict`] when another request changed the data since this one read it;
    /// [`Error::Unavailable`]; [`Error::Unauthenticated`] when the session ended.
    pub async fn save(&self) -> Result<()> {
        self.slot.save().await
    }

    /// Records a step-up (new `auth_time`, AAL and AMR) and rotates the token; the new token
    /// goes out with the response.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an AAL outside 1 to 3 or a bad AMR value;
    /// [`Error::Unauthenticated`]; [`Error::Unavailable`].
    pub async fn elevate<I, S>(&self, aal: u8, amr: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.slot.elevate(aal, amr.into_iter().map(Into::into).collect()).await
    }

    /// Ends the session: revoked at the authority, the cookie cleared with identical
    /// attributes and `Max-Age=0`, `Clear-Site-Data: "cookies"` sent. Buffered writes are
    /// dropped. Idempotent.
    ///
    /// # Errors
    /// [`Error::Unavailable`]: the session could not be revoked (the response then is not a
    /// success either; retry).
    pub async fn logout(&self) -> Result<()> {
        self.slot.logout().await
    }

    /// Logs in again (for example as another user): always a new session and a new token;
    /// this session's token is retired. Returns the new session.
    ///
    /// # Errors
    /// As [`MaybeSession::login`].
    pub async fn login(&self, login: Login) -> Result<Session> {
        MaybeSession { slot: self.slot.clone() }.login(login).await
    }
}

fn merged_data(c: &Current) -> BTreeMap<String, serde_json::Value> {
    let mut data = c.info.data.clone();
    for (k, v) in &c.pending {
        match v {
            Some(v) => data.insert(k.clone(), v.clone()),
            None => data.remove(k),
        };
    }
    data
}

/// The session slot of any request, logged in or not: the extractor for pages that work
/// logged out and for login handlers. Never rejects (except without the layer: 500).
///
/// # Examples
/// ```
/// use sessiond_tower::{Login, MaybeSession};
///
/// async fn login(session: MaybeSession) -> Result<String, sessiond_tower::Error> {
///     // … the application checked the password and the TOTP code …
///     let s = session.login(Login::new("alice").with_aal(2).with_amr(["pwd", "otp"])).await?;
///     Ok(s.csrf_token()) // Set-Cookie goes out with the response
/// }
/// ```
#[derive(Clone)]
pub struct MaybeSession {
    slot: Arc<Slot>,
}

impl fmt::Debug for MaybeSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaybeSession").field("session", &self.session()).finish()
    }
}

impl MaybeSession {
    pub(crate) fn from_slot(slot: Arc<Slot>) -> Self {
        Self { slot }
    }

    /// The valid session, if there is one.
    pub fn session(&self) -> Option<Session> {
        Session::from_slot(self.slot.clone())
    }

    /// Whether the request has a valid session.
    pub fn is_authenticated(&self) -> bool {
        self.slot.lock().current.is_some()
    }

    /// How the request presented its credential.
    pub fn transport(&self) -> Transport {
        self.slot.lock().transport
    }

    /// Creates a session after the application authenticated the user: always a new session
    /// and a new token (a token presented before login is retired — fixation defence — and
    /// never adopted). The token goes out with the response (`Set-Cookie`, or
    /// `X-Session-Token` for a bearer client). Returns the new session.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (bad subject, AAL, AMR, data, unknown policy);
    /// [`Error::LimitReached`]; [`Error::Unavailable`].
    pub async fn login(&self, login: Login) -> Result<Session> {
        self.slot.login(login).await?;
        self.session().ok_or(Error::ApiMisuse("the session ended while logging in"))
    }

    /// Ends the request's session, if any (see [`Session::logout`]); also clears a cookie that
    /// names no valid session.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub async fn logout(&self) -> Result<()> {
        self.slot.logout().await
    }
}
