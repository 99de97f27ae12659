//! The session store behind the server: the embedded durable store (default), memory, or a
//! store shared by many stateless nodes (Redis, PostgreSQL) with a per-node near-cache kept
//! honest by the store's pushed invalidations.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sessiond_core::store::memory::MemoryStore;
use sessiond_core::store::near_cache::{Invalidation, NearCache};
use sessiond_core::time::SystemClock;
use sessiond_core::{SessionStore, StoreError};
use sessiond_store_embedded::{EmbeddedOptions, EmbeddedStore};
use sessiond_store_postgres::{PostgresOptions, PostgresStore};
use sessiond_store_redis::{RedisOptions, RedisStore};
use tokio::sync::broadcast;

use crate::config::{Config, StoreUrl};

/// Directory of the embedded store inside the data directory.
pub const STORE_DIR: &str = "store";

/// An opened store, with the operations that are not part of [`SessionStore`].
#[derive(Clone, Debug)]
pub enum Backend {
    /// The embedded durable store.
    Embedded(Arc<EmbeddedStore>),
    /// The in-memory store (lost on exit).
    Memory(Arc<MemoryStore>),
    /// Redis, shared by every node; with the near-cache unless it is turned off.
    Redis(Arc<RedisStore>, Option<Arc<NearCache>>),
    /// PostgreSQL, shared by every node; with the near-cache unless it is turned off.
    Postgres(Arc<PostgresStore>, Option<Arc<NearCache>>),
}

impl Backend {
    /// Opens a local store (embedded or memory); the embedded one lives in `data_dir/store`.
    /// Blocking (the embedded store loads its index at open): call it at startup. Shared
    /// stores are opened with [`Backend::connect`].
    ///
    /// # Errors
    /// When the embedded store cannot be opened, or `url` names a shared store.
    pub fn open(url: &StoreUrl, data_dir: &Path) -> Result<Self, StoreError> {
        Ok(match url {
            StoreUrl::Embedded => {
                Backend::Embedded(Arc::new(EmbeddedStore::open(data_dir.join(STORE_DIR), EmbeddedOptions::default())?))
            }
            StoreUrl::Memory => Backend::Memory(Arc::new(MemoryStore::new())),
            StoreUrl::Redis(_) | StoreUrl::Postgres(_) => {
                return Err(StoreError::Unavailable {
                    message: "a shared store is opened with Backend::connect".into(),
                    source: None,
                })
            }
        })
    }

    /// Opens the store `config.store` names: local ones as [`Backend::open`] (on a blocking
    /// thread), shared ones by connecting, wrapping them in a near-cache (unless
    /// `near_cache = false`) and spawning the task that feeds it the store's invalidations.
    /// Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// The store cannot be opened or reached within its connect timeout, or the URL, prefix
    /// or schema is invalid.
    pub async fn connect(config: &Config) -> Result<Self, StoreError> {
        match &config.store {
            StoreUrl::Redis(url) => {
                let r = &config.redis;
                let opts = RedisOptions {
                    key_prefix: r.key_prefix.clone(),
                    timeout: Duration::from_millis(r.timeout_ms),
                    connect_timeout: Duration::from_millis(r.connect_timeout_ms),
                    pool_size: r.pool_size,
                    wait_replicas: r.wait_replicas,
                    wait_timeout: Duration::from_millis(r.wait_timeout_ms),
                    invalidations: config.near_cache,
                    ..RedisOptions::default()
                };
                let store = Arc::new(RedisStore::connect(url, opts).await?);
                let cache = config.near_cache.then(|| {
                    // Subscribe first, then read the channel state: a loss after this point
                    // reaches the receiver, and is applied after the initial trust.
                    let rx = store.invalidations();
                    let cache = near_cache(store.clone(), config);
                    if store.listening() {
                        cache.invalidate(&Invalidation::Resync);
                    }
                    feed(rx, Arc::downgrade(&cache), from_redis);
                    cache
                });
                Ok(Backend::Redis(store, cache))
            }
            StoreUrl::Postgres(url) => {
                let p = &config.postgres;
                let opts = PostgresOptions {
                    schema: p.schema.clone(),
                    timeout: Duration::from_millis(p.timeout_ms),
                    connect_timeout: Duration::from_millis(p.connect_timeout_ms),
                    pool_size: p.pool_size,
                    invalidations: config.near_cache,
                    ..PostgresOptions::default()
                };
                let store = Arc::new(PostgresStore::connect(url, opts).await?);
                let cache = config.near_cache.then(|| {
                    let rx = store.invalidations();
                    let cache = near_cache(store.clone(), config);
                    if store.listening() {
                        cache.invalidate(&Invalidation::Resync);
                    }
                    feed(rx, Arc::downgrade(&cache), from_postgres);
                    cache
                });
                Ok(Backend::Postgres(store, cache))
            }
            url => {
                let (url, dir) = (url.clone(), config.data_dir.clone());
                tokio::task::spawn_blocking(move || Backend::open(&url, &dir)).await.map_err(|e| {
                    StoreError::Unavailable { message: format!("opening the store failed: {e}"), source: None }
                })?
            }
        }
    }

