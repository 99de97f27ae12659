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
//! no record) and is bounded: it is emptied when it reaches its limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sessiond_core::token::TokenHash;

/// At most this many pointers are remembered (about 10 MB), then the memory starts over.
pub(crate) const MAX_POINTERS: usize = 65_536;

/// Token hash → pointer value (`tag/idh`), bounded.
#[derive(Debug, Default)]
pub(crate) struct Pointers {
    map: Mutex<HashMap<TokenHash, Arc<str>>>,
}

impl Pointers {
    /// The remembered pointer of `hash`.
    pub(crate) fn get(&self, hash: &TokenHash) -> Option<Arc<str>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).get(hash).cloned()
    }

    /// Remembers that `hash` led to `pointer` (after following it succeeded).
    pub(crate) fn remember(&self, hash: &TokenHash, pointer: &str) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_POINTERS {
            map.clear();
        }
        map.insert(*hash, Arc::from(pointer));
    }

    /// Forgets `hash` (its pointer led nowhere).
    pub(crate) fn forget(&self, hash: &TokenHash) {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).remove(hash);
    }

    /// How many pointers are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
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
        for i in 0..u32::try_from(MAX_POINTERS).expect("fits") + 10 {
            p.remember(&hash(i), "tag/ab");
        }
        assert!(p.len() <= MAX_POINTERS, "{}", p.len());
        assert_eq!(p.get(&hash(u32::try_from(MAX_POINTERS).expect("fits") + 9)).as_deref(), Some("tag/ab"));
    }
}
