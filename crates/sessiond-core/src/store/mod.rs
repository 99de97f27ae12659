//! The [`SessionStore`] trait: what every backend (in-memory, embedded, Redis, PostgreSQL)
//! provides to the engine, and the security contract it must keep.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{MalformedInput, StoreError};
use crate::event::Event;
use crate::id::SessionId;
use crate::policy::LimitAction;
use crate::record::{Expiry, SessionRecord};
use crate::time::UnixMs;
use crate::token::TokenHash;

pub mod heartbeat;
pub mod memory;
pub mod near_cache;

/// A session found by the store, with its subject's current security epoch.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The record as stored.
    pub record: Arc<SessionRecord>,
    /// The subject's current security epoch; the session is revoked when its own `epoch` is
    /// lower.
    pub subject_epoch: u64,
}

/// The concurrent-session rule applied atomically by [`SessionStore::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitRule {
    /// Maximum live sessions of the subject, the new one included.
    pub max: u32,
    /// What to do when the subject is at the limit.
    pub action: LimitAction,
}

/// The result of [`SessionStore::create`].
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateOutcome {
    /// Stored; these sessions were evicted to make room (same atomic step).
    Created {
        /// The evicted sessions.
        evicted: Vec<Arc<SessionRecord>>,
    },
    /// Not stored: the subject is at its limit and the rule is `deny_new`.
    LimitReached,
}

/// The result of [`SessionStore::update`].
#[derive(Debug)]
#[non_exhaustive]
pub enum UpdateOutcome {
    /// Written.
    Updated,
    /// Not written: the stored version differs. Carries the current record.
    Conflict(Arc<SessionRecord>),
    /// Not written: the session no longer exists (deleted, revoked or swept).
    Missing,
}

/// Position in a subject's session list: sessions are ordered by creation time, then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageCursor {
    /// Creation time of the last session on the previous page.
    pub created_at: UnixMs,
    /// Its id.
    pub id: SessionId,
}

impl fmt::Display for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.created_at.0, self.id)
    }
}

impl FromStr for PageCursor {
    type Err = MalformedInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = MalformedInput::Field("the page cursor is malformed");
        let (t, id) = s.split_once('.').ok_or(bad)?;
        Ok(Self { created_at: UnixMs(t.parse().map_err(|_| bad)?), id: id.parse().map_err(|_| bad)? })
    }
}

/// One page of a subject's live sessions.
#[derive(Debug, Clone)]
pub struct Page {
    /// Sessions, oldest first.
    pub sessions: Vec<Arc<SessionRecord>>,
    /// Cursor of the next page, if there may be one.
    pub next: Option<PageCursor>,
}

/// A session removed by the sweeper.
#[derive(Debug, Clone)]
pub struct Expired {
    /// The removed record.
    pub record: Arc<SessionRecord>,
    /// Which deadline passed.
    pub why: Expiry,
}

