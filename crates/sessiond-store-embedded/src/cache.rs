//! The resolve cache: a bounded, two-way set-associative cache of decoded records, keyed by
//! token hash, in front of the compact in-memory form (see `docs/decisions.md`, "Resolve
//! cache").
//!
//! Without it every `find_by_token` probes two hash maps (token hash → id → slot), decodes
//! the compact blob into a fresh [`SessionRecord`] (several `String` allocations) and wraps it
//! in a new `Arc`. With it, a session resolved recently costs one lookup in a small array
//! (which stays in the CPU caches) and one `Arc` clone.
//!
//! **Invalidation.** Every change of the in-memory index goes through [`crate::mem::Mem`]'s
//! `remove` and `insert_but_expiry` (writer commits, renewals, deletes, sweeps, imports,
//! evictions): `remove` drops the entries of every token hash of the old record, and
//! `insert_but_expiry` those of the new one, under the index's write lock. An entry is only
//! filled under the index's *read* lock, from the slot the index holds at that moment, so it
//! can never be filled with a record that a writer has already replaced. A hit does not take
//! the index's lock: it sees either the entry as it was before a writer invalidated it (the
//! same answer as a read just before the write) or no entry. Writers answer their callers
//! only after that, so once a delete, revocation or update has returned, no resolve can see
//! the old record. The subject epoch is not copied: the entry shares the session's epoch
//! cell, read at every hit, so an epoch bump is seen at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sessiond_core::record::SessionRecord;
use sessiond_core::store::Lookup;
use sessiond_core::token::TokenHash;

/// One cached record.
struct Entry {
    hash: TokenHash,
    record: Arc<SessionRecord>,
    epoch: Arc<AtomicU64>,
}

/// Two entries sharing one lock; `[0]` is the newer.
type Set = [Option<Entry>; 2];

/// One set, aligned to a cache line: its lock and newer entry share one line and no set
/// straddles a line boundary, so a hit in the newer entry touches one line of the table
/// instead of often two (a 104-byte set at a 104-byte stride starts anywhere in a line).
#[repr(align(64))]
struct Line(Mutex<Set>);

/// See the [module documentation](self).
#[derive(Default)]
pub(crate) struct ResolveCache {
    sets: Box<[Line]>,
    mask: usize,
}

impl std::fmt::Debug for ResolveCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolveCache").field("entries", &(self.sets.len() * 2)).finish_non_exhaustive()
    }
}

impl ResolveCache {
    /// A cache of at most `entries` records (rounded up to a power of two); 0 disables it.
    pub(crate) fn new(entries: usize) -> Self {
        if entries == 0 {
            return Self::default();
        }
        let sets = entries.div_ceil(2).next_power_of_two();
        Self { sets: (0..sets).map(|_| Line(Mutex::new([None, None]))).collect(), mask: sets - 1 }
    }

    fn set(&self, h: &TokenHash) -> Option<MutexGuard<'_, Set>> {
        if self.sets.is_empty() {
            return None;
        }
        // Token hashes are SHA-256 outputs: their first bytes are already uniform.
        let mut a = [0u8; 8];
        a.copy_from_slice(&h.0[..8]);
        let at = (u64::from_le_bytes(a) as usize) & self.mask;
        // A panic cannot leave an entry half-written (entries are replaced whole).
        Some(self.sets[at].0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The cached lookup for `h`, with the subject's current epoch.
    pub(crate) fn get(&self, h: &TokenHash) -> Option<Lookup> {
        let set = self.set(h)?;
        let e = set.iter().flatten().find(|e| e.hash == *h)?;
        Some(Lookup { record: e.record.clone(), subject_epoch: e.epoch.load(Ordering::Acquire) })
    }

    /// Caches `record` for `h`. Call only under the index's read (or write) lock, with the
    /// record the index holds for `h` at that moment.
    pub(crate) fn put(&self, h: TokenHash, record: Arc<SessionRecord>, epoch: Arc<AtomicU64>) {
        let old = {
            let Some(mut set) = self.set(&h) else { return };
            let new = Some(Entry { hash: h, record, epoch });
            if set[0].as_ref().is_some_and(|e| e.hash == h) {
                std::mem::replace(&mut set[0], new)
            } else if set[1].as_ref().is_some_and(|e| e.hash == h) {
                let old = set[1].take();
                set[1] = set[0].take();
                set[0] = new;
                old
            } else {
                let evicted = set[1].take();
                set[1] = std::mem::replace(&mut set[0], new);
                evicted
            }
        };
        // The evicted record (if this was its last reference) is freed outside the lock.
        drop(old);
    }

    /// Forgets the entry of `h`, if any. Call under the index's write lock.
    pub(crate) fn invalidate(&self, h: &TokenHash) {
        let old = {
            let Some(mut set) = self.set(h) else { return };
            if set[0].as_ref().is_some_and(|e| e.hash == *h) {
                let old = set[0].take();
                set[0] = set[1].take();
                old
            } else if set[1].as_ref().is_some_and(|e| e.hash == *h) {
                set[1].take()
            } else {
                None
            }
        };
        drop(old);
    }

    /// Forgets every entry. Call under the index's write lock.
    pub(crate) fn clear(&self) {
        for s in self.sets.iter() {
            let old = std::mem::take(&mut *s.0.lock().unwrap_or_else(|e| e.into_inner()));
            drop(old);
        }
    }

    /// Number of cached records (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sets.iter().map(|s| s.0.lock().unwrap_or_else(|e| e.into_inner()).iter().flatten().count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u8) -> Arc<SessionRecord> {
        let mut r = crate::compact::tests::sample();
        r.token_hash = TokenHash([n; 32]);
        Arc::new(r)
    }

    #[test]
    fn every_set_starts_a_cache_line() {
        assert_eq!(std::mem::align_of::<Line>(), 64);
        assert_eq!(std::mem::size_of::<Line>() % 64, 0);
    }

    #[test]
    fn bounded_two_way_sets() {
        let c = ResolveCache::new(4); // 2 sets of 2
        let epoch = Arc::new(AtomicU64::new(3));
        // Hashes whose first byte is even all land in set 0 (mask 1).
        for n in [2u8, 4, 6] {
            c.put(TokenHash([n; 32]), rec(n), epoch.clone());
        }
        assert!(c.get(&TokenHash([2; 32])).is_none(), "the oldest of three in one set is evicted");
        assert_eq!(c.get(&TokenHash([4; 32])).map(|l| l.record.token_hash), Some(TokenHash([4; 32])));
        assert_eq!(c.get(&TokenHash([6; 32])).map(|l| l.subject_epoch), Some(3));
        epoch.store(4, Ordering::Release);
        assert_eq!(c.get(&TokenHash([6; 32])).map(|l| l.subject_epoch), Some(4), "the epoch is read live");
        c.invalidate(&TokenHash([6; 32]));
        assert!(c.get(&TokenHash([6; 32])).is_none());
        assert!(c.get(&TokenHash([4; 32])).is_some());
        c.put(TokenHash([4; 32]), rec(9), epoch.clone());
        assert_eq!(c.len(), 1, "re-putting a hash replaces its entry");
        c.clear();
        assert_eq!(c.len(), 0);
        let off = ResolveCache::new(0);
        off.put(TokenHash([1; 32]), rec(1), epoch);
        assert!(off.get(&TokenHash([1; 32])).is_none());
    }
}
