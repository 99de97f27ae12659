//! The committed `docs/openapi.json` must equal the document generated from the code.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test -p sessiond-server --test openapi_drift`
//! (or `sessiond openapi > docs/openapi.json`).
#![allow(clippy::expect_used)]

#[test]
fn committed_openapi_matches_the_generated_document() {
    let generated = sessiond_server::openapi::json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(path)
        .expect("docs/openapi.json is missing: UPDATE_OPENAPI=1 cargo test -p sessiond-server --test openapi_drift");
    assert!(
        committed == generated,
        "docs/openapi.json drifted from the code: regenerate it with \
         `UPDATE_OPENAPI=1 cargo test -p sessiond-server --test openapi_drift` and review the diff"
    );
}

#[test]
fn the_document_names_every_fixed_endpoint() {
    let doc: serde_json::Value = serde_json::from_str(&sessiond_server::openapi::json()).expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for (p, m) in [
        ("/v1/sessions", "post"),
        ("/v1/sessions/resolve", "post"),
        ("/v1/auth", "get"),
        ("/v1/sessions/{id}/rotate", "post"),
        ("/v1/sessions/{id}/elevate", "post"),
        ("/v1/sessions/{id}", "delete"),
        ("/v1/subjects/{subject}/sessions", "get"),
        ("/v1/subjects/{subject}/sessions", "delete"),
        ("/v1/logout", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(paths.get(p).and_then(|x| x.get(m)).is_some(), "{m} {p} missing");
    }
}
