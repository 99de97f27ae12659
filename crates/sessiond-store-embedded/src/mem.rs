//! The in-memory index: the committed state of the database, serving every read.
//!
//! Only the writer thread changes it for durable operations (after the commit), and only
//! `renew` changes it directly (renewals are deferred by design). [`Stage`] is the writer's
//! view of "committed state plus the requests already evaluated in the current batch".

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sessiond_core::id::SessionId;
use sessiond_core::record::SessionRecord;
use sessiond_core::time::UnixMs;
use sessiond_core::token::TokenHash;

use crate::cache::ResolveCache;
use crate::compact;

/// A hasher for keys that are already uniformly random or at least unique (token hashes are
/// SHA-256 outputs; session ids are random): it folds the key's bytes and finishes with a
/// multiply-xorshift so that every output bit depends on every input word. Clients cannot
/// choose token hashes (tokens are tag-verified before hashing), so no keyed hash is needed.
#[derive(Default)]
pub(crate) struct RandomKeyHasher(u64);

impl Hasher for RandomKeyHasher {
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 32;
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut a = [0u8; 8];
            a[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(a)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<RandomKeyHasher>>;
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<RandomKeyHasher>>;

/// The key of a subject in the subject index: unambiguous for any tenant and subject text.
pub(crate) fn subject_key(tenant: &str, subject: &str) -> String {
    format!("{}:{tenant}{subject}", tenant.len())
}

/// Prefix shared by the subject keys of every subject of `tenant`.
pub(crate) fn tenant_prefix(tenant: &str) -> String {
    format!("{}:{tenant}", tenant.len())
}

/// One stored session: its compact record and its subject's epoch cell.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) blob: Box<[u8]>,
    pub(crate) epoch: Arc<AtomicU64>,
}

impl Slot {
    pub(crate) fn record(&self) -> Option<SessionRecord> {
        compact::decode(&self.blob)
    }
}

/// What the index needs of a session, computed off the index's lock (or thread).
pub(crate) struct Prepared {
    id: SessionId,
    token_hash: TokenHash,
    /// Hashes of the retired tokens (usually none: no allocation).
    retired: Vec<TokenHash>,
    key: Box<str>,
    created_at: UnixMs,
    deadline: UnixMs,
    blob: Box<[u8]>,
}

impl Prepared {
    pub(crate) fn new(r: &SessionRecord, blob: Box<[u8]>) -> Self {
        Self {
            id: r.id,
            token_hash: r.token_hash,
            retired: r.retired.iter().map(|t| t.hash).collect(),
            key: subject_key(&r.tenant, &r.subject).into_boxed_str(),
            created_at: r.created_at,
            deadline: r.deadline(),
            blob,
        }
    }
}

/// A subject's sessions (sorted by creation time, then id) and its security epoch.
#[derive(Debug, Default)]
pub(crate) struct SubjectIndex {
    pub(crate) sessions: Vec<(UnixMs, SessionId)>,
    pub(crate) epoch: Arc<AtomicU64>,
}

/// The committed state, in memory.
#[derive(Debug, Default)]
pub(crate) struct Mem {
    pub(crate) sessions: FastMap<SessionId, Slot>,
    pub(crate) by_token: FastMap<TokenHash, SessionId>,
    pub(crate) subjects: HashMap<Box<str>, SubjectIndex>,
    pub(crate) expiry: BTreeSet<(UnixMs, SessionId)>,
    /// Decoded records of recently resolved sessions: every change below invalidates the
    /// entries of the session's token hashes (see [`crate::cache`]).
    pub(crate) cache: Arc<ResolveCache>,
}

impl Mem {
    /// An empty index with room for `n` sessions.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut m = Self::default();
        m.sessions.reserve(n);
        m.by_token.reserve(n);
        m
    }

    /// Inserts `record` (whose compact form is `blob`), replacing nothing: call
    /// [`Mem::remove`] first for an update.
    pub(crate) fn insert(&mut self, record: &SessionRecord, blob: Box<[u8]>) {
        self.insert_prepared(Prepared::new(record, blob));
    }

