//! Store-level tests of the embedded store: durability across reopen, restart through the
//! engine, file permissions, migrations, export/import, deferred renewals, and that no raw
//! token ever reaches the files.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sessiond_conformance::test_policies;
use sessiond_core::binding::RequestContext;
use sessiond_core::event::{Event, EventKind};
use sessiond_core::store::{CreateOutcome, SessionStore};
use sessiond_core::time::{ManualClock, UnixMs};
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::{CreateRequest, Engine, StoreError};
use sessiond_store_embedded::{EmbeddedOptions, EmbeddedStore, DB_FILE, SCHEMA_VERSION};

use common::record;

const NO_CTX: RequestContext<'static> = RequestContext { ip: None, user_agent: None };
const T0: UnixMs = UnixMs(1_700_000_000_000);

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open")
}

fn engine(store: Arc<dyn SessionStore>, key: &SigningKey, clock: Arc<ManualClock>) -> Engine {
    Engine::builder(store, KeyRing::single(KeyId(1), key.clone()))
        .with_policies(test_policies())
        .with_clock(clock)
        .build()
}

fn request(subject: &str) -> CreateRequest {
    let mut r = CreateRequest {
        subject: subject.into(),
        tenant: "acme".into(),
        policy: Some("test".into()),
        aal: 1,
        amr: vec!["pwd".into()],
        ..Default::default()
    };
    r.device.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0".into());
    r.device.first_ip = Some("192.0.2.10".into());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_sessions_deadlines_epochs_and_events() {
    let dir = tempfile::tempdir().expect("dir");
    let key = SigningKey::generate();
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(open(dir.path()));
    let e = engine(store.clone(), &key, clock.clone());
    let a = e.create(request("alice")).await.expect("create");
    let b = e.create(request("bob")).await.expect("create");
    let revoked = e.create(request("carol")).await.expect("create");
    let zed = e.create(request("zed")).await.expect("create");
    e.revoke(&revoked.session.id, sessiond_core::RevokeReason::Admin).await.expect("revoke");
    assert_eq!(e.bump_epoch("acme", "zed").await.expect("bump"), 1);
    clock.advance(Duration::from_secs(30));
    let renewed = e.resolve(a.token.expose(), &NO_CTX).await.expect("resolve");
    assert!(renewed.renewed);
    store.flush().await.expect("flush");
    let events_before = e.events(0, 100).await.expect("events");
    drop(e);
    drop(store);

    let store = Arc::new(open(dir.path()));
    assert_eq!(store.len(), 3);
    let e = engine(store.clone(), &key, clock.clone());
    let ra = e.resolve(a.token.expose(), &NO_CTX).await.expect("a after restart");
    assert_eq!(ra.session.idle_expires_at, renewed.idle_expires_at, "the flushed renewal survived");
    assert_eq!(ra.session.absolute_expires_at, a.session.absolute_expires_at);
    let rb = e.resolve(b.token.expose(), &NO_CTX).await.expect("b after restart");
    assert_eq!(rb.session.idle_expires_at, b.session.idle_expires_at);
    assert_eq!(rb.session.absolute_expires_at, b.session.absolute_expires_at);
    assert_eq!(*rb.session, *b.session, "every field survived the restart");
    assert!(e.resolve(revoked.token.expose(), &NO_CTX).await.is_err(), "a revoked session came back");
    assert!(e.resolve(zed.token.expose(), &NO_CTX).await.is_err(), "the epoch bump was lost");
    assert_eq!(store.subject_epoch("acme", "zed").await.expect("epoch"), 1);
    let events_after = e.events(0, 100).await.expect("events");
    assert_eq!(events_after[..events_before.len()], events_before[..], "the event log survived");
    // Expiry is evaluated with the same clock after a restart.
    clock.advance(Duration::from_secs(61));
    assert!(e.resolve(b.token.expose(), &NO_CTX).await.is_err());
    assert_eq!(e.sweep(100).await.expect("sweep"), 3);
    assert!(store.is_empty());
}

#[tokio::test]
async fn files_are_owner_only_and_pragmas_are_durable() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let store = open(&data);
    store.create(record([1; 16], [1; 32], "t", "s", T0), None, T0).await.expect("create");
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for f in [DB_FILE.to_string(), format!("{DB_FILE}-wal"), format!("{DB_FILE}-shm")] {
        assert_eq!(mode(&data.join(&f)), 0o600, "{f}");
    }
    let conn = rusqlite::Connection::open(data.join(DB_FILE)).expect("conn");
    let jm: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("pragma");
    assert_eq!(jm, "wal");
}

