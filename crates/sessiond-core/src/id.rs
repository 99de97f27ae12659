//! Public session ids and the injected source of their randomness.
//!
//! A [`SessionId`] is *not* a credential: it is safe to show in a UI, put in a URL or write to
//! a log. Knowing it grants nothing; only the [`SessionToken`](crate::token::SessionToken) does.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::MalformedInput;

/// Prefix of the textual form of a session id.
pub const SESSION_ID_PREFIX: &str = "ses_";

/// The public, non-secret identifier of a session: 128 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Writes the text form (`ses_` + 22 characters) into `buf` without allocating and
    /// returns it (for hot paths such as response headers).
    pub fn encode_into<'b>(&self, buf: &'b mut [u8; 26]) -> &'b str {
        buf[..4].copy_from_slice(SESSION_ID_PREFIX.as_bytes());
        // 16 bytes always encode to exactly 22 base64url characters, which fit.
        let n = URL_SAFE_NO_PAD.encode_slice(self.0, &mut buf[4..]).unwrap_or(0);
        std::str::from_utf8(&buf[..4 + n]).unwrap_or(SESSION_ID_PREFIX)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 22];
        // 16 bytes always encode to exactly 22 base64url characters.
        let n = URL_SAFE_NO_PAD.encode_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(SESSION_ID_PREFIX)?;
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl FromStr for SessionId {
    type Err = MalformedInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.strip_prefix(SESSION_ID_PREFIX).ok_or(MalformedInput::SessionId)?;
        if body.len() != 22 {
            return Err(MalformedInput::SessionId);
        }
        let mut out = [0u8; 18];
        let n = URL_SAFE_NO_PAD.decode_slice(body.as_bytes(), &mut out).map_err(|_| MalformedInput::SessionId)?;
        if n != 16 {
            return Err(MalformedInput::SessionId);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&out[..16]);
        Ok(Self(id))
    }
}

impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where public session ids come from. Injected so that tests can use seeded, reproducible
/// ids. Token secrets never come from here: see [`crate::token`].
pub trait IdSource: Send + Sync + 'static {
    /// A new, unique session id.
    fn session_id(&self) -> SessionId;
}

/// Session ids from the operating system's CSPRNG (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsIdSource;

impl IdSource for OsIdSource {
    fn session_id(&self) -> SessionId {
        SessionId(crate::token::os_random::<16>())
    }
}

/// Deterministic session ids from a counter and a seed, for tests only.
#[derive(Debug)]
pub struct SeededIdSource {
    seed: u64,
    next: std::sync::atomic::AtomicU64,
}

impl SeededIdSource {
    /// A source whose ids are a function of `seed` and a counter.
    pub fn new(seed: u64) -> Self {
        Self { seed, next: std::sync::atomic::AtomicU64::new(0) }
    }
}

impl IdSource for SeededIdSource {
    fn session_id(&self) -> SessionId {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.seed.to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
        SessionId(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_round_trips_and_rejects_garbage() {
        let id = OsIdSource.session_id();
        let s = id.to_string();
        assert!(s.starts_with("ses_"));
        assert_eq!(s.len(), 26);
        assert_eq!(s.parse::<SessionId>().ok(), Some(id));
        let mut buf = [0u8; 26];
        assert_eq!(id.encode_into(&mut buf), s);
        for bad in
            ["", "ses_", "ses_!!!!!!!!!!!!!!!!!!!!!!", "xyz_AAAAAAAAAAAAAAAAAAAAAA", "ses_AAAAAAAAAAAAAAAAAAAAAAA"]
        {
            assert!(bad.parse::<SessionId>().is_err(), "{bad}");
        }
    }
}
