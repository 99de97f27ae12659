//! Server configuration, layered: built-in defaults, then a TOML file, then `SESSIOND_*`
//! environment variables, then command-line flags (each layer overrides the previous one).
//!
//! Unknown keys in the TOML file are an error naming the key. Secrets (the API key) can come
//! from files (`SESSIOND_API_KEY_FILE`, `api_key_file`). See `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sessiond_core::{Policies, Policy, Requirement};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";
/// Default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "./sessiond-data";
/// Default request body limit: 64 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default near-cache TTL: 30 s. A backstop only: every change is pushed atomically with the
/// write and a silent push channel is detected by heartbeats within 3 s (`docs/decisions.md`).
pub const DEFAULT_NEAR_CACHE_TTL_MS: u64 = 30_000;
/// Default [`Config::header_read_timeout`], in seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT: u64 = 10;
/// Default [`Config::idle_connection_timeout`], in seconds: longer than the upstream
/// keep-alive timeouts that proxies use by default (nginx 60 s), so that a proxy's pooled
/// connection is closed by the proxy first.
pub const DEFAULT_IDLE_CONNECTION_TIMEOUT: u64 = 75;
/// Default near-cache size: 1,000,000 token hashes.
pub const DEFAULT_NEAR_CACHE_MAX_ENTRIES: usize = 1_000_000;

/// A configuration error; messages name the file, key or variable at fault, never a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or holds an unknown key (the message names it).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An environment variable has a value of the wrong shape.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The settings contradict each other or break a rule.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text (the default).
    #[default]
    Text,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err("expected `text` or `json`".into()),
        }
    }
}

/// Which session store to use.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// The embedded durable store in the data directory (`embedded:`; the default).
    Embedded,
    /// An in-memory store, lost on exit (`memory:`).
    Memory,
    /// Redis: `redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://` (and the
    /// `rediss+…` TLS forms). The URL may hold credentials: it is never logged.
    Redis(String),
    /// PostgreSQL: `postgres://` or `postgresql://`. The URL may hold credentials: it is
    /// never logged.
    Postgres(String),
}

impl StoreUrl {
    /// Whether the store is shared between nodes (Redis, PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreUrl::Redis(_) | StoreUrl::Postgres(_))
    }
}

/// Never prints the URL of a remote store (it may carry a password).
impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Embedded => f.write_str("Embedded"),
            StoreUrl::Memory => f.write_str("Memory"),
            StoreUrl::Redis(_) => f.write_str("Redis(<url>)"),
            StoreUrl::Postgres(_) => f.write_str("Postgres(<url>)"),
        }
    }
}

impl FromStr for StoreUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "" | "embedded" | "embedded:" => return Ok(StoreUrl::Embedded),
            "memory" | "memory:" => return Ok(StoreUrl::Memory),
            _ => {}
        }
        let scheme = s.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("redis" | "rediss" | "redis+sentinel" | "rediss+sentinel" | "redis+cluster" | "rediss+cluster") => {
                Ok(StoreUrl::Redis(s.to_owned()))
            }
            Some("postgres" | "postgresql") => Ok(StoreUrl::Postgres(s.to_owned())),
            // Never echo the value: it may be a URL with a password.
            _ => Err("unsupported store URL: expected `embedded:`, `memory:`, `redis://…`, `rediss://…`, \
                 `redis+sentinel://…`, `redis+cluster://…` or `postgres://…`"
                .into()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for StoreUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[redis]`: options of the Redis store (used when `store` is a Redis URL).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Prefix of every key and of the invalidation channel; nodes sharing sessions use the
    /// same prefix.
    pub key_prefix: String,
    /// Upper bound of every store operation, in milliseconds (then 503).
    pub timeout_ms: u64,
    /// How long start-up waits for Redis, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Multiplexed connections (per node in Cluster).
    pub pool_size: usize,
    /// Replicas that must acknowledge each revocation and epoch bump before it is reported
    /// done (`WAIT`); 0 does not wait.
    pub wait_replicas: u32,
    /// How long a change waits for `wait_replicas`, in milliseconds (then 503).
    pub wait_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            key_prefix: "sessiond".into(),
            timeout_ms: 1000,
            connect_timeout_ms: 5000,
            pool_size: 4,
            wait_replicas: 0,
            wait_timeout_ms: 200,
        }
    }
}

/// `[postgres]`: options of the PostgreSQL store (used when `store` is a PostgreSQL URL).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Schema of the tables (created if missing); nodes sharing sessions use the same one.
    pub schema: String,
    /// Upper bound of every store operation, in milliseconds (then 503).
    pub timeout_ms: u64,
    /// How long start-up waits for the server, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Maximum pooled connections.
    pub pool_size: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self { schema: "sessiond".into(), timeout_ms: 2000, connect_timeout_ms: 5000, pool_size: 16 }
    }
}

/// TLS certificate and key files (PEM).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: Option<PathBuf>,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// A step-up rule: requests whose original path starts with `prefix` (matched on whole path
/// segments) need the session to meet the requirement. The longest matching prefix wins.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Path prefix, starting with `/`.
    pub prefix: String,
    /// Minimum AAL (0 to 3).
    #[serde(default)]
    pub min_aal: u8,
    /// Maximum seconds since the last authentication.
    #[serde(default)]
    pub max_auth_age: Option<u64>,
    /// CSRF mode for cookie-authenticated unsafe methods under this prefix; overrides
    /// `[csrf] forward_auth` (see [`CsrfMode`]).
    #[serde(default)]
    pub csrf: Option<CsrfMode>,
}

/// How forward-auth compares the original request's (normalized) path with route rule
/// prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteMatching {
    /// ASCII case and trailing dots on path segments ignored on both sides
    /// ([`crate::path::fold`]): `/ADMIN` and `/admin.` are under an `/admin` rule, as they are
    /// to case-insensitive backends and to Windows. A rule can only apply more widely than
    /// under `exact`, never less (the default).
    #[default]
    Folded,
    /// Byte for byte after normalization: for backends where `/Admin` and `/admin` are
    /// different resources and a rule must not cover the other spelling.
    Exact,
}

/// How forward-auth protects cookie-authenticated unsafe methods (`POST`, `PUT`, `PATCH`,
/// `DELETE`, …) against cross-site request forgery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CsrfMode {
    /// Refuse requests the browser marks as cross-site (`Sec-Fetch-Site: cross-site`) or whose
    /// `Origin` is foreign; the application keeps its own synchronizer token (the default).
    #[default]
    FetchMetadata,
    /// As `fetch_metadata`, and every unsafe method must also carry the session's CSRF token
    /// in `X-CSRF-Token` (synchronizer token pattern); 403 `csrf-rejected` otherwise.
    Synchronizer,
}

/// `[csrf]`: cross-site request forgery defences of the browser-facing endpoints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsrfConfig {
    /// Mode of forward-auth for cookie-authenticated unsafe methods (route rules may override).
    pub forward_auth: CsrfMode,
    /// Origins (`https://app.example.com`) whose cookie-authenticated requests count as
    /// same-origin besides the request's own `Host`.
    pub trusted_origins: Vec<String>,
}

