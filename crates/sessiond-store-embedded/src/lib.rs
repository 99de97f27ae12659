//! # sessiond-store-embedded
//!
//! sessiond's zero-configuration default store: one machine, no external service, and nothing
//! acknowledged is lost on `kill -9`.
//!
//! - **Disk:** SQLite (through `rusqlite`, bundled) in WAL mode with `synchronous=FULL`, in a
//!   directory of its own (`0700`, database file `0600`). It holds token *hashes* only.
//! - **Writes:** one writer thread applies every queued change in one transaction and one
//!   fsync (group commit), then updates memory, then answers each waiter. `Ok` means durable
//!   for every session change; `append_events` only queues its events in memory, where the
//!   next batch or the next renewal flush (about every second) picks them up without waking
//!   the writer (`read_events` waits for them), so a crash can lose up to that last second
//!   of events.
//! - **Reads:** every live session is indexed in memory (token hash, id, subject, expiry,
//!   subject epochs), loaded at open; `find_by_token` never touches SQLite. Records are kept
//!   in a compact binary form (about 300 bytes for a typical browser session); the records of
//!   recently resolved sessions are also kept decoded in a bounded cache that every change of
//!   a session invalidates before it is acknowledged ([`EmbeddedOptions::resolve_cache`]).
//! - **Renewals** update memory at once and reach disk in batches (about every second, or on
//!   [`EmbeddedStore::flush`]); losing some in a crash only makes sessions end earlier.
//!
//! See `docs/embedded-store.md` for the file layout, the durability model, the export format
//! and the sweeper, and `docs/decisions.md` for the reasons.
//!
//! # Examples
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sessiond_core::SessionStore;
//! use sessiond_store_embedded::{EmbeddedOptions, EmbeddedStore};
//!
//! let dir = tempfile::tempdir()?;
//! let store = EmbeddedStore::open(dir.path().join("sessions"), EmbeddedOptions::default())?;
//! assert_eq!(store.subject_epoch("acme", "alice").await?, 0);
//! assert_eq!(store.bump_epoch("acme", "alice").await?, 1);
//! store.flush().await?; // e.g. on graceful shutdown: pending renewals to disk
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod compact;
mod jsonl;
mod mem;
mod schema;
mod writer;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{oneshot, watch};

use sessiond_core::event::Event;
use sessiond_core::id::SessionId;
use sessiond_core::record::SessionRecord;
use sessiond_core::store::{CreateOutcome, Expired, LimitRule, Lookup, Page, PageCursor, SessionStore, UpdateOutcome};
use sessiond_core::time::UnixMs;
use sessiond_core::token::TokenHash;
use sessiond_core::StoreError;

pub use schema::SCHEMA_VERSION;

use mem::{subject_key, FastSet, Mem};
use writer::{Op, Reply, Writer};

/// Name of the database file inside the store's directory.
pub const DB_FILE: &str = "sessions.db";

/// Name of the lock file inside the store's directory: held (an exclusive advisory lock)
/// while a store is open on it, released on close and when the process dies.
pub const LOCK_FILE: &str = "store.lock";

/// Tuning of an [`EmbeddedStore`]. The defaults suit a typical server; none of them weakens
/// durability (every acknowledged create, update, delete and epoch bump is always fsynced).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let o = sessiond_store_embedded::EmbeddedOptions::default()
///     .with_renewal_flush_interval(Duration::from_millis(500));
/// assert_eq!(o.renewal_flush_interval, Duration::from_millis(500));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EmbeddedOptions {
    /// Longest time a renewal stays in memory only (default 1 s). A crash loses at most this
    /// much renewal progress, which only makes sessions end earlier.
    pub renewal_flush_interval: Duration,
    /// Number of pending renewals that triggers a flush before the interval (default 10,000).
    pub renewal_flush_max: usize,
    /// Most requests committed in one transaction (default 4,096).
    pub max_batch: usize,
    /// Most decoded records kept for `find_by_token` (default 65,536; 0 turns the cache off).
    /// A hit skips two index probes and the decoding of the compact record; every change of
    /// a session invalidates its entries before the change is acknowledged. Costs about
    /// 0.8 KiB per cached record, only for sessions actually resolved.
    pub resolve_cache: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            // One second bounds what a crash can cost (sessions end up to 1 s of renewal
            // earlier) while turning a renewal storm into one write per session per second.
            renewal_flush_interval: Duration::from_secs(1),
            renewal_flush_max: 10_000,
            // Large enough that a burst of writers shares one fsync; small enough that one
            // transaction stays well under a second.
            max_batch: 4096,
            // Holds the hot set of a busy server (sessions resolved in the last minutes) while
            // staying small next to the index itself (~50 MiB when full, at most).
            resolve_cache: 65_536,
        }
    }
}

