//! The stored form of a session, and its versioned, language-neutral encoding (JSON with a
//! `"v"` field), so that stores written by any version or language can be read.

use std::collections::BTreeMap;

use crate::error::MalformedInput;
use crate::id::SessionId;
use crate::time::UnixMs;
use crate::token::{Sealed, TokenHash};

/// Encoding version written by this build.
pub const RECORD_VERSION: u32 = 1;
/// How many retired tokens a record remembers for theft detection.
pub const RETIRED_KEPT: usize = 4;
/// Maximum encoded size of a session's data map, in bytes.
pub const MAX_DATA_BYTES: usize = 8 * 1024;

/// How deeply arrays and objects may nest in a session data value. serde_json refuses to read
/// back more than 128 levels, and stores keep records as JSON: deeper data would be accepted,
/// written, and then fail to decode (the session would vanish from resolve, or at the next
/// restart).
pub const MAX_DATA_DEPTH: usize = 32;

/// Nesting depth of arrays and objects in `v` (a scalar is 0), without recursion.
pub fn json_depth(v: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match v {
            serde_json::Value::Array(a) => Box::new(a.iter()),
            serde_json::Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

/// The largest subject epoch a store keeps (SQL `bigint`); a bump beyond it is refused.
pub const MAX_EPOCH: u64 = i64::MAX as u64;
/// Maximum number of keys in a session's data map.
pub const MAX_DATA_KEYS: usize = 64;

/// Device facts recorded with a session.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DeviceInfo {
    /// The `User-Agent` seen at creation (truncated to 512 bytes).
    pub user_agent: Option<String>,
    /// The client IP at creation.
    pub first_ip: Option<String>,
    /// The client IP of the latest renewal.
    pub last_ip: Option<String>,
}

/// A token retired by rotation. Found by its hash for the rest of the session's life: within
/// `grace_until` it is a read-only alias that yields the successor; after it, presenting it is
/// treated as theft.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetiredToken {
    /// Hash of the retired token.
    pub hash: TokenHash,
    /// End of the grace window.
    pub grace_until: UnixMs,
    /// The successor, sealed under the retired token's secret.
    pub successor: Option<Sealed>,
}

/// The stored session.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionRecord {
    /// Public id.
    pub id: SessionId,
    /// Hash of the current token.
    pub token_hash: TokenHash,
    /// The authenticated user.
    pub subject: String,
    /// The tenant (empty string for single-tenant use).
    pub tenant: String,
    /// Policy class name.
    pub policy: String,
    /// Creation time.
    pub created_at: UnixMs,
    /// Last renewal time (throttled: may lag the last request by the renewal fraction).
    pub last_seen_at: UnixMs,
    /// Idle deadline (never later than the absolute one).
    pub idle_expires_at: UnixMs,
    /// Absolute deadline.
    pub absolute_expires_at: UnixMs,
    /// When the current token was issued.
    pub rotated_at: UnixMs,
    /// Time of the last authentication event (login or step-up).
    pub auth_time: UnixMs,
    /// Authenticator assurance level, 0 to 3.
    pub aal: u8,
    /// Authentication methods references (RFC 8176), e.g. `pwd`, `otp`, `hwk`.
    pub amr: Vec<String>,
    /// Device facts.
    pub device: DeviceInfo,
    /// Application data.
    pub data: BTreeMap<String, serde_json::Value>,
    /// Revision of `data`, for compare-and-set.
    pub revision: u64,
    /// The subject's security epoch when the session was created.
    pub epoch: u64,
    /// Store-level version, incremented by every update (optimistic concurrency).
    pub version: u64,
    /// Recently retired tokens, newest first, at most [`RETIRED_KEPT`].
    pub retired: Vec<RetiredToken>,
}

#[derive(serde::Serialize)]
struct Versioned<'a> {
    v: u32,
    #[serde(flatten)]
    r: &'a SessionRecord,
}

#[derive(serde::Deserialize)]
struct VersionedOwned {
    v: u32,
    #[serde(flatten)]
    r: SessionRecord,
}

/// Why a session is no longer live at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The absolute deadline passed.
    Absolute,
    /// The idle deadline passed.
    Idle,
}

impl SessionRecord {
    /// The earlier of the two deadlines: when the session ends unless renewed.
    pub fn deadline(&self) -> UnixMs {
        self.idle_expires_at.min(self.absolute_expires_at)
    }

    /// Whether the session has ended at `now`, and why. The absolute deadline takes
    /// precedence when both passed.
    pub fn expiry_at(&self, now: UnixMs) -> Option<Expiry> {
        if now >= self.absolute_expires_at {
            Some(Expiry::Absolute)
        } else if now >= self.idle_expires_at {
            Some(Expiry::Idle)
        } else {
            None
        }
    }

