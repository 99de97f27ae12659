//! End-to-end tests over real sockets against the built `sessiond` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{path_str, run_cli, send, Opts, SetCookie, Srv, KEY};
use serde_json::{json, Value};

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

// ------------------------------------------------------------------------------------------
// Operations endpoints
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn operations_endpoints_answer() {
    let srv = Srv::dev();
    let r = send(srv.client().get(srv.u("/healthz"))).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ok")));
    let r = send(srv.client().get(srv.u("/readyz"))).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ok")));

    let r = send(srv.client().get(srv.u("/openapi.json"))).await;
    assert_eq!(r.status, 200);
    let paths = r.body["paths"].as_object().expect("paths");
    for p in [
        "/v1/sessions",
        "/v1/sessions/resolve",
        "/v1/auth",
        "/v1/sessions/{id}/rotate",
        "/v1/sessions/{id}/elevate",
        "/v1/sessions/{id}",
        "/v1/subjects/{subject}/sessions",
        "/v1/logout",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lacks {p}");
    }
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json"))
        .expect("docs/openapi.json is committed");
    assert_eq!(r.text, committed, "the served document is the committed one");

    let c = srv.create(json!({ "subject": "metrics-user" })).await;
    let token = s(&c["token"]).to_owned();
    // Forward-auth answers given before the router (a live session; no token) and through
    // it (a token sessiond never issued) are counted alike, under the route `/v1/auth`.
    let auth = |t: &str| srv.client().get(srv.u("/v1/auth")).header("authorization", format!("Bearer {t}"));
    for _ in 0..3 {
        assert_eq!(send(auth(&token)).await.status, 200);
    }
    assert_eq!(send(srv.client().get(srv.u("/v1/auth"))).await.status, 401);
    assert_eq!(send(auth("sds_forged")).await.status, 401);
    let r = send(srv.client().get(srv.u("/metrics"))).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("sessiond_http_requests_total"), "{}", r.text);
    assert!(r.text.contains("route=\"/v1/sessions\""), "{}", r.text);
    let count = |status: &str| {
        r.text
            .lines()
            .find(|l| {
                l.starts_with("sessiond_http_requests_total{")
                    && l.contains("route=\"/v1/auth\"")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(|n| n.parse::<u64>().expect("count"))
    };
    assert_eq!((count("200"), count("401")), (Some(3), Some(2)), "{}", r.text);
    assert!(r.text.contains("sessiond_http_request_duration_seconds_count{route=\"/v1/auth\"} 5"), "{}", r.text);
}

// ------------------------------------------------------------------------------------------
// The browser flow: create, resolve, forward-auth, logout
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_resolve_forward_auth_and_logout() {
    let srv = Srv::dev();
    let r = srv
        .post(
            "/v1/sessions",
            json!({
                "subject": "alice", "tenant": "acme", "aal": 2, "amr": ["pwd", "otp"],
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "ip": "192.0.2.10",
                "data": { "theme": "dark" }
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let token = s(&r.body["token"]).to_owned();
    assert!(token.starts_with("sds_"));
    let id = s(&r.body["session"]["id"]).to_owned();
    assert!(id.starts_with("ses_"));
    assert_eq!(r.body["session"]["subject"], "alice");
    assert_eq!(r.body["session"]["tenant"], "acme");
    assert_eq!(r.body["session"]["aal"], 2);
    assert_eq!(r.body["session"]["device"]["first_ip"], "192.0.2.10");
    assert_eq!(r.body["session"]["data"]["theme"], "dark");
    assert!(r.body["csrf_token"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(r.body["expires_in"].as_u64().is_some_and(|e| e > 0 && e <= 900));
    // Dev mode cookie: `sid`, no Secure, no __Host- prefix.
    let c = SetCookie::parse(s(&r.body["set_cookie"]));
    assert_eq!((c.name.as_str(), c.value.as_str()), ("sid", token.as_str()));
    assert!(!c.has("secure") && c.has("httponly") && c.get("samesite") == Some("Lax") && c.get("path") == Some("/"));
    assert!(!srv.log().contains(&token), "the raw token must never be logged");

    // resolve
    let r = srv.resolve(&token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(r.body["session"]["id"], id.as_str());
    assert!(r.body["expires_in"].as_u64().is_some_and(|e| e > 0));
    assert!(r.body["absolute_expires_in"].as_u64().is_some_and(|e| e > 3600));
    assert_eq!(r.body["token"], Value::Null, "no rotation on the default policy this early");

    // peek
    let r = srv.post("/v1/sessions/peek", json!({ "token": token })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["idle_expires_in"].as_u64().is_some_and(|e| e > 0));

    // forward-auth with the cookie and with bearer
    for r in [srv.auth_cookie(&token).await, srv.auth_bearer(&token).await] {
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-session-subject").as_deref(), Some("alice"));
        assert_eq!(r.header("x-session-id").as_deref(), Some(id.as_str()));
        assert_eq!(r.header("x-session-tenant").as_deref(), Some("acme"));
        assert_eq!(r.header("x-session-aal").as_deref(), Some("2"));
        assert!(r.header("x-session-auth-time").and_then(|t| t.parse::<u64>().ok()).is_some_and(|t| t > 1_600_000_000));
        assert!(r.header("x-session-expires-in").and_then(|t| t.parse::<u64>().ok()).is_some_and(|t| t > 0));
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    }

    // GET by id
    let r = srv.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["subject"], "alice");
    assert!(r.body.get("token").is_none(), "a session view never carries a token");

    // logout with the cookie (a browser's same-origin request: CSRF proof by fetch metadata)
    let r = send(
        srv.client()
            .post(srv.u("/v1/logout"))
            .header("cookie", format!("sid={token}"))
            .header("sec-fetch-site", "same-origin"),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(r.header("clear-site-data").as_deref(), Some("\"cookies\""));
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let clear = SetCookie::parse(&r.header("set-cookie").expect("cleared cookie"));
    assert_eq!((clear.name.as_str(), clear.value.as_str()), ("sid", ""));
    assert_eq!(clear.get("max-age"), Some("0"));
    let set_attrs: Vec<_> = c.attrs.clone();
    assert_eq!(clear.attrs[..set_attrs.len()], set_attrs[..], "identical attributes plus Max-Age=0");

    // logout replay refused: the token is dead everywhere
    srv.auth_cookie(&token).await.problem(401, "invalid-token");
    srv.auth_bearer(&token).await.problem(401, "invalid-token");
    srv.resolve(&token).await.problem(401, "invalid-token");
    srv.get(&format!("/v1/sessions/{id}")).await.problem(404, "not-found");
    // A second logout is idempotent.
    let r = send(srv.client().post(srv.u("/v1/logout")).bearer_auth(&token)).await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn fixation_pre_login_token_dies_at_login() {
    let srv = Srv::dev();
    let pre = srv.create(json!({ "subject": "anonymous-visitor", "aal": 0 })).await;
    let pre_token = s(&pre["token"]).to_owned();
    let login = srv.create(json!({ "subject": "bob", "previous_token": pre_token })).await;
    assert_eq!(login["replaced"], pre["session"]["id"]);
    assert_ne!(login["token"], pre["token"], "never adopted");
    srv.resolve(&pre_token).await.problem(401, "invalid-token");
    srv.auth_cookie(&pre_token).await.problem(401, "invalid-token");
    assert_eq!(srv.resolve(s(&login["token"])).await.status, 200);
}

#[tokio::test]
async fn rotate_elevate_step_up_and_replay() {
    let srv = Srv::dev();
    let a = srv.create(json!({ "subject": "carol", "aal": 1, "amr": ["pwd"] })).await;
    let (t0, id) = (s(&a["token"]).to_owned(), s(&a["session"]["id"]).to_owned());
    let other = srv.create(json!({ "subject": "dave" })).await;

    // Step-up demanded by the /admin rule, matched on X-Forwarded-Uri and X-Original-URI.
    for h in ["x-forwarded-uri", "x-original-uri"] {
        let r = send(srv.client().get(srv.u("/v1/auth")).bearer_auth(&t0).header(h, "/admin/users?x=1")).await;
        r.problem(403, "step-up-required");
        assert_eq!(r.body["min_aal"], 2);
        assert!(r.header("www-authenticate").is_some_and(|w| w.contains("insufficient_user_authentication")));
    }
    let r =
        send(srv.client().get(srv.u("/v1/auth")).bearer_auth(&t0).header("x-forwarded-uri", "/administrator")).await;
    assert_eq!(r.status, 200, "prefixes match whole segments");
    // Spellings a case-insensitive backend or Windows serves as /admin: the rule still applies
    // (route_matching = "folded", the default).
    for sneaky in ["/ADMIN/users", "/Admin", "/admin./users", "/ADMIN%2e/users", "/admin.../users", "/%41DMIN"] {
        let r = send(srv.client().get(srv.u("/v1/auth")).bearer_auth(&t0).header("x-forwarded-uri", sneaky)).await;
        r.problem(403, "step-up-required");
        assert_eq!(r.body["min_aal"], 2, "{sneaky}");
    }
    // Path parameters that make a dot-segment ambiguous: RFC 3986 and nginx resolve
    // /admin/;x/../keys to /admin/keys, a parameter-stripping reading to /keys. Refused.
    for ambiguous in ["/admin/;x/../keys", "/admin/..;x/keys", "/admin/.;/keys"] {
        let r = send(srv.client().get(srv.u("/v1/auth")).bearer_auth(&t0).header("x-forwarded-uri", ambiguous)).await;
        r.problem(400, "malformed-request");
        assert!(r.text.contains("parameters"), "{ambiguous}: {}", r.text);
    }
    for other in ["/administrator.", "/ADMINISTRATOR", "/Public/admin"] {
        let r = send(srv.client().get(srv.u("/v1/auth")).bearer_auth(&t0).header("x-forwarded-uri", other)).await;
        assert_eq!(r.status, 200, "{other} is not under /admin: {}", r.text);
    }

    // The token must belong to the addressed session.
    srv.post(&format!("/v1/sessions/{id}/rotate"), json!({ "token": other["token"] }))
        .await
        .problem(403, "token-mismatch");

    // Rotate.
    let r = srv.post(&format!("/v1/sessions/{id}/rotate"), json!({ "token": t0 })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let t1 = s(&r.body["token"]).to_owned();
    assert_ne!(t1, t0);
    assert!(s(&r.body["set_cookie"]).starts_with(&format!("sid={t1};")));
    // Within the grace window the old token is an alias that hands back the same successor.
    let r = srv.resolve(&t0).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["token"], t1.as_str());
    assert!(r.headers_all("set-cookie").iter().any(|c| c.starts_with(&format!("sid={t1};"))));

    // Elevate with the new token.
    let r =
        srv.post(&format!("/v1/sessions/{id}/elevate"), json!({ "token": t1, "aal": 2, "amr": ["pwd", "hwk"] })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t2 = s(&r.body["token"]).to_owned();
    assert_eq!(r.body["session"]["aal"], 2);
    assert_eq!(r.body["session"]["amr"], json!(["pwd", "hwk"]));
    let r = send(srv.client().get(srv.u("/v1/auth")).bearer_auth(&t2).header("x-forwarded-uri", "/admin/users")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-session-aal").as_deref(), Some("2"));
    // Fresher authentication demanded by /admin/keys (max_auth_age 1 s).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = send(srv.client().get(srv.u("/v1/auth")).bearer_auth(&t2).header("x-forwarded-uri", "/admin/keys")).await;
    r.problem(403, "step-up-required");
    assert_eq!(r.body["max_auth_age"], 1);
    // The most specific rule wins in any spelling.
    let r = send(srv.client().get(srv.u("/v1/auth")).bearer_auth(&t2).header("x-forwarded-uri", "/ADMIN/Keys.")).await;
    r.problem(403, "step-up-required");
    assert_eq!(r.body["max_auth_age"], 1);
    // Bad elevate input.
    srv.post(&format!("/v1/sessions/{id}/elevate"), json!({ "token": t2, "aal": 9 }))
        .await
        .problem(400, "malformed-request");

    // Replaying t0 after its grace window (1 s) is theft: the whole session is revoked.
    let r = srv.resolve(&t0).await;
    r.problem(401, "session-revoked");
    assert_eq!(r.body["reason"], "token_replayed");
    srv.resolve(&t2).await.problem(401, "invalid-token");
}

#[tokio::test]
async fn session_data_compare_and_set() {
    let srv = Srv::dev();
    let a = srv.create(json!({ "subject": "erin" })).await;
    let id = s(&a["session"]["id"]).to_owned();
    let url = srv.u(&format!("/v1/sessions/{id}/data/cart"));
    let put = |if_match: &str, v: Value| srv.client().put(&url).bearer_auth(KEY).header("if-match", if_match).json(&v);
    let r = send(put("\"0\"", json!({ "items": 2 }))).await;
    assert_eq!((r.status, r.body["revision"].as_u64()), (200, Some(1)), "{}", r.text);
    assert_eq!(r.header("etag").as_deref(), Some("\"1\""));
    let r = send(put("\"0\"", json!(3))).await;
    r.problem(409, "conflict");
    assert_eq!(r.body["current_revision"], 1);
    send(put("not-a-revision", json!(3))).await.problem(400, "malformed-request");
    // If-Match compares strongly: a weak tag of the current revision is refused, not matched.
    send(put("W/\"1\"", json!(3))).await.problem(400, "malformed-request");
    let r = srv.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(
        (r.body["data"]["cart"]["items"].as_u64(), r.body["revision"].as_u64()),
        (Some(2), Some(1)),
        "unchanged"
    );
    let r = send(srv.client().put(&url).bearer_auth(KEY).json(&json!("no if-match"))).await;
    assert_eq!(r.body["revision"], 2);
    let r = srv.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!((r.body["data"]["cart"].as_str(), r.body["revision"].as_u64()), (Some("no if-match"), Some(2)));
    let r = send(srv.client().delete(&url).bearer_auth(KEY).header("if-match", "\"2\"")).await;
    assert_eq!(r.body["revision"], 3, "{}", r.text);
    // A deleted session is never resurrected by a late write.
    assert_eq!(srv.delete(&format!("/v1/sessions/{id}")).await.status, 204);
    send(put("\"3\"", json!(1))).await.problem(404, "not-found");
    srv.delete(&format!("/v1/sessions/{id}")).await.problem(404, "not-found");
}

#[tokio::test]
async fn subjects_list_revoke_and_epoch() {
    let srv = Srv::dev();
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let a = srv.create(json!({ "subject": "frank", "tenant": "t1" })).await;
        ids.push(s(&a["session"]["id"]).to_owned());
        tokens.push(s(&a["token"]).to_owned());
    }
    srv.create(json!({ "subject": "frank" })).await; // other tenant (empty)
    let r = srv.get(&format!("/v1/subjects/frank/sessions?tenant=t1&limit=2&current={}", ids[1])).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let page = r.body["sessions"].as_array().expect("sessions");
    assert_eq!(page.len(), 2);
    assert_eq!(page[1]["is_current"], true);
    assert_eq!(page[0]["is_current"], false);
    let cursor = s(&r.body["next_cursor"]).to_owned();
    let r = srv.get(&format!("/v1/subjects/frank/sessions?tenant=t1&limit=2&cursor={cursor}")).await;
    assert_eq!(r.body["sessions"].as_array().map(Vec::len), Some(1));
    let r = srv.get("/v1/subjects/frank/sessions").await;
    assert_eq!(r.body["sessions"].as_array().map(Vec::len), Some(1), "tenants are separate");

    let r = srv.delete(&format!("/v1/subjects/frank/sessions?tenant=t1&except={}", ids[0])).await;
    assert_eq!(r.body["revoked"].as_array().map(Vec::len), Some(2), "{}", r.text);
    assert_eq!(srv.resolve(&tokens[0]).await.status, 200);
    srv.resolve(&tokens[1]).await.problem(401, "invalid-token");

    let r = srv.post("/v1/subjects/frank/epoch?tenant=t1", json!({})).await;
    assert_eq!((r.status, r.body["epoch"].as_u64()), (200, Some(1)), "{}", r.text);
    let r = srv.resolve(&tokens[0]).await;
    r.problem(401, "session-revoked");
    assert_eq!(r.body["reason"], "epoch");
    // Sessions created after the bump are fine.
    let a = srv.create(json!({ "subject": "frank", "tenant": "t1" })).await;
    assert_eq!(srv.resolve(s(&a["token"])).await.status, 200);

    let r = srv.delete("/v1/tenants/t1/sessions").await;
    assert!(r.body["revoked"].as_array().is_some_and(|v| !v.is_empty()), "{}", r.text);
}

/// A subject or tenant that no session could have is refused on every subject-wide endpoint
/// with a 400, and changes nothing: no epoch row, no event, no revoked session. An empty
/// tenant segment (an unset variable in the caller) does not empty the default tenant.
#[tokio::test]
async fn subject_endpoints_refuse_names_no_session_could_have() {
    let srv = Srv::dev();
    let a = srv.create(json!({ "subject": "kim" })).await; // default (empty) tenant
    let token = s(&a["token"]).to_owned();
    let events = |r: &common::Res| r.body["events"].as_array().map(Vec::len);
    let before = events(&srv.get("/v1/events?after=0&limit=1000").await);
    let long = "x".repeat(300);
    let bad = [
        ("POST", "/v1/subjects/a%00b/epoch".to_owned()),
        ("POST", "/v1/subjects/a%0Ab/epoch".to_owned()),
        ("POST", format!("/v1/subjects/{long}/epoch")),
        ("POST", "/v1/subjects/kim/epoch?tenant=%01%02".to_owned()),
        ("POST", format!("/v1/subjects/kim/epoch?tenant={long}")),
        ("POST", "/v1/subjects//epoch".to_owned()),
        ("GET", "/v1/subjects/a%00b/sessions".to_owned()),
        ("GET", format!("/v1/subjects/kim/sessions?tenant={long}")),
        ("DELETE", "/v1/subjects/a%1Bb/sessions".to_owned()),
        ("DELETE", "/v1/subjects/kim/sessions?tenant=%7F".to_owned()),
        ("DELETE", "/v1/subjects//sessions".to_owned()),
        ("DELETE", "/v1/tenants//sessions".to_owned()),
        ("DELETE", "/v1/tenants/a%00b/sessions".to_owned()),
        ("DELETE", format!("/v1/tenants/{long}/sessions")),
    ];
    for (method, path) in &bad {
        let req = match *method {
            "POST" => srv.client().post(srv.u(path)).header("content-type", "application/json").body("{}"),
            "GET" => srv.client().get(srv.u(path)),
            _ => srv.client().delete(srv.u(path)),
        };
        let r = send(req.bearer_auth(KEY)).await;
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text);
        r.assert_problem_shape();
        assert_eq!(r.body["type"].as_str().map(|t| t.ends_with("/malformed-request")), Some(true), "{}", r.text);
    }
    assert_eq!(srv.resolve(&token).await.status, 200, "the default tenant's session survives");
    assert_eq!(events(&srv.get("/v1/events?after=0&limit=1000").await), before, "no event was written");
    let r = srv.post("/v1/subjects/kim/epoch", json!({})).await;
    assert_eq!(
        (r.status, r.body["epoch"].as_u64()),
        (200, Some(1)),
        "no epoch row was made for a bad name: {}",
        r.text
    );
}

#[tokio::test]
async fn events_are_readable_from_a_cursor() {
    let srv = Srv::dev();
    let a = srv.create(json!({ "subject": "gina" })).await;
    let token = s(&a["token"]).to_owned();
    send(srv.client().post(srv.u("/v1/logout")).bearer_auth(&token)).await;
    let r = srv.get("/v1/events?after=0&limit=1000").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let kinds: Vec<&str> =
        r.body["events"].as_array().expect("events").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"created") && kinds.contains(&"revoked.logout"), "{kinds:?}");
    let first = r.body["events"][0]["cursor"].as_u64().expect("cursor");
    let r2 = srv.get(&format!("/v1/events?after={first}&limit=1")).await;
    assert_eq!(r2.body["events"].as_array().map(Vec::len), Some(1));
    assert!(r2.body["events"][0]["cursor"].as_u64() > Some(first));
    assert!(!r.text.contains(&token), "events never carry tokens");
    srv.get("/v1/events?limit=0").await.problem(400, "malformed-request");
}

// ------------------------------------------------------------------------------------------
// Timeouts (test-sized policy `short`: idle 2 s, absolute 5 s)
// ------------------------------------------------------------------------------------------

/// A session past its deadline is refused with 401: `session-expired` (with the reason) while
/// its record is still there, or `invalid-token` once the once-a-second sweeper removed it —
/// which of the two depends on the sweeper's timing, the refusal does not. The `expired.*`
/// events checked afterwards prove which deadline ended it.
fn expired_or_swept(r: &common::Res, reason: &str) {
    assert_eq!(r.status, 401, "{}", r.text);
    match r.body["type"].as_str() {
        Some("https://sessiond.dev/problems/session-expired") => assert_eq!(r.body["reason"], reason, "{}", r.text),
        Some("https://sessiond.dev/problems/invalid-token") => {}
        _ => panic!("unexpected problem: {}", r.text),
    }
}

#[tokio::test]
async fn idle_and_absolute_timeouts() {
    let srv = Srv::dev();
    let idle = srv.create(json!({ "subject": "henry", "policy": "short" })).await;
    let busy = srv.create(json!({ "subject": "henry", "policy": "short" })).await;
    let (idle_t, busy_t) = (s(&idle["token"]).to_owned(), s(&busy["token"]).to_owned());
    let idle_check = async {
        tokio::time::sleep(Duration::from_millis(2300)).await;
        let r = srv.resolve(&idle_t).await;
        expired_or_swept(&r, "idle");
    };
    let busy_check = async {
        // Used every 0.9 s: idle never passes, the absolute deadline (5 s) does.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(900)).await;
            let r = srv.auth_cookie(&busy_t).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let r = srv.auth_cookie(&busy_t).await;
        expired_or_swept(&r, "absolute");
    };
    tokio::join!(idle_check, busy_check);
    // The sweeper removes them and records why.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = srv.get("/v1/events?after=0&limit=1000").await;
    let kinds: Vec<&str> =
        r.body["events"].as_array().expect("events").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"expired.idle") && kinds.contains(&"expired.absolute"), "{kinds:?}");
}

// ------------------------------------------------------------------------------------------
// API keys
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn service_calls_need_a_valid_api_key() {
    let srv = Srv::dev();
    let a = srv.create(json!({ "subject": "ivan" })).await;
    let (token, id) = (s(&a["token"]).to_owned(), s(&a["session"]["id"]).to_owned());
    let c = srv.client();
    let calls = [
        c.post(srv.u("/v1/sessions")).json(&json!({ "subject": "x" })),
        c.post(srv.u("/v1/sessions/resolve")).json(&json!({ "token": token })),
        c.post(srv.u("/v1/sessions/peek")).json(&json!({ "token": token })),
        c.post(srv.u(&format!("/v1/sessions/{id}/rotate"))).json(&json!({ "token": token })),
        c.post(srv.u(&format!("/v1/sessions/{id}/elevate"))).json(&json!({ "token": token, "aal": 2 })),
        c.get(srv.u(&format!("/v1/sessions/{id}"))),
        c.delete(srv.u(&format!("/v1/sessions/{id}"))),
        c.put(srv.u(&format!("/v1/sessions/{id}/data/k"))).json(&json!(1)),
        c.delete(srv.u(&format!("/v1/sessions/{id}/data/k"))),
        c.get(srv.u("/v1/subjects/ivan/sessions")),
        c.delete(srv.u("/v1/subjects/ivan/sessions")),
        c.post(srv.u("/v1/subjects/ivan/epoch")),
        c.delete(srv.u("/v1/tenants/x/sessions")),
        c.get(srv.u("/v1/events")),
    ];
    for req in calls {
        let missing = req.try_clone().expect("clone");
        let r = send(missing).await;
        r.problem(401, "unauthorized-client");
        assert!(r.header("www-authenticate").is_some());
        send(req.try_clone().expect("clone").bearer_auth("sdk_wrong_key_0123456789"))
            .await
            .problem(401, "unauthorized-client");
        send(req.bearer_auth(&token)).await.problem(401, "unauthorized-client");
        // a session token is not an API key
    }
    // The session survived all that (nothing was done without a key).
    assert_eq!(srv.resolve(&token).await.status, 200);
    assert!(!srv.log().contains("sdk_wrong_key"), "presented keys are never logged");
    // Browser-facing endpoints need no API key.
    assert_eq!(srv.auth_bearer(&token).await.status, 200);
}

#[tokio::test]
async fn api_key_created_by_the_cli_is_accepted_while_running() {
    let srv = Srv::start(Opts { no_env_key: true, ..Opts::default() });
    srv.post("/v1/sessions", json!({ "subject": "x" })).await.problem(401, "unauthorized-client");
    let (ok, out, err) = run_cli(&["api-key", "create", "--name", "app", "--data-dir", path_str(&srv.dir)], &[]);
    assert!(ok, "{err}");
    let key = out.trim().to_owned();
    assert!(key.starts_with("sdk_") && key.len() > 40, "{key}");
    let stored = std::fs::read_to_string(srv.dir.join("api-keys.json")).expect("key file");
    assert!(!stored.contains(&key), "only the hash is stored");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&srv.dir.join("api-keys.json")), 0o600);
        assert_eq!(mode(&srv.dir), 0o700);
        assert_eq!(mode(&srv.dir.join("signing-key")), 0o600);
    }
    // The server picks the new key up within a few seconds.
    let mut status = 0;
    for _ in 0..40 {
        let r = send(srv.client().post(srv.u("/v1/sessions")).bearer_auth(&key).json(&json!({ "subject": "x" }))).await;
        status = r.status;
        if status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 201);
}

// ------------------------------------------------------------------------------------------
// Hostile input: always a 4xx problem, never a 5xx
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn garbage_input_gets_4xx_problems_never_5xx() {
    let srv = Srv::dev();
    let c = srv.client();
    let a = srv.create(json!({ "subject": "judy", "policy": "limited" })).await;
    let id = s(&a["session"]["id"]).to_owned();
    let big = "x".repeat(100 * 1024);

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.post(srv.u("/v1/sessions")).bearer_auth(KEY).header("content-type", "application/json").body("{not json"),
            400,
            "malformed-request",
        ),
        (
            c.post(srv.u("/v1/sessions")).bearer_auth(KEY).header("content-type", "text/plain").body("{}"),
            415,
            "unsupported-media-type",
        ),
        (c.post(srv.u("/v1/sessions")).bearer_auth(KEY).body("{}"), 415, "unsupported-media-type"),
        (c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": big })), 413, "payload-too-large"),
        (
            c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": "a", "sneaky": 1 })),
            400,
            "malformed-request",
        ),
        (c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": 5 })), 400, "malformed-request"),
        (c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": "" })), 400, "malformed-request"),
        (
            c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": "a\u{0}b" })),
            400,
            "malformed-request",
        ),
        (
            c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": "a", "aal": 7 })),
            400,
            "malformed-request",
        ),
        (
            c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": "a", "aal": -1 })),
            400,
            "malformed-request",
        ),
        (
            c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": "a", "ip": "not-an-ip" })),
            400,
            "malformed-request",
        ),
        (
            c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": "a", "policy": "nope" })),
            400,
            "unknown-policy",
        ),
        (
            c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": "judy", "policy": "limited" })),
            409,
            "limit-reached",
        ),
        (c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!([1, 2, 3])), 400, "malformed-request"),
        (
            c.post(srv.u("/v1/sessions/resolve")).bearer_auth(KEY).json(&json!({ "token": "garbage" })),
            401,
            "invalid-token",
        ),
        (
            c.post(srv.u("/v1/sessions/resolve"))
                .bearer_auth(KEY)
                .json(&json!({ "token": format!("sds_{}", "A".repeat(71)) })),
            401,
            "invalid-token",
        ),
        (
            c.post(srv.u("/v1/sessions/resolve")).bearer_auth(KEY).json(&json!({ "token": big.clone() })),
            413,
            "payload-too-large",
        ),
        (c.post(srv.u("/v1/sessions/resolve")).bearer_auth(KEY).json(&json!({})), 400, "malformed-request"),
        (c.get(srv.u("/v1/sessions/not-an-id")).bearer_auth(KEY), 400, "malformed-request"),
        (c.get(srv.u("/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAAAA")).bearer_auth(KEY), 404, "not-found"),
        (c.get(srv.u("/v1/sessions/%FF%FE")).bearer_auth(KEY), 400, "malformed-request"),
        (
            c.get(srv.u(&format!("/v1/subjects/judy/sessions?limit=abc&current={id}"))).bearer_auth(KEY),
            400,
            "malformed-request",
        ),
        (c.get(srv.u("/v1/subjects/judy/sessions?cursor=zzz")).bearer_auth(KEY), 400, "malformed-request"),
        (c.get(srv.u("/v1/subjects/judy/sessions?limit=0")).bearer_auth(KEY), 400, "malformed-request"),
        (c.get(srv.u("/v1/subjects/judy/sessions?current=bad")).bearer_auth(KEY), 400, "malformed-request"),
        (c.get(srv.u("/v1/subjects/judy/sessions?bogus=1")).bearer_auth(KEY), 400, "malformed-request"),
        (c.delete(srv.u("/v1/subjects/judy/sessions?except=bad")).bearer_auth(KEY), 400, "malformed-request"),
        (c.get(srv.u("/v1/events?after=-1")).bearer_auth(KEY), 400, "malformed-request"),
        (
            c.put(srv.u(&format!("/v1/sessions/{id}/data/k")))
                .bearer_auth(KEY)
                .header("if-match", "\"x\"")
                .json(&json!(1)),
            400,
            "malformed-request",
        ),
        (
            c.put(srv.u(&format!("/v1/sessions/{id}/data/k"))).bearer_auth(KEY).json(&json!({ "v": big.clone() })),
            413,
            "payload-too-large",
        ),
        (
            c.put(srv.u(&format!("/v1/sessions/{id}/data/k"))).bearer_auth(KEY).json(&json!({ "v": "y".repeat(9000) })),
            400,
            "malformed-request",
        ),
        (c.get(srv.u("/v1/auth")), 401, "invalid-token"),
        (c.get(srv.u("/v1/auth")).header("cookie", "sid="), 401, "invalid-token"),
        (c.get(srv.u("/v1/auth")).header("cookie", "sid=%%%%; other"), 401, "invalid-token"),
        (c.get(srv.u("/v1/auth")).header("cookie", "sid=sds_garbage"), 401, "invalid-token"),
        (c.get(srv.u("/v1/auth")).header("cookie", format!("sid={}", "Z".repeat(6000))), 401, "invalid-token"),
        (c.get(srv.u("/v1/auth")).header("cookie", ";;;===;;"), 401, "invalid-token"),
        (
            c.get(srv.u("/v1/auth"))
                .header("cookie", reqwest::header::HeaderValue::from_bytes(b"sid=\xff\xfe\xfd").expect("obs-text")),
            401,
            "invalid-token",
        ),
        (c.get(srv.u("/v1/auth")).header("authorization", "Bearer"), 401, "invalid-token"),
        (c.get(srv.u("/v1/auth")).header("authorization", "Basic dXNlcjpwYXNz"), 401, "invalid-token"),
        (c.get(srv.u("/v1/auth")).header("authorization", "Bearer sds_\t"), 401, "invalid-token"),
        (
            c.get(srv.u("/v1/auth"))
                .header("authorization", reqwest::header::HeaderValue::from_bytes(b"Bearer \xff").expect("obs-text")),
            401,
            "invalid-token",
        ),
        (
            c.post(srv.u("/v1/sessions"))
                .header(
                    "authorization",
                    reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("obs-text"),
                )
                .json(&json!({})),
            401,
            "unauthorized-client",
        ),
        (c.get(srv.u("/v1/nothing-here")), 404, "not-found"),
        (c.get(srv.u("/v1/sessions")), 405, "method-not-allowed"),
        (c.patch(srv.u("/v1/logout")), 405, "method-not-allowed"),
    ];
    for (i, (req, status, slug)) in cases.into_iter().enumerate() {
        let r = send(req).await;
        assert!(r.status < 500, "case {i}: {} {}", r.status, r.text);
        assert_eq!(r.status, status, "case {i}: {}", r.text);
        r.problem(status, slug);
        assert!(!r.text.to_lowercase().contains("panick"), "case {i}");
    }
    // A cross-site cookie logout is refused (CSRF); forward-auth refuses cross-site unsafe methods.
    let token = s(&a["token"]);
    send(c.post(srv.u("/v1/logout")).header("cookie", format!("sid={token}")).header("sec-fetch-site", "cross-site"))
        .await
        .problem(403, "csrf-rejected");
    send(
        c.get(srv.u("/v1/auth"))
            .header("cookie", format!("sid={token}"))
            .header("x-forwarded-method", "POST")
            .header("sec-fetch-site", "cross-site"),
    )
    .await
    .problem(403, "csrf-rejected");
    // Problem details never echo what the client sent: a type error names the field and the
    // expected type, not the value (which may be a pasted secret).
    let r = send(
        c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": "a", "aal": "sds_SECRET_VALUE" })),
    )
    .await;
    r.problem(400, "malformed-request");
    assert!(r.text.contains("`aal`") && r.text.contains("expected u8"), "{}", r.text);
    assert!(!r.text.contains("SECRET_VALUE"), "{}", r.text);
    let r = send(c.post(srv.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": "a", "sds_SECRET_KEY": 1 })))
        .await;
    r.problem(400, "malformed-request");
    assert!(!r.text.contains("SECRET_KEY"), "{}", r.text);
    // Forward-auth: a repeated header naming the original request, or a path whose meaning
    // depends on the backend, is a 400, not a guess.
    for (name, values) in [
        ("x-forwarded-uri", ["/ok", "/admin"]),
        ("x-original-uri", ["/ok", "/admin"]),
        ("x-forwarded-method", ["GET", "POST"]),
    ] {
        let mut req = c.get(srv.u("/v1/auth")).header("cookie", format!("sid={token}"));
        for v in values {
            req = req.header(name, v);
        }
        send(req).await.problem(400, "malformed-request");
    }
    // The two names of the original URI (or method) disagreeing: one came from the client.
    for (a, b) in [("x-forwarded-uri", "x-original-uri"), ("x-forwarded-method", "x-original-method")] {
        let (va, vb) = if a.ends_with("uri") { ("/ok", "/admin") } else { ("GET", "POST") };
        let r =
            send(c.get(srv.u("/v1/auth")).header("cookie", format!("sid={token}")).header(a, va).header(b, vb)).await;
        r.problem(400, "malformed-request");
    }
    let same = send(
        c.get(srv.u("/v1/auth"))
            .header("cookie", format!("sid={token}"))
            .header("x-forwarded-uri", "/ok")
            .header("x-original-uri", "/ok"),
    )
    .await;
    assert_eq!(same.status, 200, "both names with the same value, as nginx sets them: {}", same.text);
    for path in ["/admin%0a", "/admin%0D", "/admin%09", "/admin%7f", "/admin%3B", "/admin%20", "/admin%20/x"] {
        let r = send(c.get(srv.u("/v1/auth")).header("cookie", format!("sid={token}")).header("x-forwarded-uri", path))
            .await;
        r.problem(400, "malformed-request");
    }
    // The server is still healthy and the session alive.
    assert_eq!(srv.resolve(token).await.status, 200);
}

/// Clients that stall cannot hold the server: a request head that never completes is cut
/// after the header timeout, and a body that stops arriving is a 408 problem after the body
/// timeout, whatever `Content-Length` it announced; nothing is created.
#[tokio::test]
async fn stalled_requests_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Srv::dev();
    let addr = srv.url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    async fn exchange(addr: &str, bytes: Vec<u8>) -> (Duration, String) {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(&bytes).await.expect("write");
        let start = std::time::Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(40), conn.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the server must not hang");
        (start.elapsed(), String::from_utf8_lossy(&out).into_owned())
    }
    let body_head = |len: &str| {
        format!(
            "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{{\"subject\":\"slow\""
        )
        .into_bytes()
    };
    let (head, huge, short) = tokio::join!(
        // An unfinished head: closed, without a request reaching sessiond.
        exchange(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec()),
        // A huge announced body that never comes, and a short one that stops.
        exchange(&addr, body_head("99999999999")),
        exchange(&addr, body_head("100")),
    );
    assert!(head.1.is_empty() || head.1.starts_with("HTTP/1.1 408"), "{}", head.1);
    assert!(head.0 >= Duration::from_secs(9), "{:?}", head.0);
    for (waited, out) in [huge, short] {
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(out.contains("application/problem+json") && out.contains("request-timeout"), "{out}");
        assert!(waited >= Duration::from_secs(9), "{waited:?}");
    }
    let r = srv.get("/v1/subjects/slow/sessions").await;
    assert_eq!(r.body["sessions"].as_array().map(Vec::len), Some(0), "{}", r.text);
}

// ------------------------------------------------------------------------------------------
// Production cookies over TLS (self-signed certificate from rcgen)
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn tls_instance_sets_host_prefixed_secure_cookies_and_hsts() {
    let srv = Srv::start(Opts { tls: true, ..Opts::default() });
    assert!(srv.url.starts_with("https://"));
    let a = srv.create(json!({ "subject": "kate", "policy": "rotating" })).await;
    let token = s(&a["token"]).to_owned();
    let c = SetCookie::parse(s(&a["set_cookie"]));
    assert_eq!(c.name, "__Host-sid");
    let names: Vec<&str> = c.attrs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["path", "secure", "httponly", "samesite"]);
    assert_eq!((c.get("path"), c.get("samesite")), (Some("/"), Some("Lax")));

    // A real Set-Cookie from forward-auth after the rotation interval (1 s).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = srv.auth_cookie(&token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("strict-transport-security").as_deref(), Some("max-age=31536000; includeSubDomains"));
    let rotated = SetCookie::parse(&r.header("set-cookie").expect("rotated cookie"));
    assert_eq!(rotated.name, "__Host-sid");
    assert!(rotated.value.starts_with("sds_") && rotated.value != token);
    assert!(rotated.has("secure") && rotated.has("httponly"));
    assert_eq!((rotated.get("path"), rotated.get("samesite")), (Some("/"), Some("Lax")));
    assert!(!rotated.has("domain") && !rotated.has("max-age") && !rotated.has("expires"), "{rotated:?}");

    // Remember-me: Max-Age is the remaining absolute lifetime.
    let p = srv.create(json!({ "subject": "kate", "policy": "remember" })).await;
    let pc = SetCookie::parse(s(&p["set_cookie"]));
    let age: u64 = pc.get("max-age").expect("max-age").parse().expect("number");
    assert!((3590..=3600).contains(&age), "{age}");

    // Logout clears with identical attributes.
    let r = send(
        srv.client()
            .post(srv.u("/v1/logout"))
            .header("cookie", format!("__Host-sid={}", rotated.value))
            .header("sec-fetch-site", "same-origin"),
    )
    .await;
    assert_eq!(r.status, 204);
    let clear = SetCookie::parse(&r.header("set-cookie").expect("clear"));
    assert_eq!(clear.name, "__Host-sid");
    assert_eq!(clear.attrs[..4], rotated.attrs[..4]);
    assert_eq!(clear.get("max-age"), Some("0"));
    assert_eq!(r.header("strict-transport-security").as_deref(), Some("max-age=31536000; includeSubDomains"));
    srv.auth_cookie(&rotated.value).await.problem(401, "invalid-token");
    // The dev cookie name means nothing here.
    send(srv.client().get(srv.u("/v1/auth")).header("cookie", format!("sid={}", s(&p["token"]))))
        .await
        .problem(401, "invalid-token");
}

// ------------------------------------------------------------------------------------------
// Startup rules, shutdown and durability, the CLI
// ------------------------------------------------------------------------------------------

#[test]
fn dev_mode_and_plain_http_are_refused_off_loopback() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = path_str(tmp.path());
    let (ok, _, err) = run_cli(&["serve", "--dev", "--listen", "0.0.0.0:0", "--data-dir", d], &[]);
    assert!(!ok && err.contains("loopback"), "{err}");
    let (ok, _, err) = run_cli(&["serve", "--listen", "0.0.0.0:0", "--data-dir", d], &[]);
    assert!(!ok && err.contains("plain HTTP"), "{err}");
    let (ok, _, err) = run_cli(&["serve", "--data-dir", d], &[("SESSIOND_LISTEN", "not-an-address")]);
    assert!(!ok && err.contains("SESSIOND_LISTEN"), "{err}");
}

