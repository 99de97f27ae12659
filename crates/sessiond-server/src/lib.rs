//! # sessiond-server
//!
//! The HTTP face of sessiond: the v1 API over [`sessiond_core::Engine`], forward-auth for
//! reverse proxies, the session cookie, RFC 9457 problem+json errors, the OpenAPI document,
//! Prometheus metrics, layered configuration, hashed API keys and TLS (rustls).
//!
//! - [`config`]: defaults → TOML → `SESSIOND_*` environment → flags.
//! - [`serve::Server`]: binds, serves (HTTP or HTTPS), sweeps expired sessions every second,
//!   shuts down gracefully on SIGTERM/SIGINT and flushes the store.
//! - [`app::router`]: the routes; [`api`]: the handlers and shapes; [`problem`]: errors.
//! - [`front::Front`]: the outermost service; answers forward-auth's common case before the
//!   router.
//! - [`cookie`]: `__Host-sid; Path=/; Secure; HttpOnly; SameSite=Lax` (or `sid` without
//!   `Secure` in development mode on loopback).
//! - [`api_key`]: `sdk_…` keys, stored as SHA-256, compared in constant time.
//!
//! Raw session tokens and API keys are never logged; logs correlate tokens by
//! [`sessiond_core::token::TokenHash::short`]. See `docs/server.md` and
//! `docs/configuration.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod api_key;
pub mod app;
pub mod backend;
pub mod config;
pub mod cookie;
pub mod data_dir;
pub mod front;
pub mod idle;
pub mod openapi;
pub mod path;
pub mod problem;
pub mod serve;
pub mod throttle;

pub use app::{router, AppState, HttpSettings};
pub use backend::Backend;
pub use config::{Config, ConfigError, Overrides};
pub use problem::{Problem, ProblemKind};
pub use serve::{ServeError, Server};
