//! The near-cache refreshes its own copy when a request renews a session, instead of dropping
//! it (which cost a store round trip on the next request). The refresh must never keep a
//! revoked session, nor make an entry outlive the TTL of the fill that created it.

use std::sync::Arc;
use std::time::Duration;

use sessiond_conformance::CountingStore;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::store::near_cache::{Invalidation, NearCache};
use sessiond_core::store::SessionStore;
use sessiond_core::time::{ManualClock, UnixMs};
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::{CreateRequest, Engine, RequestContext, RevokeReason};

struct Nodes {
    clock: Arc<ManualClock>,
    memory: Arc<MemoryStore>,
    shared: Arc<CountingStore>,
    cache: Arc<NearCache>,
    /// Writes straight to the shared store (another node).
    a: Engine,
    /// Reads through the near-cache.
    b: Engine,
}

fn nodes(ttl: Duration) -> Nodes {
    let clock = Arc::new(ManualClock::new(UnixMs(1_700_000_000_000)));
    let memory = Arc::new(MemoryStore::new());
    let shared = Arc::new(CountingStore::new(memory.clone()));
    let keys = KeyRing::single(KeyId(1), SigningKey::generate());
    let cache = Arc::new(NearCache::new(shared.clone(), clock.clone(), ttl, 1000));
    cache.set_trusted(true);
    let a = Engine::builder(memory.clone(), keys.clone()).with_clock(clock.clone()).build();
    let b = Engine::builder(cache.clone(), keys).with_clock(clock.clone()).build();
    Nodes { clock, memory, shared, cache, a, b }
}

/// The default policy renews after 10 % of its 15-minute idle window.
const PAST_RENEWAL: Duration = Duration::from_secs(100);

#[tokio::test]
async fn a_renewal_refreshes_the_cached_copy_to_what_the_store_wrote() {
    let n = nodes(Duration::from_secs(300));
    let c = n.a.create(CreateRequest { subject: "alice".into(), ..Default::default() }).await.expect("create");
    let token = c.token.expose().to_owned();
    let ctx = RequestContext { ip: Some("192.0.2.7".parse().expect("ip")), user_agent: None };
    n.b.resolve(&token, &ctx).await.expect("fill");
    n.clock.advance(PAST_RENEWAL);
    let r = n.b.resolve(&token, &ctx).await.expect("renewing resolve");
    assert!(r.renewed, "the resolve past the renewal point renews");
    let finds = CountingStore::get(&n.shared.finds);
    let again = n.b.resolve(&token, &ctx).await.expect("resolve after the renewal");
    assert_eq!(CountingStore::get(&n.shared.finds), finds, "the request after a renewal went to the store");
    assert!(!again.renewed, "the refreshed copy carries the new last-seen time (no second renewal)");
    let stored = n.memory.find_by_id(&c.session.id).await.expect("store").expect("session").record;
    assert_eq!(*again.session, *stored, "the cached copy differs from what the store wrote");
    assert_eq!(again.idle_expires_at, stored.idle_expires_at);
}

#[tokio::test]
async fn a_revocation_pushed_during_a_renewal_is_not_undone_by_the_refresh() {
    let n = nodes(Duration::from_secs(300));
    let c = n.a.create(CreateRequest { subject: "alice".into(), ..Default::default() }).await.expect("create");
    let token = c.token.expose().to_owned();
    n.b.resolve(&token, &RequestContext::default()).await.expect("fill");
    n.clock.advance(PAST_RENEWAL);
    n.shared.hold_next_renew();
    let in_flight = tokio::spawn({
        let (b, token) = (n.b.clone(), token.clone());
        async move { b.resolve(&token, &RequestContext::default()).await.map(|r| r.renewed) }
    });
    n.shared.renew_held().await; // the store applied B's renewal; B has not seen the answer
    n.a.revoke(&c.session.id, RevokeReason::Admin).await.expect("revoke on A");
    n.cache.invalidate(&Invalidation::Session(c.session.id)); // the push reaches B
    n.shared.release_read();
    // The request that started before the revocation may pass (it read first)...
    let _ = in_flight.await.expect("task");
    // ...but its refresh must not put the revoked session back.
    assert!(n.cache.is_empty(), "ATTACK SUCCEEDED: the renewal's refresh re-cached a revoked session");
    assert!(n.b.resolve(&token, &RequestContext::default()).await.is_err(), "revoked session accepted");
}

#[tokio::test]
async fn a_refresh_keeps_the_entry_expiry_of_its_fill() {
    let ttl = Duration::from_secs(300);
    let n = nodes(ttl);
    let c = n.a.create(CreateRequest { subject: "alice".into(), ..Default::default() }).await.expect("create");
    let token = c.token.expose().to_owned();
    n.b.resolve(&token, &RequestContext::default()).await.expect("fill");
    n.clock.advance(PAST_RENEWAL);
    n.b.resolve(&token, &RequestContext::default()).await.expect("renew and refresh");
    // Past the fill's TTL (and so past any spread expiry), though well within the TTL of
    // the refresh: the entry must have expired with its fill.
    n.clock.advance(ttl - PAST_RENEWAL + Duration::from_millis(1));
    let finds = CountingStore::get(&n.shared.finds);
    n.b.resolve(&token, &RequestContext::default()).await.expect("resolve");
    assert_eq!(CountingStore::get(&n.shared.finds), finds + 1, "a refreshed entry outlived its fill's TTL");
}