#[test]
fn config_check_names_unknown_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let good = tmp.path().join("good.toml");
    std::fs::write(&good, common::CONFIG).expect("write");
    let (ok, out, err) = run_cli(&["config", "check", path_str(&good)], &[]);
    assert!(ok && out.contains("ok"), "{out}{err}");
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:1\"\nlisten_port = 3\n").expect("write");
    let (ok, _, err) = run_cli(&["config", "check", path_str(&bad)], &[]);
    assert!(!ok && err.contains("listen_port"), "{err}");
}

#[tokio::test]
async fn graceful_shutdown_keeps_sessions_and_the_cli_works_on_the_data_dir() {
    let mut srv = Srv::dev();
    let a = srv.create(json!({ "subject": "leo" })).await;
    let b = srv.create(json!({ "subject": "leo" })).await;
    let (token, id, id_b) =
        (s(&a["token"]).to_owned(), s(&a["session"]["id"]).to_owned(), s(&b["session"]["id"]).to_owned());
    let dir = srv.dir.clone();
    let d = path_str(&dir).to_owned();

    // Client mode against the running server.
    let env = [("SESSIOND_API_KEY", KEY)];
    let (ok, out, err) = run_cli(&["--server", &srv.url, "sessions", "list", "--subject", "leo"], &env);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains(&id_b), "{out}");
    let (ok, out, _) = run_cli(&["--server", &srv.url, "sessions", "show", &id], &env);
    assert!(ok && out.contains("\"leo\""), "{out}");
    let (ok, out, _) = run_cli(&["--server", &srv.url, "events", "tail"], &env);
    assert!(ok && out.contains("created"), "{out}");
    let (ok, _, err) = run_cli(&["--server", &srv.url, "sessions", "list", "--subject", "leo"], &[]);
    assert!(!ok && err.contains("API key"), "{err}");
    // Direct mode is refused while the server holds the data directory.
    let (ok, _, err) = run_cli(&["sessions", "list", "--subject", "leo", "--data-dir", &d], &[]);
    assert!(!ok && err.contains("in use"), "{err}");

    // SIGTERM: graceful exit, store flushed.
    assert!(srv.terminate(), "graceful exit: {}", srv.log());
    assert!(srv.log().contains("store flushed"), "{}", srv.log());

    // Direct mode on the data directory.
    let (ok, out, err) = run_cli(&["sessions", "list", "--subject", "leo", "--data-dir", &d], &[]);
    assert!(ok && out.contains(&id), "{out}{err}");
    let (ok, _, err) = run_cli(&["sessions", "revoke", &id_b, "--data-dir", &d], &[]);
    assert!(ok, "{err}");
    let export = dir.parent().expect("parent").join("export.jsonl");
    let (ok, _, err) = run_cli(&["export", path_str(&export), "--data-dir", &d], &[]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&export).expect("export");
    assert!(text.contains(&id) && !text.contains(&id_b) && !text.contains(&token), "hashes only, revoked gone");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&export).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the export holds personal data: owner-only");
    }
    let (ok, _, err) = run_cli(&["export", path_str(&export), "--data-dir", &d], &[]);
    assert!(!ok && err.contains("must not exist"), "an export never overwrites a file: {err}");
    // Importing over a store that holds sessions would revive those revoked since the export.
    let (ok, _, err) = run_cli(&["import", path_str(&export), "--data-dir", &d], &[]);
    assert!(!ok && err.contains("--replace"), "{err}");
    let fresh = dir.parent().expect("parent").join("fresh");
    let (ok, _, err) = run_cli(&["import", path_str(&export), "--data-dir", path_str(&fresh)], &[]);
    assert!(ok, "{err}");
    std::fs::copy(dir.join("signing-key"), fresh.join("signing-key")).expect("same signing key");

    // Restart on the imported copy: the acknowledged session is still there.
    let srv2 = Srv::start(Opts { dir: Some(fresh), ..Opts::default() });
    assert_eq!(srv2.resolve(&token).await.status, 200);
    let (ok, out, _) = run_cli(&["--server", &srv2.url, "subjects", "bump-epoch", "leo"], &env);
    assert!(ok && out.contains("\"epoch\": 1"), "{out}");
    srv2.resolve(&token).await.problem(401, "session-revoked");
    let (ok, out, err) = run_cli(&["--server", &srv2.url, "sessions", "revoke", &id], &env);
    assert!(ok && out.contains("revoked"), "{err}");
    let (ok, _, err) = run_cli(&["--server", &srv2.url, "sessions", "revoke", &id], &env);
    assert!(!ok && err.contains("404"), "{err}");
}
