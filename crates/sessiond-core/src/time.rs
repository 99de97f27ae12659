//! Time, as the engine sees it: milliseconds since the Unix epoch, read through an injected
//! [`Clock`] so that tests move time instead of sleeping.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A point in time: milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UnixMs(pub u64);

impl UnixMs {
    /// This instant plus `d`, saturating at the far future.
    pub fn plus(self, d: Duration) -> UnixMs {
        UnixMs(self.0.saturating_add(duration_ms(d)))
    }

    /// Milliseconds from `earlier` to `self`, or zero if `earlier` is later.
    pub fn since(self, earlier: UnixMs) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Whole seconds since the Unix epoch (rounded down).
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }
}

impl fmt::Debug for UnixMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnixMs({})", self.0)
    }
}

/// `d` in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The source of the current time. Injected into the engine; core code never reads the system
/// clock directly (enforced by `clippy.toml`'s `disallowed-methods`).
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> UnixMs;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned place that reads the system clock
    fn now(&self) -> UnixMs {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        UnixMs(duration_ms(since))
    }
}

/// A clock that only moves when told to; for tests and simulations.
///
/// # Examples
/// ```
/// use sessiond_core::time::{Clock, ManualClock, UnixMs};
/// use std::time::Duration;
/// let clock = ManualClock::new(UnixMs(1_000));
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), UnixMs(3_000));
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: UnixMs) -> Self {
        Self { now: AtomicU64::new(start.0) }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(duration_ms(d), Ordering::SeqCst);
    }

    /// Sets the clock to `t` (which may be in the past: clocks do jump).
    pub fn set(&self, t: UnixMs) {
        self.now.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMs {
        UnixMs(self.now.load(Ordering::SeqCst))
    }
}
