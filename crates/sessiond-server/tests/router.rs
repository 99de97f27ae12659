//! In-process router tests (no socket): store failures map to 503 problems, and the
//! middleware turns every error into problem+json.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use sessiond_core::event::Event;
use sessiond_core::id::SessionId;
use sessiond_core::record::SessionRecord;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::store::{CreateOutcome, Expired, LimitRule, Lookup, Page, PageCursor, SessionStore, UpdateOutcome};
use sessiond_core::time::UnixMs;
use sessiond_core::token::{KeyId, KeyRing, SigningKey, TokenHash};
use sessiond_core::{Engine, StoreError};
use sessiond_server::api_key::ApiKeys;
use sessiond_server::{router, AppState, HttpSettings};
use tower::ServiceExt as _;

const KEY: &str = "sdk_router_test_key_0123456789";

/// A store that is always down.
struct DownStore;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable { message: "connection refused to 10.0.0.1:secret-detail".into(), source: None })
}

#[async_trait]
impl SessionStore for DownStore {
    async fn create(&self, _: SessionRecord, _: Option<LimitRule>, _: UnixMs) -> Result<CreateOutcome, StoreError> {
        down()
    }
    async fn find_by_token(&self, _: &TokenHash) -> Result<Option<Lookup>, StoreError> {
        down()
    }
    async fn find_by_id(&self, _: &SessionId) -> Result<Option<Lookup>, StoreError> {
        down()
    }
    async fn update(&self, _: SessionRecord, _: u64) -> Result<UpdateOutcome, StoreError> {
        down()
    }
    async fn renew(&self, _: &SessionRecord, _: UnixMs, _: UnixMs, _: Option<&str>) -> Result<(), StoreError> {
        down()
    }
    async fn delete(&self, _: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        down()
    }
    async fn delete_subject(
        &self,
        _: &str,
        _: &str,
        _: Option<&SessionId>,
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        down()
    }
    async fn delete_tenant(&self, _: &str) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        down()
    }
    async fn list_subject(
        &self,
        _: &str,
        _: &str,
        _: Option<PageCursor>,
        _: usize,
        _: UnixMs,
    ) -> Result<Page, StoreError> {
        down()
    }
    async fn subject_epoch(&self, _: &str, _: &str) -> Result<u64, StoreError> {
        down()
    }
    async fn bump_epoch(&self, _: &str, _: &str) -> Result<u64, StoreError> {
        down()
    }
    async fn sweep_expired(&self, _: UnixMs, _: usize) -> Result<Vec<Expired>, StoreError> {
        down()
    }
    async fn append_events(&self, _: Vec<Event>) -> Result<(), StoreError> {
        down()
    }
    async fn read_events(&self, _: u64, _: usize) -> Result<Vec<Event>, StoreError> {
        down()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        down()
    }
}

fn app(store: Arc<dyn SessionStore>) -> (axum::Router, KeyRing) {
    let keys = KeyRing::single(KeyId(1), SigningKey::generate());
    let engine = Engine::builder(store, keys.clone()).build();
    let mut api_keys = ApiKeys::default();
    api_keys.add_secret("test", KEY);
    (router(AppState::new(engine, api_keys, HttpSettings::default())), keys)
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("body");
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn store_failures_are_503_store_unavailable_without_details() {
    let (app, keys) = app(Arc::new(DownStore));
    let token = keys.mint();
    let reqs = [
        Request::get("/readyz").body(Body::empty()).expect("req"),
        Request::get("/v1/auth")
            .header("authorization", format!("Bearer {}", token.expose()))
            .body(Body::empty())
            .expect("req"),
        Request::post("/v1/sessions")
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"subject":"a"}"#))
            .expect("req"),
        Request::post("/v1/sessions/resolve")
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(Body::from(format!(r#"{{"token":"{}"}}"#, token.expose())))
            .expect("req"),
    ];
    for req in reqs {
        let (status, headers, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["type"], "https://sessiond.dev/problems/store-unavailable");
        assert_eq!(headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/problem+json"[..]));
        assert_eq!(headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
        assert!(!body.to_string().contains("secret-detail"), "internal details are never echoed");
    }
    // A forged token never reaches the store: 401, not 503.
    let req = Request::get("/v1/auth").header("authorization", "Bearer sds_forged").body(Body::empty()).expect("req");
    assert_eq!(call(&app, req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_response_is_no_store_and_errors_are_problems() {
    let (app, _) = app(Arc::new(MemoryStore::new()));
    let (status, headers, body) = call(&app, Request::get("/healthz").body(Body::empty()).expect("req")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("cache-control").map(|v| v.as_bytes()), Some(&b"no-store"[..]));
    assert_eq!(body["status"], "ok");
    assert!(headers.get("strict-transport-security").is_none(), "HSTS only when sessiond serves TLS");
    let (status, headers, body) = call(&app, Request::delete("/healthz").body(Body::empty()).expect("req")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/problem+json"[..]));
    assert_eq!(body["status"], 405);
}