impl EmbeddedOptions {
    /// Sets [`EmbeddedOptions::renewal_flush_interval`] (at least 1 ms).
    pub fn with_renewal_flush_interval(mut self, d: Duration) -> Self {
        self.renewal_flush_interval = d.max(Duration::from_millis(1));
        self
    }

    /// Sets [`EmbeddedOptions::renewal_flush_max`] (at least 1).
    pub fn with_renewal_flush_max(mut self, n: usize) -> Self {
        self.renewal_flush_max = n.max(1);
        self
    }

    /// Sets [`EmbeddedOptions::resolve_cache`] (0: no cache).
    pub fn with_resolve_cache(mut self, entries: usize) -> Self {
        self.resolve_cache = entries;
        self
    }

    /// Sets [`EmbeddedOptions::max_batch`] (at least 1).
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }
}

/// State shared by the store handle and its writer thread.
pub(crate) struct Shared {
    mem: RwLock<Mem>,
    /// The same cache as `mem`'s: hits are served without taking `mem`'s lock.
    cache: Arc<cache::ResolveCache>,
    /// Sessions renewed in memory whose renewal is not on disk yet.
    dirty: Mutex<FastSet<SessionId>>,
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// Events numbered but not yet handed to the writer, in cursor order.
    events: Mutex<EventQueue>,
    /// Last event cursor queued to the writer (readers wait until it is settled).
    events_queued: AtomicU64,
    /// What the writer has done with the queued events.
    events_settled: watch::Sender<Settled>,
}

/// Events waiting for the writer: it takes them all with its next batch.
pub(crate) struct EventQueue {
    /// Last event cursor assigned.
    next: u64,
    /// Numbered events (cursor, time, JSON body), in cursor order.
    rows: Vec<(u64, UnixMs, String)>,
}

/// Progress of the writer on queued events.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settled {
    /// Every event with a cursor up to this one is committed (or, if its batch failed, lost).
    cursor: u64,
    /// The writer thread has ended: nothing more will be settled.
    stopped: bool,
}

impl Shared {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Mem> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping service: recover the guard.
        self.mem.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Mem> {
        self.mem.write().unwrap_or_else(|e| e.into_inner())
    }

    fn dirty(&self) -> std::sync::MutexGuard<'_, FastSet<SessionId>> {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn dirty_len(&self) -> usize {
        self.dirty().len()
    }

    pub(crate) fn dirty_is_empty(&self) -> bool {
        self.dirty().is_empty()
    }

    /// Called by the writer once the batch holding events up to `cursor` is committed.
    pub(crate) fn settle_events(&self, cursor: u64) {
        self.events_settled.send_modify(|s| s.cursor = s.cursor.max(cursor));
    }

    /// Called when the writer thread ends.
    pub(crate) fn events_stopped(&self) {
        self.events_settled.send_modify(|s| s.stopped = true);
    }

    fn events(&self) -> std::sync::MutexGuard<'_, EventQueue> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether events wait for the writer.
    pub(crate) fn events_pending(&self) -> bool {
        !self.events().rows.is_empty()
    }

    /// Every queued event, in cursor order, for the writer's batch.
    pub(crate) fn take_events(&self) -> Vec<(u64, UnixMs, String)> {
        std::mem::take(&mut self.events().rows)
    }

    /// Puts back the events of a batch whose commit failed, ahead of any queued since (their
    /// cursors are lower), so that the next batch carries them again.
    pub(crate) fn restore_events(&self, mut rows: Vec<(u64, UnixMs, String)>) {
        let mut q = self.events();
        rows.append(&mut q.rows);
        q.rows = rows;
    }

    pub(crate) fn take_dirty(&self) -> FastSet<SessionId> {
        std::mem::take(&mut *self.dirty())
    }

    pub(crate) fn restore_dirty(&self, ids: FastSet<SessionId>) {
        self.dirty().extend(ids);
    }

    /// Runs `f` on a read-only connection (blocking: call from a blocking thread).
    fn with_reader<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let out = f(&mut conn);
        self.readers.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        out
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sql_err("open a read connection"))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err("configure a read connection"))?;
    Ok(conn)
}