/// Creates a database as a v1 build wrote it (raw SQL), then opens it with this build.
#[tokio::test]
async fn migrates_a_v1_database_and_reads_its_sessions() {
    let dir = tempfile::tempdir().expect("dir");
    let r = record([3; 16], [4; 32], "acme", "alice", T0);
    {
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("conn");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO meta VALUES ('schema_version', 1);
             CREATE TABLE sessions (id BLOB PRIMARY KEY, token_hash BLOB NOT NULL, tenant TEXT NOT NULL,
                 subject TEXT NOT NULL, created_at INTEGER NOT NULL, deadline INTEGER NOT NULL, record BLOB NOT NULL);
             CREATE TABLE tokens (hash BLOB PRIMARY KEY, session_id BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE epochs (tenant TEXT NOT NULL, subject TEXT NOT NULL, epoch INTEGER NOT NULL,
                 PRIMARY KEY (tenant, subject)) WITHOUT ROWID;
             CREATE TABLE events (cursor INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, body TEXT NOT NULL);
             INSERT INTO epochs VALUES ('acme', 'bob', 7);",
        )
        .expect("v1 schema");
        conn.execute(
            "INSERT INTO sessions VALUES (?1, ?2, 'acme', 'alice', ?3, ?4, ?5)",
            rusqlite::params![
                &r.id.as_bytes()[..],
                &r.token_hash.0[..],
                T0.0 as i64,
                r.deadline().0 as i64,
                r.encode()
            ],
        )
        .expect("row");
        conn.execute(
            "INSERT INTO tokens VALUES (?1, ?2)",
            rusqlite::params![&r.token_hash.0[..], &r.id.as_bytes()[..]],
        )
        .expect("token");
        // A row a buggy writer corrupted: treated as absent, never an error.
        conn.execute(
            "INSERT INTO sessions VALUES (x'09090909090909090909090909090909', x'00', 'acme', 'alice', 1, 2, 'garbage')",
            [],
        )
        .expect("bad row");
    }
    let store = open(dir.path());
    let found = store.find_by_token(&r.token_hash).await.expect("find").expect("migrated session");
    assert_eq!(*found.record, r);
    assert_eq!(store.len(), 1, "the undecodable row is absent");
    assert_eq!(store.subject_epoch("acme", "bob").await.expect("epoch"), 7);
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("conn");
    let v: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).expect("v");
    assert_eq!(v, i64::from(SCHEMA_VERSION));
    let idx: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'sessions_by_deadline'",
            [],
            |r| r.get(0),
        )
        .expect("index");
    assert_eq!(idx, 1);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    drop(open(dir.path()));
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("conn");
    conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'", []).expect("bump");
    drop(conn);
    match EmbeddedStore::open(dir.path(), EmbeddedOptions::default()) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("99"), "{m}"),
        other => panic!("expected a schema error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_round_trip() {
    let src_dir = tempfile::tempdir().expect("dir");
    let src = open(src_dir.path());
    let mut records = Vec::new();
    for i in 0..50u8 {
        let mut r = record([i; 16], [i; 32], "acme", &format!("user{}", i % 7), UnixMs(T0.0 + u64::from(i)));
        r.data.insert("cart".into(), serde_json::json!({"n": i}));
        src.create(r.clone(), None, T0).await.expect("create");
        records.push(r);
    }
    src.bump_epoch("acme", "user3").await.expect("bump");
    src.bump_epoch("other", "x").await.expect("bump");
    // A renewal still pending in memory is part of the export.
    src.renew(&records[0], UnixMs(T0.0 + 5), UnixMs(T0.0 + 99 * 60_000), Some("198.51.100.7")).await.expect("renew");
    let mut out = Vec::new();
    assert_eq!(src.export_jsonl(&mut out).await.expect("export"), 50);
    let text = String::from_utf8(out.clone()).expect("utf8");
    assert_eq!(text.lines().count(), 52);
    assert!(text.lines().next().expect("line").starts_with(r#"{"type":"epoch""#));

    let dst_dir = tempfile::tempdir().expect("dir");
    let dst = open(dst_dir.path());
    assert_eq!(dst.import_jsonl(&out[..]).await.expect("import"), 50);
    for r in &records[1..] {
        assert_eq!(*dst.find_by_token(&r.token_hash).await.expect("find").expect("imported").record, *r);
    }
    let r0 = dst.find_by_id(&records[0].id).await.expect("find").expect("imported");
    assert_eq!(r0.record.idle_expires_at, UnixMs(T0.0 + 99 * 60_000));
    assert_eq!(r0.record.device.last_ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(dst.subject_epoch("acme", "user3").await.expect("epoch"), 1);
    assert_eq!(dst.subject_epoch("other", "x").await.expect("epoch"), 1);
    // Importing twice replaces, never duplicates; and it is durable.
    assert_eq!(dst.import_jsonl(&out[..]).await.expect("import again"), 50);
    drop(dst);
    let dst = open(dst_dir.path());
    assert_eq!(dst.len(), 50);
    let mut again = Vec::new();
    dst.export_jsonl(&mut again).await.expect("export");
    assert_eq!(again, out, "export → import → export is the identity");
}

#[tokio::test]
async fn a_bad_import_line_is_named_and_nothing_is_imported() {
    let dir = tempfile::tempdir().expect("dir");
    let store = open(dir.path());
    let good = |i: u8| {
        let r = record([i; 16], [i; 32], "acme", "alice", T0);
        format!("{{\"type\":\"session\",\"record\":{}}}\n", String::from_utf8(r.encode()).expect("utf8"))
    };
    let cases = [
        (format!("{}{}not json\n", good(1), good(2)), "line 3"),
        (format!("{}\n{}{{\"type\":\"session\",\"record\":{{\"v\":1}}}}\n", good(1), good(2)), "line 4"),
        (format!("{}{}", good(1), good(1)), "line 2"),
        (format!("{}{{\"type\":\"nope\"}}\n", good(1)), "line 2"),
    ];
    for (text, want) in cases {
        match store.import_jsonl(text.as_bytes()).await {
            Err(StoreError::Corrupt(m)) => assert!(m.contains(want), "{m} should name {want}"),
            other => panic!("expected an import error, got {other:?}"),
        }
        assert!(store.is_empty(), "a failed import left sessions behind");
    }
    // A token hash already used by a stored session: refused in the writer, atomically.
    store.create(record([9; 16], [2; 32], "acme", "bob", T0), None, T0).await.expect("create");
    match store.import_jsonl(format!("{}{}", good(1), good(2)).as_bytes()).await {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("line 2"), "{m}"),
        other => panic!("expected an import error, got {other:?}"),
    }
    assert_eq!(store.len(), 1);
}

/// Two stores on one directory would each serve from their own memory: a session revoked
/// through one would stay valid in the other, whose next write of it would put the deleted
/// row back. The second open is refused while the first is open, and works once it is closed.
#[tokio::test]
async fn a_directory_is_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().expect("dir");
    let first = open(dir.path());
    match EmbeddedStore::open(dir.path(), EmbeddedOptions::default()) {
        Err(StoreError::Unavailable { message, .. }) => assert!(message.contains("in use"), "{message}"),
        other => panic!("a second store opened the same directory: {other:?}"),
    }
    drop(first);
    drop(open(dir.path()));
}

/// An export is input like any other: a hand-edited or hostile file cannot plant an epoch
/// no bump passes, data that cannot be read back, or out-of-order deadlines.
#[tokio::test]
async fn an_implausible_import_is_refused_and_nothing_is_imported() {
    let dir = tempfile::tempdir().expect("dir");
    let store = open(dir.path());
    let line = |r: &sessiond_core::record::SessionRecord| {
        format!("{{\"type\":\"session\",\"record\":{}}}\n", String::from_utf8(r.encode()).expect("utf8"))
    };
    let good = line(&record([1; 16], [1; 32], "acme", "alice", T0));
    let variant = |f: &dyn Fn(&mut sessiond_core::record::SessionRecord)| {
        let mut r = record([2; 16], [2; 32], "acme", "mallory", T0);
        f(&mut r);
        line(&r)
    };
    let deep: serde_json::Value =
        serde_json::from_str(&format!("{}{}", "[".repeat(100), "]".repeat(100))).expect("json");
    let cases = [
        variant(&|r| r.epoch = u64::MAX),
        variant(&|r| r.aal = 9),
        variant(&|r| r.idle_expires_at = UnixMs(r.absolute_expires_at.0 + 1)),
        variant(&|r| r.auth_time = UnixMs(r.absolute_expires_at.0)),
        variant(&|r| r.subject = "a\u{7}b".into()),
        variant(&|r| {
            r.data.insert("k".into(), deep.clone());
        }),
        "{\"type\":\"epoch\",\"tenant\":\"acme\",\"subject\":\"bob\",\"epoch\":18446744073709551615}\n".to_owned(),
    ];
    for bad in cases {
        match store.import_jsonl(format!("{good}{bad}").as_bytes()).await {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("line 2"), "{m}"),
            other => panic!("expected an import error for {bad}, got {other:?}"),
        }
        assert!(store.is_empty(), "a refused import left sessions behind");
    }
    store.import_jsonl(good.as_bytes()).await.expect("a plausible import");
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn renewals_are_deferred_then_flushed_and_never_resurrect() {
    let dir = tempfile::tempdir().expect("dir");
    let opts = EmbeddedOptions::default().with_renewal_flush_interval(Duration::from_secs(3600));
    let store = EmbeddedStore::open(dir.path(), opts.clone()).expect("open");
    let r = record([5; 16], [5; 32], "acme", "alice", T0);
    let gone = record([6; 16], [6; 32], "acme", "alice", T0);
    store.create(r.clone(), None, T0).await.expect("create");
    store.create(gone.clone(), None, T0).await.expect("create");
    let later = UnixMs(r.idle_expires_at.0 + 60_000);
    store.renew(&r, UnixMs(T0.0 + 60_000), later, None).await.expect("renew");
    store.renew(&gone, UnixMs(T0.0 + 60_000), later, None).await.expect("renew");
    // Served from memory at once.
    assert_eq!(store.find_by_id(&r.id).await.expect("find").expect("live").record.idle_expires_at, later);
    // Never backwards, never past the absolute deadline.
    store.renew(&r, T0, UnixMs(T0.0 + 1), None).await.expect("renew");
    assert_eq!(store.find_by_id(&r.id).await.expect("find").expect("live").record.idle_expires_at, later);
    store.renew(&r, T0, UnixMs(u64::MAX / 2), None).await.expect("renew");
    let capped = store.find_by_id(&r.id).await.expect("find").expect("live").record.idle_expires_at;
    assert_eq!(capped, r.absolute_expires_at);
    // The pending renewal of a deleted session does not bring it back.
    store.delete(&gone.id).await.expect("delete");
    store.flush().await.expect("flush");
    drop(store);
    let store = EmbeddedStore::open(dir.path(), opts).expect("open");
    assert_eq!(store.find_by_id(&r.id).await.expect("find").expect("live").record.idle_expires_at, capped);
    assert!(store.find_by_id(&gone.id).await.expect("find").is_none());
}

/// Events are queued in memory, not sent to the writer one by one: they reach the database
/// with the next renewal flush (or any batch), a reader asking for them gets them at once, and
/// closing the store writes those still queued.
#[tokio::test]
async fn queued_events_reach_disk_at_the_flush_interval_on_demand_and_at_close() {
    let events_on_disk = |dir: &Path| -> i64 {
        let c = rusqlite::Connection::open(dir.join(DB_FILE)).expect("open db");
        c.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).expect("count")
    };
    let ev = |n: usize| (0..n).map(|_| Event::new(T0, EventKind::Renewed, None, "u", "acme")).collect::<Vec<_>>();

    // A long interval: nothing reaches disk by itself, but a reader does not wait for it.
    let dir = tempfile::tempdir().expect("dir");
    let slow = EmbeddedOptions::default().with_renewal_flush_interval(Duration::from_secs(3600));
    let store = EmbeddedStore::open(dir.path(), slow.clone()).expect("open");
    store.append_events(ev(3)).await.expect("append");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(events_on_disk(dir.path()), 0, "queued events must not each wake the writer");
    let read = tokio::time::timeout(Duration::from_secs(5), store.read_events(0, 10)).await.expect("no wait");
    assert_eq!(read.expect("read").len(), 3);
    assert_eq!(events_on_disk(dir.path()), 3);
    // Closing writes what is still queued.
    store.append_events(ev(2)).await.expect("append");
    drop(store);
    assert_eq!(events_on_disk(dir.path()), 5, "close must write queued events");

    // A short interval: queued events are committed without anybody asking.
    let dir = tempfile::tempdir().expect("dir");
    let fast = EmbeddedOptions::default().with_renewal_flush_interval(Duration::from_millis(50));
    let store = EmbeddedStore::open(dir.path(), fast).expect("open");
    store.append_events(ev(4)).await.expect("append");
    let mut on_disk = 0;
    for _ in 0..100 {
        on_disk = events_on_disk(dir.path());
        if on_disk == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(on_disk, 4, "the flush interval must commit queued events");
    assert_eq!(store.read_events(0, 10).await.expect("read").len(), 4);
}

/// A commit that fails does not lose the events it carried: they ride with the next batch, in
/// cursor order and with no gap. Only after `MAX_EVENT_ATTEMPTS` (3) failed commits in a row
/// are they dropped, so that events that cannot be written do not fail every later change.
/// The failure is real: a trigger, added through a second connection, aborts every insert
/// into the events table.
#[tokio::test]
async fn events_of_a_failed_commit_ride_with_the_next_batch_and_are_dropped_only_after_three_failures() {
    let dir = tempfile::tempdir().expect("dir");
    // No flush by the clock during the test: only the changes below and readers run batches.
    let opts = EmbeddedOptions::default().with_renewal_flush_interval(Duration::from_secs(3600));
    let store = EmbeddedStore::open(dir.path(), opts).expect("open");
    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open db");
    let break_events = || {
        db.execute_batch(
            "CREATE TRIGGER fail_events BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        )
        .expect("add trigger");
    };
    let heal_events = || db.execute_batch("DROP TRIGGER fail_events").expect("drop trigger");
    let ev = |subject: &str| vec![Event::new(T0, EventKind::Created, None, subject, "acme")];
    let rec = |n: u8| record([n; 16], [n; 32], "acme", &format!("u{n}"), T0);

    // One failed commit, then the cause goes away: nothing is lost.
    store.append_events(ev("first")).await.expect("append");
    break_events();
    let failed = store.create(rec(1), None, T0).await;
    assert!(matches!(failed, Err(StoreError::Unavailable { .. })), "the batch carrying the events fails: {failed:?}");
    heal_events();
    store.append_events(ev("second")).await.expect("append");
    let read = store.read_events(0, 10).await.expect("read");
    let got: Vec<_> = read.iter().map(|e| (e.cursor, e.subject.as_str())).collect();
    assert_eq!(got, [(1, "first"), (2, "second")], "kept, in order, without a gap");
    assert!(store.find_by_id(&rec(1).id).await.expect("find").is_none(), "the failed create did not happen");

    // Events that keep failing: three changes fail with them, then they are dropped and the
    // next change commits even though the trigger is still there.
    store.append_events(ev("doomed")).await.expect("append");
    break_events();
    for n in 2..5 {
        assert!(store.create(rec(n), None, T0).await.is_err(), "attempt with the events {n}");
    }
    store.create(rec(5), None, T0).await.expect("no events ride along any more: the change commits");
    heal_events();
    store.append_events(ev("after")).await.expect("append");
    let read = store.read_events(0, 10).await.expect("read");
    let got: Vec<_> = read.iter().map(|e| (e.cursor, e.subject.as_str())).collect();
    assert_eq!(got, [(1, "first"), (2, "second"), (4, "after")], "the dropped event leaves a gap");
    assert!(store.find_by_id(&rec(5).id).await.expect("find").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_serves_many_concurrent_writers() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(open(dir.path()));
    let mut tasks = Vec::new();
    for t in 0..64u8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u8 {
                let r = record(
                    [t, i, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                    [
                        t ^ 0x55,
                        i,
                        2,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                    ],
                    "acme",
                    &format!("u{t}"),
                    T0,
                );
                assert!(matches!(s.create(r, None, T0).await.expect("create"), CreateOutcome::Created { .. }));
                s.append_events(vec![Event::new(T0, EventKind::Created, None, "u", "acme")]).await.expect("events");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    assert_eq!(store.len(), 64 * 20);
    let ev = store.read_events(0, 10_000).await.expect("events");
    assert_eq!(ev.len(), 64 * 20);
    assert!(ev.windows(2).all(|w| w[0].cursor < w[1].cursor));
    drop(store);
    assert_eq!(open(dir.path()).len(), 64 * 20);
}

/// Raw tokens never reach the database files (the store only ever receives hashes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_token_in_the_database_files() {
    let dir = tempfile::tempdir().expect("dir");
    let key = SigningKey::generate();
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(open(dir.path()));
    let e = engine(store.clone(), &key, clock.clone());
    let mut tokens = Vec::new();
    let mut hashes = Vec::new();
    for i in 0..20 {
        let c = e.create(request(&format!("user{i}"))).await.expect("create");
        tokens.push(c.token.expose().to_owned());
        clock.advance(Duration::from_secs(7));
        let r = e.resolve(c.token.expose(), &NO_CTX).await.expect("resolve");
        assert!(r.renewed);
        let (_, t) = e.rotate(c.token.expose()).await.expect("rotate");
        tokens.push(t.expose().to_owned());
        hashes.push(t.hash().to_hex());
    }
    store.flush().await.expect("flush");
    let mut out = Vec::new();
    store.export_jsonl(&mut out).await.expect("export");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|f| f.expect("entry").path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read")))
        .collect();
    files.push(("export".into(), out));
    assert!(files.iter().any(|(_, b)| b.len() > 10_000), "the database holds the sessions");
    for t in &tokens {
        // The whole token, and its secret part (everything after the prefix and key id).
        let secret = &t[t.len() - 43..];
        for (name, bytes) in &files {
            for needle in [t.as_bytes(), secret.as_bytes()] {
                assert!(!bytes.windows(needle.len()).any(|w| w == needle), "a raw token is in {name}");
            }
        }
    }
    // The token hashes are what is stored.
    for hex in &hashes {
        assert!(files.iter().any(|(_, b)| b.windows(hex.len()).any(|w| w == hex.as_bytes())));
    }
}
