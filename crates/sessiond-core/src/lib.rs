//! # sessiond-core
//!
//! The session engine of sessiond: tokens, key ring, session records, policies, the whole
//! secure lifecycle and its events, over any [`SessionStore`].
//!
//! Applications authenticate users; the engine owns the session from then on:
//!
//! - [`Engine::create`] on authentication only, always with a fresh token (a pre-login token
//!   handed in is revoked, never adopted), enforcing the concurrent limit atomically;
//! - [`Engine::resolve`] on every request: tag check with no I/O, hash, lookup, deadlines,
//!   epoch, binding, throttled renewal and interval rotation;
//! - [`Engine::rotate`] / [`Engine::elevate`] with a grace alias for in-flight requests and
//!   theft detection after it;
//! - [`Engine::set_data`] with compare-and-set; revocation of one session, a subject, a tenant,
//!   or all of a subject's sessions at once by [`Engine::bump_epoch`];
//! - [`Engine::sweep`] for expiry, and the event log behind [`Engine::events`].
//!
//! Tokens (see [`token`]) carry 256 bits from the OS CSPRNG and a keyed tag; stores only ever
//! see their hash. Clock and public-id randomness are injected ([`time::Clock`],
//! [`id::IdSource`]) so tests move time instead of sleeping.
//!
//! See the crate README example in [`Engine`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[doc = include_str!("../../../docs/engine.md")]
pub mod guide {}

/// The repository README, compiled so that its example stays true.
#[doc(hidden)]
#[doc = include_str!("../../../README.md")]
pub mod readme {}

pub mod binding;
pub mod engine;
pub mod error;
pub mod event;
pub mod id;
pub mod policy;
pub mod record;
pub mod store;
pub mod time;
pub mod token;

pub use binding::RequestContext;
pub use engine::{CreateRequest, Created, Engine, EngineBuilder, EngineConfig, Remaining, Resolution};
pub use error::{ClientError, Error, MalformedInput, Result, StoreError};
pub use event::{Event, EventKind, RevokeReason};
pub use id::SessionId;
pub use policy::{Policies, Policy, Requirement};
pub use record::SessionRecord;
pub use store::SessionStore;
