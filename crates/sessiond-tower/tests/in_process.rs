//! The in-process mode: the app behind `SessionLayer::in_process`, driven with `oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use common::*;
use sessiond_core::SessionId;
use sessiond_tower::testkit::{SetCookie, TestKit};
use sessiond_tower::{
    ClientInfo, Error, InProcess, Issued, Login, Resolved, Session, SessionBackend, SessionConfig, SessionInfo,
    SessionLayer,
};
use tower::ServiceExt as _;

fn env() -> Env {
    let kit = TestKit::with_policies(policies());
    Env {
        app: app(kit.layer(), kit.engine().clone()),
        engine: kit.engine().clone(),
        clock: kit.clock().clone(),
        cookie_name: kit.config().cookie_name().to_owned(),
    }
}

#[tokio::test]
async fn login_sets_a_cookie_with_exactly_the_secure_attributes() {
    login_sets_exact_cookie(&env()).await;
}

#[tokio::test]
async fn persistent_policy_cookie_gets_max_age() {
    persistent_policy_gets_max_age(&env()).await;
}

#[tokio::test]
async fn protected_route_is_401_without_and_with_garbage_or_forged_cookies() {
    protected_route_refuses_missing_and_garbage(&env()).await;
}

#[tokio::test]
async fn typed_data_round_trips_and_a_type_mismatch_is_an_error() {
    data_round_trip_and_type_mismatch(&env()).await;
}

#[tokio::test]
async fn data_changes_are_saved_before_the_response_is_returned() {
    changes_are_saved_before_the_response(&env()).await;
}

#[tokio::test]
async fn a_concurrent_change_is_a_409_not_a_lost_update() {
    concurrent_change_is_a_conflict_not_a_lost_update(&env()).await;
}

#[tokio::test]
async fn logout_clears_the_cookie_and_the_old_cookie_is_refused() {
    logout_clears_cookie_and_old_cookie_is_refused(&env()).await;
}

#[tokio::test]
async fn login_never_adopts_the_pre_login_cookie() {
    login_never_adopts_a_pre_login_cookie(&env()).await;
}

#[tokio::test]
async fn csrf_missing_wrong_cross_site_and_foreign_origin_are_403_bearer_is_exempt() {
    csrf_defences(&env()).await;
}

#[tokio::test]
async fn rotation_passes_a_new_cookie_and_a_late_replay_revokes_the_session() {
    rotation_passes_a_new_cookie_and_replay_is_theft(&env()).await;
}

#[tokio::test]
async fn elevate_changes_the_aal_and_rotates_the_token() {
    elevate_changes_aal_and_rotates(&env()).await;
}

#[tokio::test]
async fn step_up_route_is_403_until_elevated_and_again_when_too_old() {
    step_up_route(&env()).await;
}

#[tokio::test]
async fn option_session_serves_logged_out_pages() {
    option_session_on_public_pages(&env()).await;
}

// ---- in-process only ------------------------------------------------------------------------

#[tokio::test]
async fn development_mode_uses_sid_without_secure() {
    let kit = TestKit::with_policies(policies()).with_config(SessionConfig::development());
    let env = Env {
        app: app(kit.layer(), kit.engine().clone()),
        engine: kit.engine().clone(),
        clock: kit.clock().clone(),
        cookie_name: "sid".to_owned(),
    };
    let res = env.post("/login", None, None, "alice").await;
    let c = res.session_cookie("sid").expect("dev cookie");
    assert_eq!(c.attribute_names(), ["path", "httponly", "samesite"]);
    assert!(res.session_cookie("__Host-sid").is_none());
    assert_eq!(env.get("/me", Some(&c.value)).await.status, StatusCode::OK);
    // The production cookie name means nothing in development mode.
    let req = Request::get("/me").header("cookie", format!("__Host-sid={}", c.value)).body(Body::empty()).unwrap();
    assert_eq!(env.send(req).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn extractor_without_the_layer_is_a_500_that_says_so() {
    let app = Router::new().route("/me", get(|s: Session| async move { s.subject() }));
    let res = app.oneshot(Request::get("/me").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("SessionLayer"));
}

#[tokio::test]
async fn testkit_seeds_sessions_and_moves_time() {
    let kit = TestKit::new();
    let app = Router::new().route("/me", get(|s: Session| async move { s.subject() })).layer(kit.layer());
    let alice = kit.seed("alice").await.unwrap();
    assert!(alice.cookie_header().starts_with("__Host-sid=sds_"));
    let req = || Request::get("/me").header("cookie", alice.cookie_header()).body(Body::empty()).unwrap();
    assert_eq!(app.clone().oneshot(req()).await.unwrap().status(), StatusCode::OK);
    kit.advance(std::time::Duration::from_secs(16 * 60));
    assert_eq!(app.clone().oneshot(req()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let req = Request::get("/me").header("authorization", alice.bearer_header()).body(Body::empty()).unwrap();
    assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let parsed = SetCookie::parse("a=b; Path=/; Max-Age=0; Secure").unwrap();
    assert_eq!(parsed.attribute("max-age"), Some(Some("0")));
}

/// A backend that can be made to fail like a store outage.
#[derive(Debug)]
struct Flaky {
    inner: InProcess,
    fail_resolve: AtomicBool,
    fail_writes: AtomicBool,
}

#[async_trait]
impl SessionBackend for Flaky {
    async fn resolve(&self, token: &str, client: &ClientInfo) -> sessiond_tower::Result<Resolved> {
        if self.fail_resolve.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(None));
        }
        self.inner.resolve(token, client).await
    }
    async fn create(
        &self,
        login: Login,
        previous: Option<&str>,
        client: &ClientInfo,
    ) -> sessiond_tower::Result<Issued> {
        self.inner.create(login, previous, client).await
    }
    async fn elevate(
        &self,
        s: &SessionInfo,
        token: &str,
        aal: u8,
        amr: Vec<String>,
        client: &ClientInfo,
    ) -> sessiond_tower::Result<Issued> {
        self.inner.elevate(s, token, aal, amr, client).await
    }
    async fn logout(&self, token: &str) -> sessiond_tower::Result<()> {
        self.inner.logout(token).await
    }
    async fn write_data(
        &self,
        id: &SessionId,
        key: &str,
        value: Option<serde_json::Value>,
        expected: Option<u64>,
    ) -> sessiond_tower::Result<u64> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(None));
        }
        self.inner.write_data(id, key, value, expected).await
    }
    fn verify_csrf(&self, s: &SessionInfo, presented: &str) -> bool {
        self.inner.verify_csrf(s, presented)
    }
}

