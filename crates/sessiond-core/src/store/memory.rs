//! [`MemoryStore`]: every index in memory behind one lock. Not durable; for tests, the
//! library's in-process use, and as the reference implementation of the contract.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use super::{CreateOutcome, Expired, LimitRule, Lookup, Page, PageCursor, SessionStore, UpdateOutcome};
use crate::error::StoreError;
use crate::event::Event;
use crate::id::SessionId;
use crate::policy::LimitAction;
use crate::record::SessionRecord;
use crate::time::UnixMs;
use crate::token::TokenHash;

/// A hasher for keys that are already uniformly random (token hashes, session ids): it mixes
/// the key's first and last 8 bytes instead of running SipHash. Token hashes are SHA-256
/// outputs of tag-verified tokens, so clients cannot choose them to force collisions.
#[derive(Default)]
pub(crate) struct RandomKeyHasher(u64);

impl Hasher for RandomKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        a[..n].copy_from_slice(&bytes[..n]);
        b[..n].copy_from_slice(&bytes[bytes.len() - n..]);
        self.0 ^= u64::from_le_bytes(a) ^ u64::from_le_bytes(b).rotate_left(29);
    }
    fn write_usize(&mut self, _: usize) {}
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<RandomKeyHasher>>;

#[derive(Debug, Clone)]
struct Entry {
    record: Arc<SessionRecord>,
    epoch: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct SubjectIndex {
    sessions: BTreeSet<(UnixMs, SessionId)>,
    epoch: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: FastMap<SessionId, Entry>,
    /// Token hash → the entry itself (not its id), so the hot path does one lookup.
    by_token: FastMap<TokenHash, Entry>,
    subjects: BTreeMap<(String, String), SubjectIndex>,
    expiry: BTreeSet<(UnixMs, SessionId)>,
    events: std::collections::VecDeque<Event>,
    next_cursor: u64,
}

/// Events the memory store keeps; older ones are dropped (it is not a durable log).
pub const MEMORY_EVENTS_KEPT: usize = 100_000;

/// The in-memory store.
///
/// # Examples
/// ```
/// let store = sessiond_core::store::memory::MemoryStore::new();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored sessions (live or not yet swept).
    pub fn len(&self) -> usize {
        self.read().sessions.len()
    }

