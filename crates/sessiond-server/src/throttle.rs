//! Brute-force throttling (OWASP Session Management Cheat Sheet "Session ID Guessing and
//! Brute Force Detection", CS-29): a token bucket per source IP, in memory, bounded.
//!
//! What counts as a failure is decided by the callers (see `docs/decisions.md`):
//! a presented session token that sessiond never issued (bad format or HMAC tag: every
//! guess, forgery or random value) and a wrong service API key. Tokens that sessiond *did*
//! issue and that have ended (expired, revoked, logged out) are not guesses and never count,
//! so a browser with a stale cookie is never throttled, and a valid session is never refused
//! because its source is throttled: the throttle only changes the answer to failures from
//! 401 to 429.
//!
//! Each source has a bucket of `max_failures` failures that refills at
//! `max_failures / window_secs` per second. A failure that finds the bucket empty is
//! throttled; the first throttled failure (and then at most one per window) raises an alert
//! (an `EventKind::BruteForce` event). Sources are IPv4 addresses and IPv6 /64 prefixes (one
//! host typically owns a whole /64). The map holds at most `max_sources` entries: when full,
//! fully refilled buckets (forgiven sources) are dropped first, then the least suspicious half.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use sessiond_core::time::UnixMs;

use crate::config::BruteForceConfig;

/// The key a failure is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address.
    V4([u8; 4]),
    /// An IPv6 /64 prefix.
    V6([u8; 8]),
    /// The request did not tell (in-process use without a peer address).
    Unknown,
}

impl Source {
    /// The source of `ip`.
    pub fn of(ip: Option<IpAddr>) -> Self {
        match ip.map(|i| i.to_canonical()) {
            Some(IpAddr::V4(a)) => Source::V4(a.octets()),
            Some(IpAddr::V6(a)) => {
                let o = a.octets();
                let mut p = [0u8; 8];
                p.copy_from_slice(&o[..8]);
                Source::V6(p)
            }
            None => Source::Unknown,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::V4(a) => write!(f, "{}", std::net::Ipv4Addr::from(*a)),
            Source::V6(p) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(p);
                write!(f, "{}/64", std::net::Ipv6Addr::from(o))
            }
            Source::Unknown => f.write_str("unknown"),
        }
    }
}

/// What failed: each kind has its own buckets, so that garbage tokens relayed by an
/// application never throttle the same application's API key, and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A session token sessiond never issued.
    Token,
    /// A wrong service API key.
    ApiKey,
}

impl Kind {
    /// `token` or `api_key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::ApiKey => "api_key",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures the source may still have before it is throttled.
    tokens: f64,
    updated: UnixMs,
    alerted: Option<UnixMs>,
}

/// The outcome of recording a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Under the threshold: answer as usual.
    Allowed,
    /// Over the threshold: answer 429 with `Retry-After: retry_after` seconds; `alert` is
    /// true for the failure that should raise the brute-force event.
    Throttled {
        /// Seconds until the source may fail again.
        retry_after: u64,
        /// Whether to raise the alert now.
        alert: bool,
    },
}

/// The per-source failure buckets.
#[derive(Debug)]
pub struct Throttle {
    cfg: BruteForceConfig,
    buckets: Mutex<HashMap<(Kind, Source), Bucket>>,
}

impl Throttle {
    /// A throttle with `cfg`.
    pub fn new(cfg: BruteForceConfig) -> Self {
        Self { cfg, buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether the throttle is on.
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn capacity(&self) -> f64 {
        f64::from(self.cfg.max_failures)
    }

    /// Refill per millisecond.
    fn rate(&self) -> f64 {
        self.capacity() / (self.cfg.window_secs as f64 * 1000.0)
    }

    fn refill(&self, b: &mut Bucket, now: UnixMs) {
        let elapsed = now.0.saturating_sub(b.updated.0) as f64;
        b.tokens = (b.tokens + elapsed * self.rate()).min(self.capacity());
        b.updated = now;
    }

    fn retry_after(&self, b: &Bucket) -> u64 {
        let ms = ((1.0 - b.tokens).max(0.0) / self.rate()).ceil();
        ((ms / 1000.0).ceil() as u64).max(1)
    }

    /// Records one failure of `kind` by `source` at `now`.
    pub fn fail(&self, kind: Kind, source: Source, now: UnixMs) -> Verdict {
        let source = (kind, source);
        if !self.cfg.enabled {
            return Verdict::Allowed;
        }
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&source) && map.len() >= self.cfg.max_sources {
            self.evict(&mut map, now);
        }
        let cap = self.capacity();
        let b = map.entry(source).or_insert(Bucket { tokens: cap, updated: now, alerted: None });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Verdict::Allowed;
        }
        let window = self.cfg.window_secs * 1000;
        let alert = b.alerted.is_none_or(|at| now.0.saturating_sub(at.0) >= window);
        if alert {
            b.alerted = Some(now);
        }
        Verdict::Throttled { retry_after: self.retry_after(b), alert }
    }

