//! The [`Engine`]: every lifecycle operation, over an injected store, clock, id source and key
//! ring.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::binding::{same_prefix, ua_family, Drift, RequestContext};
use crate::error::{ClientError, Error, MalformedInput, Result, StepUp, StoreError};
use crate::event::{Event, EventKind, RevokeReason};
use crate::id::{IdSource, OsIdSource, SessionId};
use crate::policy::{BindingAction, Policies, Policy, Requirement};
use crate::record::{
    check_name, json_depth, DeviceInfo, Expiry, RetiredToken, SessionRecord, MAX_DATA_BYTES, MAX_DATA_DEPTH,
    MAX_DATA_KEYS, RETIRED_KEPT,
};
use crate::store::{CreateOutcome, LimitRule, Lookup, Page, PageCursor, SessionStore, UpdateOutcome};
use crate::time::{Clock, SystemClock, UnixMs};
use crate::token::{KeyRing, SessionToken, VerifiedToken};

/// How many times a compare-and-set loop retries before reporting a conflict.
const CAS_RETRIES: usize = 16;
/// Largest page of a subject's sessions.
pub const MAX_PAGE: usize = 1000;

/// What to create: the outcome of the application's authentication. Its `Debug` leaves out
/// the previous token (a raw token that may still be live).
#[derive(Clone, Default)]
pub struct CreateRequest {
    /// The authenticated user.
    pub subject: String,
    /// The tenant (empty for single-tenant deployments).
    pub tenant: String,
    /// Policy class; `None` is `default`.
    pub policy: Option<String>,
    /// Authenticator assurance level reached (1 to 3).
    pub aal: u8,
    /// Authentication methods used (RFC 8176 values).
    pub amr: Vec<String>,
    /// When the user authenticated; `None` is now. Never later than now.
    pub auth_time: Option<UnixMs>,
    /// Device facts.
    pub device: DeviceInfo,
    /// Initial application data.
    pub data: BTreeMap<String, serde_json::Value>,
    /// A token the client presented before logging in. If it names a session, that session
    /// is revoked (fixation defence); it is never adopted.
    pub previous_token: Option<String>,
}

/// A new session. Its `Debug` shows the token redacted (as [`SessionToken`] does) and leaves
/// out the CSRF token.
pub struct Created {
    /// The token: give it to the client once (cookie or bearer).
    pub token: SessionToken,
    /// The stored session.
    pub session: Arc<SessionRecord>,
    /// The session's CSRF synchronizer token.
    pub csrf_token: String,
    /// The session's policy.
    pub policy: Arc<Policy>,
    /// Sessions ended to make room under the concurrent limit.
    pub evicted: Vec<SessionId>,
    /// The session revoked because its token was presented at login.
    pub replaced: Option<SessionId>,
}

impl std::fmt::Debug for CreateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateRequest")
            .field("subject", &self.subject)
            .field("tenant", &self.tenant)
            .field("policy", &self.policy)
            .field("aal", &self.aal)
            .field("amr", &self.amr)
            .field("auth_time", &self.auth_time)
            .field("device", &self.device)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .field("previous_token", &self.previous_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("token", &self.token)
            .field("session", &self.session.id)
            .field("csrf_token", &"<redacted>")
            .field("policy", &self.policy.name)
            .field("evicted", &self.evicted)
            .field("replaced", &self.replaced)
            .finish()
    }
}

/// What a store's answer means for a verified token (see `Engine::judge`).
enum Judged {
    /// The session is live: the current token, or a retired one inside its grace window
    /// (with the successor to hand back).
    Live { found: Lookup, successor: Option<SessionToken>, policy: Arc<Policy> },
    /// A retired token presented after its grace window: theft.
    Replayed(Arc<SessionRecord>),
}

/// A successful resolve.
#[derive(Debug)]
pub struct Resolution {
    /// The session as stored (its `idle_expires_at` may predate this request's renewal; use
    /// [`Resolution::idle_expires_at`]).
    pub session: Arc<SessionRecord>,
    /// The session's policy.
    pub policy: Arc<Policy>,
    /// The idle deadline after this request.
    pub idle_expires_at: UnixMs,
    /// A new token the client must use from now on (rotation), if any.
    pub rotated: Option<SessionToken>,
    /// Whether the idle deadline was renewed in the store by this request.
    pub renewed: bool,
    /// A device drift seen on this request.
    pub drift: Option<Drift>,
    /// Whether the binding policy demands re-authentication (the session counts as AAL 0).
    pub step_up_forced: bool,
    /// The time of the resolve.
    pub now: UnixMs,
}

impl Resolution {
    /// Time until the session ends unless used again.
    pub fn expires_in(&self) -> Duration {
        self.idle_expires_at.min(self.session.absolute_expires_at).since(self.now)
    }

    /// The effective AAL: 0 when a binding rule forced step-up.
    pub fn aal(&self) -> u8 {
        if self.step_up_forced {
            0
        } else {
            self.session.aal
        }
    }

