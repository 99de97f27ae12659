//! The key layout. See `docs/redis-store.md` for the table; in short, with prefix `P`:
//!
//! | key | type | slot |
//! |---|---|---|
//! | `P:{T/S}:s:<id>` | hash `r` (record), `v` (version), `w` (write count) | subject |
//! | `P:{T/S}:idx` / `:dl` / `:seen` | sorted sets of the subject's ids by created_at / deadline / last_seen_at | subject |
//! | `P:{T/S}:epoch` | integer | subject |
//! | `P:t:<hash-hex>` | string `T/S/<id>`: token-hash pointer | its own |
//! | `P:i:<id>` | string `T/S`: id pointer | its own |
//! | `P:tn:{T}` | sorted set of the tenant's subjects by latest absolute deadline | tenant |
//! | `P:exp:{<n>}` | sorted set `T/S/<id>` by deadline: sweep hint shard `n` of 16 | shard |
//! | `P:ev:{ev}:seq` / `P:ev:{ev}:log` | event counter and stream | events |
//!
//! `T` and `S` are the tenant and subject percent-encoded (every byte outside
//! `[A-Za-z0-9._@-]` becomes `%XX`), so they never contain `/`, `{`, `}` or `:` and two
//! different (tenant, subject) pairs never share a key. Ids are the 16 id bytes in lowercase
//! hex, whose lexicographic order is the byte order [`sessiond_core::SessionId`] sorts by.

use sessiond_core::id::SessionId;
use sessiond_core::token::TokenHash;

/// Number of sweep-hint shards.
pub(crate) const EXPIRY_SHARDS: u32 = 16;

/// Percent-encodes a tenant or subject for use inside a key.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Lowercase hex of a session id's bytes.
pub(crate) fn id_hex(id: &SessionId) -> String {
    id.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses [`id_hex`] output.
pub(crate) fn parse_id_hex(s: &str) -> Option<SessionId> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(SessionId::from_bytes(out))
}

/// Checks a key prefix: 1 to 64 bytes of printable ASCII without braces, spaces or `:`-only
/// tricks that could move keys into another store's hash slots.
pub(crate) fn valid_prefix(p: &str) -> bool {
    !p.is_empty() && p.len() <= 64 && p.bytes().all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
}

/// Key names for one store (one prefix).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

/// The keys of one subject, all in the subject's hash slot.
#[derive(Debug, Clone)]
pub(crate) struct SubjectKeys {
    /// `T/S` (encoded), as stored in pointers.
    pub(crate) tag: String,
    /// `P:{T/S}`: the prefix of every key below.
    pub(crate) base: String,
    pub(crate) idx: String,
    pub(crate) dl: String,
    pub(crate) seen: String,
    pub(crate) epoch: String,
}

impl SubjectKeys {
    /// The record key of `id_hex`.
    pub(crate) fn record(&self, id_hex: &str) -> String {
        format!("{}:s:{id_hex}", self.base)
    }
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    pub(crate) fn subject(&self, tenant: &str, subject: &str) -> SubjectKeys {
        self.subject_from_tag(format!("{}/{}", enc(tenant), enc(subject)))
    }

    /// Subject keys from an encoded `T/S` tag read back from a pointer or hint.
    pub(crate) fn subject_from_tag(&self, tag: String) -> SubjectKeys {
        let base = format!("{}:{{{tag}}}", self.prefix);
        SubjectKeys {
            idx: format!("{base}:idx"),
            dl: format!("{base}:dl"),
            seen: format!("{base}:seen"),
            epoch: format!("{base}:epoch"),
            base,
            tag,
        }
    }

    pub(crate) fn token(&self, h: &TokenHash) -> String {
        format!("{}:t:{}", self.prefix, h.to_hex())
    }

    pub(crate) fn id_pointer(&self, id_hex: &str) -> String {
        format!("{}:i:{id_hex}", self.prefix)
    }

    pub(crate) fn tenant(&self, tenant: &str) -> String {
        format!("{}:tn:{{{}}}", self.prefix, enc(tenant))
    }

    /// The sweep-hint shard of a subject tag.
    pub(crate) fn expiry_shard_of(&self, tag: &str) -> String {
        // FNV-1a: stable across builds and platforms.
        let mut h: u32 = 0x811c_9dc5;
        for b in tag.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        self.expiry_shard(h % EXPIRY_SHARDS)
    }

    pub(crate) fn expiry_shard(&self, n: u32) -> String {
        format!("{}:exp:{{{n}}}", self.prefix)
    }

    pub(crate) fn events_seq(&self) -> String {
        format!("{}:ev:{{ev}}:seq", self.prefix)
    }

    pub(crate) fn events_log(&self) -> String {
        format!("{}:ev:{{ev}}:log", self.prefix)
    }

    /// The high-water mark of one node's event outbox (module `outbox`): the last sequence
    /// number it appended, in the event stream's slot.
    pub(crate) fn events_mark(&self, nonce: &str) -> String {
        format!("{}:ev:{{ev}}:n:{nonce}", self.prefix)
    }

    pub(crate) fn channel(&self) -> String {
        format!("{}:inv", self.prefix)
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_unambiguous_and_brace_free() {
        let k = Keys::new("p");
        // tenant "a/b" + subject "c" must not collide with tenant "a" + subject "b/c".
        assert_ne!(k.subject("a/b", "c").base, k.subject("a", "b/c").base);
        let s = k.subject("t}", "{x}:y%");
        assert_eq!(s.base, "p:{t%7D/%7Bx%7D%3Ay%25}");
        assert_eq!(s.base.matches('{').count(), 1);
        assert_eq!(k.subject("", "alice@example.com").tag, "/alice@example.com");
    }

    #[test]
    fn id_hex_round_trips_and_orders_like_bytes() {
        let a = SessionId::from_bytes([0x0a; 16]);
        let b = SessionId::from_bytes([0xa0; 16]);
        assert_eq!(parse_id_hex(&id_hex(&a)), Some(a));
        assert!(id_hex(&a) < id_hex(&b));
        assert_eq!(parse_id_hex("zz"), None);
    }

    #[test]
    fn prefixes_with_braces_are_refused() {
        assert!(valid_prefix("sessiond"));
        assert!(!valid_prefix("a{b}"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("a b"));
    }
}
