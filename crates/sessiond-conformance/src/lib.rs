//! # sessiond-conformance
//!
//! The one store conformance suite every [`SessionStore`] passes, and the test kit it is made
//! of: a [`Harness`] (engine over a store, with a [`ManualClock`] and test-sized policies) and
//! a [`CountingStore`] decorator that counts store calls.
//!
//! A store crate runs the whole suite from its own tests with one line:
//!
//! ```ignore
//! async fn make_store() -> std::sync::Arc<dyn sessiond_core::SessionStore> { /* fresh, isolated store */ }
//! sessiond_conformance::conformance_tests!(make_store);
//! ```
//!
//! The factory must return a store isolated from every other store it returned (its own
//! directory, key prefix or schema): cases run in parallel and move their clocks by hours.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sessiond_core::event::Event;
use sessiond_core::id::SessionId;
use sessiond_core::policy::{Binding, BindingAction, LimitAction, Policies, Policy};
use sessiond_core::record::SessionRecord;
use sessiond_core::store::{CreateOutcome, Expired, LimitRule, Lookup, Page, PageCursor, UpdateOutcome};
use sessiond_core::time::{Clock, ManualClock, SystemClock, UnixMs};
use sessiond_core::token::{KeyId, KeyRing, SigningKey, TokenHash};
use sessiond_core::{CreateRequest, Engine, EngineConfig, SessionStore, StoreError};

pub mod cases;
pub mod pki;
pub mod relay;

/// Idle timeout of the `test` policy.
pub const IDLE: Duration = Duration::from_secs(60);
/// Absolute lifetime of the `test` policy.
pub const ABSOLUTE: Duration = Duration::from_secs(300);
/// Rotation interval of the `rotating` policy.
pub const ROTATE_EVERY: Duration = Duration::from_secs(30);
/// Grace window of the harness engine.
pub const GRACE: Duration = Duration::from_secs(10);

/// Test-sized policy classes: `test` (idle 60 s, absolute 300 s, no rotation), `rotating`
/// (rotation every 30 s), `limit-deny` / `limit-oldest` / `limit-idlest` (5 sessions),
/// `bind-revoke` (revoke on IP or user-agent drift), plus the presets.
pub fn test_policies() -> Policies {
    let test = Policy {
        name: "test".into(),
        idle_timeout: IDLE,
        absolute_lifetime: ABSOLUTE,
        rotation_interval: None,
        renewal_fraction: 0.1,
        max_sessions: None,
        on_limit: LimitAction::DenyNew,
        persistent: false,
        binding: Binding::default(),
    };
    let mut p = Policies::default();
    let mut add = |pol: Policy| p.insert(pol).unwrap_or_else(|e| panic!("test policy invalid: {e}"));
    add(test.clone());
    add(Policy { name: "rotating".into(), rotation_interval: Some(ROTATE_EVERY), ..test.clone() });
    for (name, action) in [
        ("limit-deny", LimitAction::DenyNew),
        ("limit-oldest", LimitAction::EvictOldest),
        ("limit-idlest", LimitAction::EvictIdlest),
    ] {
        add(Policy { name: name.into(), max_sessions: Some(5), on_limit: action, ..test.clone() });
    }
    add(Policy {
        name: "bind-revoke".into(),
        binding: Binding { user_agent: BindingAction::Revoke, ip_prefix: BindingAction::Revoke },
        ..test.clone()
    });
    add(Policy {
        name: "bind-step-up".into(),
        binding: Binding { user_agent: BindingAction::Allow, ip_prefix: BindingAction::StepUp },
        ..test
    });
    p
}

/// An engine over a store with a manual clock, a fresh key ring and [`test_policies`].
pub struct Harness {
    /// The engine.
    pub engine: Engine,
    /// Its clock, starting at the real current time (stores may derive TTLs from deadlines).
    pub clock: Arc<ManualClock>,
    /// The store, wrapped in a call counter.
    pub store: Arc<CountingStore>,
    /// A tenant unique to this harness.
    pub tenant: String,
}