    /// Checks a route's demand for assurance.
    ///
    /// # Errors
    /// [`ClientError::StepUpRequired`] with the hint to return in a 403.
    pub fn require(&self, req: &Requirement) -> Result<()> {
        let too_low = self.aal() < req.min_aal;
        let too_old = req.max_auth_age.is_some_and(|max| self.now.since(self.session.auth_time) > max);
        if too_low || too_old {
            return Err(
                ClientError::StepUpRequired(StepUp { min_aal: req.min_aal, max_auth_age: req.max_auth_age }).into()
            );
        }
        Ok(())
    }
}

/// Remaining time of a session, without renewing it (for "you will be logged out" banners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining {
    /// Until the idle deadline.
    pub idle: Duration,
    /// Until the absolute deadline.
    pub absolute: Duration,
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a rotated-out token keeps working as a read-only alias (default 10 s).
    pub rotation_grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { rotation_grace: Duration::from_secs(10) }
    }
}

/// Builds an [`Engine`]. Store and key ring are mandatory; the rest has secure defaults.
pub struct EngineBuilder {
    store: Arc<dyn SessionStore>,
    keys: KeyRing,
    policies: Policies,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    config: EngineConfig,
}

impl EngineBuilder {
    /// Replaces the set of policy classes (the presets are there by default).
    pub fn with_policies(mut self, p: Policies) -> Self {
        self.policies = p;
        self
    }

    /// Injects a clock (tests: [`crate::time::ManualClock`]).
    pub fn with_clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    /// Injects the source of public session ids (tests: [`crate::id::SeededIdSource`]).
    pub fn with_ids(mut self, ids: Arc<dyn IdSource>) -> Self {
        self.ids = ids;
        self
    }

    /// Sets engine-wide settings.
    pub fn with_config(mut self, c: EngineConfig) -> Self {
        self.config = c;
        self
    }

    /// The engine.
    pub fn build(self) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                store: self.store,
                keys: self.keys,
                policies: self.policies,
                clock: self.clock,
                ids: self.ids,
                config: self.config,
            }),
        }
    }
}

struct Inner {
    store: Arc<dyn SessionStore>,
    keys: KeyRing,
    policies: Policies,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    config: EngineConfig,
}

