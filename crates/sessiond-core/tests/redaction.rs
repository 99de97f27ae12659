//! What the engine's public types print: no raw token, no CSRF token.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use sessiond_conformance::test_policies;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::{CreateRequest, Engine};

/// A create request and its answer print no raw token (the previous one may still be live)
/// and no CSRF token.
#[tokio::test]
async fn create_request_and_answer_print_no_secret() {
    let engine =
        Engine::builder(Arc::new(MemoryStore::new()), KeyRing::single(KeyId(1), SigningKey::from_bytes([9; 32])))
            .with_policies(test_policies())
            .build();
    let first = engine.create(CreateRequest { subject: "alice".into(), ..Default::default() }).await.unwrap();
    let req = CreateRequest {
        subject: "alice".into(),
        previous_token: Some(first.token.expose().to_owned()),
        ..Default::default()
    };
    let shown = format!("{req:?}");
    assert!(!shown.contains(first.token.expose()), "{shown}");
    let second = engine.create(req).await.unwrap();
    let shown = format!("{second:?}");
    assert!(!shown.contains(second.token.expose()) && !shown.contains(&second.csrf_token), "{shown}");
}