impl Harness {
    /// A harness over `store`.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let store = Arc::new(CountingStore::new(store));
        let engine = Engine::builder(store.clone(), KeyRing::single(KeyId(1), SigningKey::generate()))
            .with_policies(test_policies())
            .with_clock(clock.clone())
            .with_config(EngineConfig { rotation_grace: GRACE })
            .build();
        let tenant = format!("t-{}", SessionId::from_bytes(sessiond_core::token::os_random::<16>()));
        Self { engine, clock, store, tenant }
    }

    /// A create request for `subject` in this harness's tenant under `policy`.
    pub fn request(&self, subject: &str, policy: &str) -> CreateRequest {
        CreateRequest {
            subject: subject.into(),
            tenant: self.tenant.clone(),
            policy: Some(policy.into()),
            aal: 1,
            amr: vec!["pwd".into()],
            ..Default::default()
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

/// Counts calls to each [`SessionStore`] method of the store it wraps.
pub struct CountingStore {
    inner: Arc<dyn SessionStore>,
    /// Calls to `find_by_token` and `find_by_id`, and answered calls to `find_by_token_now`.
    pub finds: AtomicUsize,
    /// Calls to `renew`.
    pub renews: AtomicUsize,
    /// Calls to `update`.
    pub updates: AtomicUsize,
    /// Calls to any method that writes.
    pub writes: AtomicUsize,
    held: HeldRead,
    unconfirmed: std::sync::atomic::AtomicBool,
}

/// See [`CountingStore::hold_next_read`].
#[derive(Default)]
struct HeldRead {
    armed: std::sync::atomic::AtomicBool,
    renew_armed: std::sync::atomic::AtomicBool,
    read_done: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            finds: AtomicUsize::new(0),
            renews: AtomicUsize::new(0),
            updates: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            held: HeldRead::default(),
            unconfirmed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// While `on`, every revocation (`delete*`, `bump_epoch`) is applied to the wrapped store
    /// and then reported as [`StoreError::Unconfirmed`] with the sessions it ended, as the
    /// Redis store reports a change its replicas did not acknowledge.
    pub fn unconfirm_revocations(&self, on: bool) {
        self.unconfirmed.store(on, Ordering::SeqCst);
    }

    /// `out`, or, while [`CountingStore::unconfirm_revocations`] is on, the
    /// [`StoreError::Unconfirmed`] that lists what it ended.
    fn confirm<T>(
        &self,
        out: Result<T, StoreError>,
        ended: impl FnOnce(T) -> Vec<Arc<SessionRecord>>,
    ) -> Result<T, StoreError> {
        match out {
            Ok(v) if self.unconfirmed.load(Ordering::SeqCst) => Err(StoreError::Unconfirmed {
                message: "injected by CountingStore::unconfirm_revocations".into(),
                ended: ended(v),
            }),
            out => out,
        }
    }

    /// Makes the next `find_by_token` stop *after* it read the wrapped store, until
    /// [`CountingStore::release_read`]: its answer is then as old as the read, like a request
    /// in flight while another node changes the session.
    pub fn hold_next_read(&self) {
        self.held.armed.store(true, Ordering::SeqCst);
    }

    /// Waits until the read armed by [`CountingStore::hold_next_read`] has read and is held.
    pub async fn read_held(&self) {
        self.held.read_done.notified().await;
    }

    /// Makes the next `renew` stop *after* the wrapped store applied it, until
    /// [`CountingStore::release_read`]: what happens meanwhile (a revocation and its push)
    /// lands between the store's write and the caller seeing its answer.
    pub fn hold_next_renew(&self) {
        self.held.renew_armed.store(true, Ordering::SeqCst);
    }

    /// Waits until the renewal armed by [`CountingStore::hold_next_renew`] is applied and held.
    pub async fn renew_held(&self) {
        self.held.read_done.notified().await;
    }

    /// Lets the held read (or renewal) return.
    pub fn release_read(&self) {
        self.held.release.notify_one();
    }

    /// Current value of a counter.
    pub fn get(c: &AtomicUsize) -> usize {
        c.load(Ordering::SeqCst)
    }

    fn bump(c: &AtomicUsize) {
        c.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl SessionStore for CountingStore {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<LimitRule>,
        now: UnixMs,
    ) -> Result<CreateOutcome, StoreError> {
        Self::bump(&self.writes);
        self.inner.create(record, limit, now).await
    }
    async fn find_by_token(&self, hash: &TokenHash) -> Result<Option<Lookup>, StoreError> {
        Self::bump(&self.finds);
        let found = self.inner.find_by_token(hash).await;
        if self.held.armed.swap(false, Ordering::SeqCst) {
            self.held.read_done.notify_one();
            self.held.release.notified().await;
        }
        found
    }
    /// Counted as a find. While a read is held ([`CountingStore::hold_next_read`]), it
    /// answers nothing, so the lookup takes the asynchronous path and is held there.
    fn find_by_token_now(&self, hash: &TokenHash) -> Option<Option<Lookup>> {
        if self.held.armed.load(Ordering::SeqCst) {
            return None;
        }
        let found = self.inner.find_by_token_now(hash);
        if found.is_some() {
            Self::bump(&self.finds);
        }
        found
    }
    async fn find_by_id(&self, id: &SessionId) -> Result<Option<Lookup>, StoreError> {
        Self::bump(&self.finds);
        self.inner.find_by_id(id).await
    }
    async fn update(&self, record: SessionRecord, expected_version: u64) -> Result<UpdateOutcome, StoreError> {
        Self::bump(&self.writes);
        Self::bump(&self.updates);
        self.inner.update(record, expected_version).await
    }
    async fn renew(&self, r: &SessionRecord, seen: UnixMs, idle: UnixMs, ip: Option<&str>) -> Result<(), StoreError> {
        Self::bump(&self.writes);
        Self::bump(&self.renews);
        let out = self.inner.renew(r, seen, idle, ip).await;
        if self.held.renew_armed.swap(false, Ordering::SeqCst) {
            self.held.read_done.notify_one();
            self.held.release.notified().await;
        }
        out
    }
    async fn delete(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        Self::bump(&self.writes);
        self.confirm(self.inner.delete(id).await, |r| r.into_iter().collect())
    }
    async fn delete_by_token(&self, hash: &TokenHash) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        Self::bump(&self.writes);
        self.confirm(self.inner.delete_by_token(hash).await, |r| r.into_iter().collect())
    }
    async fn delete_subject(
        &self,
        tenant: &str,
        subject: &str,
        except: Option<&SessionId>,
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        Self::bump(&self.writes);
        self.confirm(self.inner.delete_subject(tenant, subject, except).await, |v| v)
    }
    async fn delete_tenant(&self, tenant: &str) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        Self::bump(&self.writes);
        self.confirm(self.inner.delete_tenant(tenant).await, |v| v)
    }
    async fn list_subject(
        &self,
        tenant: &str,
        subject: &str,
        after: Option<PageCursor>,
        limit: usize,
        now: UnixMs,
    ) -> Result<Page, StoreError> {
        self.inner.list_subject(tenant, subject, after, limit, now).await
    }
    async fn subject_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        self.inner.subject_epoch(tenant, subject).await
    }
    async fn bump_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        Self::bump(&self.writes);
        self.confirm(self.inner.bump_epoch(tenant, subject).await, |_| Vec::new())
    }
    async fn sweep_expired(&self, now: UnixMs, max: usize) -> Result<Vec<Expired>, StoreError> {
        Self::bump(&self.writes);
        self.inner.sweep_expired(now, max).await
    }
    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.inner.append_events(events).await
    }
    async fn read_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.inner.read_events(after, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// Calls `$callback!` with the list of every conformance case, the one place the list is
/// written (used by [`conformance_tests!`] and [`run_all`]).
#[macro_export]
macro_rules! for_each_case {
    ($callback:path; $($args:tt)*) => {
        $callback! { $($args)*;
            create_resolve_round_trip,
            forged_tokens_never_reach_the_store,
            unknown_token_is_unknown_session,
            idle_timeout_ends_session,
            absolute_timeout_ends_active_session,
            renewal_is_throttled,
            rotation_grace_returns_same_successor_then_detects_theft,
            parallel_resolves_during_rotation_share_one_successor,
            interval_rotation_on_resolve,
            elevate_updates_assurance_and_rotates,
            limit_deny_new,
            limit_evict_oldest,
            limit_evict_idlest,
            parallel_creates_never_exceed_limit,
            data_compare_and_set_and_no_resurrection,
            revoke_one_subject_tenant,
            epoch_bump_revokes_existing_sessions_only,
            epoch_ended_sessions_do_not_count_toward_limits,
            list_paginates_live_sessions_of_one_subject,
            sweeper_removes_expired_and_emits_events,
            events_are_ordered_and_read_from_a_cursor,
            prelogin_token_is_revoked_not_adopted,
            logout_replay_is_refused,
            binding_revoke_policy,
            step_up_binding_survives_renewals,
            peek_does_not_renew,
            renewal_from_a_stale_copy_never_overwrites_newer_state,
            renewed_session_is_swept_at_its_new_deadline,
            retired_token_found_only_while_remembered,
            resolve_now_answers_only_what_resolve_would,
        }
    };
}

/// Generates one `#[tokio::test]` per conformance case, each over a fresh store from
/// `$factory` (an `async fn() -> Arc<dyn SessionStore>`).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::for_each_case!($crate::__conformance_test_fns; $factory);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    ($factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = $factory().await;
                $crate::cases::$case(store).await;
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_run_all {
    ($factory:ident; $($case:ident),* $(,)?) => {
        $(
            $crate::cases::$case($factory().await).await;
        )*
    };
}

/// Runs every conformance case in turn, each over a fresh store from `factory`, inside one
/// test (for stores whose setup is expensive, such as a cluster started by the test).
pub async fn run_all<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn SessionStore>>,
{
    for_each_case!(__conformance_run_all; factory);
}

/// A store plus something that must live exactly as long as it — a temporary directory, a
/// database schema or a key prefix to clean up on drop. Every call is delegated to the store;
/// the store is dropped *before* the guard (field order), so cleanup runs after it closed.
///
/// Store crates use it in their conformance factories instead of each writing a delegating
/// wrapper.
pub struct Guarded<S, G> {
    store: S,
    _guard: G,
}

impl<S, G> Guarded<S, G> {
    /// Wraps `store`, keeping `guard` alive until the wrapper is dropped.
    pub fn new(store: S, guard: G) -> Self {
        Self { store, _guard: guard }
    }

    /// The wrapped store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

#[async_trait]
impl<S: SessionStore, G: Send + Sync + 'static> SessionStore for Guarded<S, G> {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<LimitRule>,
        now: UnixMs,
    ) -> Result<CreateOutcome, StoreError> {
        self.store.create(record, limit, now).await
    }
    async fn find_by_token(&self, hash: &TokenHash) -> Result<Option<Lookup>, StoreError> {
        self.store.find_by_token(hash).await
    }
    fn find_by_token_now(&self, hash: &TokenHash) -> Option<Option<Lookup>> {
        self.store.find_by_token_now(hash)
    }
    async fn find_by_id(&self, id: &SessionId) -> Result<Option<Lookup>, StoreError> {
        self.store.find_by_id(id).await
    }
    async fn update(&self, record: SessionRecord, expected_version: u64) -> Result<UpdateOutcome, StoreError> {
        self.store.update(record, expected_version).await
    }
    async fn renew(&self, r: &SessionRecord, seen: UnixMs, idle: UnixMs, ip: Option<&str>) -> Result<(), StoreError> {
        self.store.renew(r, seen, idle, ip).await
    }
    async fn delete(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.store.delete(id).await
    }
    async fn delete_by_token(&self, hash: &TokenHash) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.store.delete_by_token(hash).await
    }
    async fn delete_subject(
        &self,
        tenant: &str,
        subject: &str,
        except: Option<&SessionId>,
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        self.store.delete_subject(tenant, subject, except).await
    }
    async fn delete_tenant(&self, tenant: &str) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        self.store.delete_tenant(tenant).await
    }
    async fn list_subject(
        &self,
        tenant: &str,
        subject: &str,
        after: Option<PageCursor>,
        limit: usize,
        now: UnixMs,
    ) -> Result<Page, StoreError> {
        self.store.list_subject(tenant, subject, after, limit, now).await
    }
    async fn subject_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        self.store.subject_epoch(tenant, subject).await
    }
    async fn bump_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        self.store.bump_epoch(tenant, subject).await
    }
    async fn sweep_expired(&self, now: UnixMs, max: usize) -> Result<Vec<Expired>, StoreError> {
        self.store.sweep_expired(now, max).await
    }
    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.store.append_events(events).await
    }
    async fn read_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.store.read_events(after, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}