impl Default for CsrfConfig {
    fn default() -> Self {
        Self { forward_auth: CsrfMode::FetchMetadata, trusted_origins: Vec::new() }
    }
}

/// `[brute_force]`: throttling of sources that present many tokens sessiond never issued
/// (forged, random, garbage) or many wrong API keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BruteForceConfig {
    /// Whether the throttle is on.
    pub enabled: bool,
    /// Failures a source may have within `window_secs` before it gets 429 (the bucket size;
    /// it refills at `max_failures / window_secs` per second).
    pub max_failures: u32,
    /// Length of the window, in seconds.
    pub window_secs: u64,
    /// Most sources tracked at once (memory bound; refilled sources are evicted first).
    pub max_sources: usize,
}

impl Default for BruteForceConfig {
    fn default() -> Self {
        Self { enabled: true, max_failures: 20, window_secs: 60, max_sources: 100_000 }
    }
}

impl RouteRule {
    /// The engine's requirement.
    pub fn requirement(&self) -> Requirement {
        Requirement { min_aal: self.min_aal, max_auth_age: self.max_auth_age.map(Duration::from_secs) }
    }

    /// Whether `path` (no query string) is under this rule's prefix, on segment boundaries:
    /// `/admin` covers `/admin` and `/admin/x`, not `/administrator`.
    pub fn matches(&self, path: &str) -> bool {
        match path.strip_prefix(self.prefix.as_str()) {
            Some(rest) => rest.is_empty() || self.prefix.ends_with('/') || rest.starts_with('/'),
            None => false,
        }
    }
}

/// A secret given as text (an API key): used as a `str`, never shown by `Debug`, so that a
/// logged or printed [`Config`] or [`Overrides`] does not carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SecretText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretText {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for SecretText {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(redacted)")
    }
}

/// The server's settings. Missing TOML keys keep their defaults.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (`IP:port`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Data directory: signing key, API key hashes, embedded store.
    pub data_dir: PathBuf,
    /// Session store.
    pub store: StoreUrl,
    /// Development mode: plain HTTP on loopback only, cookie `sid` without `Secure`.
    pub dev: bool,
    /// Acknowledges that a TLS-terminating reverse proxy sits in front, so plain HTTP may be
    /// served on a non-loopback address. Cookies stay `Secure`.
    pub behind_tls_proxy: bool,
    /// TLS certificate and key; when both are set, sessiond serves HTTPS itself.
    pub tls: TlsConfig,
    /// A file holding an API key (secret from a file).
    pub api_key_file: Option<PathBuf>,
    /// A file holding the token signing key (32 bytes, base64url), shared by all nodes.
    /// Default: `signing-key` in the data directory, generated on first run.
    pub signing_key_file: Option<PathBuf>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`tracing` env-filter syntax), e.g. `info` or `sessiond=debug`.
    pub log: String,
    /// Take the client IP from `X-Forwarded-For` / `X-Real-IP` (only behind a proxy that
    /// sets them).
    pub trust_forwarded_headers: bool,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Grace window of a rotated-out token, in seconds.
    pub rotation_grace: u64,
    /// Seconds within which a request's head must arrive once its first byte has, and that a
    /// keep-alive connection may wait for its next request (1 to 300; default 10).
    pub header_read_timeout: u64,
    /// Seconds after which a connection on which nothing was read or written is closed (it
    /// closes between one and two of these after its last byte; 1 to 3600; default 75): the
    /// network disconnect after inactivity of NIST SP 800-53 SC-10.
    pub idle_connection_timeout: u64,
    /// Extra or replaced policy classes (the presets are always there).
    pub policies: Vec<Policy>,
    /// Step-up rules for forward-auth.
    pub routes: Vec<RouteRule>,
    /// How route rule prefixes are compared with paths (`folded` or `exact`).
    pub route_matching: RouteMatching,
    /// Whether to keep a per-node near-cache in front of a shared store (Redis, PostgreSQL),
    /// kept honest by the store's pushed invalidations.
    pub near_cache: bool,
    /// Longest time a near-cache entry is served, in milliseconds (1 to 300000). A backstop
    /// behind the pushed invalidations and the push channel's heartbeat.
    pub near_cache_ttl_ms: u64,
    /// Most token hashes the near-cache holds (it is emptied when full).
    pub near_cache_max_entries: usize,
    /// Redis store options.
    pub redis: RedisConfig,
    /// PostgreSQL store options.
    pub postgres: PostgresConfig,
    /// CSRF defences.
    pub csrf: CsrfConfig,
    /// Brute-force throttling.
    pub brute_force: BruteForceConfig,
    /// An API key given as text (environment or flag only; never read from the TOML file).
    #[serde(skip)]
    pub api_key: Option<SecretText>,
}

