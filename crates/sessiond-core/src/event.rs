//! Lifecycle events: a durable, ordered log that other nodes, webhooks and auditors read.
//! Events carry public ids and, where useful, a short token-hash prefix; never a token.

use std::fmt;

use crate::id::SessionId;
use crate::time::UnixMs;

/// Why a session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// An administrator or the application ended it.
    Admin,
    /// A device-binding rule said so.
    Binding,
    /// The subject's security epoch was bumped.
    Epoch,
    /// A pre-login token was presented at login (fixation defence).
    Fixation,
    /// The user logged out.
    Logout,
    /// All sessions of the subject were ended.
    Subject,
    /// All sessions of the tenant were ended.
    Tenant,
    /// A retired token was replayed after its grace window.
    Theft,
}

impl RevokeReason {
    /// The snake_case name used in event kinds (`revoked.<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Admin => "admin",
            RevokeReason::Binding => "binding",
            RevokeReason::Epoch => "epoch",
            RevokeReason::Fixation => "fixation",
            RevokeReason::Logout => "logout",
            RevokeReason::Subject => "subject",
            RevokeReason::Tenant => "tenant",
            RevokeReason::Theft => "theft",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Unusual device facts were seen.
    Anomaly,
    /// A session was created.
    Created,
    /// A step-up raised the assurance.
    Elevated,
    /// The absolute deadline passed (emitted by the sweeper).
    ExpiredAbsolute,
    /// The idle deadline passed (emitted by the sweeper).
    ExpiredIdle,
    /// A session was ended to make room under the concurrent limit.
    LimitEvicted,
    /// The idle deadline was pushed forward.
    Renewed,
    /// A session was revoked.
    Revoked(RevokeReason),
    /// The token was rotated.
    Rotated,
    /// A retired token was replayed after its grace window.
    TheftDetected,
    /// The session's data changed.
    DataChanged,
    /// Many tokens that sessiond never issued (forged, random or garbage) or many wrong API
    /// keys came from one source: it is being throttled. No session; the detail names the
    /// source and what was guessed.
    BruteForce,
}

impl EventKind {
    /// The dotted name: `created`, `expired.idle`, `revoked.logout`, …
    pub fn name(&self) -> String {
        match self {
            EventKind::Anomaly => "anomaly".into(),
            EventKind::Created => "created".into(),
            EventKind::Elevated => "elevated".into(),
            EventKind::ExpiredAbsolute => "expired.absolute".into(),
            EventKind::ExpiredIdle => "expired.idle".into(),
            EventKind::LimitEvicted => "limit_evicted".into(),
            EventKind::Renewed => "renewed".into(),
            EventKind::Revoked(r) => format!("revoked.{}", r.as_str()),
            EventKind::Rotated => "rotated".into(),
            EventKind::TheftDetected => "theft_detected".into(),
            EventKind::DataChanged => "data_changed".into(),
            EventKind::BruteForce => "brute_force".into(),
        }
    }

    /// Whether other nodes must drop cached copies of the session on this event.
    pub fn invalidates(&self) -> bool {
        !matches!(self, EventKind::Created | EventKind::Renewed | EventKind::Anomaly | EventKind::BruteForce)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Position in the log, assigned by the store; strictly increasing. 0 before appending.
    pub cursor: u64,
    /// When it happened.
    pub at: UnixMs,
    /// What happened.
    pub kind: EventKind,
    /// The session, when the event is about one.
    pub session_id: Option<SessionId>,
    /// The subject.
    pub subject: String,
    /// The tenant.
    pub tenant: String,
    /// A short, safe detail (e.g. `ua_family_changed`, a token-hash prefix).
    pub detail: Option<String>,
}

impl Event {
    /// A new event, not yet in the log.
    pub fn new(at: UnixMs, kind: EventKind, session_id: Option<SessionId>, subject: &str, tenant: &str) -> Self {
        Self { cursor: 0, at, kind, session_id, subject: subject.to_owned(), tenant: tenant.to_owned(), detail: None }
    }

    /// Adds a detail.
    pub fn with_detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }

    /// Marks the event as describing a change the store applied but could not confirm
    /// ([`crate::StoreError::Unconfirmed`]): the detail gets the word [`UNCONFIRMED`] (after a
    /// space when it has one already).
    #[must_use]
    pub fn unconfirmed(mut self) -> Self {
        self.detail = Some(match self.detail.take() {
            Some(d) => format!("{d} {UNCONFIRMED}"),
            None => UNCONFIRMED.to_owned(),
        });
        self
    }
}

/// The detail word of an event whose change was applied but not confirmed (see
/// [`Event::unconfirmed`]).
pub const UNCONFIRMED: &str = "unconfirmed";
