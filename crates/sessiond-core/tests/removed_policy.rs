//! A session whose policy class was removed from the configuration (an operator deleted or
//! renamed a `[[policies]]` entry and restarted) is refused like an unknown session, not
//! reported as the caller's malformed input.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use sessiond_conformance::test_policies;
use sessiond_core::policy::Policies;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::{ClientError, CreateRequest, Engine, Error, RequestContext};

#[tokio::test]
async fn a_session_of_a_removed_policy_is_refused_as_unknown() {
    let store = Arc::new(MemoryStore::new());
    let key = [7u8; 32];
    let ring = || KeyRing::single(KeyId(1), SigningKey::from_bytes(key));
    let before = Engine::builder(store.clone(), ring()).with_policies(test_policies()).build();
    let req = CreateRequest { subject: "alice".into(), policy: Some("test".into()), aal: 1, ..Default::default() };
    let created = before.create(req).await.unwrap();
    let ctx = RequestContext::default();
    assert!(before.resolve(created.token.expose(), &ctx).await.is_ok());

    // Restarted without the "test" class.
    let after = Engine::builder(store, ring()).with_policies(Policies::default()).build();
    for outcome in [
        after.resolve(created.token.expose(), &ctx).await.map(drop),
        after.resolve_now(created.token.expose(), &ctx).unwrap().map(drop),
        after.peek(created.token.expose()).await.map(drop),
    ] {
        match outcome {
            Err(Error::Client(ClientError::UnknownSession)) => {}
            other => panic!("expected UnknownSession, got {other:?}"),
        }
    }
}
