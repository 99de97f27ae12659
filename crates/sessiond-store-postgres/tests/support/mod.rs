//! Test support: a store isolated in its own schema, dropped when the last handle goes, and
//! the PostgreSQL server started when absent.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;
use std::sync::{Arc, Once};
use std::time::Duration;

use sessiond_core::SessionStore;
use sessiond_store_postgres::{Invalidation, PostgresOptions, PostgresStore};

/// URL of the test database.
pub fn postgres_url() -> String {
    std::env::var("SESSIOND_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Runs `scripts/ensure-services.sh` once per test binary when PostgreSQL is not reachable.
pub fn ensure_services() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::net::TcpStream::connect("127.0.0.1:5432").is_err() {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/ensure-services.sh");
            let status = Command::new("bash").arg(script).status().expect("run ensure-services.sh");
            assert!(status.success(), "ensure-services.sh failed");
        }
    });
}

/// A random schema name.
pub fn random_schema() -> String {
    let b = sessiond_core::token::os_random::<8>();
    format!("sdt_{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// Drops a test schema (through psql, so that it works from `Drop`).
pub fn drop_schema(schema: &str) {
    assert!(schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
    let _ = Command::new("psql")
        .args([&postgres_url(), "-qc", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")])
        .output();
}

/// Options for tests: generous timeouts, since CI machines are small and busy.
pub fn test_options(schema: &str) -> PostgresOptions {
    PostgresOptions { schema: schema.to_owned(), timeout: Duration::from_secs(10), pool_size: 8, ..Default::default() }
}

/// A store in a fresh schema.
pub async fn fresh() -> (PostgresStore, String) {
    ensure_services();
    let schema = random_schema();
    let store = PostgresStore::connect(&postgres_url(), test_options(&schema)).await.expect("connect to postgres");
    (store, schema)
}

/// The conformance factory: a fresh store in its own schema, dropped when the store is.
pub async fn postgres_store() -> Arc<dyn SessionStore> {
    let (inner, schema) = fresh().await;
    Arc::new(sessiond_conformance::Guarded::new(inner, SchemaGuard(schema)))
}

/// Drops a schema when dropped, so a failing test cleans up too.
pub struct SchemaGuard(pub String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        drop_schema(&self.0);
    }
}

/// Waits up to 10 s for an invalidation matching `want`; false if none came.
pub async fn wait_for(
    rx: &mut tokio::sync::broadcast::Receiver<Invalidation>,
    want: impl Fn(&Invalidation) -> bool,
) -> bool {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Ok(i) if want(&i) => return true,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}