    /// Inserts a session prepared (possibly on another thread) by [`Prepared::new`].
    pub(crate) fn insert_prepared(&mut self, p: Prepared) {
        let e = self.insert_but_expiry(p);
        self.expiry.insert(e);
    }

    /// Inserts `p` in every index but the expiry index, and returns its expiry entry (bulk
    /// loading builds the expiry index at the end, from a sorted list).
    pub(crate) fn insert_but_expiry(&mut self, p: Prepared) -> (UnixMs, SessionId) {
        let subject = match self.subjects.get_mut(&*p.key) {
            Some(s) => s,
            None => self.subjects.entry(p.key).or_default(),
        };
        let entry = (p.created_at, p.id);
        if let Err(at) = subject.sessions.binary_search(&entry) {
            subject.sessions.insert(at, entry);
        }
        let epoch = subject.epoch.clone();
        // Hashes are unique and `remove` already dropped the old record's entries: this is
        // a second line of defence (an entry for a hash must never outlive its index entry).
        self.cache.invalidate(&p.token_hash);
        self.by_token.insert(p.token_hash, p.id);
        for h in &p.retired {
            self.cache.invalidate(h);
            self.by_token.insert(*h, p.id);
        }
        self.sessions.insert(p.id, Slot { blob: p.blob, epoch });
        (p.deadline, p.id)
    }

    /// Removes a session and its index entries; returns its record.
    pub(crate) fn remove(&mut self, id: &SessionId) -> Option<SessionRecord> {
        let slot = self.sessions.remove(id)?;
        let Some(r) = slot.record() else {
            // Our own encoding always decodes; if it did not, the index entries of this
            // session are unknown: drop every token entry pointing at it.
            self.cache.clear();
            self.by_token.retain(|_, v| v != id);
            self.expiry.retain(|(_, v)| v != id);
            return None;
        };
        for h in r.lookup_hashes() {
            self.cache.invalidate(h);
            if self.by_token.get(h) == Some(id) {
                self.by_token.remove(h);
            }
        }
        self.expiry.remove(&(r.deadline(), r.id));
        let key = subject_key(&r.tenant, &r.subject);
        if let Some(s) = self.subjects.get_mut(key.as_str()) {
            if let Ok(at) = s.sessions.binary_search(&(r.created_at, r.id)) {
                s.sessions.remove(at);
            }
            if s.sessions.is_empty() && s.epoch.load(Ordering::Acquire) == 0 {
                self.subjects.remove(key.as_str());
            } else if s.sessions.capacity() > 2 * s.sessions.len() + 4 {
                s.sessions.shrink_to_fit();
            }
        }
        Some(r)
    }

    /// Sets a subject's epoch (never lowers it).
    pub(crate) fn set_epoch(&mut self, key: &str, epoch: u64) {
        let s = self.subjects.entry(key.into()).or_default();
        s.epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    pub(crate) fn epoch(&self, key: &str) -> u64 {
        self.subjects.get(key).map_or(0, |s| s.epoch.load(Ordering::Acquire))
    }

    /// The ids of a subject's sessions, oldest first.
    pub(crate) fn subject_ids(&self, key: &str) -> impl Iterator<Item = &(UnixMs, SessionId)> {
        self.subjects.get(key).into_iter().flat_map(|s| s.sessions.iter())
    }

    /// The ids of every session of a tenant (scans the subject index: an admin operation).
    pub(crate) fn tenant_ids(&self, tenant: &str) -> Vec<SessionId> {
        let prefix = tenant_prefix(tenant);
        let mut out = Vec::new();
        for (key, s) in &self.subjects {
            if key.starts_with(&prefix) {
                out.extend(s.sessions.iter().map(|(_, id)| *id));
            }
        }
        out
    }
}

/// The writer's view of the state while it evaluates a batch: committed state (`mem`) plus
/// the effects of the requests already evaluated in this batch.
pub(crate) struct Stage<'m> {
    mem: &'m Mem,
    /// Final state of every session touched in this batch (`None`: deleted).
    pub(crate) recs: FastMap<SessionId, Option<Arc<SessionRecord>>>,
    /// Sessions created in this batch, in order.
    created: Vec<SessionId>,
    /// Token hashes claimed (`true`) or released (`false`) in this batch.
    tokens: FastMap<TokenHash, bool>,
    /// Epochs set in this batch, by subject key.
    pub(crate) epochs: HashMap<String, u64>,
}

