//! Shared test helpers.
#![allow(dead_code)]

use sessiond_store_embedded::{EmbeddedOptions, EmbeddedStore};

/// An embedded store that owns its temporary directory (removed after the store closed).
pub type TempStore = sessiond_conformance::Guarded<EmbeddedStore, tempfile::TempDir>;

/// A fresh embedded store in a new temporary directory.
pub fn temp_store() -> TempStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path().join("store"), EmbeddedOptions::default()).expect("open");
    sessiond_conformance::Guarded::new(store, dir)
}

#[allow(unused_imports)]
pub use sessiond_conformance::record_with as record;