/// Maps a SQLite error to [`StoreError::Unavailable`], naming what was being done.
pub(crate) fn sql_err(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::unavailable(format!("embedded store: could not {what}"), e)
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |e| StoreError::unavailable(format!("embedded store: could not {what}"), e)
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable { message: "embedded store: the writer thread has stopped".into(), source: None }
}

/// The embedded durable store. See the [crate documentation](crate).
///
/// Dropping it stops the writer thread after it flushed pending renewals (the drop waits for
/// that final commit); call [`EmbeddedStore::flush`] first on a graceful shutdown to do that
/// work asynchronously.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    tx: Option<Sender<Op>>,
    writer: Option<JoinHandle<()>>,
    options: EmbeddedOptions,
    dir: PathBuf,
    /// The directory's lock; a field, so it is released only after `Drop` has joined the
    /// writer (its connection closed).
    _lock: fs::File,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("dir", &self.dir).field("options", &self.options).finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in directory `dir`: creates the directory (`0700`) and the
    /// database file (`0600`), applies schema migrations, loads every stored session into
    /// memory and starts the writer thread. Blocking: call it at startup, or from
    /// `spawn_blocking`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the directory or database cannot be opened;
    /// [`StoreError::Corrupt`] when the database was written by a newer, incompatible build.
    pub fn open(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io_err("create the data directory"))?;
        // The directory is dedicated to the store: keep it owner-only even if it pre-existed.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err("restrict the data directory"))?;
        let lock = lock_dir(&dir)?;
        let path = dir.join(DB_FILE);
        match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(f) => {
                f.sync_all().map_err(io_err("create the database file"))?;
                fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err("sync the data directory"))?;
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                    .map_err(io_err("restrict the database file"))?;
            }
            Err(e) => return Err(io_err("create the database file")(e)),
        }
        let mut conn = Connection::open(&path).map_err(sql_err("open the database"))?;
        configure(&conn)?;
        schema::migrate(&mut conn)?;
        let mut mem = load(&conn)?;
        mem.cache = Arc::new(cache::ResolveCache::new(options.resolve_cache));
        let last_event = last_event_cursor(&conn)?;
        let shared = Arc::new(Shared {
            cache: mem.cache.clone(),
            mem: RwLock::new(mem),
            dirty: Mutex::new(FastSet::default()),
            path,
            readers: Mutex::new(Vec::new()),
            events: Mutex::new(EventQueue { next: last_event, rows: Vec::new() }),
            events_queued: AtomicU64::new(last_event),
            events_settled: watch::Sender::new(Settled { cursor: last_event, stopped: false }),
        });
        let (tx, rx) = mpsc::channel();
        let w = Writer { conn, rx, shared: shared.clone(), options: options.clone(), event_failures: 0 };
        let writer = std::thread::Builder::new()
            .name("sessiond-store-writer".into())
            .spawn(move || w.run())
            .map_err(io_err("start the writer thread"))?;
        Ok(EmbeddedStore { shared, tx: Some(tx), writer: Some(writer), options, dir, _lock: lock })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of sessions held (live, or expired and not yet swept).
    pub fn len(&self) -> usize {
        self.shared.read().sessions.len()
    }

    /// Whether the store holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes every pending (deferred) renewal to disk and waits for the commit. Call it on
    /// graceful shutdown.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the commit fails or the writer has stopped.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.call(|reply| Op::Flush { reply }).await
    }

    /// Writes every stored session and every subject epoch as JSON lines (format in
    /// `docs/embedded-store.md`): first one `{"type":"epoch",...}` line per subject with a
    /// non-zero epoch, then one `{"type":"session","record":{...}}` line per session, where
    /// `record` is exactly [`SessionRecord::encode`]'s JSON. Pending renewals are flushed
    /// first; the lines come from one consistent database snapshot. Returns the number of
    /// session lines written. `w` is written from the calling task.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when reading the database or writing to `w` fails.
    pub async fn export_jsonl(&self, w: impl std::io::Write + Send) -> Result<u64, StoreError> {
        self.flush().await?;
        jsonl::export(self.shared.clone(), w).await
    }

    /// Reads JSON lines written by [`EmbeddedStore::export_jsonl`] and stores them in ONE
    /// transaction: either every line is imported or none is. A session with an id already
    /// stored replaces it; an epoch never lowers the stored one. Returns the number of
    /// sessions imported. `r` is read (and parsed whole, in memory) on the calling task: an
    /// admin operation, for the CLI or a blocking task.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] naming the first bad line (unparsable, unknown type,
    /// undecodable record, duplicate id or token hash); [`StoreError::Unavailable`] when
    /// reading `r` or the commit fails.
    pub async fn import_jsonl(&self, r: impl std::io::BufRead + Send) -> Result<u64, StoreError> {
        let (sessions, epochs) = jsonl::parse(r)?;
        self.call(|reply| Op::Import { sessions, epochs, reply }).await
    }

    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(writer_gone)?;
        tx.send(op(reply)).map_err(|_| writer_gone())?;
        rx.await.map_err(|_| writer_gone())?
    }

    fn lookup(mem: &Mem, id: &SessionId) -> Option<Lookup> {
        let slot = mem.sessions.get(id)?;
        let record = slot.record()?;
        Some(Lookup { record: Arc::new(record), subject_epoch: slot.epoch.load(Ordering::Acquire) })
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            if w.join().is_err() {
                tracing::error!("the embedded store writer thread panicked");
            }
        }
    }
}