/// A plausible browser-session record for store-level tests: the given id and token hash,
/// policy `default`, idle deadline 30 min and absolute deadline 12 h after `now`, a Chrome
/// user agent and a documentation IP.
pub fn record_with(id: [u8; 16], hash: [u8; 32], tenant: &str, subject: &str, now: UnixMs) -> SessionRecord {
    SessionRecord {
        id: SessionId::from_bytes(id),
        token_hash: TokenHash(hash),
        subject: subject.into(),
        tenant: tenant.into(),
        policy: "default".into(),
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now.plus(Duration::from_secs(30 * 60)),
        absolute_expires_at: now.plus(Duration::from_secs(12 * 3600)),
        rotated_at: now,
        auth_time: now,
        aal: 1,
        amr: vec!["pwd".into()],
        device: sessiond_core::record::DeviceInfo {
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36".into()),
            first_ip: Some("192.0.2.10".into()),
            last_ip: Some("192.0.2.10".into()),
        },
        data: Default::default(),
        revision: 0,
        epoch: 0,
        version: 0,
        retired: Vec::new(),
    }
}

/// [`record_with`] with a random id and token hash.
pub fn record(tenant: &str, subject: &str, now: UnixMs) -> SessionRecord {
    record_with(sessiond_core::token::os_random::<16>(), sessiond_core::token::os_random::<32>(), tenant, subject, now)
}
