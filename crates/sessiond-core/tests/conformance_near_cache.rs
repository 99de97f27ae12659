//! The store conformance suite through a trusted near-cache over the in-memory store: the
//! cache must not change any observable behaviour of a single node.

use std::sync::Arc;
use std::time::Duration;

use sessiond_core::store::memory::MemoryStore;
use sessiond_core::store::near_cache::NearCache;
use sessiond_core::time::SystemClock;
use sessiond_core::SessionStore;

async fn cached_store() -> Arc<dyn SessionStore> {
    let cache = NearCache::new(Arc::new(MemoryStore::new()), Arc::new(SystemClock), Duration::from_secs(1), 10_000);
    cache.set_trusted(true);
    Arc::new(cache)
}

sessiond_conformance::conformance_tests!(cached_store);