#[tokio::test]
async fn store_outage_is_a_503_never_a_silent_loss_or_a_logout() {
    let kit = TestKit::with_policies(policies());
    let flaky = Arc::new(Flaky {
        inner: InProcess::new(kit.engine().clone()),
        fail_resolve: AtomicBool::new(false),
        fail_writes: AtomicBool::new(true),
    });
    let env = Env {
        app: app(SessionLayer::from_backend(flaky.clone()), kit.engine().clone()),
        engine: kit.engine().clone(),
        clock: kit.clock().clone(),
        cookie_name: "__Host-sid".to_owned(),
    };
    let alice = env.alice().await;
    // The handler "succeeded" but the write could not be saved: the client must not see a 200.
    let res = env.post("/counter", Some(&alice.token), Some(&alice.csrf), "").await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert_eq!(res.json()["type"], "https://sessiond.dev/problems/store-unavailable");
    // A read-only request writes nothing, so it is unaffected.
    assert_eq!(env.get("/me", Some(&alice.token)).await.status, StatusCode::OK);
    // The store cannot resolve: 503, not "logged out" (and the cookie is not cleared).
    flaky.fail_resolve.store(true, Ordering::SeqCst);
    let res = env.get("/public", Some(&alice.token)).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.cookies().is_empty());
}

/// The non-waiting path answers reads from memory exactly as `resolve` would, and leaves
/// every request that must write (a renewal due) to `resolve`; refusals come back at once.
#[tokio::test]
async fn resolve_now_answers_reads_and_leaves_writes_to_resolve() {
    let kit = TestKit::new();
    let backend = InProcess::new(kit.engine().clone());
    let client = ClientInfo::default();
    let alice = kit.seed("alice").await.unwrap();
    let version = || async { kit.engine().store().find_by_id(&alice.id).await.unwrap().unwrap().record.version };
    let before = version().await;

    let now = backend.resolve_now(alice.token(), &client).expect("in memory, nothing due").unwrap();
    assert_eq!(now.session.id, alice.id);
    assert!(now.rotated.is_none());
    let full = backend.resolve(alice.token(), &client).await.unwrap();
    assert!(now.session == full.session, "the same answer as resolve");
    assert_eq!(version().await, before, "a read writes nothing");

    // Past the renewal point (10 % of the 15-minute idle window) a request must write.
    kit.advance(std::time::Duration::from_secs(120));
    assert!(backend.resolve_now(alice.token(), &client).is_none(), "a renewal is left to resolve");
    let renewed = backend.resolve(alice.token(), &client).await.unwrap();
    assert!(renewed.session.idle_expires_at > now.session.idle_expires_at);
    let again = backend.resolve_now(alice.token(), &client).expect("renewed, nothing due").unwrap();
    assert_eq!(again.session.idle_expires_at, renewed.session.idle_expires_at);

    // Refusals are answered without the full path.
    let mut forged = alice.token().to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert!(matches!(backend.resolve_now(&forged, &client), Some(Err(Error::Unauthenticated))));
    kit.engine().revoke(&alice.id, sessiond_core::RevokeReason::Admin).await.unwrap();
    assert!(matches!(backend.resolve_now(alice.token(), &client), Some(Err(Error::Unauthenticated))));
}

#[tokio::test]
async fn a_cross_site_login_is_refused() {
    login_csrf_is_refused(&env()).await;
}

#[tokio::test]
async fn old_session_handle_cannot_write_after_relogin() {
    an_old_handle_does_not_write_into_the_new_session(&env()).await;
}
