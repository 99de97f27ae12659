//! The test application and the scenarios, shared by the in-process and the remote tests:
//! each scenario runs against an `Env` (the app behind a layer, plus the authority's engine
//! and clock for seeding sessions and moving time).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post, put};
use axum::Router;
use sessiond_core::time::ManualClock;
use sessiond_core::{Engine, Policies, Policy, SessionId};
use sessiond_tower::testkit::SetCookie;
use sessiond_tower::{
    ClientInfo, Error, InProcess, Login, MaybeSession, RequireLayer, Session, SessionBackend, SessionLayer,
};
use tower::ServiceExt as _;

pub const HOST: &str = "app.example";
pub const ROTATE_EVERY: Duration = Duration::from_secs(60);
pub const GRACE: Duration = Duration::from_secs(10);

/// Test policies: the default class rotates every minute (so rotation is testable without
/// passing the 15-minute idle timeout).
pub fn policies() -> Policies {
    let mut p = Policies::default();
    p.insert(Policy { rotation_interval: Some(ROTATE_EVERY), ..Policy::default() }).unwrap();
    p
}

// ---------------------------------------------------------------------------------------------
// The application under test
// ---------------------------------------------------------------------------------------------

async fn public(session: Option<Session>) -> String {
    session.map_or_else(|| "anonymous".to_owned(), |s| s.subject())
}

async fn me(session: Session) -> String {
    format!("{} aal={}", session.subject(), session.aal())
}

/// Logs in the subject named in the body, AAL 1 (`pwd`); answers with the CSRF token.
async fn login(session: MaybeSession, subject: String) -> Result<String, Error> {
    let s = session.login(Login::new(subject).with_amr(["pwd"])).await?;
    Ok(s.csrf_token())
}

async fn login_remembered(session: MaybeSession) -> Result<String, Error> {
    let s = session.login(Login::new("alice").with_policy("remember-me")).await?;
    Ok(s.csrf_token())
}

/// Logs in again while holding the old session's handle, then tries to write through it.
async fn relogin_then_write_old(old: Session, maybe: MaybeSession) -> Result<String, Error> {
    let new = maybe.login(Login::new("bob").with_amr(["pwd"])).await?;
    let stale = old.insert("planted", &1).is_err() && old.get::<i32>("planted").is_err();
    new.insert("mine", &1)?;
    Ok(format!("stale-refused={stale}"))
}

async fn logout(session: Session) -> Result<&'static str, Error> {
    session.logout().await?;
    Ok("bye")
}

async fn elevate(session: Session) -> Result<String, Error> {
    session.elevate(2, ["pwd", "otp"]).await?;
    Ok(format!("aal={}", session.aal()))
}

async fn get_string(session: Session, axum::extract::Path(key): axum::extract::Path<String>) -> Result<String, Error> {
    Ok(session.get::<String>(&key)?.unwrap_or_else(|| "<none>".to_owned()))
}

/// Reads `key` as a number: a stored string must be an `Err`, never a silent `None`.
async fn get_number(session: Session, axum::extract::Path(key): axum::extract::Path<String>) -> String {
    match session.get::<u64>(&key) {
        Ok(Some(n)) => format!("number {n}"),
        Ok(None) => "none".to_owned(),
        Err(Error::Decode { .. }) => "decode error".to_owned(),
        Err(e) => format!("other error {e}"),
    }
}

async fn put_string(
    session: Session,
    axum::extract::Path(key): axum::extract::Path<String>,
    value: String,
) -> Result<&'static str, Error> {
    session.insert(&key, &value)?;
    Ok("stored")
}

async fn delete_key(session: Session, axum::extract::Path(key): axum::extract::Path<String>) -> Result<String, Error> {
    let old: Option<String> = session.remove(&key)?;
    Ok(old.unwrap_or_default())
}

/// Increments a counter; the write is saved by the layer after this returns.
async fn incr(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("counter")?.unwrap_or(0);
    session.insert("counter", &(n + 1))?;
    Ok((n + 1).to_string())
}

