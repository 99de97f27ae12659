//! The store conformance suite against a real PostgreSQL on 127.0.0.1:5432.
mod support;

use std::sync::Arc;

use sessiond_core::SessionStore;

async fn postgres_store() -> Arc<dyn SessionStore> {
    support::postgres_store().await
}

sessiond_conformance::conformance_tests!(postgres_store);
