//! The store conformance suite, unchanged, on the embedded store (each case in its own
//! temporary directory).

mod common;

use std::sync::Arc;

use sessiond_core::SessionStore;

/// A fresh store in its own temporary directory (removed when the store is dropped).
async fn embedded_store() -> Arc<dyn SessionStore> {
    Arc::new(common::temp_store())
}

sessiond_conformance::conformance_tests!(embedded_store);