/// Writes, then fails: nothing may be saved.
async fn write_then_fail(session: Session) -> Result<&'static str, (StatusCode, &'static str)> {
    session.insert("counter", &999u64).map_err(|_| (StatusCode::BAD_REQUEST, "x"))?;
    Err((StatusCode::INTERNAL_SERVER_ERROR, "boom"))
}

/// Reads the counter, lets "another request" change the data, then writes: a lost update
/// unless compare-and-set catches it.
async fn racy_incr(
    session: Session,
    axum::extract::State(engine): axum::extract::State<Engine>,
) -> Result<String, Error> {
    let n: u64 = session.get("counter")?.unwrap_or(0);
    engine.set_data(&session.id(), "counter", serde_json::json!(100), None).await.unwrap();
    session.insert("counter", &(n + 1))?;
    Ok("written".to_owned())
}

async fn admin(session: Session) -> String {
    format!("admin {}", session.subject())
}

pub fn app(layer: SessionLayer, engine: Engine) -> Router {
    let stepped_up =
        Router::new().route("/admin", get(admin)).route_layer(RequireLayer::aal(2).within(Duration::from_secs(600)));
    Router::new()
        .route("/public", get(public))
        .route("/me", get(me))
        .route("/login", post(login))
        .route("/login-remembered", post(login_remembered))
        .route("/logout", post(logout))
        .route("/relogin", post(relogin_then_write_old))
        .route("/elevate", post(elevate))
        .route("/data/{key}", get(get_string).put(put_string).delete(delete_key))
        .route("/number/{key}", get(get_number))
        .route("/counter", post(incr))
        .route("/fail", put(write_then_fail))
        .route("/racy", post(racy_incr))
        .with_state(engine)
        .merge(stepped_up)
        .layer(layer)
}

// ---------------------------------------------------------------------------------------------
// The environment
// ---------------------------------------------------------------------------------------------

pub struct Env {
    pub app: Router,
    /// The authority's engine (in this process in both modes), for seeding and inspection.
    pub engine: Engine,
    pub clock: Arc<ManualClock>,
    pub cookie_name: String,
}

pub struct Seeded {
    pub token: String,
    pub csrf: String,
    pub id: SessionId,
}

pub struct Res {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Res {
    pub fn cookies(&self) -> Vec<SetCookie> {
        SetCookie::all(&self.headers)
    }

