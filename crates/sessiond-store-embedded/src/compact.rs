//! The compact in-memory form of a [`SessionRecord`]: one exact-size heap allocation per
//! session instead of the dozen a decoded record needs (see `docs/decisions.md`,
//! "Memory layout").
//!
//! Layout (little-endian): a fixed 121-byte header holding every field the indexes and the
//! limit rules read without decoding the rest, then length-prefixed variable fields.
//!
//! | offset | field |
//! |---|---|
//! | 0 | id (16 bytes) |
//! | 16 | token_hash (32 bytes) |
//! | 48 | created_at, last_seen_at, idle_expires_at, absolute_expires_at, rotated_at, auth_time (u64 each) |
//! | 96 | revision, epoch, version (u64 each) |
//! | 120 | aal (u8) |
//! | 121 | subject, tenant, policy, amr (count + strings), device (3 optional strings), data (JSON text, empty for an empty map), retired (count + entries) |

use std::collections::BTreeMap;

use sessiond_core::id::SessionId;
use sessiond_core::record::{DeviceInfo, RetiredToken, SessionRecord};
use sessiond_core::time::UnixMs;
use sessiond_core::token::{KeyId, Sealed, TokenHash};

const CREATED_AT: usize = 48;
const IDLE: usize = 64;
const ABSOLUTE: usize = 72;
const HEADER: usize = 121;

/// Encodes `r` into its compact form.
pub(crate) fn encode(r: &SessionRecord) -> Box<[u8]> {
    let mut b = Vec::with_capacity(HEADER + 64 + r.subject.len() + r.tenant.len());
    b.extend_from_slice(r.id.as_bytes());
    b.extend_from_slice(&r.token_hash.0);
    for t in [r.created_at, r.last_seen_at, r.idle_expires_at, r.absolute_expires_at, r.rotated_at, r.auth_time] {
        b.extend_from_slice(&t.0.to_le_bytes());
    }
    for n in [r.revision, r.epoch, r.version] {
        b.extend_from_slice(&n.to_le_bytes());
    }
    b.push(r.aal);
    put_str(&mut b, &r.subject);
    put_str(&mut b, &r.tenant);
    put_str(&mut b, &r.policy);
    put_len(&mut b, r.amr.len());
    for a in &r.amr {
        put_str(&mut b, a);
    }
    for s in [&r.device.user_agent, &r.device.first_ip, &r.device.last_ip] {
        match s {
            None => put_len(&mut b, 0),
            Some(s) => {
                put_len(&mut b, s.len() + 1);
                b.extend_from_slice(s.as_bytes());
            }
        }
    }
    if r.data.is_empty() {
        put_len(&mut b, 0);
    } else {
        // Serialising a map of JSON values cannot fail.
        let json = serde_json::to_vec(&r.data).unwrap_or_default();
        put_len(&mut b, json.len());
        b.extend_from_slice(&json);
    }
    put_len(&mut b, r.retired.len());
    for t in &r.retired {
        b.extend_from_slice(&t.hash.0);
        b.extend_from_slice(&t.grace_until.0.to_le_bytes());
        match &t.successor {
            None => b.push(0),
            Some(s) => {
                b.push(1);
                b.extend_from_slice(&s.kid.0.to_le_bytes());
                b.extend_from_slice(&s.secret);
            }
        }
    }
    b.into_boxed_slice()
}

/// Decodes [`encode`] output; `None` only if the bytes were not produced by [`encode`].
pub(crate) fn decode(b: &[u8]) -> Option<SessionRecord> {
    let mut c = Cursor { b, at: 0 };
    let id = SessionId::from_bytes(c.array::<16>()?);
    let token_hash = TokenHash(c.array::<32>()?);
    let mut t = [UnixMs(0); 6];
    for x in &mut t {
        *x = UnixMs(c.u64()?);
    }
    let (revision, epoch, version) = (c.u64()?, c.u64()?, c.u64()?);
    let aal = c.array::<1>()?[0];
    let subject = c.string()?;
    let tenant = c.string()?;
    let policy = c.string()?;
    let n = c.len()?;
    let mut amr = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        amr.push(c.string()?);
    }
    let mut dev = [None, None, None];
    for d in &mut dev {
        let n = c.len()?;
        if n > 0 {
            *d = Some(std::str::from_utf8(c.take(n - 1)?).ok()?.to_owned());
        }
    }
    let [user_agent, first_ip, last_ip] = dev;
    let n = c.len()?;
    let data: BTreeMap<String, serde_json::Value> =
        if n == 0 { BTreeMap::new() } else { serde_json::from_slice(c.take(n)?).ok()? };
    let n = c.len()?;
    let mut retired = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        let hash = TokenHash(c.array::<32>()?);
        let grace_until = UnixMs(c.u64()?);
        let successor = match c.array::<1>()?[0] {
            0 => None,
            _ => Some(Sealed { kid: KeyId(u32::from_le_bytes(c.array::<4>()?)), secret: c.array::<32>()? }),
        };
        retired.push(RetiredToken { hash, grace_until, successor });
    }
    let [created_at, last_seen_at, idle_expires_at, absolute_expires_at, rotated_at, auth_time] = t;
    Some(SessionRecord {
        id,
        token_hash,
        subject,
        tenant,
        policy,
        created_at,
        last_seen_at,
        idle_expires_at,
        absolute_expires_at,
        rotated_at,
        auth_time,
        aal,
        amr,
        device: DeviceInfo { user_agent, first_ip, last_ip },
        data,
        revision,
        epoch,
        version,
        retired,
    })
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// `created_at`, read from the header without decoding.
pub(crate) fn created_at(b: &[u8]) -> UnixMs {
    UnixMs(u64_at(b, CREATED_AT))
}

