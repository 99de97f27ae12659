//! # sessiond-store-redis
//!
//! A [`SessionStore`] on Redis 7 or later — standalone, Sentinel or Cluster, over TCP or TLS,
//! with ACL credentials — built on the `fred` client.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sessiond_core::StoreError> {
//! use sessiond_store_redis::{RedisOptions, RedisStore};
//! let store = RedisStore::connect(
//!     "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
//!     RedisOptions { key_prefix: "sessiond".into(), ..Default::default() },
//! )
//! .await?;
//! let mut changes = store.invalidations();
//! # let _ = changes.try_recv();
//! # Ok(()) }
//! ```
//!
//! How it keeps the [`SessionStore`] security contract (details in `docs/redis-store.md`):
//!
//! - Everything about one subject — records, its session index by creation time, deadline
//!   and last use, and its epoch — lives in one hash slot (hash tag `{tenant/subject}`), and
//!   every change to it is one Lua script: create with the limit check and evictions, update
//!   with compare-and-set on `version`, renew, delete, delete-subject, sweep.
//! - Token-hash and id pointers live in their own slots. They are written *before* the
//!   subject script commits (write-ahead) and every read validates the record they lead to
//!   (its id, subject, and that it still lists the hash in
//!   [`SessionRecord::lookup_hashes`]), so a stale pointer never resolves: a deleted session
//!   is found neither by id nor by any token.
//! - Every key carries a TTL derived from the session's deadlines (`PEXPIREAT`), plus a grace
//!   period that leaves the sweeper time to report expiries; Redis drops dead data by itself.
//! - The sweeper reads sixteen sharded deadline hints, then removes due sessions with the
//!   subject script; no `KEYS` or `SCAN` anywhere.
//! - Events go to a stream with cursors from a counter in the same slot.
//! - Unreachable or slow Redis is [`StoreError::Unavailable`] after [`RedisOptions::timeout`];
//!   the client reconnects by itself.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod keys;
mod outbox;
mod pointers;
mod scripts;
mod url;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::{Pool, SubscriberClient};
use fred::interfaces::{ClientLike, ClusterInterface, EventInterface, PubsubInterface};
use fred::types::config::Options;
use fred::types::config::ReconnectPolicy;
use fred::types::{Builder, ClusterHash, CustomCommand, Value};
use sessiond_core::event::Event;
use sessiond_core::id::SessionId;
use sessiond_core::policy::LimitAction;
use sessiond_core::record::SessionRecord;
use sessiond_core::store::heartbeat::Heartbeat;
use sessiond_core::store::{expiry_reason, CreateOutcome, Expired, LimitRule, Lookup, Page, PageCursor, UpdateOutcome};
use sessiond_core::time::UnixMs;
use sessiond_core::token::TokenHash;
use sessiond_core::{SessionStore, StoreError};
use tokio::sync::broadcast;

use crate::keys::{enc, id_hex, Keys, SubjectKeys, EXPIRY_SHARDS};
use crate::outbox::Outbox;
use crate::pointers::Pointers;
use crate::scripts::{Script, Scripts};

/// Settings of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Prefix of every key and of the invalidation channel (`<prefix>:inv`). 1 to 64
    /// printable ASCII bytes without braces or spaces. Default `sessiond`.
    pub key_prefix: String,
    /// Upper bound of every store operation; past it the operation fails with
    /// [`StoreError::Unavailable`]. Default 1 s: a session check must fail fast, not hang.
    pub timeout: Duration,
    /// How long [`RedisStore::connect`] waits for the first connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Number of multiplexed connections (per node in Cluster). Default 4.
    pub pool_size: usize,
    /// How long keys outlive the session's deadline, so that the sweeper can still report
    /// the expiry (`expired.*` events) before Redis drops the data. Default 1 hour.
    pub expiry_grace: Duration,
    /// Approximate maximum length of the event stream (`XADD MAXLEN ~`). Default 1,000,000.
    pub events_max_len: u64,
    /// Whether to subscribe to the invalidation channel (see [`RedisStore::invalidations`]).
    /// Default `true`.
    pub invalidations: bool,
    /// How often this node publishes a heartbeat on the invalidation channel and checks that
    /// its own previous heartbeats came back through its subscription. When none came back
    /// for three periods, the channel is declared lost ([`Invalidation::Lost`]: near-caches
    /// stop answering) and the subscriber reconnects; [`Invalidation::Resync`] follows once it
    /// is subscribed again. This catches a subscriber connection that died silently (a
    /// half-open TCP connection, a network partition that drops packets without a reset),
    /// which no socket error reports. Default 1 s; zero turns the heartbeat off.
    pub heartbeat: Duration,
    /// Return from [`RedisStore::connect`] even if Redis cannot be reached yet; operations
    /// fail with [`StoreError::Unavailable`] until it can. Default `false`: a misconfigured
    /// URL should stop start-up, not surface later.
    pub lazy_connect: bool,
    /// Replicas that must acknowledge every revocation (one session, a subject, each subject
    /// of a tenant) and epoch bump before it is reported done: the store pipelines the
    /// script, a marker write in the subject's slot and `WAIT replicas wait_timeout` on a
    /// connection of its own (see `docs/redis-store.md`, "Durability"). Fewer
    /// acknowledgements within [`RedisOptions::wait_timeout`] fail the operation with
    /// [`StoreError::Unconfirmed`] (503), which lists the sessions it ended: the primary
    /// applied the change but a failover could still lose it and bring a revoked session back,
    /// so the caller must not take it as done (retrying is safe). Creates, updates and
    /// renewals do not wait. Default 0: no waiting.
    pub wait_replicas: u32,
    /// How long a change waits for [`RedisOptions::wait_replicas`] acknowledgements. Must be
    /// above zero (`WAIT` with 0 blocks forever) and below [`RedisOptions::timeout`].
    /// Default 200 ms.
    pub wait_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "sessiond".into(),
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            pool_size: 4,
            expiry_grace: Duration::from_secs(3600),
            events_max_len: 1_000_000,
            invalidations: true,
            heartbeat: Duration::from_secs(1),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(200),
            lazy_connect: false,
        }
    }
}

/// A change other nodes must drop from their near-caches, received from the store's
/// invalidation channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Invalidation {
    /// The channel was (re)connected: messages may have been lost, drop every cached entry.
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
    /// The channel's connection reported an error or dropped: messages may be missed from
    /// now on, so stop trusting near-caches until the next [`Invalidation::Resync`].
    /// Never accepted from the wire.
    Lost,
}

/// What travels on the invalidation channel. The subject scripts announce changes themselves
/// (`changed`, with the hex id they work with); older nodes publish `session`. Heartbeats are
/// recognised before this is parsed ([`Heartbeat::is_own`]); anything else is ignored.
#[derive(serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    Session {
        id: SessionId,
        #[serde(default)]
        token_hashes: Vec<TokenHash>,
    },
    Subject {
        tenant: String,
        subject: String,
    },
    Changed {
        id: String,
    },
}

/// What a message received on the channel means for this node: an invalidation to pass on,
/// one of its own heartbeats (`Err(())`), or nothing (garbage, another node's heartbeat, or a
/// local state such as `lost` that must never come from the wire).
fn interpret(message: &str, beat: &Heartbeat) -> Result<Option<Invalidation>, ()> {
    if beat.is_own(message) {
        return Err(());
    }
    Ok(match serde_json::from_str::<Wire>(message) {
        Ok(Wire::Session { id, token_hashes }) => Some(Invalidation::Session { id, token_hashes }),
        Ok(Wire::Subject { tenant, subject }) => Some(Invalidation::Subject { tenant, subject }),
        Ok(Wire::Changed { id }) => match keys::parse_id_hex(&id) {
            Some(id) => Some(Invalidation::Session { id, token_hashes: Vec::new() }),
            None => {
                tracing::warn!("an invalidation with a malformed session id was ignored");
                None
            }
        },
        Err(_) => None,
    })
}

/// What in Redis's persistence settings lets an acknowledged write be lost on a restart, if
/// anything.
fn durability_gap(appendonly: Option<&str>, appendfsync: Option<&str>) -> Option<String> {
    match (appendonly, appendfsync) {
        (Some("yes"), Some("always")) => None,
        (Some("yes"), Some(other)) => Some(format!("syncs its append-only file with appendfsync {other}")),
        (Some("yes"), None) => Some("did not report appendfsync".into()),
        (Some(other), _) => Some(format!("runs with appendonly {other}")),
        (None, _) => Some("did not report appendonly".into()),
    }
}

/// How many published messages the invalidation subscriber's queue holds before its listener
/// counts as overrun (the client's default is 32).
const SUBSCRIBER_QUEUE: usize = 8192;

/// Whether the invalidation channel is subscribed, and the ordering of
/// [`Invalidation::Lost`] and [`Invalidation::Resync`]: both are sent under this lock, and a
/// Resync is sent only if no error arrived since its subscription started.
#[derive(Default)]
struct Link {
    state: std::sync::Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    errors: u64,
    listening: bool,
    /// When this node's own heartbeat last came back (or the subscription last started).
    last_beat: Option<tokio::time::Instant>,
}

