//! Errors, classed by who is at fault.
//!
//! | class | who is at fault | HTTP mapping |
//! |---|---|---|
//! | [`Error::Client`] | the client: malformed, forged, expired or revoked credentials, bad input | 4xx |
//! | [`Error::Conflict`] | a concurrent writer won a compare-and-set | 409 |
//! | [`Error::ApiMisuse`] | the program calling the library | 500 (a bug in the caller) |
//! | [`Error::Store`] | the session store (unreachable, a change not confirmed, or corrupt) | 503 when retryable |

use std::time::Duration;

use crate::id::SessionId;

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Input that does not parse. Messages are safe to show to clients and never echo the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedInput {
    /// Not a well-formed session token with a valid tag.
    #[error("the session token is malformed or forged")]
    Token,
    /// Not a well-formed session id.
    #[error("the session id is malformed")]
    SessionId,
    /// A subject, tenant, policy or data key that breaks the length or character rules.
    #[error("{0}")]
    Field(&'static str),
}

/// Why a client's credential or request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The input does not parse; nothing was looked up.
    #[error(transparent)]
    Malformed(#[from] MalformedInput),
    /// The token verified but names no live session (unknown, revoked, or swept).
    #[error("the session does not exist or has ended")]
    UnknownSession,
    /// The session passed its idle deadline.
    #[error("the session expired after inactivity")]
    IdleExpired,
    /// The session passed its absolute deadline.
    #[error("the session reached its maximum lifetime")]
    AbsoluteExpired,
    /// The subject's security epoch moved on (password change, MFA change, account disabled).
    #[error("the session was invalidated by a security change of its subject")]
    EpochRevoked,
    /// A token retired by rotation was presented after its grace window: treated as theft,
    /// the session was revoked.
    #[error("a retired session token was replayed; the session was revoked")]
    TokenReplayed,
    /// The request's device facts broke the policy's binding rule and the rule said revoke.
    #[error("the session was revoked because the client's device changed")]
    BindingRevoked,
    /// The subject is at its concurrent session limit and the policy denies new sessions.
    #[error("the subject already has the maximum number of sessions")]
    LimitReached,
    /// A route demands a higher or fresher assurance level.
    #[error("step-up authentication required")]
    StepUpRequired(StepUp),
    /// The named policy class does not exist.
    #[error("unknown policy class")]
    UnknownPolicy,
}

/// What a route demands and the session lacks: the hint returned with a 403.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepUp {
    /// Minimum AAL demanded.
    pub min_aal: u8,
    /// Maximum age of the last authentication, if demanded.
    #[serde(with = "opt_secs")]
    pub max_auth_age: Option<Duration>,
}

mod opt_secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

/// A store failure. The message is for logs, never for clients. Its `Debug` form names the
/// sessions an [`StoreError::Unconfirmed`] ended by id only (records hold application data,
/// addresses and user agents, which must stay off logs).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or timed out. Retryable; maps to 503.
    #[error("session store unavailable: {message}")]
    Unavailable {
        /// What failed (for logs).
        message: String,
        /// The driver's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The store answered with something impossible (a broken invariant). Not retryable.
    #[error("session store is inconsistent: {0}")]
    Corrupt(String),
    /// A revocation was applied, but not confirmed: the store could not confirm it as durable
    /// as configured (a Redis `wait_replicas` shortfall), or it failed part-way through a
    /// change of many subjects. Retryable; maps to 503 like [`StoreError::Unavailable`], and
    /// the caller must not report the revocation as done. Retrying is safe (a revocation that
    /// finds nothing left to end changes nothing).
    ///
    /// `ended` holds the sessions this call did end (it may be empty, for an epoch bump or a
    /// part-way failure before any ended): the engine writes their `revoked.*` events, marked
    /// `unconfirmed`, so that the audit trail does not lose them (a retry finds nothing to
    /// report).
    #[error("session store could not confirm a revocation: {message}")]
    Unconfirmed {
        /// What failed (for logs).
        message: String,
        /// The sessions the call ended before it failed.
        ended: Vec<std::sync::Arc<crate::record::SessionRecord>>,
    },
}

impl std::fmt::Debug for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable { message, source } => {
                f.debug_struct("Unavailable").field("message", message).field("source", source).finish()
            }
            Self::Corrupt(m) => f.debug_tuple("Corrupt").field(m).finish(),
            Self::Unconfirmed { message, ended } => f
                .debug_struct("Unconfirmed")
                .field("message", message)
                .field("ended", &ended.iter().map(|r| r.id).collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl StoreError {
    /// An [`StoreError::Unavailable`] with a cause.
    pub fn unavailable(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable { message: message.into(), source: Some(Box::new(source)) }
    }

    /// This failure, of a revocation that had already ended the sessions in `ended` (a
    /// revocation of many subjects or batches failing part-way): an
    /// [`StoreError::Unconfirmed`] listing them (and its own `ended`, when it was one
    /// already), or the failure unchanged when nothing had ended.
    #[must_use]
    pub fn after_ending(self, mut ended: Vec<std::sync::Arc<crate::record::SessionRecord>>) -> Self {
        match self {
            Self::Unconfirmed { message, ended: mut more } => {
                ended.append(&mut more);
                Self::Unconfirmed { message, ended }
            }
            e if ended.is_empty() => e,
            e => Self::Unconfirmed { message: format!("{e} (after {} sessions had ended)", ended.len()), ended },
        }
    }
}

/// The engine's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client is at fault (4xx).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A compare-and-set lost against a concurrent change (409); re-read and retry.
    #[error("the session changed concurrently (revision {current})")]
    Conflict {
        /// The session's current data revision.
        current: u64,
    },
    /// The caller of the library broke a documented rule.
    #[error("API misuse: {0}")]
    ApiMisuse(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A session id that names no live session (for id-addressed operations).
    #[error("no live session {0}")]
    NotFound(SessionId),
}

impl From<MalformedInput> for Error {
    fn from(e: MalformedInput) -> Self {
        Error::Client(ClientError::Malformed(e))
    }
}

impl Error {
    /// The client error, if the client is at fault.
    pub fn as_client(&self) -> Option<&ClientError> {
        match self {
            Error::Client(c) => Some(c),
            _ => None,
        }
    }
}