/// The session engine. Cheap to clone; share one per process.
///
/// # Examples
/// ```
/// # tokio_test();
/// # fn tokio_test() {
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// use std::sync::Arc;
/// use sessiond_core::{Engine, CreateRequest, RequestContext};
/// use sessiond_core::store::memory::MemoryStore;
/// use sessiond_core::token::{KeyId, KeyRing, SigningKey};
///
/// let keys = KeyRing::single(KeyId(1), SigningKey::generate());
/// let engine = Engine::builder(Arc::new(MemoryStore::new()), keys).build();
///
/// // The application authenticated alice with a password and a TOTP code:
/// let created = engine
///     .create(CreateRequest { subject: "alice".into(), aal: 2, amr: vec!["pwd".into(), "otp".into()], ..Default::default() })
///     .await?;
/// let token = created.token.expose().to_owned(); // goes into the cookie
///
/// // On every request:
/// let r = engine.resolve(&token, &RequestContext::default()).await?;
/// assert_eq!(r.session.subject, "alice");
///
/// // Logout:
/// engine.logout(&token).await?;
/// assert!(engine.resolve(&token, &RequestContext::default()).await.is_err());
/// # Ok::<(), sessiond_core::Error>(())
/// # }).unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("keys", &self.inner.keys)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts building an engine over `store`, signing with `keys`.
    pub fn builder(store: Arc<dyn SessionStore>, keys: KeyRing) -> EngineBuilder {
        EngineBuilder {
            store,
            keys,
            policies: Policies::default(),
            clock: Arc::new(SystemClock),
            ids: Arc::new(OsIdSource),
            config: EngineConfig::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    /// The policy classes.
    pub fn policies(&self) -> &Policies {
        &self.inner.policies
    }

    /// The current time of the injected clock.
    pub fn now(&self) -> UnixMs {
        self.inner.clock.now()
    }

    fn policy(&self, name: &str) -> Result<&Arc<Policy>> {
        self.inner.policies.get(name).ok_or(Error::Client(ClientError::UnknownPolicy))
    }

    /// Logs `event` and appends it to the event log, like the engine's own events (for
    /// events the HTTP layer detects, such as [`EventKind::BruteForce`]). Append failures are
    /// logged and counted, never returned.
    pub async fn record_event(&self, event: Event) {
        self.emit(vec![event]).await;
    }

    async fn emit(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        for e in &events {
            tracing::info!(target: "sessiond::event", kind = %e.kind, session = ?e.session_id, subject = %e.subject, tenant = %e.tenant, detail = ?e.detail, "session event");
        }
        if let Err(e) = self.inner.store.append_events(events).await {
            metrics::counter!("sessiond_event_append_failures_total").increment(1);
            tracing::error!(error = %e, "could not append session events");
        }
    }

    /// The result of deleting one session for `reason`: its `revoked.*` event written (also
    /// when unconfirmed, see [`Engine::confirmed`]), its id returned if it existed.
    async fn ended_one(
        &self,
        result: std::result::Result<Option<Arc<SessionRecord>>, StoreError>,
        now: UnixMs,
        reason: RevokeReason,
    ) -> Result<Option<SessionId>> {
        let ev =
            |r: &SessionRecord| vec![Event::new(now, EventKind::Revoked(reason), Some(r.id), &r.subject, &r.tenant)];
        let gone = self.confirmed(result, ev).await?;
        if let Some(r) = &gone {
            self.emit(ev(r)).await;
        }
        Ok(gone.map(|r| r.id))
    }

    /// A revocation's store result. When the store ended sessions but could not confirm the
    /// change ([`StoreError::Unconfirmed`]), their events (`events` of each ended record, marked
    /// [`Event::unconfirmed`]) are written before the error is returned: a retry finds nothing
    /// left to end, so without them the audit trail would lose these revocations.
    async fn confirmed<T>(
        &self,
        result: std::result::Result<T, StoreError>,
        events: impl Fn(&SessionRecord) -> Vec<Event>,
    ) -> Result<T> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                if let StoreError::Unconfirmed { ended, .. } = &e {
                    self.emit(ended.iter().flat_map(|r| events(r)).map(Event::unconfirmed).collect()).await;
                }
                Err(e.into())
            }
        }
    }

    /// Creates a session for an authenticated subject, with a fresh token.
    ///
    /// # Errors
    /// Invalid fields or an unknown policy ([`Error::Client`]); the subject at its limit
    /// under `deny_new` ([`ClientError::LimitReached`]); store failures.
    pub async fn create(&self, req: CreateRequest) -> Result<Created> {
        check_owner(&req.tenant, &req.subject)?;
        if req.aal > 3 {
            return Err(MalformedInput::Field("aal must be 0 to 3").into());
        }
        check_amr(&req.amr)?;
        check_data(&req.data)?;
        let policy = self.policy(req.policy.as_deref().unwrap_or("default"))?.clone();
        let now = self.now();
        let mut events = Vec::new();

        // Fixation defence: a pre-login token is never adopted, and the session it names ends.
        let mut replaced = None;
        if let Some(old) = req.previous_token.as_deref() {
            if let Ok(v) = self.inner.keys.verify(old) {
                let ev = |r: &SessionRecord| {
                    vec![Event::new(now, EventKind::Revoked(RevokeReason::Fixation), Some(r.id), &r.subject, &r.tenant)]
                };
                if let Some(gone) = self.confirmed(self.inner.store.delete_by_token(v.hash()).await, ev).await? {
                    replaced = Some(gone.id);
                    events.extend(ev(&gone));
                }
            }
        }

        let epoch = self.inner.store.subject_epoch(&req.tenant, &req.subject).await?;
        let token = self.inner.keys.mint();
        let auth_time = req.auth_time.unwrap_or(now).min(now);
        let absolute = now.plus(policy.absolute_lifetime);
        let mut device = req.device;
        if let Some(ua) = device.user_agent.as_mut() {
            truncate(ua, 512);
        }
        device.last_ip = device.last_ip.or_else(|| device.first_ip.clone());
        let record = SessionRecord {
            id: self.inner.ids.session_id(),
            token_hash: *token.hash(),
            subject: req.subject,
            tenant: req.tenant,
            policy: policy.name.clone(),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now.plus(policy.idle_timeout).min(absolute),
            absolute_expires_at: absolute,
            rotated_at: now,
            auth_time,
            aal: req.aal,
            amr: req.amr,
            device,
            data: req.data,
            revision: 0,
            epoch,
            version: 0,
            retired: Vec::new(),
        };
        let limit = policy.max_sessions.map(|max| LimitRule { max, action: policy.on_limit });
        let evicted = match self.inner.store.create(record.clone(), limit, now).await? {
            CreateOutcome::Created { evicted } => evicted,
            CreateOutcome::LimitReached => {
                self.emit(events).await;
                return Err(ClientError::LimitReached.into());
            }
        };
        for e in &evicted {
            events.push(Event::new(now, EventKind::LimitEvicted, Some(e.id), &e.subject, &e.tenant));
        }
        events.push(
            Event::new(now, EventKind::Created, Some(record.id), &record.subject, &record.tenant)
                .with_detail(format!("token_hash={}", token.hash().short())),
        );
        self.emit(events).await;
        let csrf_token = self.inner.keys.csrf_token(&record.id);
        Ok(Created {
            token,
            session: Arc::new(record),
            csrf_token,
            policy,
            evicted: evicted.iter().map(|r| r.id).collect(),
            replaced,
        })
    }

    /// Finds the live session of a verified token, classifying every failure. Returns the
    /// lookup and, for a retired token inside its grace window, the successor.
    async fn live(&self, v: &VerifiedToken, now: UnixMs) -> Result<(Lookup, Option<SessionToken>, Arc<Policy>)> {
        let found = self.inner.store.find_by_token(v.hash()).await?;
        match self.judge(found, v, now)? {
            Judged::Live { found, successor, policy } => Ok((found, successor, policy)),
            Judged::Replayed(rec) => {
                // Replay of a rotated-out token after its grace window: assume theft.
                let ev = |r: &SessionRecord| {
                    vec![
                        Event::new(now, EventKind::TheftDetected, Some(r.id), &r.subject, &r.tenant)
                            .with_detail(format!("token_hash={}", v.hash().short())),
                        Event::new(now, EventKind::Revoked(RevokeReason::Theft), Some(r.id), &r.subject, &r.tenant),
                    ]
                };
                if let Some(gone) = self.confirmed(self.inner.store.delete(&rec.id).await, ev).await? {
                    self.emit(ev(&gone)).await;
                }
                tracing::warn!(session = %rec.id, "retired token replayed after its grace window; session revoked");
                Err(ClientError::TokenReplayed.into())
            }
        }
    }

    /// What a store's answer means for a verified token at `now`, decided without I/O: the
    /// one set of checks behind every token lookup ([`Engine::resolve`],
    /// [`Engine::resolve_now`], [`Engine::peek`], rotation, elevation). Order matters: a
    /// retired token replayed after its grace window is theft even when the session has
    /// expired since.
    fn judge(&self, found: Option<Lookup>, v: &VerifiedToken, now: UnixMs) -> Result<Judged> {
        let Some(found) = found else {
            return Err(ClientError::UnknownSession.into());
        };
        let rec = &found.record;
        let mut successor = None;
        if rec.token_hash != *v.hash() {
            let Some(retired) = rec.retired.iter().find(|r| r.hash == *v.hash()) else {
                return Err(ClientError::UnknownSession.into());
            };
            if now >= retired.grace_until {
                return Ok(Judged::Replayed(found.record));
            }
            successor = retired.successor.as_ref().map(|s| self.inner.keys.unseal(s, v));
        }
        match rec.expiry_at(now) {
            Some(Expiry::Absolute) => return Err(ClientError::AbsoluteExpired.into()),
            Some(Expiry::Idle) => return Err(ClientError::IdleExpired.into()),
            None => {}
        }
        if rec.epoch < found.subject_epoch {
            return Err(ClientError::EpochRevoked.into());
        }
        // A class removed from the configuration ends its sessions: refused like an unknown
        // session (401), not reported as the caller's bad input (400), which a proxy's
        // `auth_request` would turn into a 500 instead of a login.
        let Some(policy) = self.inner.policies.get(&rec.policy) else {
            tracing::warn!(session = %rec.id, policy = %rec.policy, "the session's policy class is no longer configured; refused");
            return Err(ClientError::UnknownSession.into());
        };
        let policy = policy.clone();
        Ok(Judged::Live { found, successor, policy })
    }

    /// Whether the policy's rotation interval has passed for `rec` at `now`.
    fn rotation_due(rec: &SessionRecord, policy: &Policy, now: UnixMs) -> bool {
        policy.rotation_interval.is_some_and(|every| now.since(rec.rotated_at) >= every)
    }

    /// Whether `rec` is due for a renewal write at `now`: once its own share of the idle
    /// window, [`Engine::renewal_threshold`], has passed since it was last written.
    fn renewal_due(rec: &SessionRecord, policy: &Policy, now: UnixMs) -> bool {
        now.since(rec.last_seen_at) >= Self::renewal_threshold(&rec.id, policy)
    }

    /// How long after its last renewal a session is renewed again: between half and all of
    /// the policy's `renewal_fraction` of the idle window, fixed per session by its id's first
    /// two bytes (random, so uniform). Sessions created together (a mass login after a
    /// deploy, a load test) therefore renew spread over half the fraction instead of all in
    /// the same instant, and a session never renews later than the fraction says: it still
    /// ends at most `renewal_fraction` of the idle timeout early, never late.
    pub fn renewal_threshold(id: &SessionId, policy: &Policy) -> Duration {
        let [a, b, ..] = *id.as_bytes();
        let share = 0.5 + f64::from(u16::from_le_bytes([a, b])) / f64::from(u16::MAX) / 2.0;
        Duration::from_secs_f64(policy.idle_timeout.as_secs_f64() * policy.renewal_fraction * share)
    }

    /// [`Engine::resolve`] when it can finish without waiting: the store answers from memory
    /// ([`SessionStore::find_by_token_now`]) and the request writes nothing (no renewal,
    /// rotation, device drift or theft is due, and the token is not a retired one inside its
    /// grace window). `None` otherwise: then call [`Engine::resolve`], which does the same
    /// checks and the writes (and checks the token's tag a second time, ~0.3 µs against the
    /// store round trip or write that made the fast path give up).
    ///
    /// Whenever it answers, the answer is the one [`Engine::resolve`] would give at that
    /// moment: the same checks run (tag, lookup, retired tokens, deadlines, epoch, policy,
    /// binding), and only the cases that need a write are left to the full path. The HTTP
    /// layer uses it to skip the asynchronous machinery on the hot path.
    pub fn resolve_now(&self, token: &str, ctx: &RequestContext<'_>) -> Option<Result<Resolution>> {
        let v = match self.inner.keys.verify(token) {
            Ok(v) => v,
            Err(e) => return Some(Err(e.into())),
        };
        let now = self.now();
        let found = self.inner.store.find_by_token_now(v.hash())?;
        let (found, policy) = match self.judge(found, &v, now) {
            Ok(Judged::Live { found, successor: None, policy }) => (found, policy),
            // A grace-window alias or a replay: the full path hands back the successor or
            // revokes the session.
            Ok(Judged::Live { successor: Some(_), .. } | Judged::Replayed(_)) => return None,
            Err(e) => return Some(Err(e)),
        };
        let rec = found.record;
        if self.drift(&rec, &policy, ctx).0.is_some()
            || Self::rotation_due(&rec, &policy, now)
            || Self::renewal_due(&rec, &policy, now)
        {
            return None;
        }
        Some(Ok(Resolution {
            idle_expires_at: rec.idle_expires_at,
            session: rec,
            policy,
            rotated: None,
            renewed: false,
            drift: None,
            step_up_forced: false,
            now,
        }))
    }

    /// Validates a token and renews its session: the hot path.
    ///
    /// Verifies the tag (forgeries stop here, with no store access), looks the hash up,
    /// checks the deadlines, the subject's epoch and the device binding, rotates the token if
    /// the policy's rotation interval passed, and pushes the idle deadline forward when the
    /// renewal fraction of the idle window has passed (otherwise it writes nothing).
    ///
    /// # Errors
    /// [`Error::Client`] with the precise reason (map all of them to 401, except
    /// [`ClientError::Malformed`], which may be a 400 where the input was not a token at all);
    /// store failures.
    pub async fn resolve(&self, token: &str, ctx: &RequestContext<'_>) -> Result<Resolution> {
        let v = self.inner.keys.verify(token)?;
        let now = self.now();
        let (found, successor, policy) = self.live(&v, now).await?;
        let mut rec = found.record;

        let (drift, action) = self.drift(&rec, &policy, ctx);
        let mut step_up_forced = false;
        if let Some(d) = drift {
            match action {
                BindingAction::Allow => {}
                BindingAction::Revoke => {
                    let ev = |r: &SessionRecord| {
                        vec![
                            Event::new(now, EventKind::Anomaly, Some(r.id), &r.subject, &r.tenant)
                                .with_detail(d.as_str()),
                            Event::new(
                                now,
                                EventKind::Revoked(RevokeReason::Binding),
                                Some(r.id),
                                &r.subject,
                                &r.tenant,
                            ),
                        ]
                    };
                    if let Some(gone) = self.confirmed(self.inner.store.delete(&rec.id).await, ev).await? {
                        self.emit(ev(&gone)).await;
                    }
                    return Err(ClientError::BindingRevoked.into());
                }
                BindingAction::Flag | BindingAction::StepUp => {
                    step_up_forced = action == BindingAction::StepUp;
                    self.emit(vec![Event::new(now, EventKind::Anomaly, Some(rec.id), &rec.subject, &rec.tenant)
                        .with_detail(d.as_str())])
                        .await;
                    if !step_up_forced {
                        // Record the new facts so that one drift raises one event.
                        rec = self.adopt_device(&rec, ctx).await?.unwrap_or(rec);
                    }
                }
            }
        }

        // Inside the grace window the old token is a read-only alias: hand back the successor.
        if successor.is_some() {
            return Ok(Resolution {
                idle_expires_at: rec.idle_expires_at,
                session: rec,
                policy,
                rotated: successor,
                renewed: false,
                drift,
                step_up_forced,
                now,
            });
        }

        if Self::rotation_due(&rec, &policy, now) {
            let (session, token) = self.rotate_verified(rec, &v, &policy, now, None).await?;
            return Ok(Resolution {
                idle_expires_at: session.idle_expires_at,
                session,
                policy,
                rotated: Some(token),
                renewed: true,
                drift,
                step_up_forced,
                now,
            });
        }

        let mut idle_expires_at = rec.idle_expires_at;
        let mut renewed = false;
        if Self::renewal_due(&rec, &policy, now) {
            idle_expires_at = now.plus(policy.idle_timeout).min(rec.absolute_expires_at);
            // A drift that forces step-up was not adopted: the renewal must not record the
            // new address either, or the next request would see no drift and get its full
            // assurance back without re-authenticating.
            let ip = if step_up_forced { None } else { ctx.ip.map(|ip| ip.to_string()) };
            self.inner.store.renew(&rec, now, idle_expires_at, ip.as_deref()).await?;
            self.emit(vec![Event::new(now, EventKind::Renewed, Some(rec.id), &rec.subject, &rec.tenant)]).await;
            renewed = true;
        }
        Ok(Resolution { session: rec, policy, idle_expires_at, rotated: None, renewed, drift, step_up_forced, now })
    }

    fn drift(&self, rec: &SessionRecord, policy: &Policy, ctx: &RequestContext<'_>) -> (Option<Drift>, BindingAction) {
        if let (Some(seen), Some(now_ua)) = (rec.device.user_agent.as_deref(), ctx.user_agent) {
            if policy.binding.user_agent != BindingAction::Allow && ua_family(seen) != ua_family(now_ua) {
                return (Some(Drift::UserAgentFamily), policy.binding.user_agent);
            }
        }
        // The stored address is text: parse it only when the binding looks at it.
        if policy.binding.ip_prefix != BindingAction::Allow {
            if let Some(ip) = ctx.ip {
                let known = rec.device.last_ip.as_deref().or(rec.device.first_ip.as_deref());
                if known.and_then(|s| s.parse::<IpAddr>().ok()).is_some_and(|known| !same_prefix(known, ip)) {
                    return (Some(Drift::IpPrefix), policy.binding.ip_prefix);
                }
            }
        }
        (None, BindingAction::Allow)
    }

    async fn adopt_device(
        &self,
        rec: &Arc<SessionRecord>,
        ctx: &RequestContext<'_>,
    ) -> Result<Option<Arc<SessionRecord>>> {
        let mut next = (**rec).clone();
        if let Some(ua) = ctx.user_agent {
            let mut ua = ua.to_owned();
            truncate(&mut ua, 512);
            next.device.user_agent = Some(ua);
        }
        if let Some(ip) = ctx.ip {
            next.device.last_ip = Some(ip.to_string());
        }
        next.version += 1;
        match self.inner.store.update(next.clone(), rec.version).await? {
            UpdateOutcome::Updated => Ok(Some(Arc::new(next))),
            _ => Ok(None),
        }
    }

    /// The remaining idle and absolute time of a session, without renewing it.
    ///
    /// # Errors
    /// As [`Engine::resolve`].
    pub async fn peek(&self, token: &str) -> Result<Remaining> {
        let v = self.inner.keys.verify(token)?;
        let now = self.now();
        let (found, _, _) = self.live(&v, now).await?;
        let r = &found.record;
        Ok(Remaining {
            idle: r.idle_expires_at.min(r.absolute_expires_at).since(now),
            absolute: r.absolute_expires_at.since(now),
        })
    }

    /// Issues a new token for the session of `token`, keeping the session and its data. The
    /// old token stays a read-only alias for the grace window (presenting it yields this same
    /// successor); after that, presenting it revokes the session as theft.
    ///
    /// # Errors
    /// As [`Engine::resolve`].
    pub async fn rotate(&self, token: &str) -> Result<(Arc<SessionRecord>, SessionToken)> {
        let v = self.inner.keys.verify(token)?;
        let now = self.now();
        let (found, successor, policy) = self.live(&v, now).await?;
        if let Some(s) = successor {
            return Ok((found.record, s));
        }
        self.rotate_verified(found.record, &v, &policy, now, None).await
    }

    /// Records a step-up: new `auth_time`, AAL and AMR, and a new token (as [`Engine::rotate`]).
    ///
    /// # Errors
    /// As [`Engine::resolve`]; a malformed AAL or AMR.
    pub async fn elevate(
        &self,
        token: &str,
        aal: u8,
        amr: Vec<String>,
        ctx: &RequestContext<'_>,
    ) -> Result<(Arc<SessionRecord>, SessionToken)> {
        if !(1..=3).contains(&aal) {
            return Err(MalformedInput::Field("aal must be 1 to 3").into());
        }
        check_amr(&amr)?;
        let v = self.inner.keys.verify(token)?;
        let now = self.now();
        let (found, _, policy) = self.live(&v, now).await?;
        let e =
            Elevation { aal, amr, user_agent: ctx.user_agent.map(str::to_owned), ip: ctx.ip.map(|i| i.to_string()) };
        self.rotate_verified(found.record, &v, &policy, now, Some(e)).await
    }

    async fn rotate_verified(
        &self,
        mut rec: Arc<SessionRecord>,
        v: &VerifiedToken,
        policy: &Policy,
        now: UnixMs,
        elevate: Option<Elevation>,
    ) -> Result<(Arc<SessionRecord>, SessionToken)> {
        for _ in 0..CAS_RETRIES {
            if rec.token_hash != *v.hash() {
                // Someone rotated first: if our token is a fresh alias, take its successor.
                return match rec.retired.iter().find(|r| r.hash == *v.hash()) {
                    Some(RetiredToken { grace_until, successor: Some(s), .. })
                        if now < *grace_until && elevate.is_none() =>
                    {
                        Ok((rec.clone(), self.inner.keys.unseal(s, v)))
                    }
                    _ => Err(ClientError::UnknownSession.into()),
                };
            }
            let token = self.inner.keys.mint();
            let mut next = (*rec).clone();
            next.retired.insert(
                0,
                RetiredToken {
                    hash: *v.hash(),
                    grace_until: now.plus(self.inner.config.rotation_grace),
                    successor: Some(KeyRing::seal(&token, v)),
                },
            );
            next.retired.truncate(RETIRED_KEPT);
            next.token_hash = *token.hash();
            next.rotated_at = now;
            next.last_seen_at = now;
            next.idle_expires_at = now.plus(policy.idle_timeout).min(next.absolute_expires_at);
            next.version += 1;
            let kind = if let Some(e) = &elevate {
                next.aal = e.aal;
                next.amr = e.amr.clone();
                next.auth_time = now;
                if let Some(ua) = &e.user_agent {
                    next.device.user_agent = Some(ua.clone());
                }
                if let Some(ip) = &e.ip {
                    next.device.last_ip = Some(ip.clone());
                }
                EventKind::Elevated
            } else {
                EventKind::Rotated
            };
            match self.inner.store.update(next.clone(), rec.version).await? {
                UpdateOutcome::Updated => {
                    self.emit(vec![Event::new(now, kind, Some(next.id), &next.subject, &next.tenant)
                        .with_detail(format!("token_hash={}", token.hash().short()))])
                        .await;
                    return Ok((Arc::new(next), token));
                }
                UpdateOutcome::Conflict(current) => rec = current,
                UpdateOutcome::Missing => return Err(ClientError::UnknownSession.into()),
                #[allow(unreachable_patterns)]
                _ => return Err(ClientError::UnknownSession.into()),
            }
        }
        Err(Error::Conflict { current: rec.revision })
    }

    /// The session with public id `id`, if it is live.
    ///
    /// # Errors
    /// Store failures.
    pub async fn get(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>> {
        let now = self.now();
        Ok(self
            .inner
            .store
            .find_by_id(id)
            .await?
            .filter(|l| l.record.is_live(now) && l.record.epoch >= l.subject_epoch)
            .map(|l| l.record))
    }

    /// Sets `key` in a session's data. With `expected_revision`, writes only if the data is
    /// still at that revision (compare-and-set). Returns the new revision.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the revision moved; [`Error::NotFound`] when the session is
    /// gone (a late write never resurrects it); invalid key or oversized data.
    pub async fn set_data(
        &self,
        id: &SessionId,
        key: &str,
        value: serde_json::Value,
        expected_revision: Option<u64>,
    ) -> Result<u64> {
        check_name(key, "data key")?;
        self.change_data(id, expected_revision, |d| {
            d.insert(key.to_owned(), value.clone());
        })
        .await
    }

    /// Removes `key` from a session's data; as [`Engine::set_data`].
    ///
    /// # Errors
    /// As [`Engine::set_data`].
    pub async fn remove_data(&self, id: &SessionId, key: &str, expected_revision: Option<u64>) -> Result<u64> {
        self.change_data(id, expected_revision, |d| {
            d.remove(key);
        })
        .await
    }

    async fn change_data(
        &self,
        id: &SessionId,
        expected: Option<u64>,
        f: impl Fn(&mut BTreeMap<String, serde_json::Value>),
    ) -> Result<u64> {
        let now = self.now();
        let Some(mut found) = self.inner.store.find_by_id(id).await? else {
            return Err(Error::NotFound(*id));
        };
        for _ in 0..CAS_RETRIES {
            let rec = &found.record;
            if !rec.is_live(now) || rec.epoch < found.subject_epoch {
                return Err(Error::NotFound(*id));
            }
            if let Some(exp) = expected {
                if exp != rec.revision {
                    return Err(Error::Conflict { current: rec.revision });
                }
            }
            let mut next = (**rec).clone();
            f(&mut next.data);
            if next.data == rec.data {
                return Ok(rec.revision);
            }
            check_data(&next.data)?;
            next.revision += 1;
            next.version += 1;
            match self.inner.store.update(next.clone(), rec.version).await? {
                UpdateOutcome::Updated => {
                    self.emit(vec![Event::new(
                        now,
                        EventKind::DataChanged,
                        Some(next.id),
                        &next.subject,
                        &next.tenant,
                    )])
                    .await;
                    return Ok(next.revision);
                }
                UpdateOutcome::Conflict(current) => {
                    found = Lookup { record: current, subject_epoch: found.subject_epoch }
                }
                _ => return Err(Error::NotFound(*id)),
            }
        }
        Err(Error::Conflict { current: found.record.revision })
    }

    /// Revokes one session by id. Returns whether it existed.
    ///
    /// # Errors
    /// Store failures.
    pub async fn revoke(&self, id: &SessionId, reason: RevokeReason) -> Result<bool> {
        let now = self.now();
        Ok(self.ended_one(self.inner.store.delete(id).await, now, reason).await?.is_some())
    }

    /// Ends the session of `token` (logout). Idempotent: an already-ended session is fine.
    /// Returns the ended session's id, if there was one.
    ///
    /// # Errors
    /// A malformed or forged token; store failures.
    pub async fn logout(&self, token: &str) -> Result<Option<SessionId>> {
        let v = self.inner.keys.verify(token)?;
        let now = self.now();
        // By token, in one store call: a retry after an unconfirmed logout waits for the
        // replicas again instead of finding nothing and reporting it done.
        self.ended_one(self.inner.store.delete_by_token(v.hash()).await, now, RevokeReason::Logout).await
    }

    /// Revokes all sessions of a subject, optionally except one (e.g. "log out my other
    /// devices"). Returns the revoked ids.
    ///
    /// # Errors
    /// A subject or tenant that no session could have ([`MalformedInput`], nothing changed);
    /// store failures.
    pub async fn revoke_subject(
        &self,
        tenant: &str,
        subject: &str,
        except: Option<&SessionId>,
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>> {
        check_owner(tenant, subject)?;
        let now = self.now();
        let ev =
            |r: &SessionRecord| vec![Event::new(now, EventKind::Revoked(reason), Some(r.id), &r.subject, &r.tenant)];
        let gone = self.confirmed(self.inner.store.delete_subject(tenant, subject, except).await, ev).await?;
        self.emit(gone.iter().flat_map(|r| ev(r)).collect()).await;
        Ok(gone.iter().map(|r| r.id).collect())
    }

    /// Revokes every session of a named tenant.
    ///
    /// The default tenant (`""`) is refused rather than emptied: in a single-tenant
    /// deployment it holds every session, and an empty name here is far more often an unset
    /// variable in the caller than an intent to log everyone out.
    ///
    /// # Errors
    /// An empty, over-long or control-character tenant ([`MalformedInput`], nothing changed);
    /// store failures.
    pub async fn revoke_tenant(&self, tenant: &str) -> Result<Vec<SessionId>> {
        if tenant.is_empty() {
            return Err(MalformedInput::Field(
                "revoking a tenant needs its name; the default (empty) tenant's sessions are revoked per subject",
            )
            .into());
        }
        check_name(tenant, "tenant")?;
        let now = self.now();
        let ev = |r: &SessionRecord| {
            vec![Event::new(now, EventKind::Revoked(RevokeReason::Tenant), Some(r.id), &r.subject, &r.tenant)]
        };
        let gone = self.confirmed(self.inner.store.delete_tenant(tenant).await, ev).await?;
        self.emit(gone.iter().flat_map(|r| ev(r)).collect()).await;
        Ok(gone.iter().map(|r| r.id).collect())
    }

    /// Bumps a subject's security epoch: every existing session of the subject stops
    /// resolving at once, in O(1) (password change, MFA change, account disabled). Sessions
    /// created afterwards are unaffected. Returns the new epoch.
    ///
    /// # Errors
    /// A subject or tenant that no session could have ([`MalformedInput`], nothing changed);
    /// store failures.
    pub async fn bump_epoch(&self, tenant: &str, subject: &str) -> Result<u64> {
        check_owner(tenant, subject)?;
        let now = self.now();
        let event = Event::new(now, EventKind::Revoked(RevokeReason::Epoch), None, subject, tenant);
        match self.inner.store.bump_epoch(tenant, subject).await {
            Ok(epoch) => {
                self.emit(vec![event.with_detail(format!("epoch={epoch}"))]).await;
                Ok(epoch)
            }
            // The bump was applied (the epoch moved) but not confirmed: a retry bumps again,
            // so this one's event is written now.
            Err(e @ StoreError::Unconfirmed { .. }) => {
                self.emit(vec![event.unconfirmed()]).await;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A page of a subject's live sessions, oldest first (at most [`MAX_PAGE`]).
    ///
    /// # Errors
    /// A subject or tenant that no session could have ([`MalformedInput`]); store failures.
    pub async fn list(&self, tenant: &str, subject: &str, after: Option<PageCursor>, limit: usize) -> Result<Page> {
        check_owner(tenant, subject)?;
        let now = self.now();
        let epoch = self.inner.store.subject_epoch(tenant, subject).await?;
        let mut page = self.inner.store.list_subject(tenant, subject, after, limit.clamp(1, MAX_PAGE), now).await?;
        page.sessions.retain(|r| r.epoch >= epoch);
        Ok(page)
    }

    /// Removes up to `max` expired sessions and emits `expired.idle` / `expired.absolute`.
    /// Call it from a background task, never on the request path. Returns how many went.
    ///
    /// # Errors
    /// Store failures.
    pub async fn sweep(&self, max: usize) -> Result<usize> {
        let now = self.now();
        let gone = self.inner.store.sweep_expired(now, max).await?;
        let events = gone
            .iter()
            .map(|x| {
                let kind = match x.why {
                    Expiry::Absolute => EventKind::ExpiredAbsolute,
                    Expiry::Idle => EventKind::ExpiredIdle,
                };
                Event::new(now, kind, Some(x.record.id), &x.record.subject, &x.record.tenant)
            })
            .collect();
        self.emit(events).await;
        Ok(gone.len())
    }

    /// Events after `cursor`, in order.
    ///
    /// # Errors
    /// Store failures.
    pub async fn events(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.inner.store.read_events(after, limit.clamp(1, 10_000)).await?)
    }
}

/// What a step-up changes besides the token.
struct Elevation {
    aal: u8,
    amr: Vec<String>,
    user_agent: Option<String>,
    ip: Option<String>,
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Checks the owner of a session as [`Engine::create`] does: a subject of 1 to 256 bytes and
/// a tenant of at most 256 (empty: the default tenant), neither with control characters. The
/// subject-wide operations check the same, so that a name no session could have is refused
/// instead of creating an epoch row or an event for it.
fn check_owner(tenant: &str, subject: &str) -> std::result::Result<(), MalformedInput> {
    check_name(subject, "subject")?;
    if !tenant.is_empty() {
        check_name(tenant, "tenant")?;
    }
    Ok(())
}

fn check_amr(amr: &[String]) -> Result<(), MalformedInput> {
    if amr.len() > 16 {
        return Err(MalformedInput::Field("at most 16 amr values"));
    }
    amr.iter().try_for_each(|a| check_name(a, "amr"))
}

fn check_data(data: &BTreeMap<String, serde_json::Value>) -> Result<(), MalformedInput> {
    if data.len() > MAX_DATA_KEYS {
        return Err(MalformedInput::Field("session data holds at most 64 keys"));
    }
    for k in data.keys() {
        check_name(k, "data key")?;
    }
    let size = serde_json::to_vec(data).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_DATA_BYTES {
        return Err(MalformedInput::Field("session data is larger than 8 KiB"));
    }
    if data.values().any(|v| json_depth(v) > MAX_DATA_DEPTH) {
        return Err(MalformedInput::Field("session data nests arrays and objects at most 32 deep"));
    }
    Ok(())
}