/// Takes the store directory's exclusive lock, or fails at once: two stores on one directory
/// (two processes during a rolling restart, or two opens in one) would each serve from their
/// own memory, so a session revoked through one stays valid in the other, and the other's
/// next write of that session puts the deleted row back.
// `File::try_lock` needs Rust 1.89; the workspace is built with a current toolchain.
#[allow(clippy::incompatible_msrv)]
fn lock_dir(dir: &Path) -> Result<fs::File, StoreError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(LOCK_FILE))
        .map_err(io_err("open the store's lock file"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable {
            message: "embedded store: the directory is in use by another open store (another process?)".into(),
            source: None,
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_err("lock the store directory")(e)),
    }
}

/// Sets the pragmas every write connection needs: WAL, `synchronous=FULL` (each commit is
/// fsynced before it returns), a busy timeout for a previous owner still closing.
fn configure(conn: &Connection) -> Result<(), StoreError> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sql_err("enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!("the database refused WAL mode (journal_mode={mode})")));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384;",
    )
    .map_err(sql_err("configure the database"))?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(sql_err("configure the database"))?;
    Ok(())
}

/// The highest event cursor ever assigned (`AUTOINCREMENT` remembers it even when rows are
/// gone), so that cursors assigned by this process continue strictly above it.
fn last_event_cursor(conn: &Connection) -> Result<u64, StoreError> {
    let last: i64 = conn
        .query_row(
            "SELECT max(coalesce((SELECT max(cursor) FROM events), 0),
                        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))",
            [],
            |r| r.get(0),
        )
        .map_err(sql_err("read the last event cursor"))?;
    Ok(u64::try_from(last).unwrap_or(0))
}

/// Rows per message between the load threads.
const LOAD_CHUNK: usize = 2048;

