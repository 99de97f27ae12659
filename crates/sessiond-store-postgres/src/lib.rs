//! # sessiond-store-postgres
//!
//! A [`SessionStore`] on PostgreSQL (11 or later), built on `tokio-postgres` with a
//! `deadpool-postgres` pool.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sessiond_core::StoreError> {
//! use sessiond_store_postgres::{PostgresOptions, PostgresStore};
//! let store = PostgresStore::connect(
//!     "postgres://sessiond@db.internal/sessiond?sslmode=require",
//!     PostgresOptions { schema: "sessiond".into(), ..Default::default() },
//! )
//! .await?;
//! let mut changes = store.invalidations();
//! # let _ = changes.try_recv();
//! # Ok(()) }
//! ```
//!
//! How it keeps the [`SessionStore`] security contract (details in `docs/postgres-store.md`):
//!
//! - Each write is one transaction: the session row, its token hashes (a table with
//!   `ON DELETE CASCADE`), the subject index (an index on the same row) and the deadline index
//!   change together, and the invalidation `pg_notify` is sent only if it commits.
//! - `create` with a limit takes a transaction-scoped advisory lock on (schema, tenant,
//!   subject) before counting, so parallel creates on any number of connections or nodes
//!   queue up instead of all seeing room.
//! - `update` is `UPDATE … WHERE id = $1 AND version = $2`; `renew` writes the caller's copy
//!   renewed only while the row has the copy's version and an older renewal, else locks the
//!   row (`FOR UPDATE`); it only moves deadlines forward; neither ever inserts.
//! - The sweeper deletes in bounded batches with `FOR UPDATE SKIP LOCKED`.
//! - Event appends serialise on an advisory lock, so cursors become visible in order and a
//!   reader never skips an event that commits late.
//! - An unreachable or slow server is [`StoreError::Unavailable`] after
//!   [`PostgresOptions::timeout`]; the pool replaces broken connections by itself.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod schema;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sessiond_core::event::Event;
use sessiond_core::id::SessionId;
use sessiond_core::policy::LimitAction;
use sessiond_core::record::SessionRecord;
use sessiond_core::store::heartbeat::Heartbeat;
use sessiond_core::store::{expiry_reason, CreateOutcome, Expired, LimitRule, Lookup, Page, PageCursor, UpdateOutcome};
use sessiond_core::time::UnixMs;
use sessiond_core::token::TokenHash;
use sessiond_core::{SessionStore, StoreError};
use tokio::sync::{broadcast, watch};
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, NoTls, Row, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Settings of a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Schema holding the tables (created if missing): a lowercase identifier of at most 40
    /// bytes. Default `sessiond`. Tests use one schema per store to isolate themselves.
    pub schema: String,
    /// Upper bound of every store operation, waiting for a pooled connection included; past
    /// it the operation fails with [`StoreError::Unavailable`]. Default 2 s: a session check
    /// must fail fast, not hang.
    pub timeout: Duration,
    /// How long [`PostgresStore::connect`] waits for the server. Default 5 s.
    pub connect_timeout: Duration,
    /// Maximum pooled connections. Default 16.
    pub pool_size: usize,
    /// Whether to `LISTEN` for invalidations (see [`PostgresStore::invalidations`]).
    /// Default `true`.
    pub invalidations: bool,
    /// How often the listener sends itself a heartbeat notification over its own connection
    /// and checks that the previous ones came back. When none came back for three periods,
    /// the listener is declared lost ([`Invalidation::Lost`]: near-caches stop answering) and
    /// reconnects; [`Invalidation::Resync`] follows once it listens again. This catches a
    /// connection that died silently (a half-open TCP connection, a stalled proxy), which no
    /// socket error reports. Default 1 s; zero turns the heartbeat off.
    pub heartbeat: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "sessiond".into(),
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            pool_size: 16,
            invalidations: true,
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// A change other nodes must drop from their near-caches, received through `LISTEN`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Invalidation {
    /// The listener (re)connected: notifications may have been lost, drop every cached
    /// entry.
    Resync,
    /// A session was updated, deleted, evicted or swept: drop it and these token hashes.
    Session {
        /// The session.
        id: SessionId,
        /// Every token hash it was, or is, found under.
        token_hashes: Vec<TokenHash>,
    },
    /// A subject's security epoch changed: drop all its sessions.
    Subject {
        /// The tenant.
        tenant: String,
        /// The subject.
        subject: String,
    },
    /// The listener's connection ended: notifications may be missed from now on, so stop
    /// trusting near-caches until the next [`Invalidation::Resync`]. Never accepted from the
    /// wire.
    Lost,
}

/// What a notification means for a listener: an invalidation to pass on, one of its own
/// heartbeats (`Err(())`), or nothing (garbage, another listener's heartbeat, or a local state
/// such as `lost` that must never come from the wire).
fn interpret(payload: &str, beat: &Heartbeat) -> Result<Option<Invalidation>, ()> {
    if beat.is_own(payload) {
        return Err(());
    }
    Ok(match serde_json::from_str::<Invalidation>(payload) {
        Ok(inv @ (Invalidation::Session { .. } | Invalidation::Subject { .. })) => Some(inv),
        _ => None,
    })
}