impl Default for Config {
    /// Secure, zero-configuration defaults: loopback only, embedded store in
    /// `./sessiond-data`, `Secure` cookies, 64 KiB bodies, 10 s rotation grace.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            store: StoreUrl::Embedded,
            dev: false,
            behind_tls_proxy: false,
            tls: TlsConfig::default(),
            api_key_file: None,
            signing_key_file: None,
            log_format: LogFormat::Text,
            log: "info".into(),
            trust_forwarded_headers: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            rotation_grace: 10,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_connection_timeout: DEFAULT_IDLE_CONNECTION_TIMEOUT,
            policies: Vec::new(),
            routes: Vec::new(),
            route_matching: RouteMatching::default(),
            near_cache: true,
            near_cache_ttl_ms: DEFAULT_NEAR_CACHE_TTL_MS,
            near_cache_max_entries: DEFAULT_NEAR_CACHE_MAX_ENTRIES,
            redis: RedisConfig::default(),
            postgres: PostgresConfig::default(),
            csrf: CsrfConfig::default(),
            brute_force: BruteForceConfig::default(),
            api_key: None,
        }
    }
}

/// One override layer (environment or flags): `Some` replaces the value below it.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `SESSIOND_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir` / `SESSIOND_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--store` / `SESSIOND_STORE`.
    pub store: Option<StoreUrl>,
    /// `--dev` / `SESSIOND_DEV`.
    pub dev: Option<bool>,
    /// `--behind-tls-proxy` / `SESSIOND_BEHIND_TLS_PROXY`.
    pub behind_tls_proxy: Option<bool>,
    /// `--tls-cert` / `SESSIOND_TLS_CERT`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key` / `SESSIOND_TLS_KEY`.
    pub tls_key: Option<PathBuf>,
    /// `SESSIOND_API_KEY`.
    pub api_key: Option<SecretText>,
    /// `--api-key-file` / `SESSIOND_API_KEY_FILE`.
    pub api_key_file: Option<PathBuf>,
    /// `--signing-key-file` / `SESSIOND_SIGNING_KEY_FILE`.
    pub signing_key_file: Option<PathBuf>,
    /// `--log-format` / `SESSIOND_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
    /// `--log` / `SESSIOND_LOG`.
    pub log: Option<String>,
    /// `--trust-forwarded-headers` / `SESSIOND_TRUST_FORWARDED_HEADERS`.
    pub trust_forwarded_headers: Option<bool>,
    /// `--max-body-bytes` / `SESSIOND_MAX_BODY_BYTES`.
    pub max_body_bytes: Option<usize>,
    /// `--rotation-grace` / `SESSIOND_ROTATION_GRACE`.
    pub rotation_grace: Option<u64>,
    /// `SESSIOND_HEADER_READ_TIMEOUT`.
    pub header_read_timeout: Option<u64>,
    /// `SESSIOND_IDLE_CONNECTION_TIMEOUT`.
    pub idle_connection_timeout: Option<u64>,
}

/// Every environment variable sessiond reads.
pub const ENV_VARS: [&str; 18] = [
    "SESSIOND_CONFIG",
    "SESSIOND_LISTEN",
    "SESSIOND_DATA_DIR",
    "SESSIOND_STORE",
    "SESSIOND_DEV",
    "SESSIOND_BEHIND_TLS_PROXY",
    "SESSIOND_TLS_CERT",
    "SESSIOND_TLS_KEY",
    "SESSIOND_API_KEY",
    "SESSIOND_API_KEY_FILE",
    "SESSIOND_SIGNING_KEY_FILE",
    "SESSIOND_LOG_FORMAT",
    "SESSIOND_LOG",
    "SESSIOND_TRUST_FORWARDED_HEADERS",
    "SESSIOND_MAX_BODY_BYTES",
    "SESSIOND_ROTATION_GRACE",
    "SESSIOND_HEADER_READ_TIMEOUT",
    "SESSIOND_IDLE_CONNECTION_TIMEOUT",
];

