//! Test support: a store isolated in its own schema, dropped when the last handle goes, and
//! the PostgreSQL server started when absent.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;
use std::sync::{Arc, Once};

use async_trait::async_trait;
use sessiond_core::event::Event;
use sessiond_core::id::SessionId;
use sessiond_core::record::SessionRecord;
use sessiond_core::store::{CreateOutcome, Expired, LimitRule, Lookup, Page, PageCursor, UpdateOutcome};
use sessiond_core::time::UnixMs;
use sessiond_core::token::TokenHash;
use sessiond_core::{SessionStore, StoreError};
use sessiond_store_postgres::{PostgresOptions, PostgresStore};

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
    PostgresOptions {
        schema: schema.to_owned(),
        timeout: std::time::Duration::from_secs(10),
        pool_size: 8,
        ..Default::default()
    }
}

/// A store in a fresh schema.
pub async fn fresh() -> (PostgresStore, String) {
    ensure_services();
    let schema = random_schema();
    let store = PostgresStore::connect(&postgres_url(), test_options(&schema)).await.expect("connect to postgres");
    (store, schema)
}

/// A store that drops its schema when dropped.
pub struct Isolated {
    pub inner: PostgresStore,
    pub schema: String,
}

impl Drop for Isolated {
    fn drop(&mut self) {
        drop_schema(&self.schema);
    }
}

/// The conformance factory.
pub async fn postgres_store() -> Arc<dyn SessionStore> {
    let (inner, schema) = fresh().await;
    Arc::new(Isolated { inner, schema })
}

#[async_trait]
impl SessionStore for Isolated {
    async fn create(&self, r: SessionRecord, l: Option<LimitRule>, now: UnixMs) -> Result<CreateOutcome, StoreError> {
        self.inner.create(r, l, now).await
    }
    async fn find_by_token(&self, h: &TokenHash) -> Result<Option<Lookup>, StoreError> {
        self.inner.find_by_token(h).await
    }
    async fn find_by_id(&self, id: &SessionId) -> Result<Option<Lookup>, StoreError> {
        self.inner.find_by_id(id).await
    }
    async fn update(&self, r: SessionRecord, v: u64) -> Result<UpdateOutcome, StoreError> {
        self.inner.update(r, v).await
    }
    async fn renew(&self, id: &SessionId, seen: UnixMs, idle: UnixMs, ip: Option<&str>) -> Result<(), StoreError> {
        self.inner.renew(id, seen, idle, ip).await
    }
    async fn delete(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.inner.delete(id).await
    }
    async fn delete_subject(
        &self,
        t: &str,
        s: &str,
        except: Option<&SessionId>,
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        self.inner.delete_subject(t, s, except).await
    }
    async fn delete_tenant(&self, t: &str) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        self.inner.delete_tenant(t).await
    }
    async fn list_subject(
        &self,
        t: &str,
        s: &str,
        after: Option<PageCursor>,
        limit: usize,
        now: UnixMs,
    ) -> Result<Page, StoreError> {
        self.inner.list_subject(t, s, after, limit, now).await
    }
    async fn subject_epoch(&self, t: &str, s: &str) -> Result<u64, StoreError> {
        self.inner.subject_epoch(t, s).await
    }
    async fn bump_epoch(&self, t: &str, s: &str) -> Result<u64, StoreError> {
        self.inner.bump_epoch(t, s).await
    }
    async fn sweep_expired(&self, now: UnixMs, max: usize) -> Result<Vec<Expired>, StoreError> {
        self.inner.sweep_expired(now, max).await
    }
    async fn append_events(&self, e: Vec<Event>) -> Result<(), StoreError> {
        self.inner.append_events(e).await
    }
    async fn read_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.inner.read_events(after, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// Drops a schema when dropped, so a failing test cleans up too.
pub struct SchemaGuard(pub String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        drop_schema(&self.0);
    }
}