/// Whether the listener is up; [`Invalidation::Lost`] and [`Invalidation::Resync`] are sent
/// under the same lock, so the flag and the receivers always agree.
#[derive(Default)]
struct Link {
    listening: std::sync::Mutex<bool>,
}

impl Link {
    fn set(&self, listening: bool, tx: &broadcast::Sender<Invalidation>) {
        let mut g = self.listening.lock().unwrap_or_else(|e| e.into_inner());
        *g = listening;
        let _ = tx.send(if listening { Invalidation::Resync } else { Invalidation::Lost });
    }

    fn get(&self) -> bool {
        *self.listening.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The PostgreSQL session store. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    sql: Sql,
    channel: String,
    opts: PostgresOptions,
    invalidations: broadcast::Sender<Invalidation>,
    link: Arc<Link>,
    /// Dropped with the store: stops the listener task.
    _shutdown: watch::Sender<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("schema", &self.inner.opts.schema).finish_non_exhaustive()
    }
}

/// The statements, with the (validated) schema name filled in.
struct Sql {
    subject_lock: String,
    live_of_subject: String,
    evict: String,
    insert: String,
    insert_hashes: String,
    find_by_token: String,
    find_by_id: String,
    update: String,
    current: String,
    hashes_of: String,
    drop_hashes: String,
    count_hashes: String,
    lock_record: String,
    renew: String,
    renew_copy: String,
    delete: String,
    delete_subject: String,
    tenant_ids: String,
    delete_ids: String,
    list: String,
    epoch: String,
    bump: String,
    sweep: String,
    events_lock: String,
    append: String,
    read: String,
}

impl Sql {
    fn new(s: &str) -> Self {
        let t = |name: &str| format!(r#""{s}".{name}"#);
        let (sessions, hashes, epochs, events) = (t("sessions"), t("token_hashes"), t("epochs"), t("events"));
        let lookup = format!(
            "SELECT s.record, COALESCE(e.epoch, 0) FROM {sessions} s \
             LEFT JOIN {epochs} e ON e.tenant = s.tenant AND e.subject = s.subject"
        );
        Self {
            subject_lock: "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))".into(),
            // With the subject's epoch, read by the same statement (a bump committed after it
            // only makes the count conservative): `create` leaves out the sessions an epoch
            // bump ended. Records are decoded in Rust, not cast to jsonb in SQL, which fails
            // on valid JSON holding `\u0000` and would lock the subject out of new sessions.
            live_of_subject: format!(
                "SELECT id, created_at, last_seen_at, record, \
                 COALESCE((SELECT epoch FROM {epochs} WHERE tenant = $1 AND subject = $2), 0) \
                 FROM {sessions} WHERE tenant = $1 AND subject = $2 AND deadline > $3"
            ),
            evict: format!("DELETE FROM {sessions} WHERE id = ANY($1) RETURNING record"),
            insert: format!(
                "INSERT INTO {sessions} (id, tenant, subject, created_at, last_seen_at, deadline, version, record) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING"
            ),
            insert_hashes: format!(
                "INSERT INTO {hashes} (hash, session_id) SELECT h, $2 FROM unnest($1::bytea[]) AS h \
                 ON CONFLICT (hash) DO NOTHING"
            ),
            find_by_token: format!("{lookup} JOIN {hashes} t ON t.session_id = s.id WHERE t.hash = $1"),
            find_by_id: format!("{lookup} WHERE s.id = $1"),
            update: format!(
                "UPDATE {sessions} SET record = $3, version = $4, created_at = $5, last_seen_at = $6, deadline = $7 \
                 WHERE id = $1 AND version = $2 AND tenant = $8 AND subject = $9"
            ),
            current: format!("SELECT record, tenant, subject FROM {sessions} WHERE id = $1"),
            hashes_of: format!("SELECT hash FROM {hashes} WHERE session_id = $1"),
            drop_hashes: format!("DELETE FROM {hashes} WHERE session_id = $1 AND NOT (hash = ANY($2))"),
            count_hashes: format!("SELECT count(*) FROM {hashes} WHERE session_id = $1 AND hash = ANY($2)"),
            lock_record: format!("SELECT record FROM {sessions} WHERE id = $1 FOR UPDATE"),
            renew: format!("UPDATE {sessions} SET record = $2, last_seen_at = $3, deadline = $4 WHERE id = $1"),
            renew_copy: format!(
                "UPDATE {sessions} SET record = $2, last_seen_at = $3, deadline = $4
                 WHERE id = $1 AND version = $5 AND last_seen_at < $3 AND deadline <= $4"
            ),
            delete: format!("DELETE FROM {sessions} WHERE id = $1 RETURNING record"),
            delete_subject: format!(
                "DELETE FROM {sessions} WHERE tenant = $1 AND subject = $2 AND ($3::bytea IS NULL OR id <> $3) \
                 RETURNING record"
            ),
            tenant_ids: format!("SELECT id FROM {sessions} WHERE tenant = $1"),
            delete_ids: format!("DELETE FROM {sessions} WHERE id = ANY($1) RETURNING record"),
            list: format!(
                "SELECT record FROM {sessions} WHERE tenant = $1 AND subject = $2 AND deadline > $3 \
                 AND (created_at, id) > ($4, $5) ORDER BY created_at, id LIMIT $6"
            ),
            epoch: format!("SELECT epoch FROM {epochs} WHERE tenant = $1 AND subject = $2"),
            bump: format!(
                "INSERT INTO {epochs} (tenant, subject, epoch) VALUES ($1, $2, 1) \
                 ON CONFLICT (tenant, subject) DO UPDATE SET epoch = {epochs}.epoch + 1 RETURNING epoch"
            ),
            sweep: format!(
                "DELETE FROM {sessions} WHERE id IN (SELECT id FROM {sessions} WHERE deadline <= $1 \
                 ORDER BY deadline LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING record"
            ),
            events_lock: "SELECT pg_advisory_xact_lock(hashtext($1))".into(),
            append: format!(
                "INSERT INTO {events} (body) SELECT b FROM unnest($1::text[]) WITH ORDINALITY AS u(b, o) ORDER BY o"
            ),
            read: format!("SELECT cursor, body FROM {events} WHERE cursor > $1 ORDER BY cursor LIMIT $2"),
        }
    }
}

fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::unavailable("postgres query failed", e)
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::unavailable("no postgres connection", e)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("postgres store: {what}"))
}