fn parse_env<T: FromStr>(
    lookup: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    what: &str,
) -> Result<Option<T>, ConfigError> {
    match lookup(var) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => {
            v.trim().parse().map(Some).map_err(|_| ConfigError::Env { var, message: format!("expected {what}") })
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn env_bool(lookup: &dyn Fn(&str) -> Option<String>, var: &'static str) -> Result<Option<bool>, ConfigError> {
    match lookup(var) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => parse_bool(&v)
            .map(Some)
            .ok_or(ConfigError::Env { var, message: "expected true/false, 1/0, yes/no or on/off".into() }),
    }
}

impl Overrides {
    /// The `SESSIOND_*` environment layer, read through `lookup` (tests pass a map).
    ///
    /// # Errors
    /// A variable whose value has the wrong shape.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let l: &dyn Fn(&str) -> Option<String> = &lookup;
        let path = |var: &str| l(var).filter(|v| !v.is_empty()).map(PathBuf::from);
        Ok(Self {
            listen: parse_env(l, "SESSIOND_LISTEN", "an IP:port address such as 127.0.0.1:7420")?,
            data_dir: path("SESSIOND_DATA_DIR"),
            store: match l("SESSIOND_STORE").filter(|v| !v.is_empty()) {
                None => None,
                Some(v) => Some(v.parse().map_err(|m| ConfigError::Env { var: "SESSIOND_STORE", message: m })?),
            },
            dev: env_bool(l, "SESSIOND_DEV")?,
            behind_tls_proxy: env_bool(l, "SESSIOND_BEHIND_TLS_PROXY")?,
            tls_cert: path("SESSIOND_TLS_CERT"),
            tls_key: path("SESSIOND_TLS_KEY"),
            api_key: l("SESSIOND_API_KEY").filter(|v| !v.is_empty()).map(SecretText::from),
            api_key_file: path("SESSIOND_API_KEY_FILE"),
            signing_key_file: path("SESSIOND_SIGNING_KEY_FILE"),
            log_format: parse_env(l, "SESSIOND_LOG_FORMAT", "`text` or `json`")?,
            log: l("SESSIOND_LOG").filter(|v| !v.is_empty()),
            trust_forwarded_headers: env_bool(l, "SESSIOND_TRUST_FORWARDED_HEADERS")?,
            max_body_bytes: parse_env(l, "SESSIOND_MAX_BODY_BYTES", "a number of bytes")?,
            rotation_grace: parse_env(l, "SESSIOND_ROTATION_GRACE", "a number of seconds")?,
            header_read_timeout: parse_env(l, "SESSIOND_HEADER_READ_TIMEOUT", "a number of seconds")?,
            idle_connection_timeout: parse_env(l, "SESSIOND_IDLE_CONNECTION_TIMEOUT", "a number of seconds")?,
        })
    }

    /// `SESSIOND_*` variables in `names` that sessiond does not know (to warn about typos).
    pub fn unknown_env_vars(names: impl IntoIterator<Item = String>) -> Vec<String> {
        names.into_iter().filter(|n| n.starts_with("SESSIOND_") && !ENV_VARS.contains(&n.as_str())).collect()
    }
}

/// A TOML error as "line L, column C: message", without the source line that
/// `toml::de::Error`'s `Display` quotes: that line may hold a secret (`api_key = "…"`, a store
/// URL with a password) and the message ends up on stderr and in `config check`'s output.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    let Some(before) = e.span().and_then(|span| text.get(..span.start)) else {
        return message.to_owned();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {message}")
}