impl Link {
    fn lock(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lost(&self, tx: &broadcast::Sender<Invalidation>) {
        let mut g = self.lock();
        g.errors += 1;
        g.listening = false;
        let _ = tx.send(Invalidation::Lost);
    }

    fn errors(&self) -> u64 {
        self.lock().errors
    }

    /// The listener missed messages, but the subscription itself is intact: empty the caches
    /// (Lost) and, if the channel was trusted, trust it again at once (Resync), since every
    /// message published from now on is received. Entries filled from then on are read from
    /// the store after the missed changes.
    fn overrun(&self, tx: &broadcast::Sender<Invalidation>) {
        let g = self.lock();
        let _ = tx.send(Invalidation::Lost);
        if g.listening {
            let _ = tx.send(Invalidation::Resync);
        }
    }

    fn resync_if_no_error_since(&self, errors: u64, tx: &broadcast::Sender<Invalidation>) {
        let mut g = self.lock();
        if g.errors == errors {
            g.listening = true;
            g.last_beat = Some(tokio::time::Instant::now());
            let _ = tx.send(Invalidation::Resync);
        }
    }

    fn beat(&self) {
        self.lock().last_beat = Some(tokio::time::Instant::now());
    }

    /// Declares the channel lost when it is believed up but no heartbeat came back within
    /// `deadline`. Returns whether it did.
    fn lost_if_silent(&self, deadline: Duration, tx: &broadcast::Sender<Invalidation>) -> bool {
        let mut g = self.lock();
        let silent = g.listening && g.last_beat.is_none_or(|at| at.elapsed() > deadline);
        if silent {
            g.errors += 1;
            g.listening = false;
            let _ = tx.send(Invalidation::Lost);
        }
        silent
    }
}

/// The Redis session store. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Connections for the changes that wait for replicas ([`RedisOptions::wait_replicas`]):
    /// `WAIT` holds its connection until the replicas answer, so it never shares one with
    /// resolves, renewals or heartbeats.
    wait_pool: Option<Pool>,
    subscriber: Option<SubscriberClient>,
    keys: Keys,
    scripts: Scripts,
    opts: RedisOptions,
    grace_ms: u64,
    invalidations: broadcast::Sender<Invalidation>,
    link: Arc<Link>,
    /// Token pointers this node followed (module `pointers`): a lookup's `GET` is skipped when
    /// the pointer is known.
    pointers: Pointers,
    /// Events waiting to be appended (module `outbox`), shared with the task that appends them.
    outbox: Arc<Outbox>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("key_prefix", &self.inner.keys.prefix()).finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Stop the outbox's task, close the connections (and stop reconnecting) when the last
        // handle goes.
        self.outbox.close();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let pool = self.pool.clone();
            let wait_pool = self.wait_pool.clone();
            let sub = self.subscriber.take();
            rt.spawn(async move {
                let _ = pool.quit().await;
                if let Some(p) = wait_pool {
                    let _ = p.quit().await;
                }
                if let Some(s) = sub {
                    let _ = s.quit().await;
                }
            });
        }
    }
}

/// Every [`RedisOptions::heartbeat`]: checks that the previous heartbeats came back (else
/// declares the channel lost and reconnects the subscriber), then publishes the next one.
/// Stops when the store is dropped.
fn spawn_heartbeat(store: std::sync::Weak<Inner>, beat: Heartbeat) {
    let message = beat.message().to_owned();
    tokio::spawn(async move {
        let Some(every) = store.upgrade().map(|i| i.opts.heartbeat) else { return };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = store.upgrade() else { return };
            if inner.link.lost_if_silent(every * 3, &inner.invalidations) {
                tracing::warn!(
                    "no heartbeat came back through the Redis invalidation channel for {:?}; near-caches stop \
                     answering and the subscriber reconnects",
                    every * 3
                );
                metrics::counter!("sessiond_redis_heartbeat_missed_total").increment(1);
                if let Some(sub) = inner.subscriber.clone() {
                    tokio::spawn(async move {
                        if let Err(e) = sub.force_reconnection().await {
                            tracing::debug!(error = %e, "subscriber reconnection failed; it keeps retrying");
                        }
                    });
                }
            }
            let store = RedisStore { inner };
            if let Err(e) = store.cmd("PUBLISH", &store.inner.keys.channel(), vec![s(message.as_str())]).await {
                tracing::debug!(error = %e, "could not publish a heartbeat");
            }
        }
    });
}

/// Appends the outbox's events (module `outbox`) in order, one batch per script call; a batch
/// that fails is retried with backoff for up to [`outbox::GIVE_UP_AFTER`], then its events are
/// given up (logged, `sessiond_store_events_lost_total`; an attempt already in Redis's socket
/// may still append them, never after a later batch). Holds the store only while a batch is
/// in flight; stops when the store is dropped, counting what was left.
fn spawn_outbox(store: std::sync::Weak<Inner>, outbox: Arc<Outbox>) {
    let abandon = |outbox: &Outbox| {
        let left = outbox.waiting();
        if left > 0 {
            metrics::counter!("sessiond_store_events_lost_total").increment(left);
            tracing::error!(
                events = left,
                "the Redis store was closed with session events not yet appended; they are lost"
            );
        }
    };
    tokio::spawn(async move {
        loop {
            outbox.wait().await;
            loop {
                if outbox.is_closed() {
                    return abandon(&outbox);
                }
                let batch = outbox.take(outbox::MAX_BATCH);
                let (Some(&(first, _)), Some(&(last, _))) = (batch.first(), batch.last()) else { break };
                let started = tokio::time::Instant::now();
                let mut delay = Duration::from_millis(50);
                loop {
                    let Some(inner) = store.upgrade() else { return abandon(&outbox) };
                    let result = RedisStore { inner }.append_batch(outbox.nonce(), first, last, &batch).await;
                    match result {
                        Ok(()) => break,
                        Err(e) if started.elapsed() < outbox::GIVE_UP_AFTER => {
                            tracing::debug!(error = %e, events = batch.len(), "appending session events failed; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(1));
                        }
                        Err(e) => {
                            metrics::counter!("sessiond_store_events_lost_total").increment(batch.len() as u64);
                            tracing::error!(
                                error = %e,
                                events = batch.len(),
                                "session events could not be appended to Redis for {:?} and were dropped",
                                outbox::GIVE_UP_AFTER
                            );
                            break;
                        }
                    }
                }
                outbox.settle(last);
            }
        }
    });
}

/// Maps a client error: every failure to talk to Redis is retryable unavailability.
fn unavailable(e: fred::error::Error) -> StoreError {
    StoreError::unavailable("redis command failed", e)
}

/// Subjects per batch of a tenant revocation with replica waits: `pool_size` connections,
/// each able to run `timeout / wait_timeout - 1` full-length waits one after another within
/// the operation timeout (one wait's worth is left for round trips); at least one per
/// connection, at most 64.
fn wait_batch_len(o: &RedisOptions) -> usize {
    let per_connection = (o.timeout.as_millis() / o.wait_timeout.as_millis().max(1)).saturating_sub(1).max(1);
    (o.pool_size.max(1) * usize::try_from(per_connection).unwrap_or(1)).min(64)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("redis store: {what}"))
}

fn s(v: impl Into<String>) -> Value {
    Value::from(v.into())
}

fn n(v: u64) -> Value {
    Value::from(v.to_string())
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    bytes(v).and_then(|b| std::str::from_utf8(b).ok())
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn uint(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        Value::Double(d) if *d >= 0.0 => Some(*d as u64),
        other => text(other)?.parse::<f64>().ok().filter(|d| *d >= 0.0).map(|d| d as u64),
    }
}

fn decode(v: &Value) -> Option<SessionRecord> {
    bytes(v).and_then(SessionRecord::decode)
}

fn json(record: &SessionRecord) -> Result<String, StoreError> {
    String::from_utf8(record.encode()).map_err(|_| corrupt("record encoding is not UTF-8"))
}

/// A primary with fewer online replicas than [`RedisOptions::wait_replicas`] asks for: every
/// revocation and epoch bump on it is refused (503) until enough replicas connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaShortfall {
    /// The primary, `host:port` in a Cluster, `the primary` otherwise.
    pub primary: String,
    /// The replicas it reports online (`INFO replication`, `state=online`).
    pub online: u32,
    /// What `wait_replicas` asks for.
    pub wanted: u32,
}

/// How many replicas a primary's `INFO replication` text reports online; `None` when the
/// text is not a primary's (`role:master` missing).
pub(crate) fn online_replicas(info: &str) -> Option<u32> {
    let mut primary = false;
    let mut online = 0;
    for line in info.lines().map(str::trim) {
        if line == "role:master" {
            primary = true;
        }
        // `slave0:ip=…,port=…,state=online,offset=…,lag=0`
        let Some((index, fields)) = line.strip_prefix("slave").and_then(|rest| rest.split_once(':')) else {
            continue;
        };
        if !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && fields.split(',').any(|f| f == "state=online")
        {
            online += 1;
        }
    }
    primary.then_some(online)
}