/// A chunk of stored records read at load: their bytes end to end in one buffer (one
/// allocation per chunk rather than per row), and where each one ends.
struct RawChunk {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl RawChunk {
    fn new() -> Self {
        // A typical record is about 550 bytes of JSON.
        Self { data: Vec::with_capacity(LOAD_CHUNK * 640), ends: Vec::with_capacity(LOAD_CHUNK) }
    }
}

/// What [`SessionRecord::encode`] writes first: the version field of the current encoding,
/// before the record's own fields.
const RECORD_PREFIX: &[u8] = b"{\"v\":1,";
/// [`RECORD_PREFIX`] with the version field blanked out (JSON whitespace), same length.
const BLANKED_PREFIX: &[u8] = b"      {";

/// [`SessionRecord::decode`], faster for the records this build writes (the load's hot path).
///
/// `decode` reads the version field through `#[serde(flatten)]`, which buffers every field
/// of the record (allocating each) before decoding it: most of the load's CPU time. A record
/// that starts exactly with [`RECORD_PREFIX`] is of the current version: blank that prefix
/// (in place) and decode the rest directly as a [`SessionRecord`]. Anything else, or a record
/// the fast path cannot decode, is given to `decode` unchanged (which counts and logs the
/// undecodable ones). For every record [`SessionRecord::encode`] writes, the result is the
/// same as `decode`'s (tested in `compact`); only a hand-made row repeating the `"v"` key
/// would be accepted here and refused there.
fn decode_stored(bytes: &mut [u8]) -> Option<SessionRecord> {
    if sessiond_core::record::RECORD_VERSION == 1 && bytes.starts_with(RECORD_PREFIX) {
        bytes[..RECORD_PREFIX.len()].copy_from_slice(BLANKED_PREFIX);
        if let Ok(r) = serde_json::from_slice::<SessionRecord>(bytes) {
            return Some(r);
        }
        bytes[..RECORD_PREFIX.len()].copy_from_slice(RECORD_PREFIX);
    }
    SessionRecord::decode(bytes)
}

/// Loads every decodable session and every epoch into memory.
///
/// A pipeline, because decoding JSON dominates: this thread reads rows from SQLite, a pool of
/// threads (one per CPU) decodes them and builds their compact form, and one thread inserts
/// them into the index.
fn load(conn: &Connection) -> Result<Mem, StoreError> {
    let count: i64 =
        conn.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0)).map_err(sql_err("count sessions"))?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    let (raw_tx, raw_rx) = mpsc::sync_channel::<RawChunk>(workers * 4);
    let raw_rx = Mutex::new(raw_rx);
    let (dec_tx, dec_rx) = mpsc::sync_channel::<Vec<mem::Prepared>>(workers * 4);
    let skipped = std::sync::atomic::AtomicU64::new(0);
    let (read, mem) = std::thread::scope(|s| {
        for _ in 0..workers {
            let (dec_tx, raw_rx, skipped) = (dec_tx.clone(), &raw_rx, &skipped);
            s.spawn(move || loop {
                let next = raw_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok(chunk) = next else { break };
                let mut out = Vec::with_capacity(chunk.ends.len());
                let RawChunk { mut data, ends } = chunk;
                let mut start = 0;
                for end in ends {
                    let bytes = &mut data[start..end];
                    start = end;
                    // Undecodable records are treated as absent (decode counts them in a metric).
                    match decode_stored(bytes) {
                        Some(r) => {
                            let blob = compact::encode(&r);
                            out.push(mem::Prepared::new(&r, blob));
                        }
                        None => {
                            skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                if dec_tx.send(out).is_err() {
                    break;
                }
            });
        }
        drop(dec_tx);
        let inserter = s.spawn(move || {
            let n = usize::try_from(count).unwrap_or(0);
            let mut mem = Mem::with_capacity(n);
            let mut expiry = Vec::with_capacity(n);
            for chunk in dec_rx {
                for p in chunk {
                    expiry.push(mem.insert_but_expiry(p));
                }
            }
            expiry.sort_unstable();
            mem.expiry = expiry.into_iter().collect();
            mem
        });
        let read = (|| -> Result<(), StoreError> {
            let mut stmt = conn.prepare("SELECT record FROM sessions").map_err(sql_err("load sessions"))?;
            let mut rows = stmt.query([]).map_err(sql_err("load sessions"))?;
            let mut chunk = RawChunk::new();
            while let Some(row) = rows.next().map_err(sql_err("load sessions"))? {
                let bytes = row.get_ref(0).map_err(sql_err("load sessions"))?.as_bytes_or_null().ok().flatten();
                chunk.data.extend_from_slice(bytes.unwrap_or_default());
                chunk.ends.push(chunk.data.len());
                if chunk.ends.len() == LOAD_CHUNK {
                    let full = std::mem::replace(&mut chunk, RawChunk::new());
                    if raw_tx.send(full).is_err() {
                        break;
                    }
                }
            }
            if !chunk.ends.is_empty() {
                let _ = raw_tx.send(chunk);
            }
            Ok(())
        })();
        drop(raw_tx);
        (read, inserter.join())
    });
    read?;
    let mut mem = mem.map_err(|_| StoreError::Corrupt("a thread loading the sessions panicked".into()))?;
    let skipped = skipped.into_inner();
    if skipped > 0 {
        tracing::warn!(skipped, "undecodable session records left on disk and treated as absent");
    }
    let mut stmt = conn.prepare("SELECT tenant, subject, epoch FROM epochs").map_err(sql_err("load epochs"))?;
    let mut rows = stmt.query([]).map_err(sql_err("load epochs"))?;
    while let Some(row) = rows.next().map_err(sql_err("load epochs"))? {
        let tenant: String = row.get(0).map_err(sql_err("load epochs"))?;
        let subject: String = row.get(1).map_err(sql_err("load epochs"))?;
        let epoch: i64 = row.get(2).map_err(sql_err("load epochs"))?;
        mem.set_epoch(&subject_key(&tenant, &subject), u64::try_from(epoch).unwrap_or(0));
    }
    Ok(mem)
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<LimitRule>,
        now: UnixMs,
    ) -> Result<CreateOutcome, StoreError> {
        let json = record.encode();
        let record = Arc::new(record);
        self.call(|reply| Op::Create { record, json, limit, now, reply }).await
    }

    async fn find_by_token(&self, hash: &TokenHash) -> Result<Option<Lookup>, StoreError> {
        Ok(self.find_by_token_now(hash).flatten())
    }

    /// Always answers: the whole index is in memory.
    fn find_by_token_now(&self, hash: &TokenHash) -> Option<Option<Lookup>> {
        // Hot path. A hit needs no index lock (see `cache` for why that is safe).
        if let Some(hit) = self.shared.cache.get(hash) {
            return Some(Some(hit));
        }
        let mem = self.shared.read();
        let Some(slot) = mem.by_token.get(hash).and_then(|id| mem.sessions.get(id)) else {
            return Some(None);
        };
        let Some(record) = slot.record() else { return Some(None) };
        let record = Arc::new(record);
        // Filled under the read lock: no writer can change this session until it is released,
        // and every writer invalidates the entry when it does.
        self.shared.cache.put(*hash, record.clone(), slot.epoch.clone());
        Some(Some(Lookup { record, subject_epoch: slot.epoch.load(Ordering::Acquire) }))
    }

    async fn find_by_id(&self, id: &SessionId) -> Result<Option<Lookup>, StoreError> {
        Ok(Self::lookup(&self.shared.read(), id))
    }

    async fn update(&self, record: SessionRecord, expected_version: u64) -> Result<UpdateOutcome, StoreError> {
        let json = record.encode();
        let record = Arc::new(record);
        self.call(|reply| Op::Update { record, json, expected: expected_version, reply }).await
    }

    async fn renew(
        &self,
        current: &SessionRecord,
        seen: UnixMs,
        idle_expires_at: UnixMs,
        ip: Option<&str>,
    ) -> Result<(), StoreError> {
        // Renewed from the stored record in memory, not from the caller's copy.
        let id = &current.id;
        let pending = {
            let mut mem = self.shared.write();
            let Some(r) = mem.sessions.get(id).and_then(|s| s.record()) else {
                return Ok(()); // never creates: a deleted session stays deleted
            };
            let Some(next) = r.renewed(seen, idle_expires_at, ip) else {
                return Ok(());
            };
            let blob = compact::encode(&next);
            mem.remove(id);
            mem.insert(&next, blob);
            let mut dirty = self.shared.dirty();
            dirty.insert(*id);
            dirty.len()
        };
        if pending == self.options.renewal_flush_max {
            if let Some(tx) = &self.tx {
                // A full queue of renewals: wake the writer now rather than at the interval.
                let _ = tx.send(Op::Nudge);
            }
        }
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let id = *id;
        self.call(|reply| Op::Delete { id, reply }).await
    }

    async fn delete_subject(
        &self,
        tenant: &str,
        subject: &str,
        except: Option<&SessionId>,
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        let (tenant, subject, except) = (tenant.to_owned(), subject.to_owned(), except.copied());
        self.call(|reply| Op::DeleteSubject { tenant, subject, except, reply }).await
    }

    async fn delete_tenant(&self, tenant: &str) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        let tenant = tenant.to_owned();
        self.call(|reply| Op::DeleteTenant { tenant, reply }).await
    }

    async fn list_subject(
        &self,
        tenant: &str,
        subject: &str,
        after: Option<PageCursor>,
        limit: usize,
        now: UnixMs,
    ) -> Result<Page, StoreError> {
        let mem = self.shared.read();
        let key = subject_key(tenant, subject);
        let start = after.map(|c| (c.created_at, c.id));
        let mut sessions: Vec<Arc<SessionRecord>> = Vec::new();
        let mut next = None;
        for (created_at, id) in mem.subject_ids(&key).filter(|k| start.is_none_or(|st| **k > st)) {
            let Some(slot) = mem.sessions.get(id) else { continue };
            if compact::deadline(&slot.blob) <= now {
                continue;
            }
            if sessions.len() == limit {
                next = sessions.last().map(|r| PageCursor { created_at: r.created_at, id: r.id });
                break;
            }
            debug_assert_eq!(compact::created_at(&slot.blob), *created_at);
            if let Some(r) = slot.record() {
                sessions.push(Arc::new(r));
            }
        }
        Ok(Page { sessions, next })
    }

    async fn subject_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        Ok(self.shared.read().epoch(&subject_key(tenant, subject)))
    }

    async fn bump_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        let (tenant, subject) = (tenant.to_owned(), subject.to_owned());
        self.call(|reply| Op::BumpEpoch { tenant, subject, reply }).await
    }

    async fn sweep_expired(&self, now: UnixMs, max: usize) -> Result<Vec<Expired>, StoreError> {
        self.call(|reply| Op::Sweep { now, max, reply }).await
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // Cursors are assigned here and the events queued in memory; the writer commits them
        // with its next batch or its next renewal flush. Nobody waits for that fsync, and
        // queueing does not wake the writer (see `docs/decisions.md`, "Events are queued, not
        // awaited").
        let tx = self.tx.as_ref().ok_or_else(writer_gone)?;
        if self.shared.events_settled.borrow().stopped {
            return Err(writer_gone());
        }
        let bodies = writer::event_bodies(&events);
        let queued = {
            let mut q = self.shared.events();
            for (at, body) in bodies {
                q.next += 1;
                let cursor = q.next;
                q.rows.push((cursor, at, body));
            }
            self.shared.events_queued.store(q.next, Ordering::Release);
            q.rows.len()
        };
        if queued >= self.options.max_batch {
            // Many events waiting: wake the writer now rather than at the flush interval.
            let _ = tx.send(Op::Nudge);
        }
        Ok(())
    }

    async fn read_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        // Read-your-writes: wait until every event queued before this call is committed
        // (at most one batch: the writer drains the queue continuously).
        let queued = self.shared.events_queued.load(Ordering::Acquire);
        let mut settled = self.shared.events_settled.subscribe();
        if settled.borrow().cursor < queued {
            // They wait in memory for the next batch: ask for it now.
            if let Some(tx) = &self.tx {
                let _ = tx.send(Op::Nudge);
            }
        }
        let s = settled.wait_for(|s| s.cursor >= queued || s.stopped).await.map(|s| *s).map_err(|_| writer_gone())?;
        if s.cursor < queued {
            return Err(writer_gone());
        }
        let shared = self.shared.clone();
        let after = writer::sql_i64(after);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        tokio::task::spawn_blocking(move || shared.with_reader(|c| jsonl::read_events(c, after, limit)))
            .await
            .map_err(|e| StoreError::unavailable("embedded store: the event reader failed", e))?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match &self.writer {
            Some(w) if !w.is_finished() => Ok(()),
            _ => Err(writer_gone()),
        }
    }
}
