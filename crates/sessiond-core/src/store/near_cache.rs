//! [`NearCache`]: a per-node read cache in front of a shared store, kept honest by pushed
//! invalidations.
//!
//! Rules that keep a cache from ever extending a revoked session:
//!
//! 1. Every write through this node invalidates the local entries of that session first.
//! 2. Writes on other nodes reach this node as [`Invalidation`]s pushed by the store (Redis
//!    pub/sub, PostgreSQL `LISTEN/NOTIFY`); the node feeds them to [`NearCache::invalidate`].
//! 3. When the push channel is lost, the owner calls [`NearCache::set_trusted`]`(false)`: the
//!    cache is emptied and bypassed until the channel is back and
//!    [`NearCache::set_trusted`]`(true)` is called (resynchronised: nothing cached survives).
//! 4. Entries live at most `ttl` (the server's default is 30 s), a backstop behind pushes that
//!    the stores make atomic with the write and a push channel they check with heartbeats.
//!    Each entry's lifetime is between 3/4 and all of `ttl` (from its token hash), so that
//!    entries filled together do not all expire, and miss, in the same instant.
//! 5. A fill that raced with an invalidation is discarded (generation check), so a read that
//!    started before a revocation cannot re-insert the revoked record.
//! 6. Only positive lookups of live-looking records are cached; misses always go to the store.
//! 7. A renewal through this node refreshes the cached copy (it does not drop it) only when the
//!    store accepted it and no invalidation arrived meanwhile; it replaces an entry that is
//!    still cached, never inserts one, and keeps the entry's expiry (`docs/decisions.md` D16).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use super::memory::RandomKeyHasher;
use super::{CreateOutcome, Expired, LimitRule, Lookup, Page, PageCursor, SessionStore, UpdateOutcome};
use crate::error::StoreError;
use crate::event::Event;
use crate::id::SessionId;
use crate::record::SessionRecord;
use crate::time::{Clock, UnixMs};
use crate::token::TokenHash;

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<RandomKeyHasher>>;

fn read(s: &RwLock<Shard>) -> std::sync::RwLockReadGuard<'_, Shard> {
    s.read().unwrap_or_else(|e| e.into_inner())
}

fn write(s: &RwLock<Shard>) -> std::sync::RwLockWriteGuard<'_, Shard> {
    s.write().unwrap_or_else(|e| e.into_inner())
}

/// A change pushed by the store to every node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// One session changed or ended.
    Session(SessionId),
    /// A subject's epoch moved, or many of its sessions ended.
    Subject {
        /// Tenant.
        tenant: String,
        /// Subject.
        subject: String,
    },
    /// Anything may have changed (tenant revocation, many sweeps): drop everything.
    All,
    /// The push channel was lost: stop trusting the cache until [`Invalidation::Resync`].
    Lost,
    /// The push channel is (re)subscribed: drop everything cached before and trust again.
    Resync,
}

/// Number of independently locked parts of the hash map, so that the hits of concurrent
/// requests do not all bounce one lock word between cores.
const SHARDS: usize = 16;

/// One part of the cache: token hash → the lookup and when the entry stops being served.
type Shard = FastMap<TokenHash, (Lookup, UnixMs)>;

/// The near-cache decorator. Implements [`SessionStore`] by delegating to the inner store.
pub struct NearCache {
    inner: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    max_entries: usize,
    /// Token hash → entry, in [`SHARDS`] parts chosen by the hash. A hit takes one part's
    /// read lock and nothing else shared.
    shards: Box<[RwLock<Shard>]>,
    /// Session → its cached token hashes. Its lock orders fills against invalidations (see
    /// [`NearCache::find_by_token`]); hits never take it.
    by_id: Mutex<FastMap<SessionId, Vec<TokenHash>>>,
    generation: AtomicU64,
    trusted: AtomicBool,
    misses: metrics::Counter,
    distrusted: metrics::Counter,
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache").field("ttl", &self.ttl).field("trusted", &self.is_trusted()).finish_non_exhaustive()
    }
}