impl Config {
    /// Parses TOML text over the defaults. `origin` names the source in errors.
    ///
    /// # Errors
    /// Syntax errors and unknown keys, with the key and position.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: origin.to_owned(), message: toml_error(text, &e) })
    }

    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// As [`Config::from_toml`]; unreadable files.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Builds the configuration: defaults, then `file`, then `env`, then `flags`; resolves
    /// secrets from files and validates the result.
    ///
    /// # Errors
    /// Any layer's error, unreadable secret files, or a failed [`Config::validate`].
    pub fn load(file: Option<&Path>, env: &Overrides, flags: &Overrides) -> Result<Self, ConfigError> {
        let mut c = match file {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        c.apply(env);
        c.apply(flags);
        c.resolve_secrets()?;
        c.validate()?;
        Ok(c)
    }

    /// Applies one override layer.
    pub fn apply(&mut self, o: &Overrides) {
        fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        set(&mut self.listen, &o.listen);
        set(&mut self.data_dir, &o.data_dir);
        set(&mut self.store, &o.store);
        set(&mut self.dev, &o.dev);
        set(&mut self.behind_tls_proxy, &o.behind_tls_proxy);
        if o.tls_cert.is_some() {
            self.tls.cert.clone_from(&o.tls_cert);
        }
        if o.tls_key.is_some() {
            self.tls.key.clone_from(&o.tls_key);
        }
        if o.api_key.is_some() {
            self.api_key.clone_from(&o.api_key);
        }
        if o.api_key_file.is_some() {
            self.api_key_file.clone_from(&o.api_key_file);
        }
        if o.signing_key_file.is_some() {
            self.signing_key_file.clone_from(&o.signing_key_file);
        }
        set(&mut self.log_format, &o.log_format);
        set(&mut self.log, &o.log);
        set(&mut self.trust_forwarded_headers, &o.trust_forwarded_headers);
        set(&mut self.max_body_bytes, &o.max_body_bytes);
        set(&mut self.rotation_grace, &o.rotation_grace);
        set(&mut self.header_read_timeout, &o.header_read_timeout);
        set(&mut self.idle_connection_timeout, &o.idle_connection_timeout);
    }

    /// Reads `api_key_file` into `api_key` when no key text was given.
    ///
    /// # Errors
    /// An unreadable or empty key file.
    pub fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        if self.api_key.is_none() {
            if let Some(p) = &self.api_key_file {
                let text =
                    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
                let key = text.trim();
                if key.is_empty() {
                    return Err(ConfigError::Invalid(format!("the API key file {} is empty", p.display())));
                }
                self.api_key = Some(SecretText::from(key));
            }
        }
        Ok(())
    }

    /// Whether sessiond itself serves TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.cert.is_some() && self.tls.key.is_some()
    }

    /// Checks the rules: development mode only on loopback and without TLS; TLS needs both
    /// files; plain HTTP on a non-loopback address needs `behind_tls_proxy`; valid policies
    /// and route rules; a sane body limit; a long enough API key.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the broken rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return bad("TLS needs both a certificate (tls.cert / --tls-cert) and a key (tls.key / --tls-key)".into());
        }
        let loopback = self.listen.ip().is_loopback();
        if self.dev {
            if !loopback {
                return bad(format!(
                    "development mode is only allowed on a loopback address, not {}",
                    self.listen.ip()
                ));
            }
            if self.tls_enabled() {
                return bad("development mode serves plain HTTP; remove the TLS settings or --dev".into());
            }
        } else if !self.tls_enabled() && !loopback && !self.behind_tls_proxy {
            return bad(format!(
                "refusing to serve plain HTTP on the non-loopback address {}: configure TLS \
                 (--tls-cert/--tls-key), or set behind_tls_proxy = true when a TLS-terminating \
                 proxy sits in front",
                self.listen
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return bad("max_body_bytes must be between 1024 and 16777216".into());
        }
        if self.rotation_grace > 300 {
            return bad("rotation_grace must be at most 300 seconds".into());
        }
        if !(1..=300).contains(&self.header_read_timeout) {
            return bad("header_read_timeout must be between 1 and 300 seconds".into());
        }
        if !(1..=3600).contains(&self.idle_connection_timeout) {
            return bad("idle_connection_timeout must be between 1 and 3600 seconds".into());
        }
        if let Some(k) = &self.api_key {
            if k.trim().len() < crate::api_key::MIN_KEY_LEN {
                return bad(format!("the API key must be at least {} characters", crate::api_key::MIN_KEY_LEN));
            }
        }
        if self.near_cache_ttl_ms == 0 || self.near_cache_ttl_ms > 300_000 {
            return bad(
                "near_cache_ttl_ms must be between 1 and 300000 (turn the cache off with near_cache = false)".into()
            );
        }
        if self.near_cache_max_entries == 0 {
            return bad("near_cache_max_entries must be at least 1".into());
        }
        for (what, t) in [
            ("redis.timeout_ms", self.redis.timeout_ms),
            ("redis.connect_timeout_ms", self.redis.connect_timeout_ms),
            ("postgres.timeout_ms", self.postgres.timeout_ms),
            ("postgres.connect_timeout_ms", self.postgres.connect_timeout_ms),
        ] {
            if !(10..=60_000).contains(&t) {
                return bad(format!("{what} must be between 10 and 60000"));
            }
        }
        if !(1..=1024).contains(&self.redis.pool_size) || !(1..=1024).contains(&self.postgres.pool_size) {
            return bad("redis.pool_size and postgres.pool_size must be between 1 and 1024".into());
        }
        if self.redis.wait_replicas > 100 {
            return bad("redis.wait_replicas must be between 0 and 100".into());
        }
        if self.redis.wait_replicas > 0 && !(1..self.redis.timeout_ms).contains(&self.redis.wait_timeout_ms) {
            return bad("redis.wait_timeout_ms must be at least 1 and below redis.timeout_ms".into());
        }
        self.policy_set()?;
        self.validate_standards()?;
        for r in &self.routes {
            if !r.prefix.starts_with('/') {
                return bad(format!("route prefix {:?} must start with `/`", r.prefix));
            }
            if r.min_aal > 3 {
                return bad(format!("route {:?}: min_aal must be 0 to 3", r.prefix));
            }
        }
        // Two rules for one path (under the configured matching) would leave it to the file's
        // order which one applies.
        let compared = |p: &str| match self.route_matching {
            RouteMatching::Folded => crate::path::fold(p).into_owned(),
            RouteMatching::Exact => p.to_owned(),
        };
        let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
        for r in &self.routes {
            if let Some(first) = seen.insert(compared(&r.prefix), &r.prefix) {
                return bad(format!(
                    "route prefixes {first:?} and {:?} name the same path (route_matching = {:?}); merge the two rules",
                    r.prefix, self.route_matching
                ));
            }
        }
        Ok(())
    }

    /// Checks `[csrf]` and `[brute_force]`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the broken rule.
    pub fn validate_standards(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for o in &self.csrf.trusted_origins {
            let ok = (o.starts_with("https://") || o.starts_with("http://"))
                && !o
                    .trim_end_matches('/')
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest.is_empty() || rest.contains('/'));
            if !ok {
                return bad(format!("csrf.trusted_origins: {o:?} must be an origin such as https://app.example.com"));
            }
        }
        let b = &self.brute_force;
        if b.max_failures == 0 || b.max_failures > 1_000_000 {
            return bad("brute_force.max_failures must be between 1 and 1000000".into());
        }
        if b.window_secs == 0 || b.window_secs > 86_400 {
            return bad("brute_force.window_secs must be between 1 and 86400".into());
        }
        if b.max_sources == 0 {
            return bad("brute_force.max_sources must be at least 1".into());
        }
        Ok(())
    }

    /// The presets plus the configured policy classes.
    ///
    /// # Errors
    /// A policy that breaks a rule.
    pub fn policy_set(&self) -> Result<Policies, ConfigError> {
        let mut set = Policies::default();
        for p in &self.policies {
            set.insert(p.clone()).map_err(|e| ConfigError::Invalid(format!("policy {:?}: {e}", p.name)))?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Overrides {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Overrides::from_env(|k| m.get(k).cloned()).expect("env parses")
    }

    #[test]
    fn defaults_are_zero_configuration() {
        let c = Config::load(None, &Overrides::default(), &Overrides::default()).expect("defaults are valid");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.store, StoreUrl::Embedded);
        assert!(!c.dev);
        assert_eq!(c.max_body_bytes, 64 * 1024);
    }

    #[test]
    fn precedence_is_defaults_then_toml_then_env_then_flags() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1000\"\ndata_dir = \"/from/toml\"\nstore = \"memory:\"\nlog = \"debug\"\nrotation_grace = 3\n",
        )
        .expect("write");
        // TOML over defaults.
        let c = Config::load(Some(&file), &Overrides::default(), &Overrides::default()).expect("load");
        assert_eq!((c.listen.port(), c.data_dir.to_str(), c.log.as_str()), (1000, Some("/from/toml"), "debug"));
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES, "untouched keys keep defaults");
        // Environment over TOML.
        let e = env(&[("SESSIOND_LISTEN", "127.0.0.1:2000"), ("SESSIOND_DATA_DIR", "/from/env")]);
        let c = Config::load(Some(&file), &e, &Overrides::default()).expect("load");
        assert_eq!((c.listen.port(), c.data_dir.to_str()), (2000, Some("/from/env")));
        assert_eq!(c.store, StoreUrl::Memory, "TOML value kept where env is silent");
        // Flags over environment.
        let f = Overrides { listen: Some("127.0.0.1:3000".parse().expect("addr")), ..Default::default() };
        let c = Config::load(Some(&file), &e, &f).expect("load");
        assert_eq!((c.listen.port(), c.data_dir.to_str()), (3000, Some("/from/env")));
        assert_eq!(c.rotation_grace, 3);
    }

    #[test]
    fn connection_timeouts_come_from_toml_or_environment_and_are_bounded() {
        let c = Config::load(None, &Overrides::default(), &Overrides::default()).expect("defaults");
        assert_eq!((c.header_read_timeout, c.idle_connection_timeout), (10, 75));
        let c = Config::from_toml("header_read_timeout = 5\nidle_connection_timeout = 30\n", "t.toml").expect("toml");
        assert_eq!((c.header_read_timeout, c.idle_connection_timeout), (5, 30));
        let e = env(&[("SESSIOND_HEADER_READ_TIMEOUT", "2"), ("SESSIOND_IDLE_CONNECTION_TIMEOUT", "3")]);
        let c = Config::load(None, &e, &Overrides::default()).expect("env");
        assert_eq!((c.header_read_timeout, c.idle_connection_timeout), (2, 3));
        for (key, value) in [
            ("header_read_timeout", "0"),
            ("header_read_timeout", "301"),
            ("idle_connection_timeout", "0"),
            ("idle_connection_timeout", "3601"),
        ] {
            let e = Config::from_toml(&format!("{key} = {value}\n"), "t.toml")
                .and_then(|c| c.validate().map(|()| c))
                .expect_err("out of bounds");
            assert!(e.to_string().contains(key), "{key} = {value}: {e}");
        }
        let bad = Overrides::from_env(|k| (k == "SESSIOND_IDLE_CONNECTION_TIMEOUT").then(|| "soon".to_owned()));
        assert!(bad.is_err(), "a non-number is refused");
    }

    #[test]
    fn route_matching_is_folded_unless_exact_is_asked_for() {
        assert_eq!(Config::default().route_matching, RouteMatching::Folded);
        let c = Config::from_toml("route_matching = \"exact\"\n", "t.toml").expect("exact");
        assert_eq!(c.route_matching, RouteMatching::Exact);
        let e = Config::from_toml("route_matching = \"loose\"\n", "t.toml").expect_err("unknown variant");
        assert!(e.to_string().contains("loose"), "{e}");
        // Two rules for one path are refused: folded, `/Admin` and `/admin.` are `/admin`.
        let two = "[[routes]]\nprefix = \"/admin\"\nmin_aal = 2\n[[routes]]\nprefix = \"/Admin.\"\nmin_aal = 1\n";
        let e = Config::from_toml(two, "t.toml").expect("parses").validate().expect_err("same folded path");
        assert!(e.to_string().contains("/Admin."), "{e}");
        let exact = Config::from_toml(&format!("route_matching = \"exact\"\n{two}"), "t.toml").expect("parses");
        exact.validate().expect("different paths when exact");
        let dup = "route_matching = \"exact\"\n[[routes]]\nprefix = \"/a\"\n[[routes]]\nprefix = \"/a\"\n";
        Config::from_toml(dup, "t.toml").expect("parses").validate().expect_err("the same prefix twice");
    }

    #[test]
    fn unknown_toml_keys_are_errors_that_name_the_key() {
        let e = Config::from_toml("listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n", "t.toml").expect_err("unknown");
        assert!(e.to_string().contains("listen_adress"), "{e}");
        let e = Config::from_toml("[tls]\ncrt = \"a\"\n", "t.toml").expect_err("unknown nested");
        assert!(e.to_string().contains("crt"), "{e}");
        let e = Config::from_toml("[[routes]]\nprefix = \"/a\"\nmin_aall = 2\n", "t.toml").expect_err("route");
        assert!(e.to_string().contains("min_aall"), "{e}");
    }

    #[test]
    fn policies_and_routes_parse_from_toml() {
        let c = Config::from_toml(
            r#"
            [[policies]]
            name = "short"
            idle_timeout = 2
            absolute_lifetime = 5
            renewal_fraction = 0.1
            on_limit = "deny_new"
            max_sessions = 2
            persistent = true

            [[routes]]
            prefix = "/admin"
            min_aal = 2
            max_auth_age = 600
            "#,
            "t.toml",
        )
        .expect("parses");
        let set = c.policy_set().expect("valid");
        assert_eq!(set.get("short").map(|p| p.idle_timeout), Some(Duration::from_secs(2)));
        assert!(set.get("default").is_some(), "presets stay");
        let r = &c.routes[0];
        assert!(r.matches("/admin") && r.matches("/admin/users") && !r.matches("/administrator"));
        assert_eq!(r.requirement().max_auth_age, Some(Duration::from_secs(600)));
    }

    #[test]
    fn csrf_brute_force_and_binding_settings_parse_from_toml() {
        let c = Config::from_toml(
            r#"
            [csrf]
            forward_auth = "synchronizer"
            trusted_origins = ["https://app.example.com"]

            [brute_force]
            max_failures = 5
            window_secs = 10

            [[policies]]
            name = "bound"
            idle_timeout = 60
            absolute_lifetime = 600
            renewal_fraction = 0.1
            on_limit = "deny_new"
            binding = { user_agent = "revoke", ip_prefix = "step_up" }

            [[routes]]
            prefix = "/forms"
            csrf = "fetch_metadata"
            "#,
            "t.toml",
        )
        .expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.csrf.forward_auth, CsrfMode::Synchronizer);
        assert_eq!((c.brute_force.max_failures, c.brute_force.window_secs, c.brute_force.enabled), (5, 10, true));
        assert_eq!(c.routes[0].csrf, Some(CsrfMode::FetchMetadata));
        let p = c.policy_set().expect("valid");
        let b = p.get("bound").expect("bound").binding;
        assert_eq!(
            (b.user_agent, b.ip_prefix),
            (sessiond_core::policy::BindingAction::Revoke, sessiond_core::policy::BindingAction::StepUp)
        );
        let d = Config::default();
        assert_eq!(
            (d.csrf.forward_auth, d.brute_force.max_failures, d.brute_force.window_secs),
            (CsrfMode::FetchMetadata, 20, 60)
        );
        for bad in [
            "[csrf]\ntrusted_origins = [\"app.example.com\"]\n",
            "[csrf]\ntrusted_origins = [\"https://app.example.com/path\"]\n",
            "[brute_force]\nmax_failures = 0\n",
            "[brute_force]\nwindow_secs = 0\n",
        ] {
            assert!(Config::from_toml(bad, "t").expect("parses").validate().is_err(), "{bad}");
        }
        let e = Config::from_toml("[csrf]\nmode = \"x\"\n", "t.toml").expect_err("unknown");
        assert!(e.to_string().contains("mode"), "{e}");
    }

    #[test]
    fn invalid_combinations_are_refused() {
        let dev_public =
            Overrides { dev: Some(true), listen: Some("0.0.0.0:1".parse().expect("addr")), ..Default::default() };
        assert!(Config::load(None, &Overrides::default(), &dev_public).is_err());
        let plain_public = Overrides { listen: Some("0.0.0.0:1".parse().expect("addr")), ..Default::default() };
        assert!(Config::load(None, &Overrides::default(), &plain_public).is_err());
        let proxied = Overrides { behind_tls_proxy: Some(true), ..plain_public };
        assert!(Config::load(None, &Overrides::default(), &proxied).is_ok());
        let half_tls = Overrides { tls_cert: Some("c.pem".into()), ..Default::default() };
        assert!(Config::load(None, &Overrides::default(), &half_tls).is_err());
        let bad_policy = Config::from_toml(
            "[[policies]]\nname = \"x\"\nidle_timeout = 10\nabsolute_lifetime = 5\nrenewal_fraction = 0.1\non_limit = \"deny_new\"\n",
            "t",
        )
        .expect("parses");
        assert!(bad_policy.validate().is_err());
    }

    #[test]
    fn store_urls_and_options_parse() {
        for u in
            ["redis://127.0.0.1:6379", "rediss://h:6380/1", "redis+sentinel://s:26379/m", "redis+cluster://a:1,b:2"]
        {
            assert!(matches!(u.parse::<StoreUrl>(), Ok(StoreUrl::Redis(_))), "{u}");
        }
        for u in ["postgres://u@h/db", "postgresql://h/db?sslmode=require"] {
            assert!(matches!(u.parse::<StoreUrl>(), Ok(StoreUrl::Postgres(_))), "{u}");
        }
        let e = "mysql://root:hunter2@h/db".parse::<StoreUrl>().expect_err("unsupported");
        assert!(!e.contains("hunter2"), "{e}");
        let dbg = format!("{:?}", "redis://:hunter2@h".parse::<StoreUrl>().expect("redis"));
        assert!(!dbg.contains("hunter2"), "{dbg}");
        // Nor does a printed configuration show the API key.
        let c = Config { api_key: Some("sdk_hunter2_hunter2_hunter2_hunter2".into()), ..Config::default() };
        let o = Overrides { api_key: c.api_key.clone(), ..Overrides::default() };
        for dbg in [format!("{c:?}"), format!("{o:?}")] {
            assert!(!dbg.contains("hunter2") && dbg.contains("redacted"), "{dbg}");
        }
        // Through a file, the TOML error must not quote the line either (it holds the URL or a
        // key); it gives the position instead.
        for (text, at) in [
            ("near_cache = true\nstore = \"postgresql+ssl://u:hunter2@db/x\"\n", "line 2"),
            ("api_key = \"sdk_hunter2\" trailing\n", "line 1"),
            ("store = \"redis://:hunter2@h\"\nnope = 1\n", "line 2"),
        ] {
            let e = Config::from_toml(text, "f.toml").expect_err("refused").to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains(at), "{e}");
        }
        let c = Config::from_toml(
            "store = \"redis+cluster://a:1,b:2\"\nnear_cache = false\nnear_cache_ttl_ms = 250\n\
             [redis]\nkey_prefix = \"app1\"\n[postgres]\nschema = \"s1\"\n",
            "t.toml",
        )
        .expect("parses");
        assert!(c.store.is_shared() && !c.near_cache);
        assert_eq!((c.near_cache_ttl_ms, c.redis.key_prefix.as_str(), c.postgres.schema.as_str()), (250, "app1", "s1"));
        assert_eq!(c.redis.timeout_ms, 1000, "untouched keys keep defaults");
        let d = Config::default();
        assert!(d.near_cache && d.near_cache_ttl_ms == 30_000);
        let long = Config { near_cache_ttl_ms: 300_001, ..Config::default() };
        assert!(long.validate().is_err());
        let e = Config::from_toml("[redis]\nkey_prefx = \"x\"\n", "t.toml").expect_err("unknown");
        assert!(e.to_string().contains("key_prefx"), "{e}");
        let e = Config::from_toml("[postgres]\nshema = \"x\"\n", "t.toml").expect_err("unknown");
        assert!(e.to_string().contains("shema"), "{e}");
        let zero = Config { near_cache_ttl_ms: 0, ..Config::default() };
        assert!(zero.validate().is_err());
        let c = Config::from_toml("[redis]\nwait_replicas = 1\nwait_timeout_ms = 150\n", "t.toml").expect("parses");
        assert_eq!((c.redis.wait_replicas, c.redis.wait_timeout_ms), (1, 150));
        for (replicas, wait) in [(1, 0), (1, 1000), (1, 5000), (101, 100)] {
            let mut c = Config::default();
            (c.redis.wait_replicas, c.redis.wait_timeout_ms) = (replicas, wait);
            let e = c.validate().expect_err("a wait that blocks forever, outlasts the timeout or is absurd");
            assert!(e.to_string().contains("redis.wait_"), "{e}");
        }
        let e = Overrides::from_env(|k| (k == "SESSIOND_STORE").then(|| "ftp://x".to_owned())).expect_err("bad");
        assert!(e.to_string().contains("SESSIOND_STORE"), "{e}");
    }

    #[test]
    fn environment_values_are_checked_and_secrets_come_from_files() {
        let m: HashMap<&str, &str> = [("SESSIOND_DEV", "maybe")].into();
        let e = Overrides::from_env(|k| m.get(k).map(|v| v.to_string())).expect_err("bad bool");
        assert!(e.to_string().contains("SESSIOND_DEV"));
        let tmp = tempfile::tempdir().expect("tempdir");
        let key = tmp.path().join("key");
        std::fs::write(&key, "sdk_0123456789abcdefXYZ\n").expect("write");
        let e = env(&[("SESSIOND_API_KEY_FILE", key.to_str().expect("utf8"))]);
        let c = Config::load(None, &e, &Overrides::default()).expect("load");
        assert_eq!(c.api_key.as_deref(), Some("sdk_0123456789abcdefXYZ"));
        assert_eq!(Overrides::unknown_env_vars(["SESSIOND_LISTN".into(), "SESSIOND_DEV".into()]), ["SESSIOND_LISTN"]);
    }
}