    /// Whether the store holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping service: recover the guard.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn insert(&mut self, record: SessionRecord) {
        let key = (record.tenant.clone(), record.subject.clone());
        let subject = self.subjects.entry(key).or_default();
        subject.sessions.insert((record.created_at, record.id));
        let epoch = subject.epoch.clone();
        let entry = Entry { record: Arc::new(record), epoch };
        for h in entry.record.lookup_hashes() {
            self.by_token.insert(*h, entry.clone());
        }
        self.expiry.insert((entry.record.deadline(), entry.record.id));
        self.sessions.insert(entry.record.id, entry);
    }

    fn remove(&mut self, id: &SessionId) -> Option<Arc<SessionRecord>> {
        let entry = self.sessions.remove(id)?;
        let r = entry.record;
        for h in r.lookup_hashes() {
            if self.by_token.get(h).is_some_and(|e| e.record.id == *id) {
                self.by_token.remove(h);
            }
        }
        self.expiry.remove(&(r.deadline(), r.id));
        let key = (r.tenant.clone(), r.subject.clone());
        if let Some(s) = self.subjects.get_mut(&key) {
            s.sessions.remove(&(r.created_at, r.id));
            if s.sessions.is_empty() && s.epoch.load(Ordering::SeqCst) == 0 {
                self.subjects.remove(&key);
            }
        }
        Some(r)
    }

    fn live_of(&self, tenant: &str, subject: &str, now: UnixMs) -> Vec<Arc<SessionRecord>> {
        let Some(s) = self.subjects.get(&(tenant.to_owned(), subject.to_owned())) else {
            return Vec::new();
        };
        // A session an epoch bump ended is as dead as an expired one: it neither counts nor
        // gets evicted (contract point 6).
        let epoch = s.epoch.load(Ordering::Acquire);
        s.sessions
            .iter()
            .filter_map(|(_, id)| self.sessions.get(id))
            .map(|e| e.record.clone())
            .filter(|r| r.is_live(now) && r.epoch >= epoch)
            .collect()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<LimitRule>,
        now: UnixMs,
    ) -> Result<CreateOutcome, StoreError> {
        let mut g = self.write();
        if g.sessions.contains_key(&record.id) || record.lookup_hashes().any(|h| g.by_token.contains_key(h)) {
            return Err(StoreError::Corrupt("create with an id or token hash already in use".into()));
        }
        let mut evicted = Vec::new();
        if let Some(rule) = limit {
            let mut live = g.live_of(&record.tenant, &record.subject, now);
            let max = rule.max as usize;
            if live.len() >= max {
                match rule.action {
                    LimitAction::DenyNew => return Ok(CreateOutcome::LimitReached),
                    LimitAction::EvictOldest => live.sort_by_key(|r| (r.created_at, r.id)),
                    LimitAction::EvictIdlest => live.sort_by_key(|r| (r.last_seen_at, r.created_at, r.id)),
                }
                let excess = live.len() + 1 - max;
                for r in live.into_iter().take(excess) {
                    if let Some(gone) = g.remove(&r.id) {
                        evicted.push(gone);
                    }
                }
            }
        }
        g.insert(record);
        Ok(CreateOutcome::Created { evicted })
    }

    async fn find_by_token(&self, hash: &TokenHash) -> Result<Option<Lookup>, StoreError> {
        Ok(self.find_by_token_now(hash).flatten())
    }

    fn find_by_token_now(&self, hash: &TokenHash) -> Option<Option<Lookup>> {
        let g = self.read();
        Some(
            g.by_token
                .get(hash)
                .map(|e| Lookup { record: e.record.clone(), subject_epoch: e.epoch.load(Ordering::Acquire) }),
        )
    }

    async fn find_by_id(&self, id: &SessionId) -> Result<Option<Lookup>, StoreError> {
        let g = self.read();
        Ok(g.sessions
            .get(id)
            .map(|e| Lookup { record: e.record.clone(), subject_epoch: e.epoch.load(Ordering::Acquire) }))
    }

    async fn update(&self, record: SessionRecord, expected_version: u64) -> Result<UpdateOutcome, StoreError> {
        let mut g = self.write();
        let Some(current) = g.sessions.get(&record.id) else {
            return Ok(UpdateOutcome::Missing);
        };
        if current.record.version != expected_version {
            return Ok(UpdateOutcome::Conflict(current.record.clone()));
        }
        if current.record.subject != record.subject || current.record.tenant != record.tenant {
            return Err(StoreError::Corrupt("update may not change a session's subject or tenant".into()));
        }
        g.remove(&record.id);
        g.insert(record);
        Ok(UpdateOutcome::Updated)
    }

    async fn renew(
        &self,
        current: &SessionRecord,
        seen: UnixMs,
        idle_expires_at: UnixMs,
        ip: Option<&str>,
    ) -> Result<(), StoreError> {
        // The stored record is at hand: the caller's copy is not needed.
        let id = &current.id;
        let mut g = self.write();
        let Some(e) = g.sessions.get(id) else {
            return Ok(());
        };
        let Some(next) = e.record.renewed(seen, idle_expires_at, ip) else {
            return Ok(());
        };
        g.remove(id);
        g.insert(next);
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        Ok(self.write().remove(id))
    }

    async fn delete_subject(
        &self,
        tenant: &str,
        subject: &str,
        except: Option<&SessionId>,
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        let mut g = self.write();
        let ids: Vec<SessionId> = g
            .subjects
            .get(&(tenant.to_owned(), subject.to_owned()))
            .map(|s| s.sessions.iter().map(|(_, id)| *id).filter(|id| Some(id) != except).collect())
            .unwrap_or_default();
        Ok(ids.iter().filter_map(|id| g.remove(id)).collect())
    }

    async fn delete_tenant(&self, tenant: &str) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        let mut g = self.write();
        let ids: Vec<SessionId> = g
            .subjects
            .range((tenant.to_owned(), String::new())..)
            .take_while(|((t, _), _)| t == tenant)
            .flat_map(|(_, s)| s.sessions.iter().map(|(_, id)| *id))
            .collect();
        Ok(ids.iter().filter_map(|id| g.remove(id)).collect())
    }

    async fn list_subject(
        &self,
        tenant: &str,
        subject: &str,
        after: Option<PageCursor>,
        limit: usize,
        now: UnixMs,
    ) -> Result<Page, StoreError> {
        let g = self.read();
        let Some(s) = g.subjects.get(&(tenant.to_owned(), subject.to_owned())) else {
            return Ok(Page { sessions: Vec::new(), next: None });
        };
        let start = after.map(|c| (c.created_at, c.id));
        let mut sessions = Vec::new();
        let mut next = None;
        for key in s.sessions.iter().filter(|k| start.is_none_or(|st| **k > st)) {
            let Some(e) = g.sessions.get(&key.1) else {
                continue;
            };
            if !e.record.is_live(now) {
                continue;
            }
            if sessions.len() == limit {
                next = sessions.last().map(|r: &Arc<SessionRecord>| PageCursor { created_at: r.created_at, id: r.id });
                break;
            }
            sessions.push(e.record.clone());
        }
        Ok(Page { sessions, next })
    }

    async fn subject_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        let g = self.read();
        Ok(g.subjects.get(&(tenant.to_owned(), subject.to_owned())).map_or(0, |s| s.epoch.load(Ordering::Acquire)))
    }

    async fn bump_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        let mut g = self.write();
        let s = g.subjects.entry((tenant.to_owned(), subject.to_owned())).or_default();
        Ok(s.epoch.fetch_add(1, Ordering::AcqRel) + 1)
    }

    async fn sweep_expired(&self, now: UnixMs, max: usize) -> Result<Vec<Expired>, StoreError> {
        let mut g = self.write();
        let due: Vec<SessionId> = g.expiry.iter().take_while(|(d, _)| *d <= now).take(max).map(|(_, id)| *id).collect();
        Ok(due
            .iter()
            .filter_map(|id| g.remove(id))
            .map(|record| Expired { why: super::expiry_reason(&record, now), record })
            .collect())
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        let mut g = self.write();
        for mut e in events {
            g.next_cursor += 1;
            e.cursor = g.next_cursor;
            g.events.push_back(e);
            if g.events.len() > MEMORY_EVENTS_KEPT {
                g.events.pop_front();
            }
        }
        Ok(())
    }

    async fn read_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let g = self.read();
        let start = g.events.partition_point(|e| e.cursor <= after);
        Ok(g.events.range(start..).take(limit).cloned().collect())
    }
}