/// [`SessionRecord::deadline`], read from the header without decoding.
pub(crate) fn deadline(b: &[u8]) -> UnixMs {
    UnixMs(u64_at(b, IDLE).min(u64_at(b, ABSOLUTE)))
}

fn put_len(b: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        b.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    b.push(n as u8);
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    put_len(b, s.len());
    b.extend_from_slice(s.as_bytes());
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array::<8>()?))
    }

    fn len(&mut self) -> Option<usize> {
        let mut n = 0usize;
        for shift in (0..64).step_by(7) {
            let byte = self.array::<1>()?[0];
            n |= usize::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn string(&mut self) -> Option<String> {
        let n = self.len()?;
        Some(std::str::from_utf8(self.take(n)?).ok()?.to_owned())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> SessionRecord {
        SessionRecord {
            id: SessionId::from_bytes([7; 16]),
            token_hash: TokenHash([1; 32]),
            subject: "alice".into(),
            tenant: "acme".into(),
            policy: "default".into(),
            created_at: UnixMs(1),
            last_seen_at: UnixMs(2),
            idle_expires_at: UnixMs(30),
            absolute_expires_at: UnixMs(4),
            rotated_at: UnixMs(1),
            auth_time: UnixMs(1),
            aal: 2,
            amr: vec!["pwd".into(), "otp".into()],
            device: DeviceInfo { user_agent: Some("UA".into()), first_ip: Some(String::new()), last_ip: None },
            data: [("k".to_string(), serde_json::json!({"x": [1, 2]}))].into_iter().collect(),
            revision: 3,
            epoch: 5,
            version: 9,
            retired: vec![
                RetiredToken { hash: TokenHash([2; 32]), grace_until: UnixMs(5), successor: None },
                RetiredToken {
                    hash: TokenHash([3; 32]),
                    grace_until: UnixMs(6),
                    successor: Some(Sealed { kid: KeyId(77), secret: [9; 32] }),
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_header_fields() {
        let r = sample();
        let b = encode(&r);
        assert_eq!(decode(&b), Some(r.clone()));
        assert_eq!(created_at(&b), r.created_at);
        assert_eq!(deadline(&b), r.deadline());
    }

    #[test]
    fn truncated_input_is_refused() {
        let b = encode(&sample());
        for n in 0..b.len() {
            assert_eq!(decode(&b[..n]), None, "prefix {n}");
        }
    }

    /// The load's fast decoder agrees with `SessionRecord::decode`, and falls back to it.
    #[test]
    fn decode_stored_matches_decode() {
        let mut r = sample();
        let check = |r: &SessionRecord| {
            let json = r.encode();
            let mut bytes = json.clone();
            assert_eq!(crate::decode_stored(&mut bytes), SessionRecord::decode(&json));
            assert_eq!(crate::decode_stored(&mut json.clone()).as_ref(), Some(r));
        };
        check(&r);
        r.data.clear();
        r.retired.clear();
        r.amr.clear();
        r.device = DeviceInfo::default();
        r.subject = "a\"b\\c\u{1F600}é".into();
        check(&r);
        let mut v: serde_json::Value = serde_json::from_slice(&sample().encode()).unwrap_or_default();
        v["v"] = 2.into();
        let future = serde_json::to_vec(&v).unwrap_or_default();
        for bad in [&b"not json"[..], b"{}", b"{\"v\":1,", b"{\"v\":1,\"id\":3}", &future, b""] {
            let mut bytes = bad.to_vec();
            assert_eq!(crate::decode_stored(&mut bytes), None, "{}", String::from_utf8_lossy(bad));
            assert_eq!(bytes, bad, "a refused record is left as it was");
        }
    }

    proptest! {
        #[test]
        fn decode_stored_any_strings(subject in ".{0,40}", tenant in ".{0,10}", ua in proptest::option::of(".{0,60}")) {
            let mut r = sample();
            r.subject = subject;
            r.tenant = tenant;
            r.device.user_agent = ua;
            let json = r.encode();
            prop_assert_eq!(crate::decode_stored(&mut json.clone()), Some(r));
        }

        #[test]
        fn round_trip_any_strings(subject in ".{0,300}", tenant in ".{0,40}", ua in proptest::option::of(".{0,600}"),
                                  amr in proptest::collection::vec("[a-z]{0,5}", 0..20),
                                  times in proptest::array::uniform6(any::<u64>()), aal in any::<u8>()) {
            let mut r = sample();
            r.subject = subject;
            r.tenant = tenant;
            r.device.user_agent = ua;
            r.amr = amr;
            r.created_at = UnixMs(times[0]);
            r.last_seen_at = UnixMs(times[1]);
            r.idle_expires_at = UnixMs(times[2]);
            r.absolute_expires_at = UnixMs(times[3]);
            r.rotated_at = UnixMs(times[4]);
            r.auth_time = UnixMs(times[5]);
            r.aal = aal;
            r.data.clear();
            let b = encode(&r);
            prop_assert_eq!(deadline(&b), r.deadline());
            prop_assert_eq!(decode(&b), Some(r));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
        }
    }
}