    /// This record after a renewal ([`SessionStore::renew`](crate::store::SessionStore::renew)):
    /// `last_seen_at` and the idle deadline only move forward, the idle deadline never passes
    /// the absolute one, and `ip` (when given) becomes the last seen address. `None` when the
    /// renewal moves nothing forward (an older or repeated renewal): there is nothing to write.
    /// Every store applies renewals through this one function, and so does the near-cache
    /// when it refreshes its copy.
    pub fn renewed(&self, seen: UnixMs, idle_expires_at: UnixMs, ip: Option<&str>) -> Option<SessionRecord> {
        if idle_expires_at <= self.idle_expires_at && seen <= self.last_seen_at {
            return None;
        }
        let mut next = self.clone();
        next.last_seen_at = next.last_seen_at.max(seen);
        next.idle_expires_at = next.idle_expires_at.max(idle_expires_at).min(next.absolute_expires_at);
        if let Some(ip) = ip {
            next.device.last_ip = Some(ip.to_owned());
        }
        Some(next)
    }

    /// Whether the session is live at `now`.
    pub fn is_live(&self, now: UnixMs) -> bool {
        now < self.deadline()
    }

    /// Every token hash under which the store must find this record: the current token and
    /// the retired ones.
    pub fn lookup_hashes(&self) -> impl Iterator<Item = &TokenHash> {
        std::iter::once(&self.token_hash).chain(self.retired.iter().map(|r| &r.hash))
    }

    /// The versioned JSON encoding.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data (strings, numbers, JSON values) cannot fail.
        serde_json::to_vec(&Versioned { v: RECORD_VERSION, r: self }).unwrap_or_default()
    }

    /// Decodes [`SessionRecord::encode`] output. An undecodable record is reported as absent
    /// (and counted in the `sessiond_store_undecodable_records_total` metric), never as a
    /// permanent error: a corrupt row must not lock its owner out of logging in again.
    pub fn decode(bytes: &[u8]) -> Option<SessionRecord> {
        match serde_json::from_slice::<VersionedOwned>(bytes) {
            Ok(v) if v.v == RECORD_VERSION => Some(v.r),
            Ok(v) => {
                metrics::counter!("sessiond_store_undecodable_records_total", "reason" => "version").increment(1);
                tracing::warn!(version = v.v, "session record with unknown encoding version treated as absent");
                None
            }
            Err(e) => {
                metrics::counter!("sessiond_store_undecodable_records_total", "reason" => "syntax").increment(1);
                tracing::warn!(error = %e, "undecodable session record treated as absent");
                None
            }
        }
    }
}

/// Checks a subject, tenant, policy or data key: 1 to 256 bytes, no control characters.
///
/// # Errors
/// [`MalformedInput::Field`] naming what was wrong.
pub fn check_name(s: &str, what: &'static str) -> Result<(), MalformedInput> {
    if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
        return Err(MalformedInput::Field(match what {
            "subject" => "subject must be 1 to 256 bytes without control characters",
            "tenant" => "tenant must be at most 256 bytes without control characters",
            "policy name" => "policy name must be 1 to 256 bytes without control characters",
            "data key" => "data keys must be 1 to 256 bytes without control characters",
            "amr" => "amr values must be 1 to 256 bytes without control characters",
            _ => "a field is empty, too long or holds control characters",
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> SessionRecord {
        SessionRecord {
            id: SessionId::from_bytes([7; 16]),
            token_hash: TokenHash([1; 32]),
            subject: "alice".into(),
            tenant: "acme".into(),
            policy: "default".into(),
            created_at: UnixMs(1),
            last_seen_at: UnixMs(2),
            idle_expires_at: UnixMs(3),
            absolute_expires_at: UnixMs(4),
            rotated_at: UnixMs(1),
            auth_time: UnixMs(1),
            aal: 2,
            amr: vec!["pwd".into(), "otp".into()],
            device: DeviceInfo { user_agent: Some("UA".into()), first_ip: Some("192.0.2.1".into()), last_ip: None },
            data: [("k".to_string(), serde_json::json!({"x": [1, 2]}))].into_iter().collect(),
            revision: 3,
            epoch: 0,
            version: 9,
            retired: vec![RetiredToken { hash: TokenHash([2; 32]), grace_until: UnixMs(5), successor: None }],
        }
    }

    #[test]
    fn encode_decode_round_trip_is_versioned_json() {
        let r = sample();
        let bytes = r.encode();
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["v"], 1);
        assert_eq!(v["id"], r.id.to_string());
        assert_eq!(SessionRecord::decode(&bytes), Some(r));
    }

    #[test]
    fn undecodable_or_future_records_are_absent() {
        assert_eq!(SessionRecord::decode(b"not json"), None);
        assert_eq!(SessionRecord::decode(b"{}"), None);
        let mut v: serde_json::Value = serde_json::from_slice(&sample().encode()).expect("json");
        v["v"] = 99.into();
        assert_eq!(SessionRecord::decode(&serde_json::to_vec(&v).expect("json")), None);
    }

    #[test]
    fn expiry_prefers_absolute() {
        let r = sample();
        assert_eq!(r.expiry_at(UnixMs(2)), None);
        assert_eq!(r.expiry_at(UnixMs(3)), Some(Expiry::Idle));
        assert_eq!(r.expiry_at(UnixMs(4)), Some(Expiry::Absolute));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = SessionRecord::decode(&bytes);
        }
    }
}