/// Whether a `maxmemory-policy` lets Redis evict session keys (every session key has a TTL,
/// so `volatile-*` policies evict them as readily as `allkeys-*`).
pub(crate) fn policy_can_evict(policy: &str) -> bool {
    policy != "noeviction"
}

impl RedisStore {
    /// Connects to Redis at `url` (forms in `docs/redis-store.md` and below) and checks its
    /// eviction policy.
    ///
    /// | form | meaning |
    /// |---|---|
    /// | `redis://[user[:password]@]host[:port][/db]` | one server |
    /// | `rediss://…` | one server over TLS |
    /// | `redis+sentinel://[user[:password]@]host:port[,host:port…]/service[/db]` | Sentinel |
    /// | `redis+cluster://[user[:password]@]host:port[,host:port…]` | Cluster |
    ///
    /// (`rediss+sentinel://` and `rediss+cluster://` use TLS.)
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL or prefix is invalid, or when Redis cannot be
    /// reached within [`RedisOptions::connect_timeout`] (unless
    /// [`RedisOptions::lazy_connect`]).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<RedisStore, StoreError> {
        let config_error = |message: String| StoreError::Unavailable { message, source: None };
        if !keys::valid_prefix(&options.key_prefix) {
            return Err(config_error("the Redis key prefix must be 1 to 64 printable bytes without braces".into()));
        }
        if options.wait_replicas > 0 && (options.wait_timeout.is_zero() || options.wait_timeout >= options.timeout) {
            return Err(config_error(
                "the Redis replica wait must be above zero and below the operation timeout".into(),
            ));
        }
        let mut config = url::parse(url).map_err(config_error)?;
        // Keep retrying in the background after a failed first attempt.
        config.fail_fast = false;
        let mut builder = Builder::from_config(config);
        let (timeout, connect_timeout) = (options.timeout, options.connect_timeout);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 3;
                // Back-pressure during an outage instead of an unbounded queue.
                c.max_command_buffer_len = 10_000;
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
        let pool = builder.build_pool(options.pool_size.max(1)).map_err(unavailable)?;
        drop(pool.connect_pool());
        if !options.lazy_connect {
            let ok = matches!(tokio::time::timeout(connect_timeout, pool.wait_for_connect()).await, Ok(Ok(())));
            if !ok {
                let _ = pool.quit().await;
                return Err(StoreError::Unavailable {
                    message: format!("could not connect to Redis within {connect_timeout:?}"),
                    source: None,
                });
            }
        }
        let wait_pool = if options.wait_replicas > 0 {
            let p = builder.build_pool(options.pool_size.max(1)).map_err(unavailable)?;
            drop(p.connect_pool());
            if !options.lazy_connect
                && !matches!(tokio::time::timeout(connect_timeout, p.wait_for_connect()).await, Ok(Ok(())))
            {
                let _ = p.quit().await;
                let _ = pool.quit().await;
                return Err(StoreError::Unavailable {
                    message: format!("could not connect to Redis within {connect_timeout:?}"),
                    source: None,
                });
            }
            Some(p)
        } else {
            None
        };
        let keys = Keys::new(&options.key_prefix);
        let (tx, _) = broadcast::channel(1024);
        let link = Arc::new(Link::default());
        let beat = Heartbeat::new();
        let subscriber = if options.invalidations {
            Some(
                Self::subscribe(&builder, keys.channel(), beat.clone(), tx.clone(), link.clone())
                    .map_err(unavailable)?,
            )
        } else {
            None
        };
        let grace_ms = u64::try_from(options.expiry_grace.as_millis()).unwrap_or(u64::MAX / 4);
        let store = RedisStore {
            inner: Arc::new(Inner {
                pool,
                wait_pool,
                subscriber,
                keys,
                scripts: Scripts::new(),
                opts: options,
                grace_ms,
                invalidations: tx,
                link,
                pointers: Pointers::default(),
                outbox: Arc::new(Outbox::default()),
            }),
        };
        spawn_outbox(Arc::downgrade(&store.inner), store.inner.outbox.clone());
        if store.inner.subscriber.is_some() && !store.inner.opts.heartbeat.is_zero() {
            spawn_heartbeat(Arc::downgrade(&store.inner), beat);
        }
        if store.inner.opts.lazy_connect {
            let s = store.clone();
            tokio::spawn(async move {
                if s.inner.pool.wait_for_connect().await.is_ok() {
                    s.check_eviction_policy().await;
                }
            });
        } else {
            store.check_eviction_policy().await;
        }
        Ok(store)
    }

    /// Changes made through any store on the same Redis and prefix (this one included), for
    /// near-caches. [`Invalidation::Lost`] is sent when the channel's connection reports an
    /// error or drops; [`Invalidation::Resync`] once the channel is subscribed again
    /// (`SUBSCRIBE` acknowledged) after every (re)connection: whatever was published in
    /// between is lost, so drop everything cached. Nothing is received when
    /// [`RedisOptions::invalidations`] is off.
    pub fn invalidations(&self) -> broadcast::Receiver<Invalidation> {
        self.inner.invalidations.subscribe()
    }

    /// Whether the invalidation channel is subscribed now (between a
    /// [`Invalidation::Resync`] and the next [`Invalidation::Lost`]). A consumer that calls
    /// [`RedisStore::invalidations`] first and then sees `true` here may trust its cache at
    /// once: a later loss reaches its receiver.
    pub fn listening(&self) -> bool {
        self.inner.link.lock().listening
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    fn subscribe(
        builder: &Builder,
        channel: String,
        beat: Heartbeat,
        tx: broadcast::Sender<Invalidation>,
        link: Arc<Link>,
    ) -> Result<SubscriberClient, fred::error::Error> {
        // The client's message queue holds this many messages for the listener below; a
        // burst (a subject or tenant revocation announces every session it removed) must not
        // overrun it on a busy runtime.
        let mut sub_builder = builder.clone();
        sub_builder.with_performance_config(|p| p.broadcast_channel_capacity = SUBSCRIBER_QUEUE);
        let sub = sub_builder.build_subscriber_client()?;
        // Our own loop rather than `on_message`, whose task ends for good at the first
        // overrun: the node would then never see another invalidation (nor heartbeat, so it
        // would cycle between "lost" and a trusted cache that receives nothing).
        let mut messages = sub.message_rx();
        let (on_msg, msg_link) = (tx.clone(), link.clone());
        tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    // Only data changes come over the wire; Resync and Lost are local states.
                    Ok(m) => match m.value.as_str().map(|t| interpret(&t, &beat)) {
                        Some(Ok(Some(inv))) => {
                            let _ = on_msg.send(inv);
                        }
                        Some(Err(())) => msg_link.beat(),
                        _ => {}
                    },
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "the Redis invalidation listener fell behind; near-caches are emptied");
                        msg_link.overrun(&on_msg);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let (err_tx, err_link) = (tx.clone(), link.clone());
        drop(sub.on_error(move |(e, _)| {
            tracing::warn!(error = %e, "the Redis invalidation channel lost its connection; near-caches stop answering");
            err_link.lost(&err_tx);
            async { Ok(()) }
        }));
        // Fired on every connection, the first included. Resync only once SUBSCRIBE is
        // acknowledged on it, so that nothing published after the Resync can be missed.
        let resub = sub.clone();
        drop(sub.on_reconnect(move |_| {
            let (sub, channel, tx, link) = (resub.clone(), channel.clone(), tx.clone(), link.clone());
            async move {
                // A few attempts; after that the channel stays "lost" (caches bypassed) until
                // the next reconnection.
                for _ in 0..10 {
                    let errors = link.errors();
                    match sub.subscribe(channel.clone()).await {
                        Ok(()) => {
                            link.resync_if_no_error_since(errors, &tx);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not subscribe to the Redis invalidation channel");
                            link.lost(&tx);
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
                Ok(())
            }
        }));
        drop(sub.connect());
        Ok(sub)
    }

    async fn check_eviction_policy(&self) {
        let cmd = CustomCommand::new_static("CONFIG", ClusterHash::Random, false);
        let args = vec![s("GET"), s("maxmemory-policy")];
        match tokio::time::timeout(self.inner.opts.timeout, self.inner.pool.next().custom::<Value, Value>(cmd, args))
            .await
        {
            Ok(Ok(v)) => {
                let flat: Vec<String> = array(v).iter().filter_map(|x| text(x).map(str::to_owned)).collect();
                match flat.get(1) {
                    Some(p) if policy_can_evict(p) => tracing::warn!(
                        maxmemory_policy = %p,
                        "Redis maxmemory-policy {p} can evict live sessions and subject epochs when memory is full: \
                         users are logged out at random and, worse, a revoked subject epoch can be evicted. \
                         Set maxmemory-policy noeviction for the sessiond database"
                    ),
                    Some(_) => tracing::debug!("Redis maxmemory-policy is noeviction"),
                    None => tracing::warn!("Redis did not report its maxmemory-policy; make sure it is noeviction"),
                }
            }
            _ => tracing::warn!(
                "could not read Redis maxmemory-policy (CONFIG may be disabled); make sure it is noeviction"
            ),
        }
        self.check_durability().await;
        self.check_replicas().await;
    }

    /// Waits until every event queued so far was appended to Redis (or given up after
    /// retrying for [`outbox::GIVE_UP_AFTER`]). For a clean shutdown: `append_events` only
    /// queues.
    ///
    /// # Errors
    /// The events still wait after that time and the operation timeout.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let upto = self.inner.outbox.last_queued();
        let limit = outbox::GIVE_UP_AFTER + self.inner.opts.timeout;
        tokio::time::timeout(limit, self.inner.outbox.settled(upto)).await.map_err(|_| StoreError::Unavailable {
            message: format!("session events still wait for Redis after {limit:?}"),
            source: None,
        })
    }

    /// One batch of the outbox (sequence numbers `first..=last` of outbox `nonce`), as one
    /// `append` script call that also moves the outbox's high-water mark: a batch at or below
    /// the mark (a retry of a batch that already ran, a stale attempt) appends nothing.
    async fn append_batch(
        &self,
        nonce: &str,
        first: u64,
        last: u64,
        batch: &[(u64, String)],
    ) -> Result<(), StoreError> {
        self.op("append_events", async {
            let mut args = Vec::with_capacity(batch.len() + 3);
            args.extend([n(self.inner.opts.events_max_len), n(first), n(last)]);
            args.extend(batch.iter().map(|(_, e)| s(e.as_str())));
            let keys = &self.inner.keys;
            let (seq, log, mark) = (keys.events_seq(), keys.events_log(), keys.events_mark(nonce));
            self.eval(&self.inner.scripts.append, &[&seq, &log, &mark], args).await.map(drop)
        })
        .await
    }

    /// The primaries with fewer online replicas than [`RedisOptions::wait_replicas`] asks
    /// for: every primary of a Cluster, the one server otherwise (the Sentinel's current
    /// primary). Empty when the option is off. Revocations and epoch bumps on such a primary
    /// are refused (503) until enough replicas connect; [`RedisStore::connect`] logs each one
    /// as a `WARN` line.
    ///
    /// # Errors
    /// Redis unreachable or too slow; a reply that is not a primary's `INFO replication`
    /// (sessiond connected to a replica).
    pub async fn replica_shortfalls(&self) -> Result<Vec<ReplicaShortfall>, StoreError> {
        let wanted = self.inner.opts.wait_replicas;
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let client = self.inner.pool.next();
        let primaries: Vec<Option<fred::types::config::Server>> = match client.cached_cluster_state() {
            Some(state) => state.unique_primary_nodes().into_iter().map(Some).collect(),
            None => vec![None],
        };
        let mut out = Vec::new();
        for primary in primaries {
            let name = primary.as_ref().map_or_else(|| "the primary".to_owned(), ToString::to_string);
            let options = Options { cluster_node: primary, ..Options::default() };
            let cmd = CustomCommand::new_static("INFO", ClusterHash::Random, false);
            let reply = self
                .op("INFO replication", async {
                    client
                        .with_options(&options)
                        .custom::<Value, Value>(cmd, vec![s("replication")])
                        .await
                        .map_err(unavailable)
                })
                .await?;
            let online = text(&reply)
                .and_then(online_replicas)
                .ok_or_else(|| corrupt(&format!("{name} did not answer INFO replication as a primary")))?;
            if online < wanted {
                out.push(ReplicaShortfall { primary: name, online, wanted });
            }
        }
        Ok(out)
    }

    /// Warns at start-up about every primary that cannot confirm revocations now
    /// ([`RedisStore::replica_shortfalls`]).
    async fn check_replicas(&self) {
        match self.replica_shortfalls().await {
            Ok(short) => {
                for r in short {
                    tracing::warn!(
                        primary = %r.primary,
                        online = r.online,
                        wanted = r.wanted,
                        "Redis {} has {} online replicas but wait_replicas is {}: every revocation and epoch \
                         bump on it will be refused (503) until enough replicas connect",
                        r.primary,
                        r.online,
                        r.wanted
                    );
                }
            }
            Err(e) => tracing::warn!(
                error = %e,
                "could not count the Redis replicas for wait_replicas; revocations are refused (503) while too \
                 few replicas acknowledge them"
            ),
        }
    }

    /// Warns when Redis would lose acknowledged writes on a restart: without the append-only
    /// file (or with it synced only every second or by the OS), a revocation or epoch bump
    /// that sessiond already confirmed can disappear, and the revoked sessions come back.
    async fn check_durability(&self) {
        let cmd = CustomCommand::new_static("CONFIG", ClusterHash::Random, false);
        let args = vec![s("GET"), s("append*")];
        let reply =
            tokio::time::timeout(self.inner.opts.timeout, self.inner.pool.next().custom::<Value, Value>(cmd, args))
                .await;
        let Ok(Ok(v)) = reply else {
            tracing::warn!(
                "could not read Redis persistence settings (CONFIG may be disabled); make sure appendonly is yes \
                 with appendfsync always, or revocations can be lost on a restart"
            );
            return;
        };
        let flat: Vec<String> = array(v).iter().filter_map(|x| text(x).map(str::to_owned)).collect();
        let get = |name: &str| flat.chunks(2).find(|kv| kv[0] == name).and_then(|kv| kv.get(1)).map(String::as_str);
        match durability_gap(get("appendonly"), get("appendfsync")) {
            Some(gap) => tracing::warn!(
                "Redis {gap}: a revocation or epoch bump that sessiond confirmed can be lost when Redis restarts, \
                 and the revoked sessions then come back. Set appendonly yes and appendfsync always \
                 (see docs/redis-store.md, \"Durability\")"
            ),
            None => tracing::debug!("Redis appends every write to its append-only file before answering"),
        }
    }

    /// Runs one operation under the store timeout.
    async fn op<T>(&self, what: &'static str, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.opts.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable {
                message: format!("redis {what} timed out after {:?}", self.inner.opts.timeout),
                source: None,
            }),
        }
    }

    /// One command on `key` (routed by the key's slot).
    async fn cmd(&self, name: &'static str, key: &str, args: Vec<Value>) -> Result<Value, StoreError> {
        let slot = fred::util::redis_keyslot(key.as_bytes());
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(s(key));
        all.extend(args);
        self.inner
            .pool
            .next()
            .custom::<Value, Value>(CustomCommand::new_static(name, ClusterHash::Custom(slot), false), all)
            .await
            .map_err(unavailable)
    }

    /// `EVALSHA`, falling back to `EVAL` (which also caches the script) on `NOSCRIPT`. A
    /// replicated script whose change is not confirmed is [`StoreError::Unconfirmed`] with
    /// nothing in `ended`; revocations that end sessions call [`RedisStore::eval_change`]
    /// instead, to report them.
    async fn eval(&self, script: &Script, keys: &[&str], args: Vec<Value>) -> Result<Value, StoreError> {
        match self.eval_change(script, keys, args).await? {
            (v, None) => Ok(v),
            (_, Some(message)) => Err(StoreError::Unconfirmed { message, ended: Vec::new() }),
        }
    }

    /// [`RedisStore::eval`] with the reply of a change that was applied but not confirmed
    /// (`wait_replicas`): the reply and, when it is not confirmed, why.
    async fn eval_change(
        &self,
        script: &Script,
        keys: &[&str],
        args: Vec<Value>,
    ) -> Result<(Value, Option<String>), StoreError> {
        let first = keys.first().ok_or_else(|| corrupt("script without keys"))?;
        let slot = fred::util::redis_keyslot(first.as_bytes());
        let mut all = Vec::with_capacity(2 + keys.len() + args.len());
        all.push(s(script.sha.as_str()));
        all.push(n(keys.len() as u64));
        all.extend(keys.iter().map(|k| s(*k)));
        all.extend(args);
        if script.replicated && self.inner.opts.wait_replicas > 0 {
            return self.eval_replicated(script, first, slot, all).await;
        }
        let attempts = if script.replay_safe { None } else { Some(1) };
        let client = self.inner.pool.next().with_options(&Options { max_attempts: attempts, ..Options::default() });
        let reply = match client
            .custom::<Value, Value>(CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot), false), all.clone())
            .await
        {
            // Not run (unknown script): safe to send again, with its text.
            Err(e) if e.details().contains("NOSCRIPT") => {
                all[0] = s(script.lua.as_str());
                client
                    .custom::<Value, Value>(CustomCommand::new_static("EVAL", ClusterHash::Custom(slot), false), all)
                    .await
                    .map_err(|e| {
                        tracing::debug!(script = script.name, error = %e, "script failed");
                        unavailable(e)
                    })
            }
            r => r.map_err(|e| {
                tracing::debug!(script = script.name, error = %e, "script failed");
                unavailable(e)
            }),
        };
        Ok((reply?, None))
    }

    /// A change that must reach the replicas before it is confirmed: the script, a write to
    /// the subject's `:w` marker key and `WAIT`, pipelined on one connection of the wait pool.
    ///
    /// One connection, because `WAIT` counts the replicas that acknowledged every write made
    /// on its own connection so far. The marker write makes that "so far" reach the present
    /// even when the script itself wrote nothing (a retried revocation that finds nothing):
    /// the replication stream is ordered, so a replica holding the marker holds every change
    /// before it, the earlier, unconfirmed attempt included.
    ///
    /// Returns the script's reply and, when too few replicas acknowledged it, why the change
    /// is not confirmed (it is applied on the primary all the same).
    async fn eval_replicated(
        &self,
        script: &Script,
        first_key: &str,
        slot: u16,
        mut all: Vec<Value>,
    ) -> Result<(Value, Option<String>), StoreError> {
        let pool = self.inner.wait_pool.as_ref().ok_or_else(|| corrupt("no connections for replica waits"))?;
        let marker = match first_key.find('}') {
            Some(end) => format!("{}:w", &first_key[..=end]),
            None => return Err(corrupt("a replicated script's first key has no hash tag")),
        };
        let want = self.inner.opts.wait_replicas;
        let wait_ms = u64::try_from(self.inner.opts.wait_timeout.as_millis()).unwrap_or(u64::MAX);
        let client = pool.next();
        // Sent once (a command resent alone on a new connection after a drop would make
        // `WAIT` count a connection that wrote nothing), and in Cluster pinned to the node
        // that owns the slot now (a redirect would run the script on another node than the
        // keyless `WAIT`): any such event fails the operation instead.
        let options = Options {
            max_attempts: Some(1),
            cluster_node: client.cached_cluster_state().and_then(|c| c.get_server(slot).cloned()),
            ..Options::default()
        };
        // `EVAL` with the text, not `EVALSHA`: on `NOSCRIPT` the queued `SET` and `WAIT` would
        // run anyway and a second pipeline would wait twice. Revocations are rare; the text is
        // a few kilobytes.
        all[0] = s(script.lua.as_str());
        let p = client.pipeline();
        let q = p.with_options(&options);
        let on_slot = |name: &'static str| CustomCommand::new_static(name, ClusterHash::Custom(slot), false);
        let queued = async {
            q.custom::<Value, Value>(on_slot("EVAL"), all).await?;
            q.custom::<Value, Value>(on_slot("SET"), vec![s(marker.as_str()), s("1"), s("PX"), n(60_000)]).await?;
            q.custom::<Value, Value>(on_slot("WAIT"), vec![n(u64::from(want)), n(wait_ms)]).await
        };
        queued.await.map_err(unavailable)?;
        let mut results = p.try_all::<Value>().await.into_iter();
        let reply = match results.next() {
            Some(r) => r.map_err(|e| {
                tracing::debug!(script = script.name, error = %e, "script failed");
                unavailable(e)
            })?,
            None => return Err(corrupt("empty pipeline reply")),
        };
        let acked = match (results.next(), results.next()) {
            (Some(Ok(_)), Some(Ok(v))) => uint(&v).unwrap_or(0),
            (Some(Err(e)), _) | (_, Some(Err(e))) => {
                tracing::debug!(script = script.name, error = %e, "replica wait failed");
                0
            }
            _ => 0,
        };
        if acked < u64::from(want) {
            metrics::counter!("sessiond_redis_replica_wait_failed_total").increment(1);
            tracing::warn!(
                script = script.name,
                acked,
                wanted = want,
                "a change applied on the Redis primary was not acknowledged by enough replicas in time; \
                 it is reported as failed (503) and not confirmed"
            );
            let message = format!(
                "redis {}: {acked} of {want} replicas acknowledged the change within {wait_ms} ms; \
                 it is applied on the primary but not confirmed replicated",
                script.name
            );
            return Ok((reply, Some(message)));
        }
        Ok((reply, None))
    }

    /// Points `key` at `value` unless it already names something else; returns whether it
    /// is ours.
    async fn pointer(&self, key: &str, value: &str, expire_at: u64) -> Result<bool, StoreError> {
        let v = self.eval(&self.inner.scripts.pointer, &[key], vec![s(value), n(expire_at)]).await?;
        Ok(uint(&v) == Some(1))
    }

    async fn touch(&self, key: &str, member: &str, score: u64, expire_at: u64, mode: &str) -> Result<(), StoreError> {
        self.eval(&self.inner.scripts.touch, &[key], vec![s(member), n(score), n(expire_at), s(mode)]).await.map(drop)
    }

    /// Best-effort removal of pointers of sessions that no longer exist (they are harmless,
    /// since reads validate them, and expire anyway).
    async fn drop_pointers(&self, records: &[Arc<SessionRecord>]) {
        for r in records {
            let mut keys: Vec<String> = r.lookup_hashes().map(|h| self.inner.keys.token(h)).collect();
            keys.push(self.inner.keys.id_pointer(&id_hex(&r.id)));
            for k in keys {
                if let Err(e) = self.cmd("DEL", &k, Vec::new()).await {
                    tracing::debug!(error = %e, "could not remove a stale pointer; it will expire");
                }
            }
        }
    }

    /// The invalidation channel, as a script argument.
    fn channel_arg(&self) -> Value {
        s(self.inner.keys.channel())
    }

    /// Cleans up after sessions the subject scripts removed (they announced the removals
    /// themselves).
    async fn removed(&self, records: &[Arc<SessionRecord>]) {
        self.drop_pointers(records).await;
    }

    /// Reads a record and its subject's epoch in one step.
    async fn load(&self, sk: &SubjectKeys, idh: &str) -> Result<Option<(SessionRecord, String, u64)>, StoreError> {
        let rec_key = sk.record(idh);
        let v = array(self.eval(&self.inner.scripts.load, &[&rec_key, &sk.epoch], Vec::new()).await?);
        let Some(record) = v.first().and_then(decode) else {
            return Ok(None);
        };
        let w = v.get(1).and_then(text).unwrap_or("0").to_owned();
        let epoch = v.get(2).and_then(uint).unwrap_or(0);
        Ok(Some((record, w, epoch)))
    }

    /// The session that token pointer `pointer` (`tag/idh`) leads to, if it is really that
    /// session and still lists `hash`.
    async fn follow(&self, hash: &TokenHash, pointer: &str) -> Result<Option<Lookup>, StoreError> {
        let Some((tag, idh)) = pointer.rsplit_once('/') else {
            return Ok(None);
        };
        let sk = self.inner.keys.subject_from_tag(tag.to_owned());
        let Some((record, _, epoch)) = self.load(&sk, idh).await? else {
            return Ok(None);
        };
        // A stale pointer (hash retired and forgotten, session replaced) resolves to
        // nothing: the record must still list the hash.
        if !self.genuine(&record, tag, idh) || !record.lookup_hashes().any(|h| h == hash) {
            return Ok(None);
        }
        Ok(Some(Lookup { record: Arc::new(record), subject_epoch: epoch }))
    }

    /// Validates that a record reached through pointer (`tag`, `idh`) really is that session.
    fn genuine(&self, record: &SessionRecord, tag: &str, idh: &str) -> bool {
        id_hex(&record.id) == idh && self.inner.keys.subject(&record.tenant, &record.subject).tag == tag
    }

    async fn subject_of(&self, id: &SessionId) -> Result<Option<SubjectKeys>, StoreError> {
        let v = self.cmd("GET", &self.inner.keys.id_pointer(&id_hex(id)), Vec::new()).await?;
        Ok(text(&v).map(|tag| self.inner.keys.subject_from_tag(tag.to_owned())))
    }

    fn record_expiry(&self, r: &SessionRecord) -> u64 {
        r.deadline().0.saturating_add(self.inner.grace_ms)
    }

    fn pointer_expiry(&self, r: &SessionRecord) -> u64 {
        r.absolute_expires_at.0.max(r.deadline().0).saturating_add(self.inner.grace_ms)
    }

    /// Write-ahead index entries: token and id pointers, tenant membership, sweep hint.
    async fn write_ahead(&self, r: &SessionRecord, sk: &SubjectKeys, idh: &str) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let value = format!("{}/{idh}", sk.tag);
        let ptr_exp = self.pointer_expiry(r);
        for h in r.lookup_hashes() {
            if !self.pointer(&keys.token(h), &value, ptr_exp).await? {
                return Err(corrupt("a token hash already belongs to another session"));
            }
        }
        if !self.pointer(&keys.id_pointer(idh), &sk.tag, ptr_exp).await? {
            return Err(corrupt("a session id already belongs to another subject"));
        }
        self.touch(&keys.tenant(&r.tenant), &enc(&r.subject), r.absolute_expires_at.0, ptr_exp, "GT").await?;
        self.hint(sk, idh, r.deadline()).await
    }

    async fn hint(&self, sk: &SubjectKeys, idh: &str, deadline: UnixMs) -> Result<(), StoreError> {
        let shard = self.inner.keys.expiry_shard_of(&sk.tag);
        let member = format!("{}/{idh}", sk.tag);
        self.touch(&shard, &member, deadline.0, deadline.0.saturating_add(self.inner.grace_ms), "").await
    }

    /// Deletes session `idh` of subject `sk` (one atomic script); see
    /// [`SessionStore::delete`].
    async fn delete_keys(&self, sk: &SubjectKeys, idh: &str) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let rec_key = sk.record(idh);
        let (v, unconfirmed) = self
            .eval_change(
                &self.inner.scripts.delete,
                &[&sk.idx, &sk.dl, &sk.seen, &rec_key],
                vec![s(idh), n(self.inner.grace_ms), self.channel_arg()],
            )
            .await?;
        let gone = decode(&v).map(Arc::new);
        match unconfirmed {
            None => {
                if let Some(r) = &gone {
                    self.removed(std::slice::from_ref(r)).await;
                }
                Ok(gone)
            }
            // Not confirmed: the pointers stay, so that a retry still finds the subject (by id
            // or by token), runs the script again (finding nothing) and waits for the
            // replicas, rather than answering "no such session" before the revocation is
            // replicated.
            Some(message) => Err(StoreError::Unconfirmed { message, ended: gone.into_iter().collect() }),
        }
    }

    async fn delete_subject_keys(
        &self,
        sk: &SubjectKeys,
        except: Option<&SessionId>,
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        let except = except.map(id_hex).unwrap_or_default();
        let (v, unconfirmed) = self
            .eval_change(
                &self.inner.scripts.delete_subject,
                &[&sk.idx, &sk.dl, &sk.seen],
                vec![s(sk.base.as_str()), s(except), n(self.inner.grace_ms), self.channel_arg()],
            )
            .await?;
        let gone: Vec<Arc<SessionRecord>> = array(v).iter().filter_map(decode).map(Arc::new).collect();
        match unconfirmed {
            None => {
                self.removed(&gone).await;
                Ok(gone)
            }
            // The pointers stay (they expire by themselves), as for a single session below.
            Some(message) => Err(StoreError::Unconfirmed { message, ended: gone }),
        }
    }

    /// The renewal applied to the stored record (when the caller's copy is stale): read it,
    /// renew it, write it back with a compare-and-set on its write count. A lost race is
    /// retried a few times, then the renewal is dropped (which only ends the session earlier).
    async fn renew_stored(
        &self,
        id: &SessionId,
        seen: UnixMs,
        idle_expires_at: UnixMs,
        ip: Option<&str>,
    ) -> Result<(), StoreError> {
        let Some(sk) = self.subject_of(id).await? else {
            return Ok(());
        };
        let idh = id_hex(id);
        let rec_key = sk.record(&idh);
        for _ in 0..5 {
            let Some((r, w, _)) = self.load(&sk, &idh).await? else {
                return Ok(());
            };
            if !self.genuine(&r, &sk.tag, &idh) {
                return Ok(());
            }
            let Some(next) = r.renewed(seen, idle_expires_at, ip) else {
                return Ok(());
            };
            self.hint(&sk, &idh, next.deadline()).await?;
            let args = vec![
                s(idh.as_str()),
                s(w),
                s(json(&next)?),
                n(next.deadline().0),
                n(next.last_seen_at.0),
                n(self.record_expiry(&next)),
                n(self.inner.grace_ms),
            ];
            let v = self.eval(&self.inner.scripts.renew, &[&sk.idx, &sk.dl, &sk.seen, &rec_key], args).await?;
            if text(&v) != Some("retry") {
                return Ok(());
            }
        }
        tracing::debug!("renewal dropped after repeated concurrent writes");
        Ok(())
    }

    async fn sweep_round(&self, now: UnixMs, budget: usize, out: &mut Vec<Expired>) -> Result<bool, StoreError> {
        let keys = &self.inner.keys;
        // Candidates from every shard, earliest deadline first.
        let mut cands: Vec<(u32, String, String, f64)> = Vec::new();
        for shard in 0..EXPIRY_SHARDS {
            let key = keys.expiry_shard(shard);
            let args = vec![s("-inf"), n(now.0), s("BYSCORE"), s("LIMIT"), n(0), n(budget as u64), s("WITHSCORES")];
            let rows = array(self.cmd("ZRANGE", &key, args).await?);
            for pair in rows.chunks(2) {
                if let [m, sc] = pair {
                    if let (Some(m), Some(sc)) = (text(m), text(sc)) {
                        cands.push((shard, m.to_owned(), sc.to_owned(), sc.parse().unwrap_or(0.0)));
                    }
                }
            }
        }
        if cands.is_empty() {
            return Ok(false);
        }
        cands.sort_by(|a, b| a.3.total_cmp(&b.3));
        let mut fixes: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
        let mut i = 0;
        while i < cands.len() && out.len() < budget {
            // A batch of consecutive candidates of one subject, within the remaining budget.
            let Some((tag, _)) = cands[i].1.rsplit_once('/') else {
                fixes.entry(cands[i].0).or_default().extend([s(cands[i].1.as_str()), s(cands[i].2.as_str()), s("del")]);
                i += 1;
                continue;
            };
            let tag = tag.to_owned();
            let room = budget - out.len();
            let mut j = i;
            let mut ids = Vec::new();
            while j < cands.len()
                && ids.len() < room
                && cands[j].1.rsplit_once('/').map(|(t, _)| t) == Some(tag.as_str())
            {
                ids.push(cands[j].1.rsplit_once('/').map(|(_, id)| id.to_owned()).unwrap_or_default());
                j += 1;
            }
            let sk = keys.subject_from_tag(tag);
            let mut args = vec![s(sk.base.as_str()), n(now.0), n(self.inner.grace_ms), self.channel_arg()];
            args.extend(ids.iter().map(|id| s(id.as_str())));
            let res = array(self.eval(&self.inner.scripts.sweep_subject, &[&sk.idx, &sk.dl, &sk.seen], args).await?);
            let mut removed = Vec::new();
            for (k, row) in res.into_iter().enumerate() {
                let row = array(row);
                let (shard, member, seen_score) = (&cands[i + k].0, &cands[i + k].1, &cands[i + k].2);
                let action = match row.get(1).and_then(text) {
                    Some("x") => {
                        if let Some(r) = row.get(2).and_then(decode) {
                            let r = Arc::new(r);
                            removed.push(r.clone());
                            out.push(Expired { why: expiry_reason(&r, now), record: r });
                        }
                        s("del")
                    }
                    Some("n") => row.get(2).and_then(text).map(s).unwrap_or_else(|| s("del")),
                    _ => s("del"),
                };
                fixes.entry(*shard).or_default().extend([s(member.as_str()), s(seen_score.as_str()), action]);
            }
            self.removed(&removed).await;
            i = j;
        }
        for (shard, triples) in fixes {
            let mut args = Vec::with_capacity(1 + triples.len());
            args.push(n(self.inner.grace_ms));
            args.extend(triples);
            self.eval(&self.inner.scripts.hint_fix, &[&keys.expiry_shard(shard)], args).await?;
        }
        Ok(true)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<LimitRule>,
        now: UnixMs,
    ) -> Result<CreateOutcome, StoreError> {
        self.op("create", async {
            let sk = self.inner.keys.subject(&record.tenant, &record.subject);
            let idh = id_hex(&record.id);
            self.write_ahead(&record, &sk, &idh).await?;
            let rec_key = sk.record(&idh);
            let (max, action) = match limit {
                Some(rule) => (
                    u64::from(rule.max),
                    match rule.action {
                        LimitAction::DenyNew => "deny",
                        LimitAction::EvictOldest => "oldest",
                        LimitAction::EvictIdlest => "idlest",
                    },
                ),
                None => (0, "none"),
            };
            let args = vec![
                s(sk.base.as_str()),
                s(idh.as_str()),
                s(json(&record)?),
                n(record.version),
                n(record.created_at.0),
                n(record.deadline().0),
                n(record.last_seen_at.0),
                n(self.record_expiry(&record)),
                n(self.inner.grace_ms),
                n(now.0),
                // A limit of 0 would read as "no limit" in the script: 0 and 1 both leave
                // room for just the new session.
                n(if limit.is_some() { max.max(1) } else { 0 }),
                s(action),
                self.channel_arg(),
            ];
            let v = array(
                self.eval(&self.inner.scripts.create, &[&sk.idx, &sk.dl, &sk.seen, &rec_key, &sk.epoch], args).await?,
            );
            match v.first().and_then(text) {
                Some("ok") => {
                    let evicted: Vec<Arc<SessionRecord>> = v[1..].iter().filter_map(decode).map(Arc::new).collect();
                    self.removed(&evicted).await;
                    Ok(CreateOutcome::Created { evicted })
                }
                Some("limit") => {
                    // The record does not exist: the write-ahead pointers lead nowhere.
                    self.drop_pointers(&[Arc::new(record)]).await;
                    Ok(CreateOutcome::LimitReached)
                }
                Some("dup") => Err(corrupt("create with an id already in use")),
                _ => Err(corrupt("unexpected reply to create")),
            }
        })
        .await
    }

    async fn find_by_token(&self, hash: &TokenHash) -> Result<Option<Lookup>, StoreError> {
        self.op("find_by_token", async {
            // A pointer this node followed before saves the `GET`; it is checked exactly as a
            // fresh one, and forgotten (then asked for again) when it leads nowhere.
            if let Some(pointer) = self.inner.pointers.get(hash) {
                if let Some(found) = self.follow(hash, &pointer).await? {
                    return Ok(Some(found));
                }
                self.inner.pointers.forget(hash);
            }
            let v = self.cmd("GET", &self.inner.keys.token(hash), Vec::new()).await?;
            let Some(pointer) = text(&v) else {
                return Ok(None);
            };
            let found = self.follow(hash, pointer).await?;
            if found.is_some() {
                self.inner.pointers.remember(hash, pointer);
            }
            Ok(found)
        })
        .await
    }

    async fn find_by_id(&self, id: &SessionId) -> Result<Option<Lookup>, StoreError> {
        self.op("find_by_id", async {
            let Some(sk) = self.subject_of(id).await? else {
                return Ok(None);
            };
            let idh = id_hex(id);
            let Some((record, _, epoch)) = self.load(&sk, &idh).await? else {
                return Ok(None);
            };
            if !self.genuine(&record, &sk.tag, &idh) {
                return Ok(None);
            }
            Ok(Some(Lookup { record: Arc::new(record), subject_epoch: epoch }))
        })
        .await
    }

    async fn update(&self, record: SessionRecord, expected_version: u64) -> Result<UpdateOutcome, StoreError> {
        self.op("update", async {
            let sk = self.inner.keys.subject(&record.tenant, &record.subject);
            let idh = id_hex(&record.id);
            self.write_ahead(&record, &sk, &idh).await?;
            let rec_key = sk.record(&idh);
            let args = vec![
                s(idh.as_str()),
                n(expected_version),
                s(json(&record)?),
                n(record.version),
                n(record.created_at.0),
                n(record.deadline().0),
                n(record.last_seen_at.0),
                n(self.record_expiry(&record)),
                n(self.inner.grace_ms),
                self.channel_arg(),
            ];
            let v = array(self.eval(&self.inner.scripts.update, &[&sk.idx, &sk.dl, &sk.seen, &rec_key], args).await?);
            match v.first().and_then(text) {
                Some("ok") => {
                    // The script announced the update; what is left is the retired pointers.
                    if let Some(old) = v.get(1).and_then(decode) {
                        let dropped: Vec<String> = old
                            .lookup_hashes()
                            .filter(|h| !record.lookup_hashes().any(|n| n == *h))
                            .map(|h| self.inner.keys.token(h))
                            .collect();
                        for k in dropped {
                            if let Err(e) = self.cmd("DEL", &k, Vec::new()).await {
                                tracing::debug!(error = %e, "could not remove a retired token pointer; it will expire");
                            }
                        }
                    }
                    Ok(UpdateOutcome::Updated)
                }
                Some("conflict") => match v.get(1).and_then(decode) {
                    Some(cur) => Ok(UpdateOutcome::Conflict(Arc::new(cur))),
                    None => Ok(UpdateOutcome::Missing),
                },
                Some("missing") => Ok(UpdateOutcome::Missing),
                _ => Err(corrupt("unexpected reply to update")),
            }
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
            // One round trip: the caller's copy, renewed, is written if the stored record
            // still has its version and an older renewal (the usual case: the copy came from
            // this store a moment ago). No pointer lookup, no read, no compare-and-set loop,
            // no sweep hint (the sweeper moves a hint that it finds early).
            let Some(ip) = ip else {
                // Without an address the copy's last address would be written back, possibly
                // over a newer one another node recorded under the same version.
                return self.renew_stored(&current.id, seen, idle_expires_at, None).await;
            };
            let Some(next) = current.renewed(seen, idle_expires_at, Some(ip)) else {
                return Ok(());
            };
            let sk = self.inner.keys.subject(&current.tenant, &current.subject);
            let idh = id_hex(&current.id);
            let args = vec![
                s(idh.as_str()),
                n(current.version),
                s(json(&next)?),
                n(next.deadline().0),
                n(next.last_seen_at.0),
                n(self.record_expiry(&next)),
                n(self.inner.grace_ms),
            ];
            let rec_key = sk.record(&idh);
            let v = self.eval(&self.inner.scripts.renew_copy, &[&sk.idx, &sk.dl, &sk.seen, &rec_key], args).await?;
            match text(&v) {
                Some("ok" | "missing") => Ok(()),
                Some("stale") => self.renew_stored(&current.id, seen, idle_expires_at, Some(ip)).await,
                _ => Err(corrupt("unexpected reply to renew")),
            }
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.op("delete", async {
            let Some(sk) = self.subject_of(id).await? else {
                return Ok(None);
            };
            self.delete_keys(&sk, &id_hex(id)).await
        })
        .await
    }

    async fn delete_by_token(&self, hash: &TokenHash) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        if let Some(found) = self.find_by_token(hash).await? {
            return self.delete(&found.record.id).await;
        }
        if self.inner.opts.wait_replicas == 0 {
            return Ok(None);
        }
        // Nothing found. If the token's pointer is still there but its session's record is
        // gone, an earlier revocation may be unconfirmed (its pointers are kept): run the
        // revocation again, finding nothing, so that this call waits for the replicas too
        // instead of reporting "no such session" first. A record that is there but no longer
        // lists this token (an old, forgotten token) is left alone.
        self.op("delete", async {
            let v = self.cmd("GET", &self.inner.keys.token(hash), Vec::new()).await?;
            let Some((tag, idh)) = text(&v).and_then(|p| p.rsplit_once('/')) else {
                return Ok(None);
            };
            let sk = self.inner.keys.subject_from_tag(tag.to_owned());
            if self.load(&sk, idh).await?.is_some() {
                return Ok(None);
            }
            let gone = self.delete_keys(&sk, idh).await?;
            if gone.is_none() {
                // Confirmed now (the replicas hold the earlier revocation too): the kept
                // pointers have done their job. Dropped, best effort, so that later logouts
                // with this token do not wait for replicas again.
                self.inner.pointers.forget(hash);
                let idp = self.inner.keys.id_pointer(idh);
                for key in [self.inner.keys.token(hash), idp] {
                    if let Err(e) = self.cmd("DEL", &key, Vec::new()).await {
                        tracing::debug!(error = %e, "could not drop a revoked session's pointer");
                    }
                }
            }
            Ok(gone)
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
            let sk = self.inner.keys.subject(tenant, subject);
            self.delete_subject_keys(&sk, except).await
        })
        .await
    }

    async fn delete_tenant(&self, tenant: &str) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        // The tenant's subjects as they are when the call starts, read once: the set is
        // ordered by each subject's latest deadline, which a new login raises, so paging it by
        // position while subjects log in again could skip one that was never visited. Then
        // one subject at a time (each atomic); the timeout applies per batch of subjects.
        // With replica waits every subject also waits for replicas (the batch's subjects then
        // run at once over the wait pool, where each `WAIT` holds its connection for up to
        // `wait_timeout`): a batch is as many subjects as the pool can wait for within the
        // timeout even when every wait runs out, so that a replica outage fails the subjects
        // one by one (each reporting what it ended) instead of a timeout dropping a batch
        // whose scripts already ran.
        let batch_len = if self.inner.opts.wait_replicas > 0 { wait_batch_len(&self.inner.opts) } else { 256 };
        let key = self.inner.keys.tenant(tenant);
        let members =
            self.op("delete_tenant", async { Ok(array(self.cmd("ZRANGE", &key, vec![n(0), s("-1")]).await?)) }).await?;
        let subjects: Vec<String> = members.iter().filter_map(text).map(str::to_owned).collect();
        // A failure part-way (a timeout, an unreachable node, an unconfirmed subject) after
        // some sessions ended is `Unconfirmed` with every session ended so far, so that the
        // engine still writes their events (a retry will not find them).
        let mut out = Vec::new();
        for batch in subjects.chunks(batch_len) {
            let mut gone = Vec::new();
            let done = if self.inner.opts.wait_replicas == 0 {
                self.op("delete_tenant", async {
                    for sub in batch {
                        let sk = self.inner.keys.subject_from_tag(format!("{}/{sub}", enc(tenant)));
                        gone.extend(self.delete_subject_keys(&sk, None).await?);
                    }
                    Ok(())
                })
                .await
            } else {
                // With replica waits, the batch's subjects run at once over the wait pool, so
                // that the batch takes a few replica round trips, not one per subject. No
                // timeout around the batch: dropping it would abort subjects whose scripts
                // already ran, and their sessions would end without events. Each subject's
                // commands are bounded by the client's command timeout (`timeout`) instead, so
                // a batch still ends; one whose reply that timeout lost is the one case left.
                async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for sub in batch {
                        let (store, sk) =
                            (self.clone(), self.inner.keys.subject_from_tag(format!("{}/{sub}", enc(tenant))));
                        tasks.spawn(async move { store.delete_subject_keys(&sk, None).await });
                    }
                    let mut failed = None;
                    while let Some(done) = tasks.join_next().await {
                        match done {
                            Ok(Ok(records)) => gone.extend(records),
                            Ok(Err(StoreError::Unconfirmed { message, ended })) => {
                                gone.extend(ended);
                                failed = failed.or(Some(StoreError::Unconfirmed { message, ended: Vec::new() }));
                            }
                            Ok(Err(e)) => failed = failed.or(Some(e)),
                            Err(e) => failed = failed.or(Some(corrupt(&format!("a revocation task failed: {e}")))),
                        }
                    }
                    failed.map_or(Ok(()), Err)
                }
                .await
            };
            out.append(&mut gone);
            if let Err(e) = done {
                return Err(e.after_ending(out));
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
            let sk = self.inner.keys.subject(tenant, subject);
            let (score, id) = match after {
                Some(c) => (c.created_at.0.to_string(), id_hex(&c.id)),
                None => ("-inf".to_owned(), String::new()),
            };
            let args = vec![s(sk.base.as_str()), n(now.0), s(score), s(id), n(limit as u64)];
            let v = self.eval(&self.inner.scripts.list, &[&sk.idx, &sk.dl], args).await?;
            let mut sessions: Vec<Arc<SessionRecord>> = array(v).iter().filter_map(decode).map(Arc::new).collect();
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
            let sk = self.inner.keys.subject(tenant, subject);
            Ok(uint(&self.cmd("GET", &sk.epoch, Vec::new()).await?).unwrap_or(0))
        })
        .await
    }

    async fn bump_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        self.op("bump_epoch", async {
            let sk = self.inner.keys.subject(tenant, subject);
            let msg = serde_json::to_string(&Invalidation::Subject {
                tenant: tenant.to_owned(),
                subject: subject.to_owned(),
            })
            .map_err(|_| corrupt("invalidation encoding"))?;
            let v = self.eval(&self.inner.scripts.bump, &[&sk.epoch], vec![self.channel_arg(), s(msg)]).await?;
            uint(&v).ok_or_else(|| corrupt("unexpected reply to bump_epoch"))
        })
        .await
    }

    async fn sweep_expired(&self, now: UnixMs, max: usize) -> Result<Vec<Expired>, StoreError> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        // A few rounds: hints of deleted or renewed sessions are fixed on the way and may
        // have taken the place of due ones in the first round.
        for _ in 0..4 {
            let more = self.op("sweep_expired", self.sweep_round(now, max, &mut out)).await?;
            if !more || out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Queues the events (module `outbox`) and returns: the request does not wait for their
    /// round trip. Fails only when [`outbox::MAX_QUEUED`] events already wait for Redis.
    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut bodies = Vec::with_capacity(events.len());
        for e in &events {
            bodies.push(serde_json::to_string(e).map_err(|_| corrupt("event encoding"))?);
        }
        self.inner.outbox.push(bodies).map_err(|_| StoreError::Unavailable {
            message: format!("{} session events already wait for Redis; these were not queued", outbox::MAX_QUEUED),
            source: None,
        })
    }

    async fn read_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.op("read_events", async {
            // Read-your-writes on this node: every event queued before this call first.
            self.inner.outbox.settled(self.inner.outbox.last_queued()).await;
            let args = vec![s(format!("{start}-0")), s("+"), s("COUNT"), n(limit as u64)];
            let rows = array(self.cmd("XRANGE", &self.inner.keys.events_log(), args).await?);
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let row = array(row);
                let cursor = row
                    .first()
                    .and_then(text)
                    .and_then(|id| id.split_once('-'))
                    .and_then(|(c, _)| c.parse::<u64>().ok())
                    .ok_or_else(|| corrupt("event stream id"))?;
                let fields = row.into_iter().nth(1).map(array).unwrap_or_default();
                let body = fields.get(1).and_then(bytes).ok_or_else(|| corrupt("event stream entry"))?;
                let mut e: Event = serde_json::from_slice(body).map_err(|_| corrupt("undecodable event"))?;
                e.cursor = cursor;
                out.push(e);
            }
            Ok(out)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.op("ping", async {
            let cmd = CustomCommand::new_static("PING", ClusterHash::Random, false);
            self.inner.pool.next().custom::<Value, Value>(cmd, Vec::new()).await.map(drop).map_err(unavailable)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tenant batch never holds more full-length replica waits per connection than fit in
    /// the operation timeout.
    #[test]
    fn tenant_batches_fit_the_wait_pool_within_the_timeout() {
        let o = |pool, timeout_ms, wait_ms| RedisOptions {
            pool_size: pool,
            timeout: Duration::from_millis(timeout_ms),
            wait_timeout: Duration::from_millis(wait_ms),
            ..RedisOptions::default()
        };
        assert_eq!(wait_batch_len(&RedisOptions::default()), 16, "4 connections x (1000/200 - 1)");
        assert_eq!(wait_batch_len(&o(4, 1000, 600)), 4, "at least one per connection");
        assert_eq!(wait_batch_len(&o(0, 1000, 999)), 1);
        assert_eq!(wait_batch_len(&o(32, 60_000, 10)), 64, "at most 64");
        for (pool, t, w) in [(4, 1000, 200), (8, 5000, 300), (2, 2000, 100), (16, 1000, 50)] {
            let opts = o(pool, t, w);
            let per_connection = wait_batch_len(&opts).div_ceil(pool) as u64;
            assert!(per_connection * w < t, "{pool} connections, {t} ms, {w} ms: {per_connection} waits each");
        }
    }

    #[test]
    fn only_noeviction_is_safe() {
        assert!(!policy_can_evict("noeviction"));
        for p in ["allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-ttl", "volatile-random"] {
            assert!(policy_can_evict(p), "{p}");
        }
    }

    #[test]
    fn only_an_always_synced_append_only_file_is_durable() {
        assert_eq!(durability_gap(Some("yes"), Some("always")), None);
        for (aof, fsync) in [
            (Some("no"), Some("always")),
            (Some("yes"), Some("everysec")),
            (Some("yes"), Some("no")),
            (None, None),
            (Some("yes"), None),
        ] {
            assert!(durability_gap(aof, fsync).is_some(), "{aof:?} {fsync:?}");
        }
    }

    #[test]
    fn only_online_replicas_of_a_primary_count() {
        let primary = "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n\
            slave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=0\r\n\
            slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n\
            slave2:ip=127.0.0.1,port=7003,state=online,offset=42,lag=1\r\n\
            master_failover_state:no-failover\r\n";
        assert_eq!(online_replicas(primary), Some(2));
        assert_eq!(online_replicas("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"), Some(0));
        // A replica's own report (its `slave_*` fields are not replicas of it).
        let replica = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nslave_repl_offset:42\r\n\
            slave_read_only:1\r\nconnected_slaves:0\r\n";
        assert_eq!(online_replicas(replica), None);
        assert_eq!(online_replicas(""), None);
        // Look-alike fields are not replicas.
        assert_eq!(online_replicas("role:master\nslave_priority:state=online\nslave:state=online\n"), Some(0));
    }

    #[test]
    fn invalidations_round_trip_as_json() {
        let inv = Invalidation::Session { id: SessionId::from_bytes([3; 16]), token_hashes: vec![TokenHash([9; 32])] };
        let text = serde_json::to_string(&inv).expect("json");
        assert_eq!(serde_json::from_str::<Invalidation>(&text).expect("json"), inv);
    }

    #[test]
    fn channel_messages_are_interpreted_strictly() {
        let id = SessionId::from_bytes([0xab; 16]);
        // What the scripts publish.
        let changed = format!(r#"{{"kind":"changed","id":"{}"}}"#, id_hex(&id));
        let me = Heartbeat::new();
        assert_eq!(interpret(&changed, &me), Ok(Some(Invalidation::Session { id, token_hashes: vec![] })));
        let subject =
            serde_json::to_string(&Invalidation::Subject { tenant: "t".into(), subject: "s".into() }).expect("json");
        assert_eq!(
            interpret(&subject, &me),
            Ok(Some(Invalidation::Subject { tenant: "t".into(), subject: "s".into() }))
        );
        // Our own heartbeat, someone else's, and local states that must never come from the wire.
        assert_eq!(interpret(me.message(), &me), Err(()));
        assert_eq!(interpret(Heartbeat::new().message(), &me), Ok(None));
        assert_eq!(interpret(r#"{"kind":"lost"}"#, &me), Ok(None));
        assert_eq!(interpret(r#"{"kind":"resync"}"#, &me), Ok(None));
        // Garbage and malformed ids are ignored.
        assert_eq!(interpret("not json", &me), Ok(None));
        assert_eq!(interpret(r#"{"kind":"changed","id":"zz"}"#, &me), Ok(None));
    }
}
