//! The store's own connections never run with `synchronous_commit = off`, whatever the role,
//! database or connection string says: a confirmed revocation must survive a PostgreSQL crash.
//! Stricter or equal settings are left as they are.
#![allow(clippy::unwrap_used)]
mod support;

use sessiond_core::time::{Clock, SystemClock};
use sessiond_core::SessionStore;
use sessiond_store_postgres::PostgresStore;
use support::{ensure_services, postgres_url, random_schema, test_options, SchemaGuard};

mod records {
    include!("support/records.rs");
}

/// The test URL with `-c synchronous_commit=<value>` in its `options` parameter.
fn url_with(value: &str) -> String {
    let base = postgres_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20synchronous_commit%3D{value}")
}

#[tokio::test]
async fn synchronous_commit_off_is_raised_on_every_pooled_connection() {
    ensure_services();
    let schema = random_schema();
    let _guard = SchemaGuard(schema.clone());
    let store = PostgresStore::connect(&url_with("off"), test_options(&schema)).await.expect("connect");
    // Several connections of the pool, each created with `off` by the connection string.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.durability().await.expect("durability") }));
    }
    for t in tasks {
        let d = t.await.unwrap();
        assert_eq!(d.synchronous_commit, "on", "a pooled connection kept synchronous_commit = off");
        assert_eq!(d.fsync, "on");
    }
    // And the store works over those connections.
    let now = SystemClock.now();
    let r = records::record("t", "alice", now);
    store.create(r.clone(), None, now).await.expect("create");
    assert!(store.delete(&r.id).await.expect("delete").is_some());
}

#[tokio::test]
async fn stricter_or_equal_settings_are_left_alone() {
    ensure_services();
    for value in ["local", "remote_apply", "on"] {
        let schema = random_schema();
        let _guard = SchemaGuard(schema.clone());
        let store = PostgresStore::connect(&url_with(value), test_options(&schema)).await.expect("connect");
        assert_eq!(store.durability().await.expect("durability").synchronous_commit, value);
    }
}
