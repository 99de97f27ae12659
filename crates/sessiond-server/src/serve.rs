//! Wiring a [`Config`] into a running server: data directory, signing key, store, engine, API
//! keys, router, listener, TLS, the sweeper, graceful shutdown and the final store flush.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::{Router, ServiceExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sessiond_core::{Engine, EngineConfig};

use crate::api_key::ApiKeys;
use crate::app::{install_metrics, router, AppState, HttpSettings};
use crate::backend::Backend;
use crate::config::{Config, ConfigError};
use crate::cookie::CookieSettings;
use crate::data_dir::{self, DataDirError};
use crate::front::Front;
use crate::idle::IdleAcceptor;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How many expired sessions one sweep removes at most.
pub const SWEEP_BATCH: usize = 1000;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Data directory, signing key or API key file.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The store could not be opened or flushed.
    #[error(transparent)]
    Store(#[from] sessiond_core::StoreError),
    /// Binding or serving.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Opens the data directory, the signing key and the store, and builds the engine with the
/// configured policies. Used by `serve` and by the CLI's direct (serverless) commands.
///
/// # Errors
/// Data directory, key, store or policy errors.
pub async fn open_engine(config: &Config) -> Result<(Engine, Backend, data_dir::DirLock), ServeError> {
    data_dir::prepare(&config.data_dir)?;
    let lock = data_dir::DirLock::acquire(&config.data_dir)?;
    let keys = data_dir::key_ring(&config.data_dir, config.signing_key_file.as_deref())?;
    if config.store.is_shared() && config.signing_key_file.is_none() {
        tracing::warn!(
            "the store is shared but no signing_key_file is set: this node signs tokens with the key in its own \
             data directory, and other nodes will refuse them unless they all use the same key \
             (set signing_key_file / SESSIOND_SIGNING_KEY_FILE to one shared file)"
        );
    }
    // The recorder goes first: the stores and the near-cache register their metric handles
    // once, when they are built.
    let _ = install_metrics();
    let backend = Backend::connect(config).await?;
    let engine = Engine::builder(backend.store(), keys)
        .with_policies(config.policy_set()?)
        .with_config(EngineConfig { rotation_grace: Duration::from_secs(config.rotation_grace) })
        .build();
    Ok((engine, backend, lock))
}

/// Loads `cert` (PEM chain) and `key` (PEM) into a rustls server configuration (ring
/// provider, TLS 1.2 and 1.3, ALPN `http/1.1`).
///
/// # Errors
/// Unreadable or invalid PEM; a key that does not match.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!("{}: no certificate found", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A bound, ready-to-run server.
pub struct Server {
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    timeouts: ConnectionTimeouts,
    engine: Option<Engine>,
    backend: Option<Backend>,
    state: Option<(AppState, std::path::PathBuf)>,
    _lock: Option<data_dir::DirLock>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Server {
    /// Prepares everything `config` asks for and binds the listener.
    ///
    /// # Errors
    /// Any setup failure; the address in use.
    pub async fn bind(config: &Config) -> Result<Self, ServeError> {
        config.validate()?;
        let (engine, backend, lock) = open_engine(config).await?;
        let file_keys = ApiKeys::load(&config.data_dir)?;
        let mut env_keys = ApiKeys::default();
        if let Some(k) = &config.api_key {
            env_keys.add_secret("environment", k);
        }
        if file_keys.is_empty() && env_keys.is_empty() {
            tracing::warn!(
                "no API key configured: every service call will be refused; create one with \
                 `sessiond api-key create --name NAME` or set SESSIOND_API_KEY"
            );
        }
        let cookie = if config.dev {
            tracing::warn!("DEVELOPMENT MODE: plain HTTP, cookie `sid` without Secure. Never use this in production.");
            CookieSettings::development()
        } else {
            CookieSettings::production()
        };
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(c), Some(k)) => Some(tls_config(c, k)?),
            _ => None,
        };
        let http = HttpSettings {
            cookie,
            routes: config.routes.clone(),
            route_matching: config.route_matching,
            trust_forwarded_headers: config.trust_forwarded_headers,
            tls: tls.is_some(),
            max_body_bytes: config.max_body_bytes,
            csrf: config.csrf.clone(),
            brute_force: config.brute_force.clone(),
        };
        let mut state = AppState::new(engine.clone(), env_keys, http);
        state.replace_file_keys(file_keys);
        if let Some(h) = install_metrics() {
            state = state.with_metrics(h);
        }
        let listener = bind(config.listen)?;
        tracing::info!(
            store = backend.kind(),
            near_cache = backend.near_cache().is_some(),
            data_dir = %config.data_dir.display(),
            "sessiond ready"
        );
        Ok(Self {
            listener,
            router: router(state.clone()),
            tls,
            timeouts: ConnectionTimeouts {
                header_read: Duration::from_secs(config.header_read_timeout),
                idle: Duration::from_secs(config.idle_connection_timeout),
            },
            engine: Some(engine),
            backend: Some(backend),
            state: Some((state, config.data_dir.clone())),
            _lock: Some(lock),
        })
    }

    /// A server for any router (the benchmark's empty handler), without engine or store.
    ///
    /// # Errors
    /// The address in use.
    pub fn for_router(
        addr: SocketAddr,
        router: Router,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Self, ServeError> {
        Ok(Self {
            listener: bind(addr)?,
            router,
            tls,
            timeouts: ConnectionTimeouts::default(),
            engine: None,
            backend: None,
            state: None,
            _lock: None,
        })
    }

    /// The bound address (useful with port 0).
    ///
    /// # Errors
    /// When the socket cannot tell.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener.local_addr().map_err(|source| ServeError::Io { context: "local address".into(), source })
    }

    /// `http://addr` or `https://addr`.
    ///
    /// # Errors
    /// As [`Server::local_addr`].
    pub fn url(&self) -> Result<String, ServeError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(format!("{scheme}://{}", self.local_addr()?))
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish (at most
    /// [`SHUTDOWN_GRACE`]), stops the sweeper and flushes the store.
    ///
    /// # Errors
    /// Serving or the final flush failed.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let sweeper = self.engine.clone().map(|e| tokio::spawn(sweep_forever(e)));
        let reloader = self.state.clone().map(|(s, dir)| tokio::spawn(reload_api_keys(s, dir)));
        // Forward-auth's common case is answered in front of the router (`Front`); the
        // benchmark's empty handler goes through the same outer service.
        let front = match self.state.as_ref() {
            Some((state, _)) => Front::new(state.clone(), self.router),
            None => Front::router_only(self.router),
        };
        let make = ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(front);
        // One server for both transports, with the graceful shutdown of `axum_server::Handle`:
        // in-flight requests get `SHUTDOWN_GRACE` to finish.
        let handle = axum_server::Handle::new();
        let h = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            h.graceful_shutdown(Some(SHUTDOWN_GRACE));
        });
        let t = self.timeouts;
        let result = match self.tls {
            Some(cfg) => {
                let tls = axum_server::tls_rustls::RustlsAcceptor::new(
                    axum_server::tls_rustls::RustlsConfig::from_config(cfg),
                )
                .acceptor(IdleAcceptor::new(t.idle));
                let mut server = axum_server::from_tcp(self.listener).acceptor(tls).handle(handle);
                harden(server.http_builder(), t);
                server.serve(make).await
            }
            None => {
                let mut server =
                    axum_server::from_tcp(self.listener).acceptor(IdleAcceptor::new(t.idle)).handle(handle);
                harden(server.http_builder(), t);
                server.serve(make).await
            }
        };
        for task in [sweeper, reloader].into_iter().flatten() {
            task.abort();
        }
        if let Some(b) = &self.backend {
            b.flush().await?;
            tracing::info!(store = b.kind(), "store flushed; bye");
        }
        result.map_err(|source| ServeError::Io { context: "serving".into(), source })
    }
}

