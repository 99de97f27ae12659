//! The remote mode: the same scenarios as `in_process.rs`, with the app's layer talking to a
//! real sessiond server (its router, an in-memory store, development-mode settings) over real
//! HTTP on a random loopback port.
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use common::*;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::time::ManualClock;
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::Engine;
use sessiond_server::api_key::ApiKeys;
use sessiond_server::cookie::CookieSettings;
use sessiond_server::{router, AppState, HttpSettings};
use sessiond_tower::testkit::START;
use sessiond_tower::{Error, Login, Remote, SessionBackend, SessionLayer};

const API_KEY: &str = "sdk_tower_remote_test_key_0123456789";

/// Serves the sessiond router on `127.0.0.1:0`; returns its base URL and the engine behind it.
async fn server() -> (String, Engine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START));
    let engine = Engine::builder(Arc::new(MemoryStore::new()), KeyRing::single(KeyId(1), SigningKey::generate()))
        .with_clock(clock.clone())
        .with_policies(policies())
        .build();
    let mut keys = ApiKeys::default();
    keys.add_secret("tower-tests", API_KEY);
    // The `--dev` equivalent: plain HTTP on loopback, `sid` cookie without Secure.
    let http = HttpSettings { cookie: CookieSettings::development(), ..HttpSettings::default() };
    let app = router(AppState::new(engine.clone(), keys, http));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    (format!("http://{addr}"), engine, clock)
}

async fn env() -> Env {
    let (base, engine, clock) = server().await;
    let layer = SessionLayer::remote(&base, API_KEY).unwrap();
    Env { app: app(layer, engine.clone()), engine, clock, cookie_name: "__Host-sid".to_owned() }
}

#[tokio::test]
async fn remote_login_sets_a_cookie_with_exactly_the_secure_attributes() {
    login_sets_exact_cookie(&env().await).await;
}

#[tokio::test]
async fn remote_persistent_policy_cookie_gets_max_age() {
    persistent_policy_gets_max_age(&env().await).await;
}

#[tokio::test]
async fn remote_protected_route_is_401_without_and_with_garbage_or_forged_cookies() {
    protected_route_refuses_missing_and_garbage(&env().await).await;
}

#[tokio::test]
async fn remote_typed_data_round_trips_and_a_type_mismatch_is_an_error() {
    data_round_trip_and_type_mismatch(&env().await).await;
}

#[tokio::test]
async fn remote_data_changes_are_saved_before_the_response_is_returned() {
    changes_are_saved_before_the_response(&env().await).await;
}

#[tokio::test]
async fn remote_a_concurrent_change_is_a_409_not_a_lost_update() {
    concurrent_change_is_a_conflict_not_a_lost_update(&env().await).await;
}

#[tokio::test]
async fn remote_logout_clears_the_cookie_and_the_old_cookie_is_refused() {
    logout_clears_cookie_and_old_cookie_is_refused(&env().await).await;
}

#[tokio::test]
async fn remote_login_never_adopts_the_pre_login_cookie() {
    login_never_adopts_a_pre_login_cookie(&env().await).await;
}

#[tokio::test]
async fn remote_csrf_missing_wrong_cross_site_and_foreign_origin_are_403_bearer_is_exempt() {
    csrf_defences(&env().await).await;
}

#[tokio::test]
async fn remote_rotation_passes_a_new_cookie_and_a_late_replay_revokes_the_session() {
    rotation_passes_a_new_cookie_and_replay_is_theft(&env().await).await;
}

#[tokio::test]
async fn remote_elevate_changes_the_aal_and_rotates_the_token() {
    elevate_changes_aal_and_rotates(&env().await).await;
}

#[tokio::test]
async fn remote_step_up_route_is_403_until_elevated_and_again_when_too_old() {
    step_up_route(&env().await).await;
}

#[tokio::test]
async fn remote_option_session_serves_logged_out_pages() {
    option_session_on_public_pages(&env().await).await;
}

// ---- remote only ----------------------------------------------------------------------------

#[tokio::test]
async fn remote_wrong_api_key_is_a_502_not_a_logout() {
    let (base, engine, clock) = server().await;
    let layer = SessionLayer::remote(&base, "sdk_wrong_key_000000000000000000").unwrap();
    let env = Env { app: app(layer, engine.clone()), engine, clock, cookie_name: "__Host-sid".to_owned() };
    let alice = env.alice().await;
    let res = env.get("/me", Some(&alice.token)).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.body);
    assert!(res.cookies().is_empty(), "a misconfiguration must not clear the user's cookie");
    assert!(!res.body.contains("sdk_"), "the key is never echoed");
}

#[tokio::test]
async fn remote_server_down_is_a_503() {
    // Bind and drop: nothing listens on this port any more.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let remote = Remote::new(&format!("http://{addr}"), API_KEY).unwrap();
    let token = sessiond_tower::testkit::TestKit::new().seed("alice").await.unwrap();
    let err = remote.resolve(token.token(), &Default::default()).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    let err = remote.create(Login::new("alice"), None, &Default::default()).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn remote_a_cross_site_login_is_refused() {
    login_csrf_is_refused(&env().await).await;
}

#[tokio::test]
async fn remote_an_old_handle_does_not_write_into_the_new_session() {
    an_old_handle_does_not_write_into_the_new_session(&env().await).await;
}
