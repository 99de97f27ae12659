//! Attacks and failures that must not work: a token-hash row naming another session, a
//! forgotten retired hash, a late write after delete; an unreachable server is
//! `StoreError::Unavailable`, never a hang or "not found"; other nodes hear about changes
//! and resync after the listener reconnects.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests measure wall time
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use sessiond_core::record::RetiredToken;
use sessiond_core::store::UpdateOutcome;
use sessiond_core::time::{Clock, SystemClock};
use sessiond_core::token::TokenHash;
use sessiond_core::{SessionStore, StoreError};
use sessiond_store_postgres::{Invalidation, PostgresOptions, PostgresStore};
use support::{drop_schema, fresh, postgres_url, test_options, wait_for};

mod records {
    include!("support/records.rs");
}

fn psql(sql: &str) -> String {
    let out = Command::new("psql").args([&postgres_url(), "-Atqc", sql]).output().expect("psql");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_row_naming_another_session_does_not_resolve() {
    let (store, schema) = fresh().await;
    let _cleanup = support::SchemaGuard(schema.clone());
    let now = SystemClock.now();
    let victim = records::record("acme", "alice", now);
    store.create(victim.clone(), None, now).await.unwrap();
    let forged = TokenHash([0x42; 32]);
    psql(&format!(
        "INSERT INTO {schema}.token_hashes (hash, session_id) VALUES ('\\x{}', '\\x{}')",
        hex(&forged.0),
        hex(victim.id.as_bytes())
    ));
    assert!(store.find_by_token(&forged).await.unwrap().is_none(), "a hash the record does not list resolved");
    assert!(store.find_by_token(&victim.token_hash).await.unwrap().is_some());
    drop_schema(&schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_and_deleted_tokens_do_not_resolve() {
    let (store, schema) = fresh().await;
    let _cleanup = support::SchemaGuard(schema.clone());
    let now = SystemClock.now();
    let r = records::record("acme", "alice", now);
    store.create(r.clone(), None, now).await.unwrap();
    let mut v1 = r.clone();
    v1.token_hash = TokenHash([7; 32]);
    v1.retired = vec![RetiredToken { hash: r.token_hash, grace_until: now, successor: None }];
    v1.version = 1;
    assert!(matches!(store.update(v1.clone(), 0).await.unwrap(), UpdateOutcome::Updated));
    assert!(store.find_by_token(&r.token_hash).await.unwrap().is_some());
    let mut v2 = v1.clone();
    v2.retired.clear();
    v2.version = 2;
    assert!(matches!(store.update(v2.clone(), 1).await.unwrap(), UpdateOutcome::Updated));
    assert!(store.find_by_token(&r.token_hash).await.unwrap().is_none(), "a forgotten token resolved");
    assert!(store.delete(&r.id).await.unwrap().is_some());
    assert!(store.find_by_token(&v2.token_hash).await.unwrap().is_none());
    let mut late = v2.clone();
    late.version = 3;
    assert!(matches!(store.update(late, 2).await.unwrap(), UpdateOutcome::Missing));
    store.renew(&r, now, now.plus(Duration::from_secs(60)), Some("198.51.100.9")).await.unwrap();
    assert!(store.find_by_id(&r.id).await.unwrap().is_none(), "a late write resurrected the session");
    assert_eq!(psql(&format!("SELECT count(*) FROM {schema}.token_hashes")).trim(), "0", "index rows leaked");
    drop_schema(&schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_unavailable_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = Instant::now();
    let opts = PostgresOptions { connect_timeout: Duration::from_millis(500), ..test_options("sdt_never") };
    let err = PostgresStore::connect(&format!("postgres://postgres@127.0.0.1:{port}/test"), opts).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(4), "took {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_is_idempotent_and_concurrent_safe() {
    support::ensure_services();
    let schema = support::random_schema();
    let _cleanup = support::SchemaGuard(schema.clone());
    let url = postgres_url();
    let (oa, ob) = (test_options(&schema), test_options(&schema));
    let (a, b) = tokio::join!(PostgresStore::connect(&url, oa), PostgresStore::connect(&url, ob));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(psql(&format!("SELECT version FROM {schema}.sessiond_meta")).trim(), "1");
    let now = SystemClock.now();
    let r = records::record("acme", "alice", now);
    a.create(r.clone(), None, now).await.unwrap();
    assert!(b.find_by_id(&r.id).await.unwrap().is_some());
    drop((a, b));
    drop_schema(&schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_nodes_hear_about_changes_and_resync_after_reconnect() {
    let (a, schema) = fresh().await;
    let _cleanup = support::SchemaGuard(schema.clone());
    let b = PostgresStore::connect(&postgres_url(), test_options(&schema)).await.unwrap();
    let mut rx = b.invalidations();
    assert!(wait_for(&mut rx, |i| *i == Invalidation::Resync).await, "no Resync once listening");
    let now = SystemClock.now();
    let r = records::record("acme", "alice", now);
    a.create(r.clone(), None, now).await.unwrap();
    a.bump_epoch("acme", "alice").await.unwrap();
    assert!(wait_for(&mut rx, |i| matches!(i, Invalidation::Subject { subject, .. } if subject == "alice")).await);
    a.delete(&r.id).await.unwrap();
    let id = r.id;
    assert!(wait_for(&mut rx, |i| matches!(i, Invalidation::Session { id: x, .. } if *x == id)).await);
    // Kill the listeners' connections: they come back and say so.
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sessiond-listener-{schema}'"
    ));
    assert!(wait_for(&mut rx, |i| *i == Invalidation::Lost).await, "no Lost when the listener's connection ended");
    assert!(wait_for(&mut rx, |i| *i == Invalidation::Resync).await, "no Resync after the listener reconnected");
    assert!(b.listening());
    drop((a, b));
    drop_schema(&schema);
}

/// A listener connection that goes silent without any socket error is caught by the
/// heartbeat: the listener is declared lost within a few periods and trusted again only after
/// it reconnected. Without the heartbeat (the control) the same silence goes unnoticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_listener_is_detected_by_the_heartbeat() {
    support::ensure_services();
    let relay = sessiond_conformance::relay::Relay::start("127.0.0.1:5432".into()).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/test", relay.port());
    let schema = support::random_schema();
    let _cleanup = support::SchemaGuard(schema.clone());
    let beat = Duration::from_millis(200);
    let opts = PostgresOptions { heartbeat: beat, connect_timeout: Duration::from_secs(1), ..test_options(&schema) };
    let store = PostgresStore::connect(&url, opts.clone()).await.expect("connect through the relay");
    let mut rx = store.invalidations();
    let t = Instant::now();
    while !store.listening() && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.listening(), "the listener never came up");
    while rx.try_recv().is_ok() {}
    tokio::time::sleep(beat * 6).await;
    assert!(store.listening(), "a healthy listener was declared lost");

    relay.set_open(false);
    let t = Instant::now();
    assert!(wait_for(&mut rx, |i| *i == Invalidation::Lost).await, "silence not detected");
    assert!(t.elapsed() < Duration::from_secs(3), "detection took {:?}", t.elapsed());
    assert!(!store.listening());
    tokio::time::sleep(beat * 3).await;
    assert!(!store.listening(), "trusted again while the relay is still a black hole");

    relay.set_open(true);
    assert!(wait_for(&mut rx, |i| *i == Invalidation::Resync).await, "no Resync after the relay healed");
    assert!(store.listening());
    drop(store);

    // Control: the same silence with the heartbeat off is not noticed (keepalives see a live
    // relay), which is why the heartbeat exists.
    let quiet = PostgresStore::connect(&url, PostgresOptions { heartbeat: Duration::ZERO, ..opts })
        .await
        .expect("connect through the relay");
    let t = Instant::now();
    while !quiet.listening() && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(quiet.listening(), "the control listener never came up");
    relay.set_open(false);
    tokio::time::sleep(beat * 10).await;
    assert!(quiet.listening(), "without a heartbeat, silence should go unnoticed (else this test proves nothing)");
    relay.set_open(true);
    drop(quiet);
}

/// Revoking a large tenant finishes under a tight operation timeout: it deletes in bounded
/// batches, each its own transaction with its notifications queued in one round trip. One
/// statement over every row, with one notification round trip per row, outlasted the timeout
/// and rolled back on every attempt, so such a tenant could never be revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_tenant_is_revoked_within_the_operation_timeout() {
    let (store, schema) = fresh().await;
    let _cleanup = support::SchemaGuard(schema.clone());
    let store = std::sync::Arc::new(store);
    let now = SystemClock.now();
    const SESSIONS: usize = 6000;
    let mut ids = Vec::new();
    for chunk in 0..SESSIONS / 100 {
        let mut tasks = Vec::new();
        for i in 0..100 {
            let r = records::record("big", &format!("s{}", chunk * 100 + i), now);
            ids.push(r.id);
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.create(r, None, now).await.unwrap() }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let tight = PostgresStore::connect(
        &postgres_url(),
        PostgresOptions { timeout: Duration::from_millis(250), ..test_options(&schema) },
    )
    .await
    .unwrap();
    let gone = tight.delete_tenant("big").await.expect("the tenant revocation finished");
    assert_eq!(gone.len(), SESSIONS);
    assert_eq!(psql(&format!("SELECT count(*) FROM {schema}.sessions WHERE tenant = 'big'")).trim(), "0");
    for id in ids.iter().step_by(97) {
        assert!(store.find_by_id(id).await.unwrap().is_none());
    }
    drop_schema(&schema);
}

/// Session data may hold any JSON string, `\u0000` included, which PostgreSQL's `jsonb` (and
/// `json ->>`) refuse. The limit count must not parse records in SQL: a session holding such
/// data would make every later create with a limit fail for its subject (a lockout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_with_a_nul_escape_does_not_lock_the_subject_out_of_limited_creates() {
    use sessiond_core::policy::LimitAction;
    use sessiond_core::store::{CreateOutcome, LimitRule};
    let (store, schema) = fresh().await;
    let _cleanup = support::SchemaGuard(schema.clone());
    let now = SystemClock.now();
    let mut odd = records::record("acme", "nul", now);
    odd.data.insert("note".into(), serde_json::Value::String("a\u{0}b".into()));
    store.create(odd.clone(), None, now).await.expect("create with NUL data");
    for action in [LimitAction::DenyNew, LimitAction::EvictOldest] {
        let rule = LimitRule { max: 5, action };
        let out = store.create(records::record("acme", "nul", now), Some(rule), now).await;
        assert!(matches!(out, Ok(CreateOutcome::Created { .. })), "{action:?}: {:?}", out.map(|_| ()));
    }
    assert!(store.find_by_id(&odd.id).await.expect("find").is_some(), "the odd session is untouched");
}