    pub fn session_cookie(&self, name: &str) -> Option<SetCookie> {
        self.cookies().into_iter().find(|c| c.name == name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Env {
    pub async fn seed(&self, login: Login) -> Seeded {
        let issued = InProcess::new(self.engine.clone()).create(login, None, &ClientInfo::default()).await.unwrap();
        Seeded { token: issued.token.token.expose().to_owned(), csrf: issued.session.csrf_token, id: issued.session.id }
    }

    pub async fn alice(&self) -> Seeded {
        self.seed(Login::new("alice").with_amr(["pwd"])).await
    }

    pub fn cookie(&self, token: &str) -> String {
        format!("{}={token}", self.cookie_name)
    }

    pub async fn send(&self, req: Request<Body>) -> Res {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        Res { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    /// A request with `Host` set; the cookie (if any) and CSRF token (if any) added.
    pub fn req(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        csrf: Option<&str>,
    ) -> axum::http::request::Builder {
        let mut b = Request::builder().method(method).uri(uri).header("host", HOST);
        if let Some(t) = token {
            b = b.header("cookie", self.cookie(t));
        }
        if let Some(c) = csrf {
            b = b.header("x-csrf-token", c);
        }
        b
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> Res {
        self.send(self.req("GET", uri, token, None).body(Body::empty()).unwrap()).await
    }

    pub async fn post(&self, uri: &str, token: Option<&str>, csrf: Option<&str>, body: &str) -> Res {
        self.send(self.req("POST", uri, token, csrf).body(Body::from(body.to_owned())).unwrap()).await
    }

    pub async fn put(&self, uri: &str, token: Option<&str>, csrf: Option<&str>, body: &str) -> Res {
        self.send(self.req("PUT", uri, token, csrf).body(Body::from(body.to_owned())).unwrap()).await
    }

    pub async fn data(&self, id: &SessionId) -> Option<std::collections::BTreeMap<String, serde_json::Value>> {
        self.engine.get(id).await.unwrap().map(|r| r.data.clone())
    }
}

/// Asserts the cookie carries exactly `Path=/; Secure; HttpOnly; SameSite=Lax` (plus
/// `Max-Age` when given), no `Domain`, no `Expires`.
pub fn assert_cookie_attributes(c: &SetCookie, max_age: Option<&str>) {
    let mut names = c.attribute_names();
    names.sort();
    let mut want: Vec<String> = ["httponly", "path", "samesite", "secure"].iter().map(|s| (*s).to_owned()).collect();
    if max_age.is_some() {
        want.push("max-age".to_owned());
        want.sort();
    }
    assert_eq!(names, want, "cookie attributes of {c:?}");
    assert_eq!(c.attribute("Path"), Some(Some("/")));
    assert_eq!(c.attribute("SameSite"), Some(Some("Lax")));
    assert_eq!(c.attribute("Secure"), Some(None));
    assert_eq!(c.attribute("HttpOnly"), Some(None));
    assert_eq!(c.attribute("Max-Age").flatten(), max_age);
}

// ---------------------------------------------------------------------------------------------
// Scenarios (each one must be able to fail: attacks are shown to fail, not only happy paths)
// ---------------------------------------------------------------------------------------------

pub async fn login_sets_exact_cookie(env: &Env) {
    let res = env.post("/login", None, None, "alice").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let cookies = res.cookies();
    assert_eq!(cookies.len(), 1, "one Set-Cookie: {cookies:?}");
    let c = &cookies[0];
    assert_eq!(c.name, "__Host-sid");
    assert!(c.value.starts_with("sds_"), "a sessiond token");
    assert_cookie_attributes(c, None);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    // The page got the CSRF token, and the cookie is a working session.
    assert!(!res.body.is_empty());
    let me = env.get("/me", Some(&c.value)).await;
    assert_eq!((me.status, me.body.as_str()), (StatusCode::OK, "alice aal=1"));
}

pub async fn persistent_policy_gets_max_age(env: &Env) {
    let res = env.post("/login-remembered", None, None, "").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let c = res.session_cookie("__Host-sid").expect("cookie");
    let thirty_days = (30 * 86_400).to_string();
    assert_cookie_attributes(&c, Some(&thirty_days));
}

pub async fn protected_route_refuses_missing_and_garbage(env: &Env) {
    assert_eq!(env.get("/me", None).await.status, StatusCode::UNAUTHORIZED);
    let alice = env.alice().await;
    // A structurally valid token signed with another key (forged), and one with a flipped byte.
    let other = sessiond_tower::testkit::TestKit::new();
    let forged = other.seed("alice").await.unwrap();
    let mut flipped = alice.token.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let long = "sds_".to_owned() + &"A".repeat(5000);
    let garbage = ["x", "sds_", "sds_!!!!", long.as_str(), "\"sds_quoted\"", forged.token(), flipped.as_str()];
    for g in garbage {
        let res = env.get("/me", Some(g)).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "cookie {g:.20}…: {}", res.body);
        assert_eq!(res.json()["type"], "https://sessiond.dev/problems/invalid-token");
        // The refused cookie is expired with the same attributes.
        let c = res.session_cookie("__Host-sid").expect("refused cookie is cleared");
        assert_eq!(c.value, "");
        assert_cookie_attributes(&c, Some("0"));
        // A page that works logged out treats it as "no session", never a 500.
        let res = env.get("/public", Some(g)).await;
        assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "anonymous"));
    }
    // Non-UTF-8 cookie bytes and a bearer that is not ours.
    let req = env
        .req("GET", "/public", None, None)
        .header("cookie", axum::http::HeaderValue::from_bytes(b"__Host-sid=\xff\xfe").unwrap())
        .header("authorization", "Bearer not-a-session-token")
        .body(Body::empty())
        .unwrap();
    let res = env.send(req).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "anonymous"));
    // The real token still works: nothing above disturbed it.
    assert_eq!(env.get("/me", Some(&alice.token)).await.status, StatusCode::OK);
}

pub async fn data_round_trip_and_type_mismatch(env: &Env) {
    let alice = env.alice().await;
    let t = Some(alice.token.as_str());
    let res = env.put("/data/theme", t, Some(&alice.csrf), "dark").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(env.get("/data/theme", t).await.body, "dark");
    // Reading a string as a number is an error, not a silent None.
    assert_eq!(env.get("/number/theme", t).await.body, "decode error");
    assert_eq!(env.get("/number/absent", t).await.body, "none");
    // Remove returns the old value; afterwards the key is gone.
    let req = env.req("DELETE", "/data/theme", t, Some(&alice.csrf)).body(Body::empty()).unwrap();
    let res = env.send(req).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "dark"));
    assert_eq!(env.get("/data/theme", t).await.body, "<none>");
    assert_eq!(env.data(&alice.id).await.unwrap().get("theme"), None);
}