impl<'m> Stage<'m> {
    pub(crate) fn new(mem: &'m Mem) -> Self {
        Self { mem, recs: FastMap::default(), created: Vec::new(), tokens: FastMap::default(), epochs: HashMap::new() }
    }

    pub(crate) fn get(&self, id: &SessionId) -> Option<Arc<SessionRecord>> {
        match self.recs.get(id) {
            Some(r) => r.clone(),
            None => self.mem.sessions.get(id).and_then(Slot::record).map(Arc::new),
        }
    }

    pub(crate) fn exists(&self, id: &SessionId) -> bool {
        match self.recs.get(id) {
            Some(r) => r.is_some(),
            None => self.mem.sessions.contains_key(id),
        }
    }

    pub(crate) fn hash_in_use(&self, h: &TokenHash) -> bool {
        match self.tokens.get(h) {
            Some(used) => *used,
            None => self.mem.by_token.contains_key(h),
        }
    }

    pub(crate) fn epoch(&self, key: &str) -> u64 {
        self.epochs.get(key).copied().unwrap_or_else(|| self.mem.epoch(key))
    }

    pub(crate) fn subject_ids(&self, tenant: &str, subject: &str) -> Vec<SessionId> {
        let key = subject_key(tenant, subject);
        let mut ids: Vec<SessionId> = self.mem.subject_ids(&key).map(|(_, id)| *id).collect();
        for id in &self.created {
            if let Some(Some(r)) = self.recs.get(id) {
                if r.tenant == tenant && r.subject == subject {
                    ids.push(*id);
                }
            }
        }
        ids.retain(|id| self.exists(id));
        ids
    }

    pub(crate) fn tenant_ids(&self, tenant: &str) -> Vec<SessionId> {
        let mut ids = self.mem.tenant_ids(tenant);
        for id in &self.created {
            if let Some(Some(r)) = self.recs.get(id) {
                if r.tenant == tenant {
                    ids.push(*id);
                }
            }
        }
        ids.retain(|id| self.exists(id));
        ids
    }

    /// Up to `max` sessions whose deadline is at or before `now`, oldest deadline first.
    pub(crate) fn expired(&self, now: UnixMs, max: usize) -> Vec<Arc<SessionRecord>> {
        let mut out = Vec::new();
        for (deadline, id) in &self.mem.expiry {
            if *deadline > now || out.len() >= max {
                break;
            }
            if let Some(r) = self.get(id) {
                if r.deadline() <= now {
                    out.push(r);
                }
            }
        }
        out
    }

    /// Stages a new session.
    pub(crate) fn put_new(&mut self, r: Arc<SessionRecord>) {
        for h in r.lookup_hashes() {
            self.tokens.insert(*h, true);
        }
        self.created.push(r.id);
        self.recs.insert(r.id, Some(r));
    }

    /// Stages the replacement of `old` by `new` (same id).
    pub(crate) fn put_update(&mut self, old: &SessionRecord, new: Arc<SessionRecord>) {
        for h in old.lookup_hashes() {
            self.tokens.insert(*h, false);
        }
        for h in new.lookup_hashes() {
            self.tokens.insert(*h, true);
        }
        self.recs.insert(new.id, Some(new));
    }

    /// Stages a deletion.
    pub(crate) fn delete(&mut self, old: &SessionRecord) {
        for h in old.lookup_hashes() {
            self.tokens.insert(*h, false);
        }
        self.recs.insert(old.id, None);
    }
}