/// How long connections may stall or stay silent ([`Config::header_read_timeout`],
/// [`Config::idle_connection_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTimeouts {
    /// A request's head must arrive within this of its first byte; a keep-alive connection
    /// waits this long for its next request.
    pub header_read: Duration,
    /// A connection silent for this long (at most twice this) is closed.
    pub idle: Duration,
}

impl Default for ConnectionTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(crate::config::DEFAULT_HEADER_READ_TIMEOUT),
            idle: Duration::from_secs(crate::config::DEFAULT_IDLE_CONNECTION_TIMEOUT),
        }
    }
}

/// Connection limits against clients that start a request and stall (slowloris): a
/// request's head must arrive within `t.header_read` of its first byte, or the connection
/// is closed. (Silent connections are closed by [`IdleAcceptor`] after `t.idle`; a body that
/// stalls is a 408 after [`crate::app::BODY_READ_TIMEOUT`]; TLS handshakes time out in
/// `axum_server`'s acceptor.)
fn harden(b: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>, t: ConnectionTimeouts) {
    b.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(t.header_read);
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let l = std::net::TcpListener::bind(addr)
        .map_err(|source| ServeError::Io { context: format!("cannot listen on {addr}"), source })?;
    l.set_nonblocking(true).map_err(|source| ServeError::Io { context: "listener".into(), source })?;
    Ok(l)
}

/// Removes expired sessions every second, in batches of [`SWEEP_BATCH`], off the request path.
///
/// Runs on every node, also over a shared store: the Redis and PostgreSQL sweeps are safe to
/// run concurrently (Redis removes each session inside its subject's script, which re-checks
/// the deadline and reports only what it removed itself; PostgreSQL deletes with
/// `FOR UPDATE SKIP LOCKED … RETURNING`), so every expiry is reported exactly once.
pub async fn sweep_forever(engine: Engine) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match engine.sweep(SWEEP_BATCH).await {
                Ok(n) => {
                    metrics::counter!("sessiond_sessions_swept_total").increment(n as u64);
                    if n < SWEEP_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sweep failed");
                    break;
                }
            }
        }
    }
}

/// Picks up keys created by `sessiond api-key create` while the server runs (checks the
/// file's modification time every 2 seconds).
async fn reload_api_keys(state: AppState, dir: std::path::PathBuf) {
    let path = dir.join(crate::api_key::API_KEYS_FILE);
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = mtime(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let now = mtime(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match ApiKeys::load(&dir) {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "API key file changed; keys reloaded");
                state.replace_file_keys(keys);
            }
            Err(e) => tracing::warn!(error = %e, "API key file changed but could not be read; keeping the old keys"),
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
