//! The store conformance suite on the in-memory store.

use std::sync::Arc;

use sessiond_core::store::memory::MemoryStore;
use sessiond_core::SessionStore;

async fn memory_store() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

sessiond_conformance::conformance_tests!(memory_store);