impl NearCache {
    /// A cache in front of `inner`, with entries kept at most `ttl`, holding at most
    /// `max_entries` token hashes. It starts *untrusted*: call
    /// [`NearCache::set_trusted`]`(true)` once the invalidation channel is subscribed.
    pub fn new(inner: Arc<dyn SessionStore>, clock: Arc<dyn Clock>, ttl: Duration, max_entries: usize) -> Self {
        Self {
            inner,
            clock,
            ttl,
            max_entries,
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            by_id: Mutex::new(FastMap::default()),
            generation: AtomicU64::new(0),
            trusted: AtomicBool::new(false),
            // Registered once. Misses, not hits, are counted: a shared counter bumped on every
            // hit would be the one contended word left on the hit path.
            misses: metrics::counter!("sessiond_near_cache_misses_total"),
            distrusted: metrics::counter!("sessiond_near_cache_distrusted_total"),
        }
    }

    /// The cached lookup of `hash` when the cache is trusted and the entry is neither past
    /// its TTL nor past the session's own deadlines at `now`.
    fn hit(&self, hash: &TokenHash, now: UnixMs) -> Option<Lookup> {
        if !self.is_trusted() {
            return None;
        }
        let shard = read(self.shard(hash));
        let (l, until) = shard.get(hash)?;
        (now < *until && l.record.is_live(now)).then(|| l.clone())
    }