/// Milliseconds and counters as `bigint` (saturating: far-future deadlines stay far).
fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn record_of(row: &Row) -> Option<SessionRecord> {
    row.try_get::<_, String>(0).ok().and_then(|t| SessionRecord::decode(t.as_bytes()))
}

fn records(rows: &[Row]) -> Vec<Arc<SessionRecord>> {
    rows.iter().filter_map(record_of).map(Arc::new).collect()
}

fn hashes(r: &SessionRecord) -> Vec<Vec<u8>> {
    r.lookup_hashes().map(|h| h.0.to_vec()).collect()
}

fn json(r: &SessionRecord) -> Result<String, StoreError> {
    String::from_utf8(r.encode()).map_err(|_| corrupt("record encoding is not UTF-8"))
}

enum Tls {
    None,
    Rustls(MakeRustlsConnect),
}

fn rustls_connector() -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::unavailable("TLS configuration", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

impl PostgresStore {
    /// Connects to PostgreSQL at `url` (a `postgres://` / `postgresql://` URL or a libpq
    /// `key=value` string), creates or migrates the schema, and starts the listener.
    /// TLS (rustls, system roots, certificate verified) is used with `sslmode=require`;
    /// otherwise the connection is plain TCP.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL or schema name is invalid, the server
    /// cannot be reached within [`PostgresOptions::connect_timeout`], or migration fails;
    /// [`StoreError::Corrupt`] when the schema was written by a newer build.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let config_error = |message: String| StoreError::Unavailable { message, source: None };
        if !schema::valid_schema(&options.schema) {
            return Err(config_error("the schema must be a lowercase SQL identifier of at most 40 bytes".into()));
        }
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|_| config_error("invalid PostgreSQL URL".into()))?;
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("sessiond");
        }
        let tls = if config.get_ssl_mode() == SslMode::Require { Tls::Rustls(rustls_connector()?) } else { Tls::None };
        // `Fast`, never `Clean`: `Clean` runs `RESET ALL`, which would undo the
        // `synchronous_commit` pinned by the `post_create` hook below.
        let mcfg = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match &tls {
            Tls::None => Manager::from_config(config.clone(), NoTls, mcfg),
            Tls::Rustls(c) => Manager::from_config(config.clone(), c.clone(), mcfg),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.timeout))
            .runtime(Runtime::Tokio1)
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move {
                    let row = client.query_one(RAISE_SYNCHRONOUS_COMMIT, &[]).await.map_err(HookError::Backend)?;
                    let raised: bool = row.try_get(0).map_err(HookError::Backend)?;
                    if raised {
                        static WARNED: std::sync::Once = std::sync::Once::new();
                        WARNED.call_once(|| {
                            tracing::warn!(
                                "PostgreSQL synchronous_commit is off for sessiond's role or database: sessiond sets it \
                                 to on for its own connections, so that a confirmed revocation survives a crash \
                                 (docs/postgres-store.md, \"Durability\")"
                            );
                        });
                    }
                    Ok::<(), HookError>(())
                })
            }))
            .build()
            .map_err(|e| StoreError::unavailable("postgres pool", e))?;

        let s = options.schema.clone();
        let migrated = tokio::time::timeout(options.connect_timeout.saturating_mul(4), async {
            let mut obj = pool.get().await.map_err(pool_err)?;
            let client: &mut tokio_postgres::Client = &mut obj;
            schema::migrate(client, &s).await.map_err(|e| match e {
                schema::MigrateError::Db(e) => StoreError::unavailable("schema migration failed", e),
                schema::MigrateError::Newer(v) => {
                    corrupt(&format!("schema {s} is at version {v}, newer than this build ({})", schema::CURRENT))
                }
            })
        })
        .await
        .map_err(|_| config_error("postgres connection or migration timed out".into()))??;
        if migrated < schema::CURRENT {
            tracing::info!(schema = %s, from = migrated, to = schema::CURRENT, "migrated the sessiond schema");
        }

        let store_settings = settings_of(&pool).await?;
        if let Some(gap) = durability_gap(&store_settings) {
            tracing::warn!("PostgreSQL {gap} (docs/postgres-store.md, \"Durability\")");
        }

        let channel = format!("sessiond_inv_{s}");
        let (tx, _) = broadcast::channel(1024);
        let (shutdown, shutdown_rx) = watch::channel(());
        let link = Arc::new(Link::default());
        if options.invalidations {
            // A silently dead listener connection (no FIN, no RST) would leave caches trusted
            // while notifications vanish: the heartbeat detects it within three periods, and
            // TCP keepalives (about 11 s) back it up when the heartbeat is off.
            let mut config = config;
            config
                .application_name(format!("sessiond-listener-{s}"))
                .keepalives(true)
                .keepalives_idle(Duration::from_secs(5))
                .keepalives_interval(Duration::from_secs(2))
                .keepalives_retries(3);
            let timing = ListenTiming { beat: options.heartbeat, connect: options.connect_timeout };
            tokio::spawn(listen(config, tls, channel.clone(), timing, tx.clone(), link.clone(), shutdown_rx));
        }
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                sql: Sql::new(&s),
                channel,
                opts: options,
                invalidations: tx,
                link,
                _shutdown: shutdown,
            }),
        })
    }

    /// Changes committed through any store on the same database and schema (this one
    /// included), for near-caches. [`Invalidation::Lost`] is sent when the listener's
    /// connection ends, [`Invalidation::Resync`] once `LISTEN` is acknowledged after every
    /// (re)connection: notifications sent in between are lost, so drop everything cached.
    /// Nothing is received when [`PostgresOptions::invalidations`] is off.
    pub fn invalidations(&self) -> broadcast::Receiver<Invalidation> {
        self.inner.invalidations.subscribe()
    }

    /// Whether the listener is up now (between a [`Invalidation::Resync`] and the next
    /// [`Invalidation::Lost`]). A consumer that calls [`PostgresStore::invalidations`] first
    /// and then sees `true` here may trust its cache at once: a later loss reaches its
    /// receiver.
    pub fn listening(&self) -> bool {
        self.inner.link.get()
    }

    /// The durability settings in effect on this store's connections (`fsync` and
    /// `synchronous_commit` as a pooled connection sees them).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when PostgreSQL cannot be reached.
    pub async fn durability(&self) -> Result<Durability, StoreError> {
        self.op("durability", settings_of(&self.inner.pool)).await
    }

    /// The schema name.
    pub fn schema(&self) -> &str {
        &self.inner.opts.schema
    }

    async fn op<T>(&self, what: &'static str, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.opts.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable {
                message: format!("postgres {what} timed out after {:?}", self.inner.opts.timeout),
                source: None,
            }),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(pool_err)
    }

    /// Queues a notification inside `tx`: delivered only if it commits.
    async fn notify(&self, tx: &Transaction<'_>, inv: &Invalidation) -> Result<(), StoreError> {
        let payload = serde_json::to_string(inv).map_err(|_| corrupt("invalidation encoding"))?;
        tx.query_one("SELECT pg_notify($1, $2)", &[&self.inner.channel, &payload]).await.map_err(db)?;
        Ok(())
    }

    /// One notification per removed session, queued in one round trip.
    async fn notify_removed(&self, tx: &Transaction<'_>, gone: &[Arc<SessionRecord>]) -> Result<(), StoreError> {
        if gone.is_empty() {
            return Ok(());
        }
        let payloads = gone
            .iter()
            .map(|r| {
                let inv = Invalidation::Session { id: r.id, token_hashes: r.lookup_hashes().copied().collect() };
                serde_json::to_string(&inv).map_err(|_| corrupt("invalidation encoding"))
            })
            .collect::<Result<Vec<String>, StoreError>>()?;
        tx.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", &[&self.inner.channel, &payloads])
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn delete_where(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let gone = records(&tx.query(sql, params).await.map_err(db)?);
        self.notify_removed(&tx, &gone).await?;
        tx.commit().await.map_err(db)?;
        Ok(gone)
    }
}

