//! Session data that nests deeper than a store can read back is refused at the door: stores
//! keep records as JSON, and serde_json refuses to decode more than 128 levels, so such data
//! would be acknowledged and written, and the session would then vanish (or at the next
//! restart).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use sessiond_conformance::Harness;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::{ClientError, Error, RequestContext};

fn nested(levels: usize) -> serde_json::Value {
    let text = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn data_nested_too_deep_is_refused_and_changes_nothing() {
    let h = Harness::new(Arc::new(MemoryStore::new()));
    let c = h.engine.create(h.request("alice", "test")).await.unwrap();
    let id = c.session.id;
    h.engine.set_data(&id, "ok", nested(32), None).await.expect("32 levels are fine");
    for levels in [33, 127] {
        match h.engine.set_data(&id, "deep", nested(levels), None).await {
            Err(Error::Client(ClientError::Malformed(_))) => {}
            other => panic!("{levels} levels: expected a malformed-input refusal, got {other:?}"),
        }
    }
    let r = h.engine.resolve(c.token.expose(), &RequestContext::default()).await.unwrap();
    assert!(r.session.data.contains_key("ok"));
    assert!(!r.session.data.contains_key("deep"));
    // At creation too.
    let mut req = h.request("bob", "test");
    req.data.insert("deep".into(), nested(40));
    assert!(matches!(h.engine.create(req).await, Err(Error::Client(ClientError::Malformed(_)))));
}
