//! `Front` answers forward-auth's common case before the router: the same requests sent
//! through `Front` and through the bare router must get byte-identical answers (status,
//! headers in order, body), and `Front` must really answer the cases it claims (not hand
//! everything on to the router, which would make the comparison trivially true).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::time::{ManualClock, UnixMs};
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::{CreateRequest, Engine, RevokeReason};
use sessiond_server::api_key::ApiKeys;
use sessiond_server::config::{CsrfMode, RouteRule};
use sessiond_server::front::Front;
use sessiond_server::{router, AppState, HttpSettings};
use tower::ServiceExt as _;

struct Fixture {
    /// `Front` over the real router.
    front: Front,
    /// `Front` over a router that answers 418 to everything: whatever is not 418 was
    /// answered by `Front` itself.
    probe: Front,
    router: axum::Router,
    engine: Engine,
    clock: Arc<ManualClock>,
}

fn fixture(http: HttpSettings) -> Fixture {
    let keys = KeyRing::single(KeyId(1), SigningKey::generate());
    // A stopped clock: both answers to one request must see the same `expires_in`.
    let clock = Arc::new(ManualClock::new(UnixMs(1_790_000_000_000)));
    let engine = Engine::builder(Arc::new(MemoryStore::new()), keys).with_clock(clock.clone()).build();
    let state = AppState::new(engine.clone(), ApiKeys::default(), http);
    let router = router(state.clone());
    let teapot = axum::Router::new().fallback(|| async { StatusCode::IM_A_TEAPOT });
    Fixture {
        front: Front::new(state.clone(), router.clone()),
        probe: Front::new(state, teapot),
        router,
        engine,
        clock,
    }
}

fn peer() -> ConnectInfo<SocketAddr> {
    ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000)))
}

/// A request as the server hands it on: with the peer address in its extensions.
fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::empty()).expect("request");
    req.extensions_mut().insert(peer());
    req
}

type Answer = (StatusCode, Vec<(String, Vec<u8>)>, Vec<u8>);

async fn collect(res: axum::response::Response) -> Answer {
    let status = res.status();
    let headers = ordered(res.headers());
    let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("body").to_vec();
    (status, headers, body)
}

fn ordered(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter().map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec())).collect()
}

async fn through(svc: Front, req: Request<Body>) -> Answer {
    collect(svc.oneshot(req).await.expect("infallible")).await
}