pub async fn changes_are_saved_before_the_response(env: &Env) {
    let alice = env.alice().await;
    let t = Some(alice.token.as_str());
    for expect in 1..=3u64 {
        let res = env.post("/counter", t, Some(&alice.csrf), "").await;
        assert_eq!((res.status, res.body.clone()), (StatusCode::OK, expect.to_string()));
        // The response is in our hands: the write must already be in the store.
        assert_eq!(env.data(&alice.id).await.unwrap()["counter"], serde_json::json!(expect));
    }
    // A handler that writes then fails with a 5xx saves nothing.
    let res = env.put("/fail", t, Some(&alice.csrf), "").await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(env.data(&alice.id).await.unwrap()["counter"], serde_json::json!(3));
}

pub async fn concurrent_change_is_a_conflict_not_a_lost_update(env: &Env) {
    let alice = env.alice().await;
    let res = env.post("/racy", Some(&alice.token), Some(&alice.csrf), "").await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.json()["type"], "https://sessiond.dev/problems/conflict");
    // The concurrent writer's value survives.
    assert_eq!(env.data(&alice.id).await.unwrap()["counter"], serde_json::json!(100));
}

pub async fn logout_clears_cookie_and_old_cookie_is_refused(env: &Env) {
    let alice = env.alice().await;
    let res = env.post("/logout", Some(&alice.token), Some(&alice.csrf), "").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let c = res.session_cookie("__Host-sid").expect("cleared cookie");
    assert_eq!(c.value, "");
    assert_cookie_attributes(&c, Some("0"));
    assert_eq!(res.header("clear-site-data"), Some("\"cookies\""));
    assert_eq!(res.header("cache-control"), Some("no-store"));
    // The old cookie is dead, in the authority too.
    assert_eq!(env.get("/me", Some(&alice.token)).await.status, StatusCode::UNAUTHORIZED);
    assert!(env.engine.get(&alice.id).await.unwrap().is_none());
}

pub async fn login_never_adopts_a_pre_login_cookie(env: &Env) {
    // An attacker plants their own valid session cookie in the victim's browser …
    let planted = env.seed(Login::new("attacker").with_amr(["pwd"])).await;
    let res = env.post("/login", Some(&planted.token), Some(&planted.csrf), "alice").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let c = res.session_cookie("__Host-sid").expect("new cookie");
    assert_ne!(c.value, planted.token, "the pre-login token is never kept");
    // … the planted session is gone and the new one is alice's.
    assert_eq!(env.get("/me", Some(&planted.token)).await.status, StatusCode::UNAUTHORIZED);
    assert!(env.engine.get(&planted.id).await.unwrap().is_none());
    assert_eq!(env.get("/me", Some(&c.value)).await.body, "alice aal=1");
    // A garbage or unknown pre-login cookie: still a fresh token.
    let res = env.post("/login", Some("sds_garbage"), None, "bob").await;
    assert_eq!(res.status, StatusCode::OK);
    let c = res.session_cookie("__Host-sid").expect("new cookie");
    assert!(c.value.starts_with("sds_") && c.value != "sds_garbage");
}

