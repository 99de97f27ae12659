//! Shared test helpers.
#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use sessiond_core::event::Event;
use sessiond_core::id::SessionId;
use sessiond_core::record::SessionRecord;
use sessiond_core::store::{CreateOutcome, Expired, LimitRule, Lookup, Page, PageCursor, UpdateOutcome};
use sessiond_core::time::UnixMs;
use sessiond_core::token::TokenHash;
use sessiond_core::{SessionStore, StoreError};
use sessiond_store_embedded::{EmbeddedOptions, EmbeddedStore};

/// An embedded store that owns its temporary directory (removed after the store closed).
pub struct TempStore {
    pub store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

impl TempStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path().join("store"), EmbeddedOptions::default()).expect("open");
        Self { store, _dir: dir }
    }
}

#[async_trait]
impl SessionStore for TempStore {
    async fn create(&self, r: SessionRecord, l: Option<LimitRule>, now: UnixMs) -> Result<CreateOutcome, StoreError> {
        self.store.create(r, l, now).await
    }
    async fn find_by_token(&self, h: &TokenHash) -> Result<Option<Lookup>, StoreError> {
        self.store.find_by_token(h).await
    }
    async fn find_by_id(&self, id: &SessionId) -> Result<Option<Lookup>, StoreError> {
        self.store.find_by_id(id).await
    }
    async fn update(&self, r: SessionRecord, v: u64) -> Result<UpdateOutcome, StoreError> {
        self.store.update(r, v).await
    }
    async fn renew(&self, id: &SessionId, seen: UnixMs, idle: UnixMs, ip: Option<&str>) -> Result<(), StoreError> {
        self.store.renew(id, seen, idle, ip).await
    }
    async fn delete(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.store.delete(id).await
    }
    async fn delete_subject(
        &self,
        t: &str,
        s: &str,
        except: Option<&SessionId>,
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        self.store.delete_subject(t, s, except).await
    }
    async fn delete_tenant(&self, t: &str) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        self.store.delete_tenant(t).await
    }
    async fn list_subject(
        &self,
        t: &str,
        s: &str,
        after: Option<PageCursor>,
        limit: usize,
        now: UnixMs,
    ) -> Result<Page, StoreError> {
        self.store.list_subject(t, s, after, limit, now).await
    }
    async fn subject_epoch(&self, t: &str, s: &str) -> Result<u64, StoreError> {
        self.store.subject_epoch(t, s).await
    }
    async fn bump_epoch(&self, t: &str, s: &str) -> Result<u64, StoreError> {
        self.store.bump_epoch(t, s).await
    }
    async fn sweep_expired(&self, now: UnixMs, max: usize) -> Result<Vec<Expired>, StoreError> {
        self.store.sweep_expired(now, max).await
    }
    async fn append_events(&self, e: Vec<Event>) -> Result<(), StoreError> {
        self.store.append_events(e).await
    }
    async fn read_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.store.read_events(after, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}

/// A plausible browser session record for store-level tests.
pub fn record(id: [u8; 16], hash: [u8; 32], tenant: &str, subject: &str, now: UnixMs) -> SessionRecord {
    SessionRecord {
        id: SessionId::from_bytes(id),
        token_hash: TokenHash(hash),
        subject: subject.into(),
        tenant: tenant.into(),
        policy: "default".into(),
        created_at: now,
        last_seen_at: now,
        idle_expires_at: UnixMs(now.0 + 30 * 60_000),
        absolute_expires_at: UnixMs(now.0 + 12 * 3_600_000),
        rotated_at: now,
        auth_time: now,
        aal: 1,
        amr: vec!["pwd".into()],
        device: sessiond_core::record::DeviceInfo {
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36".into()),
            first_ip: Some("192.0.2.10".into()),
            last_ip: Some("192.0.2.10".into()),
        },
        data: Default::default(),
        revision: 0,
        epoch: 0,
        version: 0,
        retired: Vec::new(),
    }
}