impl Fixture {
    /// Sends the request through `Front` and through the bare router; asserts the answers are
    /// identical; says whether `Front` answered it itself (and then that its own answer is
    /// the router's too).
    async fn same(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> (Answer, bool) {
        let probed = through(self.probe.clone(), request(method, uri, headers)).await;
        let via_front = through(self.front.clone(), request(method, uri, headers)).await;
        let via_router =
            collect(self.router.clone().oneshot(request(method, uri, headers)).await.expect("infallible")).await;
        assert_eq!(via_front, via_router, "{method} {uri} {headers:?}: Front and the router differ");
        let answered = probed.0 != StatusCode::IM_A_TEAPOT;
        if answered {
            assert_eq!(probed, via_router, "{method} {uri} {headers:?}: Front's own answer differs");
        }
        (via_front, answered)
    }

    async fn session(&self, aal: u8) -> (String, String) {
        let c = self
            .engine
            .create(CreateRequest { subject: "alice".into(), aal, ..Default::default() })
            .await
            .expect("create");
        (c.token.expose().to_owned(), c.session.id.to_string())
    }
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a [u8]> {
    a.1.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
}

#[tokio::test]
async fn front_answers_forward_auth_exactly_as_the_router_does() {
    let f = fixture(HttpSettings::default());
    let (token, id) = f.session(1).await;
    let cookie = format!("__Host-sid={token}");
    let bearer = format!("Bearer {token}");

    // A valid cookie and a valid bearer token: 200 with the facts, answered by Front.
    for h in [("cookie", cookie.as_str()), ("authorization", bearer.as_str())] {
        let (a, answered) = f.same("GET", "/v1/auth", &[h, ("x-original-uri", "/app/page")]).await;
        assert_eq!(a.0, StatusCode::OK);
        assert!(answered, "a live session with nothing due must be answered before the router");
        assert_eq!(header(&a, "x-session-subject"), Some(&b"alice"[..]));
        assert_eq!(header(&a, "x-session-id"), Some(id.as_bytes()));
        assert_eq!(header(&a, "cache-control"), Some(&b"no-store"[..]));
    }
    // HEAD and a query string: the same route.
    let (a, answered) = f.same("HEAD", "/v1/auth?x=1", &[("cookie", &cookie)]).await;
    assert_eq!((a.0, answered), (StatusCode::OK, true));

    // Refusals decided without the store: no token, a path that cannot be normalized, a
    // cross-site cookie-authenticated state change.
    let (a, answered) = f.same("GET", "/v1/auth", &[]).await;
    assert_eq!((a.0, answered), (StatusCode::UNAUTHORIZED, true));
    assert_eq!(header(&a, "content-type"), Some(&b"application/problem+json"[..]));
    let (a, answered) = f.same("GET", "/v1/auth", &[("cookie", &cookie), ("x-original-uri", "/a%2Fb")]).await;
    assert_eq!((a.0, answered), (StatusCode::BAD_REQUEST, true));
    let (a, answered) = f
        .same(
            "GET",
            "/v1/auth",
            &[("cookie", &cookie), ("x-forwarded-method", "POST"), ("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!((a.0, answered), (StatusCode::FORBIDDEN, true));

    // Other methods on the same path (Envoy keeps the original one), and the absolute form.
    for m in ["POST", "OPTIONS", "DELETE"] {
        let (a, answered) = f.same(m, "/v1/auth", &[("authorization", &bearer)]).await;
        assert_eq!((a.0, answered), (StatusCode::OK, true), "{m}");
    }
    let (a, answered) = f.same("GET", "http://sessiond.internal/v1/auth", &[("cookie", &cookie)]).await;
    assert_eq!((a.0, answered), (StatusCode::OK, true));

    // A token sessiond never issued goes to the router, which throttles and logs it: the
    // same 401, and after the limit (20 per minute from one source) the same 429 through
    // Front. A revoked session's token is refused by Front itself.
    let (a, answered) = f.same("GET", "/v1/auth", &[("cookie", "__Host-sid=garbage")]).await;
    assert_eq!((a.0, answered), (StatusCode::UNAUTHORIZED, false));
    let (gone, gone_id) = f.session(1).await;
    f.engine.revoke(&gone_id.parse().expect("id"), RevokeReason::Logout).await.expect("revoke");
    let (a, answered) = f.same("GET", "/v1/auth", &[("cookie", &format!("__Host-sid={gone}"))]).await;
    assert_eq!((a.0, answered), (StatusCode::UNAUTHORIZED, true));
    let statuses: Vec<StatusCode> = {
        let mut v = Vec::new();
        for _ in 0..25 {
            v.push(through(f.front.clone(), request("GET", "/v1/auth", &[("cookie", "__Host-sid=garbage")])).await.0);
        }
        v
    };
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    // A live session from the same (throttled) source is still answered.
    let (a, answered) = f.same("GET", "/v1/auth", &[("cookie", &cookie)]).await;
    assert_eq!((a.0, answered), (StatusCode::OK, true));

    // A renewal due (past the renewal point of the idle window) needs a write: the router's.
    f.clock.advance(std::time::Duration::from_secs(10 * 60));
    let (a, answered) = f.same("GET", "/v1/auth", &[("cookie", &cookie)]).await;
    assert_eq!((a.0, answered), (StatusCode::OK, false));
    let (a, answered) = f.same("GET", "/v1/auth", &[("cookie", &cookie)]).await;
    assert_eq!((a.0, answered), (StatusCode::OK, true), "renewed: from memory again");

    // Other paths are the router's, including Envoy's `/v1/auth/{rest}`.
    for uri in ["/v1/auth/", "/v1/auth/app/page", "/v1/authx", "/healthz", "/nope"] {
        let (_, answered) = f.same("GET", uri, &[("cookie", &cookie)]).await;
        assert!(!answered, "{uri} must go to the router");
    }
    let (_, answered) = f.same("CONNECT", "/v1/auth", &[("cookie", &cookie)]).await;
    assert!(!answered, "CONNECT must go to the router");
}

#[tokio::test]
async fn front_applies_route_rules_csrf_tokens_and_hsts_as_the_router_does() {
    let http = HttpSettings {
        tls: true,
        routes: vec![
            RouteRule { prefix: "/admin".into(), min_aal: 2, max_auth_age: None, csrf: None },
            RouteRule { prefix: "/forms".into(), min_aal: 0, max_auth_age: None, csrf: Some(CsrfMode::Synchronizer) },
        ],
        ..HttpSettings::default()
    };
    let f = fixture(http);
    let (token, _) = f.session(1).await;
    let cookie = format!("__Host-sid={token}");

    let (a, answered) = f.same("GET", "/v1/auth", &[("cookie", &cookie), ("x-original-uri", "/app")]).await;
    assert_eq!((a.0, answered), (StatusCode::OK, true));
    assert!(header(&a, "strict-transport-security").is_some(), "HSTS under TLS");
    // The synchronizer mode anywhere adds the session's CSRF token to every 200.
    let csrf = String::from_utf8(header(&a, "x-session-csrf-token").expect("csrf token").to_vec()).expect("text");

    // A route that needs AAL 2: the step-up 403, from Front.
    let (a, answered) = f.same("GET", "/v1/auth", &[("cookie", &cookie), ("x-original-uri", "/admin/users")]).await;
    assert_eq!((a.0, answered), (StatusCode::FORBIDDEN, true));
    assert!(header(&a, "strict-transport-security").is_some());

    // A cookie-authenticated POST to a synchronizer route: refused without the token,
    // accepted with it.
    let post = [("cookie", cookie.as_str()), ("x-original-uri", "/forms/1"), ("x-forwarded-method", "POST")];
    let (a, answered) = f.same("GET", "/v1/auth", &post).await;
    assert_eq!((a.0, answered), (StatusCode::FORBIDDEN, true));
    let mut with_token = post.to_vec();
    with_token.push(("x-csrf-token", &csrf));
    let (a, answered) = f.same("GET", "/v1/auth", &with_token).await;
    assert_eq!((a.0, answered), (StatusCode::OK, true));
}