/// The listener's heartbeat period (zero: off) and connection-attempt bound.
#[derive(Clone, Copy)]
struct ListenTiming {
    beat: Duration,
    connect: Duration,
}

/// The listener: one dedicated connection running `LISTEN`, reconnecting with backoff until
/// the store is dropped, announcing every (re)connection with [`Invalidation::Resync`] and
/// every loss with [`Invalidation::Lost`].
async fn listen(
    config: tokio_postgres::Config,
    tls: Tls,
    channel: String,
    timing: ListenTiming,
    tx: broadcast::Sender<Invalidation>,
    link: Arc<Link>,
    mut shutdown: watch::Receiver<()>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let run = async {
            match &tls {
                Tls::None => listen_once(&config, NoTls, &channel, timing, &tx, &link).await,
                Tls::Rustls(c) => listen_once(&config, c.clone(), &channel, timing, &tx, &link).await,
            }
        };
        let connected = tokio::select! {
            r = run => r,
            _ = shutdown.changed() => return,
        };
        if connected {
            backoff = Duration::from_millis(100);
        }
        tracing::warn!("postgres invalidation listener disconnected; reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One listener connection; returns whether it got as far as listening. Ends when the
/// connection does, or when its own heartbeats stop coming back (see
/// [`PostgresOptions::heartbeat`]).
async fn listen_once<T>(
    config: &tokio_postgres::Config,
    tls: T,
    channel: &str,
    timing: ListenTiming,
    tx: &broadcast::Sender<Invalidation>,
    link: &Link,
) -> bool
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Send,
    T::Stream: Send + 'static,
{
    let beat = timing.beat;
    // Bounded: a connection attempt into a black hole must not hang the listener forever.
    let Ok(Ok((client, mut conn))) = tokio::time::timeout(timing.connect, config.connect(tls)).await else {
        return false;
    };
    let (msg_tx, mut msg_rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = msg_tx.send(n.payload().to_owned());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    // The channel name is a validated identifier: `sessiond_inv_<schema>`.
    let listen_sql = format!("LISTEN {channel}");
    let listen = client.batch_execute(&listen_sql);
    if !matches!(tokio::time::timeout(timing.connect, listen).await, Ok(Ok(()))) {
        driver.abort();
        return false;
    }
    link.set(true, tx);
    let own = Heartbeat::new();
    let beating = !beat.is_zero();
    let mut tick = tokio::time::interval(if beating { beat } else { Duration::from_secs(3600) });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_beat = tokio::time::Instant::now();
    loop {
        tokio::select! {
            payload = msg_rx.recv() => {
                let Some(payload) = payload else { break };
                match interpret(&payload, &own) {
                    Ok(Some(inv)) => {
                        let _ = tx.send(inv);
                    }
                    Err(()) => last_beat = tokio::time::Instant::now(),
                    Ok(None) => {}
                }
            }
            _ = tick.tick(), if beating => {
                if last_beat.elapsed() > beat * 3 {
                    tracing::warn!(
                        "no heartbeat came back through the postgres invalidation listener for {:?}; near-caches \
                         stop answering and the listener reconnects",
                        beat * 3
                    );
                    metrics::counter!("sessiond_postgres_heartbeat_missed_total").increment(1);
                    break;
                }
                // Over the listener's own connection: a session receives its own notifications,
                // so this checks the very connection the invalidations arrive on. Notifications
                // keep queueing meanwhile.
                let message = own.message();
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&channel, &message];
                if tokio::time::timeout(beat, client.execute("SELECT pg_notify($1, $2)", &params)).await.is_err() {
                    tracing::debug!("a listener heartbeat did not complete in time");
                }
            }
        }
    }
    link.set(false, tx);
    driver.abort();
    drop(client);
    true
}

/// Run on every new pooled connection: pins `synchronous_commit` for this connection at what
/// it is now, raised from `off` to `on` (a crash would otherwise lose commits that sessiond
/// already confirmed). Every other value is kept (`local`, `remote_write`, `remote_apply` are
/// durable on the primary; lowering `remote_apply` would weaken a stricter setup), but pinned
/// at session level, so that a later `ALTER SYSTEM … off` and reload does not reach the
/// connections the pool already holds (`RecyclingMethod::Fast` never re-runs this; the pool
/// must not use `Clean`, whose `RESET ALL` would undo it). `OFFSET 0` keeps the subquery
/// from being flattened, so that the value is read before it is set. Returns whether it
/// raised the setting.
const RAISE_SYNCHRONOUS_COMMIT: &str = "SELECT cur = 'off', \
     set_config('synchronous_commit', CASE WHEN cur = 'off' THEN 'on' ELSE cur END, false) \
     FROM (SELECT current_setting('synchronous_commit') AS cur OFFSET 0) AS now";

/// The durability settings a connection of the store runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `fsync` (`on` or `off`).
    pub fsync: String,
    /// `synchronous_commit` (`on`, `remote_apply`, `remote_write`, `local` or `off`).
    pub synchronous_commit: String,
}

async fn settings_of(pool: &Pool) -> Result<Durability, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    let row =
        c.query_one("SELECT current_setting('fsync'), current_setting('synchronous_commit')", &[]).await.map_err(db)?;
    Ok(Durability { fsync: row.try_get(0).map_err(db)?, synchronous_commit: row.try_get(1).map_err(db)? })
}