    /// Whether the cache is answering reads.
    pub fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }

    /// Trust (channel up and subscribed) or distrust (channel lost) the cache. Either way the
    /// cache is emptied, so nothing read before a gap in the channel survives it.
    pub fn set_trusted(&self, trusted: bool) {
        self.clear();
        self.trusted.store(trusted, Ordering::Release);
        if !trusted {
            self.distrusted.increment(1);
        }
    }

    /// Applies a pushed invalidation.
    pub fn invalidate(&self, inv: &Invalidation) {
        match inv {
            Invalidation::Session(id) => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.drop_session(&mut self.ids(), id);
            }
            Invalidation::Subject { .. } | Invalidation::All => self.clear(),
            Invalidation::Lost => self.set_trusted(false),
            Invalidation::Resync => self.set_trusted(true),
        }
    }

    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut ids = self.ids();
        ids.clear();
        for s in self.shards.iter() {
            write(s).clear();
        }
    }

    /// Removes every entry of session `id` (the caller holds the id index's lock).
    fn drop_session(&self, ids: &mut FastMap<SessionId, Vec<TokenHash>>, id: &SessionId) {
        if let Some(hashes) = ids.remove(id) {
            for h in hashes {
                write(self.shard(&h)).remove(&h);
            }
        }
    }

    fn shard(&self, hash: &TokenHash) -> &RwLock<Shard> {
        &self.shards[usize::from(hash.0[1]) % SHARDS]
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, FastMap<SessionId, Vec<TokenHash>>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self, id: &SessionId) {
        self.invalidate(&Invalidation::Session(*id));
    }

    /// When an entry for `hash` filled at `now` stops being served: between 3/4 of the TTL and
    /// the TTL, spread by the (uniformly random) hash.
    fn expiry_of(&self, hash: &TokenHash, now: UnixMs) -> UnixMs {
        let quarter = self.ttl / 4;
        let spread = quarter.mul_f64(f64::from(hash.0[0]) / 255.0);
        now.plus(self.ttl - quarter + spread)
    }

    /// Number of cached token hashes.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SessionStore for NearCache {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<LimitRule>,
        now: UnixMs,
    ) -> Result<CreateOutcome, StoreError> {
        let out = self.inner.create(record, limit, now).await?;
        if let CreateOutcome::Created { evicted } = &out {
            for e in evicted {
                self.forget(&e.id);
            }
        }
        Ok(out)
    }

    async fn find_by_token(&self, hash: &TokenHash) -> Result<Option<Lookup>, StoreError> {
        let now = self.clock.now();
        if let Some(hit) = self.hit(hash, now) {
            return Ok(Some(hit));
        }
        self.misses.increment(1);
        let generation = self.generation.load(Ordering::Acquire);
        let found = self.inner.find_by_token(hash).await?;
        if let Some(l) = &found {
            if self.is_trusted() && l.record.is_live(now) {
                // Every invalidation bumps the generation *before* taking the id index's lock;
                // a fill checks it *while holding* that lock. So either the fill sees the bump
                // and is discarded, or the invalidation runs after the fill and removes it.
                let mut ids = self.ids();
                if self.generation.load(Ordering::Acquire) == generation {
                    if ids.len() >= self.max_entries {
                        ids.clear();
                        for s in self.shards.iter() {
                            write(s).clear();
                        }
                    }
                    let until = self.expiry_of(hash, now);
                    write(self.shard(hash)).insert(*hash, (l.clone(), until));
                    ids.entry(l.record.id).or_default().push(*hash);
                }
            }
        }
        Ok(found)
    }

    /// A hit only: a miss is left to `find_by_token`, which asks the store behind, counts the
    /// miss and may fill the cache.
    fn find_by_token_now(&self, hash: &TokenHash) -> Option<Option<Lookup>> {
        self.hit(hash, self.clock.now()).map(Some)
    }

    async fn find_by_id(&self, id: &SessionId) -> Result<Option<Lookup>, StoreError> {
        self.inner.find_by_id(id).await
    }

    async fn update(&self, record: SessionRecord, expected_version: u64) -> Result<UpdateOutcome, StoreError> {
        let id = record.id;
        self.forget(&id);
        let out = self.inner.update(record, expected_version).await;
        self.forget(&id);
        out
    }

    async fn renew(
        &self,
        current: &SessionRecord,
        seen: UnixMs,
        idle_expires_at: UnixMs,
        ip: Option<&str>,
    ) -> Result<(), StoreError> {
        let id = &current.id;
        // A renewal changes no security state, so it bumps no generation (fills of other
        // sessions in flight stay valid). The local copy is refreshed rather than dropped, so
        // that the next request is still a hit instead of a store round trip:
        // - the copy is replaced only when the store accepted the renewal and no invalidation
        //   (of any session) arrived meanwhile; otherwise it is dropped, as before;
        // - only an entry that is still cached is replaced, and it keeps its expiry: a refresh
        //   never makes an entry live longer than the fill that created it;
        // - the new copy is exactly what the store wrote (`SessionRecord::renewed`, the
        //   function every store applies).
        let generation = self.generation.load(Ordering::Acquire);
        let out = self.inner.renew(current, seen, idle_expires_at, ip).await;
        let mut ids = self.ids();
        if out.is_err() || self.generation.load(Ordering::Acquire) != generation {
            self.drop_session(&mut ids, id);
            return out;
        }
        let Some(hashes) = ids.get(id) else { return out };
        let mut stale = false;
        for h in hashes {
            let mut shard = write(self.shard(h));
            let Some((lookup, _until)) = shard.get_mut(h) else { continue };
            match lookup.record.renewed(seen, idle_expires_at, ip) {
                Some(next) => lookup.record = Arc::new(next),
                // Nothing moves forward in the copy (a renewal race on this node): rather
                // than reason about which copy is newer, drop it and read the store's.
                None => stale = true,
            }
        }
        if stale {
            self.drop_session(&mut ids, id);
        }
        out
    }

    async fn delete(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.forget(id);
        let out = self.inner.delete(id).await;
        self.forget(id);
        out
    }

    async fn delete_by_token(&self, hash: &TokenHash) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        // The session is known only from a cached entry before the call, and from the answer
        // after it: both are forgotten (rule 1, and an ended session never stays cached).
        let cached = read(self.shard(hash)).get(hash).map(|(l, _)| l.record.id);
        if let Some(id) = cached {
            self.forget(&id);
        }
        let out = self.inner.delete_by_token(hash).await;
        match (&out, cached) {
            (Ok(Some(r)), _) => self.forget(&r.id),
            (Err(StoreError::Unconfirmed { ended, .. }), _) => ended.iter().for_each(|r| self.forget(&r.id)),
            (Ok(None), _) => {}
            // Failed, perhaps after the store ended the session: forget again what was known
            // of it, or everything when nothing was (a fill may have raced the call).
            (Err(_), Some(id)) => self.forget(&id),
            (Err(_), None) => self.clear(),
        }
        out
    }

    async fn delete_subject(
        &self,
        tenant: &str,
        subject: &str,
        except: Option<&SessionId>,
    ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        let out = self.inner.delete_subject(tenant, subject, except).await;
        self.clear();
        out
    }

    async fn delete_tenant(&self, tenant: &str) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        let out = self.inner.delete_tenant(tenant).await;
        self.clear();
        out
    }

    async fn list_subject(
        &self,
        tenant: &str,
        subject: &str,
        after: Option<PageCursor>,
        limit: usize,
        now: UnixMs,
    ) -> Result<Page, StoreError> {
        self.inner.list_subject(tenant, subject, after, limit, now).await
    }

    async fn subject_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        self.inner.subject_epoch(tenant, subject).await
    }

    async fn bump_epoch(&self, tenant: &str, subject: &str) -> Result<u64, StoreError> {
        let out = self.inner.bump_epoch(tenant, subject).await;
        self.clear();
        out
    }

    async fn sweep_expired(&self, now: UnixMs, max: usize) -> Result<Vec<Expired>, StoreError> {
        let out = self.inner.sweep_expired(now, max).await?;
        for e in &out {
            self.forget(&e.record.id);
        }
        Ok(out)
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.inner.append_events(events).await
    }

    async fn read_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.inner.read_events(after, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::time::ManualClock;
    use crate::token::{KeyId, KeyRing, SigningKey};
    use crate::{CreateRequest, Engine, RequestContext};

    /// Two "nodes" share one store; node B reads through a near-cache. Pushed invalidations
    /// stand in for the store's channel.
    fn nodes() -> (Engine, Engine, Arc<NearCache>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(UnixMs(1_700_000_000_000)));
        let shared: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let keys = KeyRing::single(KeyId(1), SigningKey::generate());
        let cache = Arc::new(NearCache::new(shared.clone(), clock.clone(), Duration::from_secs(1), 1000));
        cache.set_trusted(true);
        let a = Engine::builder(shared, keys.clone()).with_clock(clock.clone()).build();
        let b = Engine::builder(cache.clone(), keys).with_clock(clock.clone()).build();
        (a, b, cache, clock)
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("rt").block_on(f)
    }

    #[test]
    fn cache_serves_hits_and_a_pushed_revocation_is_refused_at_once() {
        block(async {
            let (a, b, cache, _) = nodes();
            let c = a.create(CreateRequest { subject: "alice".into(), ..Default::default() }).await.expect("create");
            let t = c.token.expose();
            b.resolve(t, &RequestContext::default()).await.expect("fill");
            assert_eq!(cache.len(), 1);
            a.revoke(&c.session.id, crate::RevokeReason::Admin).await.expect("revoke on node A");
            // Without the push, B's cache would still answer (bounded by the TTL): this is the
            // attack the push prevents.
            assert!(b.resolve(t, &RequestContext::default()).await.is_ok(), "stale hit before the push");
            cache.invalidate(&Invalidation::Session(c.session.id));
            assert!(b.resolve(t, &RequestContext::default()).await.is_err(), "revoked session accepted after the push");
        });
    }

    #[test]
    fn ttl_bounds_staleness_even_without_a_push() {
        block(async {
            let (a, b, _, clock) = nodes();
            let c = a.create(CreateRequest { subject: "alice".into(), ..Default::default() }).await.expect("create");
            b.resolve(c.token.expose(), &RequestContext::default()).await.expect("fill");
            a.revoke(&c.session.id, crate::RevokeReason::Admin).await.expect("revoke");
            clock.advance(Duration::from_secs(1));
            // The non-waiting path has no hit past the TTL either: it leaves the token to the
            // full path, which asks the store.
            assert!(b.resolve_now(c.token.expose(), &RequestContext::default()).is_none());
            assert!(b.resolve(c.token.expose(), &RequestContext::default()).await.is_err());
        });
    }

    #[test]
    fn entry_lifetimes_are_spread_within_the_ttl() {
        let clock = Arc::new(ManualClock::new(UnixMs(0)));
        let cache = NearCache::new(Arc::new(MemoryStore::new()), clock, Duration::from_secs(40), 10);
        let now = UnixMs(1_000);
        let lives: Vec<u64> = (0..=255u8)
            .map(|b| {
                let mut h = [0u8; 32];
                h[0] = b;
                cache.expiry_of(&TokenHash(h), now).0 - now.0
            })
            .collect();
        assert!(lives.iter().all(|l| (30_000..=40_000).contains(l)), "{lives:?}");
        assert_eq!((lives[0], lives[255]), (30_000, 40_000));
    }

    #[test]
    fn an_untrusted_cache_is_bypassed_and_emptied() {
        block(async {
            let (a, b, cache, _) = nodes();
            let c = a.create(CreateRequest { subject: "alice".into(), ..Default::default() }).await.expect("create");
            b.resolve(c.token.expose(), &RequestContext::default()).await.expect("fill");
            cache.set_trusted(false); // push channel lost
            assert!(cache.is_empty());
            a.revoke(&c.session.id, crate::RevokeReason::Admin).await.expect("revoke");
            assert!(b.resolve_now(c.token.expose(), &RequestContext::default()).is_none());
            assert!(b.resolve(c.token.expose(), &RequestContext::default()).await.is_err());
            assert!(cache.is_empty(), "an untrusted cache must not fill");
        });
    }

    #[test]
    fn lost_channel_distrusts_until_resync() {
        block(async {
            let (a, b, cache, _) = nodes();
            let c = a.create(CreateRequest { subject: "alice".into(), ..Default::default() }).await.expect("create");
            b.resolve(c.token.expose(), &RequestContext::default()).await.expect("fill");
            cache.invalidate(&Invalidation::Lost);
            a.revoke(&c.session.id, crate::RevokeReason::Admin).await.expect("revoke while the channel is down");
            assert!(b.resolve(c.token.expose(), &RequestContext::default()).await.is_err());
            assert!(cache.is_empty() && !cache.is_trusted());
            cache.invalidate(&Invalidation::Resync);
            assert!(cache.is_trusted());
            let d = a.create(CreateRequest { subject: "bob".into(), ..Default::default() }).await.expect("create");
            b.resolve(d.token.expose(), &RequestContext::default()).await.expect("fill after resync");
            assert_eq!(cache.len(), 1);
        });
    }

    #[test]
    fn epoch_bump_push_clears_the_subject() {
        block(async {
            let (a, b, cache, _) = nodes();
            let c = a.create(CreateRequest { subject: "alice".into(), ..Default::default() }).await.expect("create");
            b.resolve(c.token.expose(), &RequestContext::default()).await.expect("fill");
            a.bump_epoch("", "alice").await.expect("bump");
            cache.invalidate(&Invalidation::Subject { tenant: String::new(), subject: "alice".into() });
            assert!(b.resolve(c.token.expose(), &RequestContext::default()).await.is_err());
        });
    }

    #[test]
    fn local_writes_invalidate_before_returning() {
        block(async {
            let (_, b, cache, _) = nodes();
            let c = b.create(CreateRequest { subject: "alice".into(), ..Default::default() }).await.expect("create");
            b.resolve(c.token.expose(), &RequestContext::default()).await.expect("fill");
            assert_eq!(cache.len(), 1);
            b.logout(c.token.expose()).await.expect("logout");
            assert!(cache.is_empty());
            assert!(b.resolve(c.token.expose(), &RequestContext::default()).await.is_err());
        });
    }
}
