//! The store conformance suite against a real Redis on 127.0.0.1:6379.
mod support;

use std::sync::Arc;

use sessiond_core::SessionStore;

async fn redis_store() -> Arc<dyn SessionStore> {
    support::redis_store().await
}

sessiond_conformance::conformance_tests!(redis_store);