    /// The store as the engine uses it (the near-cache when there is one).
    pub fn store(&self) -> Arc<dyn SessionStore> {
        match self {
            Backend::Embedded(s) => s.clone(),
            Backend::Memory(s) => s.clone(),
            Backend::Redis(_, Some(c)) | Backend::Postgres(_, Some(c)) => c.clone(),
            Backend::Redis(s, None) => s.clone(),
            Backend::Postgres(s, None) => s.clone(),
        }
    }

    /// The near-cache, when the store is shared and the cache is on.
    pub fn near_cache(&self) -> Option<&Arc<NearCache>> {
        match self {
            Backend::Redis(_, c) | Backend::Postgres(_, c) => c.as_ref(),
            _ => None,
        }
    }

    /// A short name for logs: `embedded`, `memory`, `redis` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Embedded(_) => "embedded",
            Backend::Memory(_) => "memory",
            Backend::Redis(..) => "redis",
            Backend::Postgres(..) => "postgres",
        }
    }

    /// Writes pending (deferred) work: the embedded store's queued renewals and events, the
    /// Redis store's queued events (its outbox); a no-op elsewhere (the other stores commit
    /// every write, events included, before acknowledging it).
    ///
    /// # Errors
    /// When the final commit fails, or Redis does not take the events in time.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self {
            Backend::Embedded(s) => s.flush().await,
            Backend::Redis(s, ..) => s.flush().await,
            _ => Ok(()),
        }
    }

    /// Exports every session and epoch as JSON lines (embedded store only).
    ///
    /// # Errors
    /// Store or write failures; other stores have their own backup tools.
    pub async fn export_jsonl(&self, w: impl std::io::Write + Send) -> Result<u64, StoreError> {
        match self {
            Backend::Embedded(s) => s.export_jsonl(w).await,
            _ => Err(StoreError::Corrupt("export needs the embedded store".into())),
        }
    }

    /// Imports JSON lines written by [`Backend::export_jsonl`] (embedded store only).
    ///
    /// # Errors
    /// A bad line, or store failures.
    pub async fn import_jsonl(&self, r: impl std::io::BufRead + Send) -> Result<u64, StoreError> {
        match self {
            Backend::Embedded(s) => s.import_jsonl(r).await,
            _ => Err(StoreError::Corrupt("import needs the embedded store".into())),
        }
    }
}

fn near_cache(store: Arc<dyn SessionStore>, config: &Config) -> Arc<NearCache> {
    Arc::new(NearCache::new(
        store,
        Arc::new(SystemClock),
        Duration::from_millis(config.near_cache_ttl_ms),
        config.near_cache_max_entries,
    ))
}

fn from_redis(i: sessiond_store_redis::Invalidation) -> Invalidation {
    use sessiond_store_redis::Invalidation as R;
    match i {
        R::Session { id, .. } => Invalidation::Session(id),
        R::Subject { tenant, subject } => Invalidation::Subject { tenant, subject },
        R::Resync => Invalidation::Resync,
        R::Lost => Invalidation::Lost,
        // A kind this build does not know: drop everything rather than guess.
        _ => Invalidation::All,
    }
}

fn from_postgres(i: sessiond_store_postgres::Invalidation) -> Invalidation {
    use sessiond_store_postgres::Invalidation as P;
    match i {
        P::Session { id, .. } => Invalidation::Session(id),
        P::Subject { tenant, subject } => Invalidation::Subject { tenant, subject },
        P::Resync => Invalidation::Resync,
        P::Lost => Invalidation::Lost,
        _ => Invalidation::All,
    }
}

/// Feeds the store's invalidations to the cache until the store or the cache goes. A lagged
/// receiver missed messages: drop everything (the channel itself is still up). A closed
/// one will never hear again: stop trusting the cache.
fn feed<T: Clone + Send + 'static>(mut rx: broadcast::Receiver<T>, cache: Weak<NearCache>, map: fn(T) -> Invalidation) {
    tokio::spawn(async move {
        loop {
            let (inv, closed) = match rx.recv().await {
                Ok(v) => (map(v), false),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "near-cache invalidations lagged; dropping the whole cache");
                    (Invalidation::All, false)
                }
                Err(broadcast::error::RecvError::Closed) => (Invalidation::Lost, true),
            };
            let Some(cache) = cache.upgrade() else { return };
            let kind = match &inv {
                Invalidation::Session(_) => "session",
                Invalidation::Subject { .. } => "subject",
                Invalidation::All => "all",
                Invalidation::Lost => "lost",
                Invalidation::Resync => "resync",
                _ => "other",
            };
            metrics::counter!("sessiond_near_cache_invalidations_total", "kind" => kind).increment(1);
            match &inv {
                Invalidation::Lost if cache.is_trusted() => {
                    tracing::warn!("invalidation channel lost: the near-cache is bypassed until it resynchronises");
                }
                Invalidation::Resync if !cache.is_trusted() => {
                    tracing::info!("invalidation channel (re)subscribed: the near-cache is trusted again");
                }
                _ => {}
            }
            cache.invalidate(&inv);
            if closed {
                return;
            }
        }
    });
}