    /// `Some(retry_after)` when `source` has no failures of `kind` left (without recording one).
    pub fn blocked(&self, kind: Kind, source: Source, now: UnixMs) -> Option<u64> {
        let source = (kind, source);
        if !self.cfg.enabled {
            return None;
        }
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = map.get_mut(&source)?;
        self.refill(b, now);
        (b.tokens < 1.0).then(|| self.retry_after(b))
    }

    /// How many sources are tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn evict(&self, map: &mut HashMap<(Kind, Source), Bucket>, now: UnixMs) {
        let cap = self.capacity();
        map.retain(|_, b| {
            self.refill(b, now);
            b.tokens < cap
        });
        if map.len() >= self.cfg.max_sources {
            // Still full of sources with recent failures: keep the most suspicious half.
            map.retain(|_, b| b.tokens < cap / 2.0);
        }
        if map.len() >= self.cfg.max_sources {
            tracing::warn!(sources = map.len(), "brute-force throttle full of suspicious sources; forgetting them");
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max: u32, window: u64, sources: usize) -> BruteForceConfig {
        BruteForceConfig { enabled: true, max_failures: max, window_secs: window, max_sources: sources }
    }

    fn ip(s: &str) -> Source {
        Source::of(Some(s.parse().expect("ip")))
    }

    #[test]
    fn throttles_after_the_threshold_and_alerts_once_per_window() {
        let t = Throttle::new(cfg(20, 60, 100));
        let a = ip("203.0.113.7");
        let now = UnixMs(1_000_000);
        for _ in 0..20 {
            assert_eq!(t.fail(Kind::Token, a, now), Verdict::Allowed);
        }
        assert_eq!(t.fail(Kind::Token, a, now), Verdict::Throttled { retry_after: 3, alert: true });
        assert_eq!(t.fail(Kind::Token, a, now), Verdict::Throttled { retry_after: 3, alert: false });
        assert_eq!(t.blocked(Kind::Token, a, now), Some(3));
        // The same source's API-key budget is separate.
        assert_eq!(t.blocked(Kind::ApiKey, a, now), None);
        // Another source is untouched.
        assert_eq!(t.blocked(Kind::Token, ip("203.0.113.8"), now), None);
        assert_eq!(t.fail(Kind::Token, ip("203.0.113.8"), now), Verdict::Allowed);
        // After 3 s one failure is allowed again; no new alert within the window.
        assert_eq!(t.fail(Kind::Token, a, UnixMs(now.0 + 3000)), Verdict::Allowed);
        assert!(matches!(t.fail(Kind::Token, a, UnixMs(now.0 + 3000)), Verdict::Throttled { alert: false, .. }));
        // A full window later the source alerts again if it keeps going.
        let later = UnixMs(now.0 + 61_000);
        let first = (0..25).map(|_| t.fail(Kind::Token, a, later)).find(|v| *v != Verdict::Allowed);
        assert!(matches!(first, Some(Verdict::Throttled { alert: true, .. })), "{first:?}");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_is_v4() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(ip("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn memory_is_bounded_and_forgiven_sources_go_first() {
        let t = Throttle::new(cfg(5, 10, 100));
        let now = UnixMs(1_000_000);
        for i in 0..100u32 {
            t.fail(Kind::Token, Source::V4(i.to_be_bytes()), now);
        }
        assert_eq!(t.tracked(), 100);
        // 10 s later all are refilled: a new source evicts them.
        t.fail(Kind::Token, ip("198.51.100.1"), UnixMs(now.0 + 10_000));
        assert_eq!(t.tracked(), 1);
        // A map full of throttled sources stays bounded.
        for i in 0..1000u32 {
            for _ in 0..6 {
                t.fail(Kind::Token, Source::V4(i.to_be_bytes()), UnixMs(now.0 + 20_000));
            }
            assert!(t.tracked() <= 100);
        }
    }

    #[test]
    fn disabled_never_throttles() {
        let t = Throttle::new(BruteForceConfig { enabled: false, ..cfg(1, 60, 10) });
        for _ in 0..10 {
            assert_eq!(t.fail(Kind::Token, Source::Unknown, UnixMs(1)), Verdict::Allowed);
        }
        assert_eq!(t.tracked(), 0);
    }
}