pub async fn csrf_defences(env: &Env) {
    let alice = env.alice().await;
    let bob = env.seed(Login::new("bob")).await;
    let t = Some(alice.token.as_str());
    let csrf = Some(alice.csrf.as_str());
    let refused = |res: &Res| {
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
        assert_eq!(res.json()["type"], "https://sessiond.dev/problems/csrf-rejected");
    };
    // Missing, wrong (another session's) and garbage tokens.
    refused(&env.post("/counter", t, None, "").await);
    refused(&env.post("/counter", t, Some(&bob.csrf), "").await);
    refused(&env.post("/counter", t, Some("garbage"), "").await);
    // The right token but a cross-site request, or a foreign Origin.
    let req = env.req("POST", "/counter", t, csrf).header("sec-fetch-site", "cross-site").body(Body::empty()).unwrap();
    refused(&env.send(req).await);
    let req =
        env.req("POST", "/counter", t, csrf).header("origin", "https://evil.example").body(Body::empty()).unwrap();
    refused(&env.send(req).await);
    let req = env.req("POST", "/counter", t, csrf).header("origin", "null").body(Body::empty()).unwrap();
    refused(&env.send(req).await);
    // Nothing was written by any refused request.
    assert_eq!(env.data(&alice.id).await.unwrap().get("counter"), None);
    // The right token, same origin: allowed.
    let req = env
        .req("POST", "/counter", t, csrf)
        .header("origin", format!("https://{HOST}"))
        .header("sec-fetch-site", "same-origin")
        .body(Body::empty())
        .unwrap();
    let res = env.send(req).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "1"));
    // Safe methods need no token.
    assert_eq!(env.get("/me", t).await.status, StatusCode::OK);
    // Bearer requests carry no ambient credential: exempt, even marked cross-site.
    let req = Request::post("/counter")
        .header("authorization", format!("Bearer {}", alice.token))
        .header("sec-fetch-site", "cross-site")
        .header("origin", "https://evil.example")
        .body(Body::empty())
        .unwrap();
    let res = env.send(req).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "2"));
}

pub async fn rotation_passes_a_new_cookie_and_replay_is_theft(env: &Env) {
    let alice = env.alice().await;
    env.clock.advance(ROTATE_EVERY + Duration::from_secs(1));
    let res = env.get("/me", Some(&alice.token)).await;
    assert_eq!(res.status, StatusCode::OK);
    let c = res.session_cookie("__Host-sid").expect("rotated cookie");
    assert_ne!(c.value, alice.token);
    assert_cookie_attributes(&c, None);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    // Inside the grace window the old token is an alias that yields the same successor.
    let again = env.get("/me", Some(&alice.token)).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.session_cookie("__Host-sid").expect("successor").value, c.value);
    // The new token works without a further rotation.
    let res = env.get("/me", Some(&c.value)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.session_cookie("__Host-sid").is_none(), "no rotation without cause");
    // A bearer client learns its rotated token from X-Session-Token, not a cookie.
    env.clock.advance(ROTATE_EVERY + Duration::from_secs(1));
    let req = Request::get("/me").header("authorization", format!("Bearer {}", c.value)).body(Body::empty()).unwrap();
    let res = env.send(req).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.cookies().is_empty());
    let newest = res.header("x-session-token").expect("rotated bearer token").to_owned();
    assert!(newest.starts_with("sds_") && newest != c.value);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    // Replaying the first token after its grace window is theft: the whole session ends.
    env.clock.advance(GRACE + Duration::from_secs(1));
    assert_eq!(env.get("/me", Some(&alice.token)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(env.get("/me", Some(&newest)).await.status, StatusCode::UNAUTHORIZED);
}

pub async fn elevate_changes_aal_and_rotates(env: &Env) {
    let alice = env.alice().await;
    let res = env.post("/elevate", Some(&alice.token), Some(&alice.csrf), "").await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "aal=2"));
    let c = res.session_cookie("__Host-sid").expect("rotated cookie");
    assert_ne!(c.value, alice.token);
    assert_cookie_attributes(&c, None);
    assert_eq!(env.get("/me", Some(&c.value)).await.body, "alice aal=2");
    // The CSRF token survives the rotation.
    let res = env.post("/counter", Some(&c.value), Some(&alice.csrf), "").await;
    assert_eq!(res.status, StatusCode::OK);
    // Elevation needs a session.
    assert_eq!(env.post("/elevate", None, None, "").await.status, StatusCode::UNAUTHORIZED);
}

