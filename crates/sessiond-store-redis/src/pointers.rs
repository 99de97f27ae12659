//! Remembered token pointers: which session (subject tag and id) a token hash led to.
//!
//! Looking a token up in Redis takes two round trips: `GET` of the token's pointer (in the
//! token's own slot), then the `load` script in the subject's slot. A pointer never changes
//! while it exists (the `pointer` script refuses to point a hash at another session), so a
//! node that has followed a pointer once can skip the `GET` the next time: the near-cache's
//! refill after its TTL, or every resolve without the near-cache, becomes one round trip.
//!
//! Nothing here is trusted: a remembered pointer is followed exactly as a fresh one is (the
//! record must exist, be that session, and still list the hash), and when that finds nothing
//! the caller forgets it and asks Redis for the pointer. So a revoked, expired or rotated-away
//! token resolves to nothing with or without this memory, and a cached pointer can neither
//! keep nor bring back a session. The memory holds token hashes and pointers only (no token,
//! no record) and is bounded, by count and by bytes: it is emptied when it reaches either
//! limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sessiond_core::token::TokenHash;

/// At most this many pointers are remembered, then the memory starts over.
pub(crate) const MAX_POINTERS: usize = 65_536;

/// At most this many bytes of pointer values are remembered (a pointer holds the subject's
/// tag, up to ~1.5 KB for long percent-encoded names), then the memory starts over.
pub(crate) const MAX_BYTES: usize = 8 << 20;

/// Token hash → pointer value (`tag/idh`), bounded by count and by bytes.
#[derive(Debug, Default)]
pub(crate) struct Pointers {
    map: Mutex<Map>,
}

#[derive(Debug, Default)]
struct Map {
    pointers: HashMap<TokenHash, Arc<str>>,
    /// The pointer values' bytes.
    bytes: usize,
}

impl Pointers {
    fn map(&self) -> std::sync::MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The remembered pointer of `hash`.
    pub(crate) fn get(&self, hash: &TokenHash) -> Option<Arc<str>> {
        self.map().pointers.get(hash).cloned()
    }

    /// Remembers that `hash` led to `pointer` (after following it succeeded).
    pub(crate) fn remember(&self, hash: &TokenHash, pointer: &str) {
        let mut m = self.map();
        if m.pointers.len() >= MAX_POINTERS || m.bytes + pointer.len() > MAX_BYTES {
            m.pointers.clear();
            m.bytes = 0;
        }
        if let Some(old) = m.pointers.insert(*hash, Arc::from(pointer)) {
            m.bytes -= old.len();
        }
        m.bytes += pointer.len();
    }

    /// Forgets `hash` (its pointer led nowhere).
    pub(crate) fn forget(&self, hash: &TokenHash) {
        let mut m = self.map();
        if let Some(old) = m.pointers.remove(hash) {
            m.bytes -= old.len();
        }
    }

    /// How many pointers, and how many bytes of them, are remembered.
    #[cfg(test)]
    pub(crate) fn size(&self) -> (usize, usize) {
        let m = self.map();
        (m.pointers.len(), m.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u32) -> TokenHash {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&i.to_le_bytes());
        TokenHash(h)
    }

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let p = Pointers::default();
        p.remember(&hash(1), "tag/ab");
        assert_eq!(p.get(&hash(1)).as_deref(), Some("tag/ab"));
        p.forget(&hash(1));
        assert_eq!(p.get(&hash(1)), None);
        assert_eq!(p.size(), (0, 0));
        for i in 0..u32::try_from(MAX_POINTERS).expect("fits") + 10 {
            p.remember(&hash(i), "tag/ab");
        }
        assert!(p.size().0 <= MAX_POINTERS, "{:?}", p.size());
        assert_eq!(p.get(&hash(u32::try_from(MAX_POINTERS).expect("fits") + 9)).as_deref(), Some("tag/ab"));
    }

    #[test]
    fn long_pointers_are_bounded_by_bytes() {
        let p = Pointers::default();
        let long = "x".repeat(1500);
        for i in 0..20_000 {
            p.remember(&hash(i), &long);
            assert!(p.size().1 <= MAX_BYTES, "{:?}", p.size());
        }
        assert!(p.size().0 < 20_000, "the byte bound must have emptied the memory: {:?}", p.size());
        // Remembering the same hash again does not count its bytes twice.
        let q = Pointers::default();
        q.remember(&hash(1), "tag/ab");
        q.remember(&hash(1), "tag/ab");
        assert_eq!(q.size(), (1, 6));
        q.forget(&hash(1));
        assert_eq!(q.size(), (0, 0));
    }
}
