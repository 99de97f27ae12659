// A session record for store-level tests (included by test files): the shared one from the
// conformance kit.
#[allow(unused_imports)]
pub use sessiond_conformance::record;