pub async fn step_up_route(env: &Env) {
    let alice = env.alice().await;
    assert_eq!(env.get("/admin", None).await.status, StatusCode::UNAUTHORIZED);
    let res = env.get("/admin", Some(&alice.token)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let body = res.json();
    assert_eq!(body["type"], "https://sessiond.dev/problems/step-up-required");
    assert_eq!(body["min_aal"], 2);
    assert_eq!(body["max_auth_age"], 600);
    assert!(res.header("www-authenticate").is_some_and(|v| v.contains("insufficient_user_authentication")));
    let res = env.post("/elevate", Some(&alice.token), Some(&alice.csrf), "").await;
    let token = res.session_cookie("__Host-sid").expect("rotated").value;
    let res = env.get("/admin", Some(&token)).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "admin alice"));
    // Eleven minutes later the authentication is too old for this route (the session lives:
    // the idle timeout is 15 minutes).
    env.clock.advance(Duration::from_secs(11 * 60));
    let res = env.get("/admin", Some(&token)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let token = res.session_cookie("__Host-sid").map_or(token, |c| c.value);
    assert_eq!(env.get("/me", Some(&token)).await.status, StatusCode::OK);
}

pub async fn option_session_on_public_pages(env: &Env) {
    assert_eq!(env.get("/public", None).await.body, "anonymous");
    let alice = env.alice().await;
    assert_eq!(env.get("/public", Some(&alice.token)).await.body, "alice");
    // Epoch bump (password change) ends it everywhere at once.
    env.engine.bump_epoch("", "alice").await.unwrap();
    assert_eq!(env.get("/public", Some(&alice.token)).await.body, "anonymous");
}

/// Login CSRF: a cross-site form posting the attacker's credentials to the login route must
/// not log the victim in (no session cookie, 403), whether the request carries no session or
/// someone's; a same-origin login works. Nothing is created by a refused login.
pub async fn login_csrf_is_refused(env: &Env) {
    let before = env.engine.list("", "mallory", None, 10).await.unwrap().sessions.len();
    for (name, value) in [("sec-fetch-site", "cross-site"), ("origin", "https://evil.example"), ("origin", "null")] {
        let req = env.req("POST", "/login", None, None).header(name, value).body(Body::from("mallory")).unwrap();
        let res = env.send(req).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{name}: {value}: {}", res.body);
        assert_eq!(res.json()["type"], "https://sessiond.dev/problems/csrf-rejected");
        assert!(
            res.session_cookie(&env.cookie_name).is_none_or(|c| c.value.is_empty()),
            "{name}: a session cookie was set"
        );
    }
    assert_eq!(
        env.engine.list("", "mallory", None, 10).await.unwrap().sessions.len(),
        before,
        "a refused login created a session"
    );
    let req = env
        .req("POST", "/login", None, None)
        .header("sec-fetch-site", "same-origin")
        .header("origin", format!("https://{HOST}"))
        .body(Body::from("mallory"))
        .unwrap();
    let res = env.send(req).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.session_cookie(&env.cookie_name).is_some_and(|c| !c.value.is_empty()));
}

/// After a login in the same request, a handle on the previous session can no longer read or
/// write: its writes would land in the new session's data.
pub async fn an_old_handle_does_not_write_into_the_new_session(env: &Env) {
    let alice = env.alice().await;
    let res = env.post("/relogin", Some(&alice.token), Some(&alice.csrf), "").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body, "stale-refused=true");
    assert!(res.session_cookie(&env.cookie_name).is_some_and(|c| !c.value.is_empty()), "the new session's cookie");
    let bob = env.engine.list("", "bob", None, 10).await.unwrap().sessions;
    assert_eq!(bob.len(), 1);
    let data = env.data(&bob[0].id).await.expect("new session");
    assert!(data.contains_key("mine") && !data.contains_key("planted"), "{data:?}");
}
