//! The race the near-cache's generation check closes: node B reads a session from the store,
//! node A revokes it and the push reaches B, and only then does B's read come back and try to
//! fill the cache. The fill must be discarded, so the revoked session is refused from then on.

use std::sync::Arc;
use std::time::Duration;

use sessiond_conformance::CountingStore;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::store::near_cache::{Invalidation, NearCache};
use sessiond_core::time::{ManualClock, UnixMs};
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::{CreateRequest, Engine, RequestContext, RevokeReason};

#[tokio::test]
async fn a_fill_that_raced_a_revocation_is_discarded() {
    let clock = Arc::new(ManualClock::new(UnixMs(1_700_000_000_000)));
    let memory = Arc::new(MemoryStore::new());
    let shared = Arc::new(CountingStore::new(memory.clone()));
    let keys = KeyRing::single(KeyId(1), SigningKey::generate());
    let cache = Arc::new(NearCache::new(shared.clone(), clock.clone(), Duration::from_secs(30), 1000));
    cache.set_trusted(true);
    let a = Engine::builder(memory, keys.clone()).with_clock(clock.clone()).build();
    let b = Engine::builder(cache.clone(), keys).with_clock(clock).build();
    let c = a.create(CreateRequest { subject: "alice".into(), ..Default::default() }).await.expect("create");
    let token = c.token.expose().to_owned();

    shared.hold_next_read();
    let in_flight = tokio::spawn({
        let (b, token) = (b.clone(), token.clone());
        async move { b.resolve(&token, &RequestContext::default()).await.is_ok() }
    });
    shared.read_held().await; // B has read the live record
    a.revoke(&c.session.id, RevokeReason::Admin).await.expect("revoke on A");
    cache.invalidate(&Invalidation::Session(c.session.id)); // the push reaches B
    shared.release_read();
    // The request that started before the revocation may still pass (it read first)...
    let _ = in_flight.await.expect("task");
    // ...but it must not have left the revoked session in the cache.
    assert!(cache.is_empty(), "ATTACK SUCCEEDED: a fill that raced the revocation was kept");
    assert!(b.resolve(&token, &RequestContext::default()).await.is_err(), "revoked session accepted");
}