/// What, in `d`, can lose a change sessiond confirmed when PostgreSQL crashes; `None` when
/// nothing does. `synchronous_commit = off` cannot appear on the store's own connections
/// (they raise it), but is reported all the same.
pub(crate) fn durability_gap(d: &Durability) -> Option<String> {
    if d.fsync != "on" {
        return Some(format!(
            "fsync is {}: a crash can lose confirmed revocations (the revoked sessions come back) and corrupt \
             the database; set fsync = on",
            d.fsync
        ));
    }
    (d.synchronous_commit == "off")
        .then(|| "synchronous_commit is off: a crash can lose confirmed revocations".to_owned())
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<LimitRule>,
        now: UnixMs,
    ) -> Result<CreateOutcome, StoreError> {
        self.op("create", async {
            let sql = &self.inner.sql;
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            let mut evicted = Vec::new();
            if let Some(rule) = limit {
                // Serialise creates of this subject: the count below cannot go stale before
                // the insert commits.
                let lock = format!("{}\u{1f}{}\u{1f}{}", self.inner.opts.schema, record.tenant, record.subject);
                tx.query_one(&sql.subject_lock, &[&lock]).await.map_err(db)?;
                let rows = tx
                    .query(&sql.live_of_subject, &[&record.tenant, &record.subject, &big(now.0)])
                    .await
                    .map_err(db)?;
                let max = rule.max as usize;
                // Sessions an epoch bump ended are dead: neither counted nor evicted. A record
                // that does not decode counts (as before this rule).
                let mut live: Vec<(i64, i64, Vec<u8>)> = Vec::with_capacity(rows.len());
                for r in &rows {
                    let subject_epoch: i64 = r.try_get(4).map_err(db)?;
                    let ended = r
                        .try_get::<_, String>(3)
                        .ok()
                        .and_then(|t| SessionRecord::decode(t.as_bytes()))
                        .is_some_and(|rec| i64::try_from(rec.epoch).is_ok_and(|e| e < subject_epoch));
                    if !ended {
                        let id: Vec<u8> = r.try_get(0).map_err(db)?;
                        live.push((r.try_get(1).map_err(db)?, r.try_get(2).map_err(db)?, id));
                    }
                }
                if live.len() >= max {
                    match rule.action {
                        LimitAction::DenyNew => return Ok(CreateOutcome::LimitReached),
                        LimitAction::EvictOldest => live.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2))),
                        LimitAction::EvictIdlest => live.sort_by(|a, b| (a.1, a.0, &a.2).cmp(&(b.1, b.0, &b.2))),
                    }
                    let excess = live.len() + 1 - max.max(1);
                    let ids: Vec<Vec<u8>> = live.into_iter().take(excess).map(|l| l.2).collect();
                    evicted = records(&tx.query(&sql.evict, &[&ids]).await.map_err(db)?);
                }
            }
            let id = record.id.as_bytes().to_vec();
            let inserted = tx
                .execute(
                    &sql.insert,
                    &[
                        &id,
                        &record.tenant,
                        &record.subject,
                        &big(record.created_at.0),
                        &big(record.last_seen_at.0),
                        &big(record.deadline().0),
                        &big(record.version),
                        &json(&record)?,
                    ],
                )
                .await
                .map_err(db)?;
            if inserted != 1 {
                return Err(corrupt("create with an id already in use"));
            }
            let hs = hashes(&record);
            let n = tx.execute(&sql.insert_hashes, &[&hs, &id]).await.map_err(db)?;
            if n as usize != hs.len() {
                return Err(corrupt("create with a token hash already in use"));
            }
            self.notify_removed(&tx, &evicted).await?;
            tx.commit().await.map_err(db)?;
            Ok(CreateOutcome::Created { evicted })
        })
        .await
    }

    async fn find_by_token(&self, hash: &TokenHash) -> Result<Option<Lookup>, StoreError> {
        self.op("find_by_token", async {
            let c = self.client().await?;
            let row = c.query_opt(&self.inner.sql.find_by_token, &[&hash.0.as_slice()]).await.map_err(db)?;
            let Some(row) = row else { return Ok(None) };
            let Some(record) = record_of(&row) else { return Ok(None) };
            // Defence in depth: the index and the record agree.
            if !record.lookup_hashes().any(|h| h == hash) {
                return Ok(None);
            }
            let epoch: i64 = row.try_get(1).map_err(db)?;
            Ok(Some(Lookup { record: Arc::new(record), subject_epoch: u64::try_from(epoch).unwrap_or(0) }))
        })
        .await
    }

    async fn find_by_id(&self, id: &SessionId) -> Result<Option<Lookup>, StoreError> {
        self.op("find_by_id", async {
            let c = self.client().await?;
            let row = c.query_opt(&self.inner.sql.find_by_id, &[&id.as_bytes().as_slice()]).await.map_err(db)?;
            let Some(row) = row else { return Ok(None) };
            let Some(record) = record_of(&row) else { return Ok(None) };
            let epoch: i64 = row.try_get(1).map_err(db)?;
            Ok(Some(Lookup { record: Arc::new(record), subject_epoch: u64::try_from(epoch).unwrap_or(0) }))
        })
        .await
    }

    async fn update(&self, record: SessionRecord, expected_version: u64) -> Result<UpdateOutcome, StoreError> {
        self.op("update", async {
            let sql = &self.inner.sql;
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            let id = record.id.as_bytes().to_vec();
            let n = tx
                .execute(
                    &sql.update,
                    &[
                        &id,
                        &big(expected_version),
                        &json(&record)?,
                        &big(record.version),
                        &big(record.created_at.0),
                        &big(record.last_seen_at.0),
                        &big(record.deadline().0),
                        &record.tenant,
                        &record.subject,
                    ],
                )
                .await
                .map_err(db)?;
            if n == 0 {
                let Some(row) = tx.query_opt(&sql.current, &[&id]).await.map_err(db)? else {
                    return Ok(UpdateOutcome::Missing);
                };
                let (t, s): (String, String) = (row.try_get(1).map_err(db)?, row.try_get(2).map_err(db)?);
                if t != record.tenant || s != record.subject {
                    return Err(corrupt("update may not change a session's subject or tenant"));
                }
                return Ok(match record_of(&row) {
                    Some(cur) => UpdateOutcome::Conflict(Arc::new(cur)),
                    None => UpdateOutcome::Missing,
                });
            }
            let old: Vec<Vec<u8>> =
                tx.query(&sql.hashes_of, &[&id]).await.map_err(db)?.iter().filter_map(|r| r.try_get(0).ok()).collect();
            let hs = hashes(&record);
            tx.execute(&sql.drop_hashes, &[&id, &hs]).await.map_err(db)?;
            tx.execute(&sql.insert_hashes, &[&hs, &id]).await.map_err(db)?;
            let mine: i64 = tx.query_one(&sql.count_hashes, &[&id, &hs]).await.map_err(db)?.try_get(0).map_err(db)?;
            if mine as usize != hs.len() {
                return Err(corrupt("a token hash already belongs to another session"));
            }
            let mut all: Vec<TokenHash> = record.lookup_hashes().copied().collect();
            for h in old {
                if let Ok(a) = <[u8; 32]>::try_from(h.as_slice()) {
                    if !all.contains(&TokenHash(a)) {
                        all.push(TokenHash(a));
                    }
                }
            }
            self.notify(&tx, &Invalidation::Session { id: record.id, token_hashes: all }).await?;
            tx.commit().await.map_err(db)?;
            Ok(UpdateOutcome::Updated)
        })
        .await
    }

    async fn renew(
        &self,
        current: &SessionRecord,
        seen: UnixMs,
        idle_expires_at: UnixMs,
        ip: Option<&str>,
    ) -> Result<(), StoreError> {
        self.op("renew", async {
            let sql = &self.inner.sql;
            let mut c = self.client().await?;
            let key = current.id.as_bytes().to_vec();
            // One statement, from the caller's copy: written only while the stored row still
            // has the copy's version and an older renewal. Otherwise (a stale copy, a renewal
            // elsewhere, a deleted session) fall back to renewing the locked stored record. A
            // renewal without an address always falls back: the copy's last address could
            // overwrite a newer one recorded under the same version.
            if ip.is_some() {
                let Some(next) = current.renewed(seen, idle_expires_at, ip) else {
                    return Ok(());
                };
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                    [&key, &json(&next)?, &big(next.last_seen_at.0), &big(next.deadline().0), &big(current.version)];
                if c.execute(&sql.renew_copy, &params).await.map_err(db)? == 1 {
                    return Ok(());
                }
            }
            let tx = c.transaction().await.map_err(db)?;
            let Some(row) = tx.query_opt(&sql.lock_record, &[&key]).await.map_err(db)? else {
                return Ok(());
            };
            let Some(next) = record_of(&row).and_then(|r| r.renewed(seen, idle_expires_at, ip)) else {
                return Ok(());
            };
            tx.execute(&sql.renew, &[&key, &json(&next)?, &big(next.last_seen_at.0), &big(next.deadline().0)])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.op("delete", async {
            let key = id.as_bytes().to_vec();
            Ok(self.delete_where(&self.inner.sql.delete, &[&key]).await?.into_iter().next())
        })
        .await
    }

    async fn delete_subject(
        &self,
        tenant: &str,
        subject: &str,
        except: Option<&SessionId>,
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        self.op("delete_subject", async {
            let except = except.map(|e| e.as_bytes().to_vec());
            self.delete_where(&self.inner.sql.delete_subject, &[&tenant, &subject, &except]).await
        })
        .await
    }

    async fn delete_tenant(&self, tenant: &str) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        // The tenant's sessions as they are when the call starts, then deleted in bounded
        // batches, each its own transaction under the operation timeout: one statement over a
        // large tenant would hold every row lock and outlast the timeout on every retry.
        const BATCH: usize = 500;
        let ids: Vec<Vec<u8>> = self
            .op("delete_tenant", async {
                let c = self.client().await?;
                let rows = c.query(&self.inner.sql.tenant_ids, &[&tenant]).await.map_err(db)?;
                rows.iter().map(|r| r.try_get::<_, Vec<u8>>(0).map_err(db)).collect()
            })
            .await?;
        // A batch failing after earlier ones committed is `Unconfirmed` with the sessions
        // those ended, so that the engine still writes their events (a retry will not find
        // them).
        let mut out = Vec::new();
        for batch in ids.chunks(BATCH) {
            let batch = batch.to_vec();
            match self
                .op("delete_tenant", async { self.delete_where(&self.inner.sql.delete_ids, &[&batch]).await })
                .await
            {
                Ok(gone) => out.extend(gone),
                Err(e) => return Err(e.after_ending(out)),
            }
        }
        Ok(out)
    }

    async fn list_subject(
        &self,
        tenant: &str,
        subject: &str,
        after: Option<PageCursor>,
        limit: usize,
        now: UnixMs,
    ) -> Result<Page, StoreError> {
        if limit == 0 {
            return Ok(Page { sessions: Vec::new(), next: None });
        }
        self.op("list_subject", async {
            let (at, id) = match after {
                Some(c) => (big(c.created_at.0), c.id.as_bytes().to_vec()),
                None => (-1, Vec::new()),
            };
            let c = self.client().await?;
            let rows = c
                .query(&self.inner.sql.list, &[&tenant, &subject, &big(now.0), &at, &id, &big(limit as u64 + 1)])
                .await
                .map_err(db)?;
            let mut sessions = records(&rows);
            let next = if sessions.len() > limit {
                sessions.truncate(limit);
                sessions.last().map(|r| PageCursor { created_at: r.created_at, id: r.id })
            } else {
                None
            };
            Ok(Page { sessions, next })
        })
        .await
    }

    async fn subject_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        self.op("subject_epoch", async {
            let c = self.client().await?;
            let row = c.query_opt(&self.inner.sql.epoch, &[&tenant, &subject]).await.map_err(db)?;
            Ok(row.and_then(|r| r.try_get::<_, i64>(0).ok()).and_then(|e| u64::try_from(e).ok()).unwrap_or(0))
        })
        .await
    }

    async fn bump_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        self.op("bump_epoch", async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            let e: i64 =
                tx.query_one(&self.inner.sql.bump, &[&tenant, &subject]).await.map_err(db)?.try_get(0).map_err(db)?;
            self.notify(&tx, &Invalidation::Subject { tenant: tenant.to_owned(), subject: subject.to_owned() }).await?;
            tx.commit().await.map_err(db)?;
            u64::try_from(e).map_err(|_| corrupt("negative epoch"))
        })
        .await
    }

    async fn sweep_expired(&self, now: UnixMs, max: usize) -> Result<Vec<Expired>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.op("sweep_expired", async {
            let gone = self.delete_where(&self.inner.sql.sweep, &[&big(now.0), &big(max as u64)]).await?;
            Ok(gone.into_iter().map(|record| Expired { why: expiry_reason(&record, now), record }).collect())
        })
        .await
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.op("append_events", async {
            let bodies = events
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<Vec<String>, _>>()
                .map_err(|_| corrupt("event encoding"))?;
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            // One appender at a time: cursors then become visible in cursor order, so a
            // reader that saw cursor n never misses a smaller one committing later.
            let lock = format!("sessiond-events:{}", self.inner.opts.schema);
            tx.query_one(&self.inner.sql.events_lock, &[&lock]).await.map_err(db)?;
            tx.execute(&self.inner.sql.append, &[&bodies]).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn read_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.op("read_events", async {
            let c = self.client().await?;
            let rows = c.query(&self.inner.sql.read, &[&big(after), &big(limit as u64)]).await.map_err(db)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let cursor: i64 = r.try_get(0).map_err(db)?;
                let body: String = r.try_get(1).map_err(db)?;
                let mut e: Event = serde_json::from_str(&body).map_err(|_| corrupt("undecodable event"))?;
                e.cursor = u64::try_from(cursor).map_err(|_| corrupt("negative event cursor"))?;
                out.push(e);
            }
            Ok(out)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.op("ping", async {
            let c = self.client().await?;
            c.simple_query("SELECT 1").await.map_err(db)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidations_round_trip_as_json() {
        let inv = Invalidation::Subject { tenant: "t".into(), subject: "s".into() };
        let text = serde_json::to_string(&inv).expect("json");
        assert_eq!(serde_json::from_str::<Invalidation>(&text).expect("json"), inv);
    }

    #[test]
    fn notifications_are_interpreted_strictly() {
        let me = Heartbeat::new();
        let subject =
            serde_json::to_string(&Invalidation::Subject { tenant: "t".into(), subject: "s".into() }).expect("json");
        assert_eq!(
            interpret(&subject, &me),
            Ok(Some(Invalidation::Subject { tenant: "t".into(), subject: "s".into() }))
        );
        assert_eq!(interpret(me.message(), &me), Err(()));
        assert_eq!(interpret(Heartbeat::new().message(), &me), Ok(None));
        // Local states never come from the wire; garbage is ignored.
        assert_eq!(interpret(r#"{"kind":"lost"}"#, &me), Ok(None));
        assert_eq!(interpret(r#"{"kind":"resync"}"#, &me), Ok(None));
        assert_eq!(interpret("not json", &me), Ok(None));
    }

    #[test]
    fn statements_quote_the_schema() {
        let sql = Sql::new("abc");
        assert!(sql.insert.contains(r#""abc".sessions"#));
        assert!(sql.sweep.contains("SKIP LOCKED"));
    }

    #[test]
    fn durability_gaps_are_named() {
        let d = |fsync: &str, sc: &str| Durability { fsync: fsync.into(), synchronous_commit: sc.into() };
        for sc in ["on", "local", "remote_write", "remote_apply"] {
            assert_eq!(durability_gap(&d("on", sc)), None, "{sc}");
        }
        assert!(durability_gap(&d("off", "on")).is_some_and(|g| g.contains("fsync is off")));
        assert!(durability_gap(&d("on", "off")).is_some_and(|g| g.contains("synchronous_commit is off")));
    }
}