/// Storage for sessions, their indexes, subject epochs and the event log.
///
/// # Security contract
///
/// Every implementation must keep all of these; the conformance suite
/// (`sessiond-conformance`) checks them.
///
/// 1. **Hashes only.** The store receives [`TokenHash`]es, never tokens, and must not try to
///    obtain them. Records are sensitive (they hold subjects, device facts and application
///    data): keep them off logs and protect them at rest as the deployment requires.
/// 2. **Inputs are untrusted.** Hashes and ids come from clients. Use them only as lookup
///    keys (bound parameters, never interpolated into queries or scripts).
/// 3. **Index every lookup hash.** A record must be found by each of
///    [`SessionRecord::lookup_hashes`], and by none once it is replaced or deleted.
/// 4. **Atomic, durable writes.** `create` (with its limit check and evictions), `update`,
///    `delete*` and `bump_epoch` take effect atomically — record, token index, subject index
///    and expiry index in one step — and are durable when they return `Ok`. The concurrent
///    limit is never exceeded, even under parallel creates on many nodes.
/// 5. **No resurrection.** Once deleted, a session never comes back: `update` and `renew` on
///    a missing session do nothing. `update` writes only when the stored version equals the
///    expected one (compare-and-set).
/// 6. **Expired is absent for counting.** Sessions whose [`SessionRecord::deadline`] passed
///    do not count toward limits and are not listed, even before the sweeper removes them.
///    Nor do sessions an epoch bump ended (their `epoch` is below the subject's), read in the
///    same atomic step as the count: they are neither counted nor evicted by `create`, so a
///    "log out everywhere" never locks the user out of a new login under `deny_new`.
///    `find_*` may still return them; the engine checks deadlines and epochs.
/// 7. **Renewal never extends past the truth.** `renew` may be batched or lost on a crash,
///    which only makes a session end earlier; it must never move a deadline backwards past
///    what an acknowledged write set, nor beyond the absolute deadline.
/// 8. **Bounded sweeping.** `sweep_expired` removes at most `max` sessions per call with
///    their index entries, and is never called on the request path.
/// 9. **Ordered events.** `append_events` assigns strictly increasing cursors; `read_events`
///    returns events after a cursor in cursor order.
/// 10. **No lost revocations in the audit trail.** A `delete*` or `bump_epoch` that applied
///     a change but cannot confirm the whole of it (a replica acknowledgement missing, or a
///     batched tenant revocation failing after earlier batches ended sessions) returns
///     [`StoreError::Unconfirmed`] with every session it ended, never a plain
///     [`StoreError::Unavailable`]: the engine writes their events before reporting the
///     failure, since a retry will not find them.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session (its id and token hash are fresh), applying `limit` atomically
    /// with the insert: live sessions of the same tenant and subject are counted at `now`.
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<LimitRule>,
        now: UnixMs,
    ) -> Result<CreateOutcome, StoreError>;

    /// The session indexed under `hash` (current or retired token).
    async fn find_by_token(&self, hash: &TokenHash) -> Result<Option<Lookup>, StoreError>;

    /// [`SessionStore::find_by_token`] answered from memory, without waiting: `Some(answer)`
    /// when the store can tell at once (an in-memory index, a cache hit), `None` when only
    /// the asynchronous lookup can (the default). The engine's hot path tries this first.
    ///
    /// Contract: an answer given here is one `find_by_token` could give at the same instant.
    /// In particular it never returns a session that a delete, update or epoch bump which
    /// has already returned removed or changed; a cache answers only under the same
    /// invalidation rules as its `find_by_token` hits.
    fn find_by_token_now(&self, hash: &TokenHash) -> Option<Option<Lookup>> {
        let _ = hash;
        None
    }

    /// The session with public id `id`.
    async fn find_by_id(&self, id: &SessionId) -> Result<Option<Lookup>, StoreError>;

    /// Replaces the session `record.id` with `record` if its stored version is
    /// `expected_version`, re-indexing the token hashes and deadline.
    async fn update(&self, record: SessionRecord, expected_version: u64) -> Result<UpdateOutcome, StoreError>;

    /// Moves a live session's `last_seen_at` and idle deadline forward (and records the
    /// client IP). Never creates, never moves backwards. May be deferred and batched.
    ///
    /// `current` is the session as the caller last read it from this store (the engine passes
    /// the copy it is resolving, which may come from a cache), so that a store can write
    /// `current.renewed(..)` without reading the session first. A copy is only a hint: the
    /// store may write from it only while the stored session still has `current.version`
    /// (no update, rotation or elevation since) and an older `last_seen_at` and deadline;
    /// otherwise it must apply the renewal to the stored session, or drop it. A stale copy
    /// must never overwrite newer state.
    async fn renew(
        &self,
        current: &SessionRecord,
        seen: UnixMs,
        idle_expires_at: UnixMs,
        ip: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Deletes one session; returns it if it existed.
    async fn delete(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError>;

    /// Deletes the session token hash `hash` names (current or retired token), if any;
    /// returns it. Logout and the fixation defence use it.
    ///
    /// The default finds the session, then deletes it by id. A store whose revocations can be
    /// [`StoreError::Unconfirmed`] must override it so that a retry after an unconfirmed
    /// attempt, which finds the record already gone, still runs (and waits for) the
    /// revocation while the token's index entry is there: otherwise the retry would report
    /// "no such session", taken as done, before the first attempt is confirmed.
    async fn delete_by_token(&self, hash: &TokenHash) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        match self.find_by_token(hash).await? {
            Some(found) => self.delete(&found.record.id).await,
            None => Ok(None),
        }
    }

    /// Deletes every session of a subject except `except`; returns the deleted ones.
    async fn delete_subject(
        &self,
        tenant: &str,
        subject: &str,
        except: Option<&SessionId>,
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError>;

    /// Deletes every session of a tenant; returns the deleted ones. It may work in batches
    /// (contract 4 then holds per subject or batch, and contract 10 for the whole).
    async fn delete_tenant(&self, tenant: &str) -> Result<Vec<Arc<SessionRecord>>, StoreError>;

    /// A page of a subject's live sessions at `now`, oldest first, after `after`. The cost
    /// depends on the subject's session count, not on the store's.
    async fn list_subject(
        &self,
        tenant: &str,
        subject: &str,
        after: Option<PageCursor>,
        limit: usize,
        now: UnixMs,
    ) -> Result<Page, StoreError>;

    /// The subject's security epoch (0 if never bumped).
    async fn subject_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError>;

    /// Increments the subject's security epoch and returns the new value. O(1).
    async fn bump_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError>;

    /// Removes up to `max` sessions whose deadline is at or before `now`.
    async fn sweep_expired(&self, now: UnixMs, max: usize) -> Result<Vec<Expired>, StoreError>;

    /// Appends events, assigning their cursors.
    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError>;

    /// Up to `limit` events with a cursor greater than `after`, in order.
    async fn read_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// Whether the store can serve requests now (for readiness probes).
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Which deadline a record passed, for stores' sweepers.
pub fn expiry_reason(record: &SessionRecord, now: UnixMs) -> Expiry {
    record.expiry_at(now).unwrap_or(Expiry::Idle)
}
