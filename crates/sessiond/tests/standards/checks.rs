//! T01–T27 of the merged test list, black-box over HTTPS. Each check panics (with a
//! token-free message) when the attack or the violation succeeds.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::harness::*;
use crate::common::{send, Res, SetCookie};

fn no_store(r: &Res) -> bool {
    r.header("cache-control").is_some_and(|c| c.to_ascii_lowercase().contains("no-store"))
}

fn ids(events: &[Value], kind: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["session_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn kinds_for(events: &[Value], id: &str) -> Vec<String> {
    events.iter().filter(|e| e["session_id"] == id).map(|e| e["kind"].as_str().unwrap_or("").to_owned()).collect()
}

/// Asserts the production session-cookie attributes (T01).
fn assert_session_cookie(sc: &str, what: &str, max_age_limit: Option<u64>) -> SetCookie {
    let c = SetCookie::parse(sc);
    assert_eq!(c.name, COOKIE, "{what}: __Host- prefixed name");
    assert!(c.has("secure"), "{what}: Secure");
    assert!(c.has("httponly"), "{what}: HttpOnly");
    let same_site = c.get("samesite").map(str::to_ascii_lowercase);
    assert!(matches!(same_site.as_deref(), Some("lax" | "strict")), "{what}: SameSite Lax/Strict, got {same_site:?}");
    assert!(!c.has("domain"), "{what}: no Domain");
    assert_eq!(c.get("path"), Some("/"), "{what}: Path=/");
    match max_age_limit {
        None => {
            assert!(!c.has("max-age") && !c.has("expires"), "{what}: a browser-session cookie (no Max-Age/Expires)")
        }
        Some(limit) => {
            let age: u64 = c.get("max-age").and_then(|v| v.parse().ok()).expect("persistent cookie has Max-Age");
            assert!(age <= limit, "{what}: Max-Age {age} must not exceed the absolute lifetime {limit}");
            assert!(!c.has("expires"), "{what}");
        }
    }
    assert!(c.name.len() + c.value.len() <= 4096, "{what}: name+value ≤ 4096 bytes");
    c
}

/// A request after a deadline: `session-expired` with `reason`, or — when the background
/// sweeper (every second) already removed the session — `invalid-token` together with the
/// sweeper's `expired.<reason>` event for this session. Either way the session is refused.
async fn assert_expired(n: &Node, r: &Res, id: &str, reason: &str, what: &str) {
    if r.status == 401 && r.body["type"] == "https://sessiond.dev/problems/invalid-token" {
        let kind = format!("expired.{reason}");
        for _ in 0..20 {
            if ids(&n.events(0).await, &kind).iter().any(|i| i == id) {
                return;
            }
            sleep_ms(100).await;
        }
        panic!("{what}: refused as unknown but no {kind} event");
    }
    problem(r, 401, "session-expired", what);
    assert_eq!(r.body["reason"], reason, "{what}");
}

// ---------------------------------------------------------------------------------------------

/// T01 cookie-attributes: every `Set-Cookie` of the session (create, forward-auth rotation,
/// resolve rotation, rotate, elevate, remember-me, logout clearing).
pub async fn t01(n: Arc<Node>) {
    let a = n.login(json!({ "subject": "t01-user", "policy": "rotating" })).await;
    let created = assert_session_cookie(&a.set_cookie, "create", None);
    let mut b = n.browser(FIREFOX_LINUX, "10.1.0.1");
    b.accept(&a.set_cookie);
    sleep_ms(1100).await;
    let r = b.visit("GET", "/app", &[]).await;
    assert_eq!(r.status, 200, "{}", redact(&r.text));
    let rotated = r.header("set-cookie").expect("forward-auth rotation sets the cookie");
    let rc = assert_session_cookie(&rotated, "forward-auth rotation", None);
    let token = b.token().expect("jar").to_owned();
    let r = n.post(&format!("/v1/sessions/{}/rotate", a.id), json!({ "token": token })).await;
    assert_eq!(r.status, 200, "{}", redact(&r.text));
    let rot = Login::of(&r);
    assert_session_cookie(&rot.set_cookie, "rotate", None);
    let r = n
        .post(&format!("/v1/sessions/{}/elevate", a.id), json!({ "token": rot.token, "aal": 2, "amr": ["pwd", "otp"] }))
        .await;
    assert_eq!(r.status, 200, "{}", redact(&r.text));
    let el = Login::of(&r);
    assert_session_cookie(&el.set_cookie, "elevate", None);
    sleep_ms(1100).await;
    let r = n.resolve(&el.token).await;
    assert_eq!(r.status, 200, "{}", redact(&r.text));
    let from_resolve = r.header("set-cookie").expect("resolve rotation sets the cookie");
    assert_session_cookie(&from_resolve, "resolve rotation", None);
    // Remember-me: a documented persistent cookie, Max-Age ≤ absolute lifetime (3600 s).
    let p = n.login(json!({ "subject": "t01-user", "policy": "remember" })).await;
    assert_session_cookie(&p.set_cookie, "remember-me", Some(3600));
    // Logout clearing: same name, same attributes, empty value, Max-Age=0.
    b.jar.clear();
    b.accept(&from_resolve);
    let r = b.logout(&[("sec-fetch-site", "same-origin")]).await;
    assert_eq!(r.status, 204, "{}", redact(&r.text));
    let clear = SetCookie::parse(&r.header("set-cookie").expect("clearing cookie"));
    assert_eq!((clear.name.as_str(), clear.value.as_str()), (COOKIE, ""));
    assert_eq!(clear.get("max-age"), Some("0"));
    assert_eq!(clear.attrs[..created.attrs.len()], created.attrs[..], "identical attributes");
    // CS-20: one name, one (Path, Domain) pair everywhere.
    let pairs: BTreeSet<_> = [&created, &rc, &clear]
        .iter()
        .map(|c| (c.name.clone(), c.get("path").map(str::to_owned), c.get("domain").map(str::to_owned)))
        .collect();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
}

/// T02 generic-name: not a framework default, no stack name.
pub async fn t02(n: Arc<Node>) {
    let a = n.login(json!({ "subject": "t02-user" })).await;
    let name = SetCookie::parse(&a.set_cookie).name.to_ascii_lowercase();
    for deny in [
        "phpsessid",
        "jsessionid",
        "cfid",
        "cftoken",
        "asp.net_sessionid",
        "aspsessionid",
        "connect.sid",
        "laravel_session",
        "ci_session",
        "sessionid",
        "_session_id",
        "rack.session",
        "express:sess",
        "koa:sess",
        "beaker.session.id",
    ] {
        assert_ne!(name.trim_start_matches("__host-"), deny, "framework default cookie name");
    }
    for stack in ["rust", "actix", "axum", "tower", "hyper", "sessiond", "tokio", "rocket", "warp"] {
        assert!(!name.contains(stack), "the cookie name reveals the stack: {stack}");
    }
}

/// T03 token-format+randomness: 1,000 tokens through the real HTTP API (§7.3 gates scaled).
pub async fn t03(n: Arc<Node>) {
    const N: usize = 1000;
    const WORKERS: usize = 8;
    let subject = "t03-alice@example.com";
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let n = n.clone();
        set.spawn(async move {
            let mut out = Vec::with_capacity(N / WORKERS);
            for _ in 0..N / WORKERS {
                let l = n.login(json!({ "subject": subject, "ip": "192.0.2.10", "user_agent": FIREFOX_LINUX })).await;
                out.push(l.token);
            }
            out
        });
    }
    let mut tokens = Vec::with_capacity(N);
    while let Some(r) = set.join_next().await {
        tokens.extend(r.expect("worker"));
    }
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as u32;
    assert_eq!(tokens.len(), N);
    // Format: prefix, fixed length, base64url alphabet, 53 decoded bytes, version 1, one key id.
    let mut raws = Vec::with_capacity(N);
    for t in &tokens {
        assert!(t.starts_with("sds_"), "recognisable prefix");
        assert_eq!(t.len(), 75, "fixed length: sds_ + 71 base64url characters");
        let body = &t[4..];
        assert!(body.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "base64url alphabet");
        let raw = b64url(body).expect("decodes");
        assert_eq!(raw.len(), 53, "1 version + 4 key id + 32 secret + 16 tag bytes");
        assert_eq!(raw[0], 1, "version");
        raws.push(raw);
    }
    let kids: HashSet<_> = raws.iter().map(|r| r[1..5].to_vec()).collect();
    assert_eq!(kids.len(), 1, "the only fixed fields are the version and the signing key id");
    // 0 duplicates (tokens and secrets).
    assert_eq!(tokens.iter().collect::<HashSet<_>>().len(), N, "duplicate tokens");
    let secrets: Vec<&[u8]> = raws.iter().map(|r| &r[5..37]).collect();
    assert_eq!(secrets.iter().collect::<HashSet<_>>().len(), N, "duplicate secrets");
    // ≥ 128 bits: the secret is 256 bits.
    assert!(secrets[0].len() * 8 >= 128);
    // Per-bit-position monobit (Burp's method), bounds scaled from the FIPS 20,000-sample
    // bounds (9,725 < ones < 10,275, i.e. ±3.889 σ, ≈1e-4 per position) to N samples.
    let z = 275.0 / (20_000f64 * 0.25).sqrt();
    let half = z * (N as f64 * 0.25).sqrt();
    let (lo, hi) = (N as f64 / 2.0 - half, N as f64 / 2.0 + half);
    let mut out_of_bounds = Vec::new();
    for bit in 0..256 {
        let ones = secrets.iter().filter(|s| s[bit / 8] >> (7 - bit % 8) & 1 == 1).count() as f64;
        if !(ones > lo && ones < hi) {
            out_of_bounds.push((bit, ones));
        }
    }
    assert!(
        out_of_bounds.len() < 2,
        "monobit: {} of 256 bit positions outside ({lo:.1}, {hi:.1}): {out_of_bounds:?}",
        out_of_bounds.len()
    );
    // Per-character-position chi-square over the alphabet, for the characters that encode
    // only secret bits (characters 7..=48 of the base64url body); df = 63, p = 1e-4.
    let df = 63.0f64;
    let crit = df * (1.0 - 2.0 / (9.0 * df) + 3.719 * (2.0 / (9.0 * df)).sqrt()).powi(3);
    let expected = N as f64 / 64.0;
    let mut chi_fail = Vec::new();
    for pos in 7..=48 {
        let mut counts = [0usize; 128];
        for t in &tokens {
            counts[usize::from(t.as_bytes()[4 + pos])] += 1;
        }
        let chi: f64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            .iter()
            .map(|&c| (counts[usize::from(c)] as f64 - expected).powi(2) / expected)
            .sum();
        if chi > crit {
            chi_fail.push((pos, chi));
        }
    }
    assert!(chi_fail.len() < 2, "character positions fail the chi-square gate (> {crit:.1}): {chi_fail:?}");
    // No PII: subject, IP and creation time are not in the tokens.
    let ip = [192u8, 0, 2, 10];
    for (t, raw) in tokens.iter().zip(&raws) {
        // Whole-subject and long-fragment checks only: a random 71-character token contains a
        // given 3-letter string by chance about once in 4,000 tokens, so short fragments would
        // make this test flaky without testing anything more.
        assert!(!t.contains(subject) && !t.contains("example.com"), "subject in token text");
        assert!(!raw.windows(subject.len()).any(|w| w == subject.as_bytes()), "subject in token bytes");
        assert!(!raw.windows(11).any(|w| w == b"example.com"), "subject in token bytes");
        assert!(!raw.windows(4).any(|w| w == ip), "client IP in token bytes");
        for dt in 0..=10u32 {
            let s = unix + 5 - dt;
            assert!(
                !raw.windows(4).any(|w| w == s.to_be_bytes() || w == s.to_le_bytes()),
                "creation time in token bytes"
            );
        }
    }
}

/// T04 csprng-code-gate: the token and id generators use only the OS CSPRNG (code check;
/// no statistical test can prove this, checklist §7).
pub async fn t04(_n: Arc<Node>) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../sessiond-core/src");
    let token = std::fs::read_to_string(format!("{root}/token/mod.rs")).expect("token module");
    let id = std::fs::read_to_string(format!("{root}/id.rs")).expect("id module");
    assert!(
        token.contains("getrandom::fill") || token.contains("getrandom::getrandom") || token.contains("getrandom"),
        "tokens come from getrandom"
    );
    assert!(token.contains("Secret(os_random::<SECRET_LEN>())"), "mint uses os_random");
    assert!(id.contains("os_random"), "session ids come from os_random");
    for src in [&token, &id] {
        for banned in
            ["thread_rng", "StdRng", "SmallRng", "seed_from_u64", "rand::", "SystemTime", "Uuid::new_v4", "fastrand"]
        {
            assert!(!src.contains(banned), "a non-CSPRNG source ({banned}) in the generators");
        }
    }
    let gates = std::fs::read_to_string(format!("{root}/token/tests.rs")).expect("token tests");
    assert!(gates.contains("fn token_randomness_gates") && gates.contains("fn only_the_os_csprng_generates_secrets"));
}

/// T05 cookie-only: the token is accepted only as the session cookie (or a bearer credential,
/// documented for native apps); never from a URL, a form field or a custom header; never
/// emitted into URLs or browser-facing bodies.
pub async fn t05(n: Arc<Node>) {
    let a = n.login(json!({ "subject": "t05-user" })).await;
    let c = n.client();
    let t = &a.token;
    let attempts = [
        ("query ?token=", c.get(n.u(&format!("/v1/auth?token={t}")))),
        ("query ?sid=", c.get(n.u(&format!("/v1/auth?sid={t}")))),
        ("query ?__Host-sid=", c.get(n.u(&format!("/v1/auth?__Host-sid={t}")))),
        ("forwarded URI query", c.get(n.u("/v1/auth")).header("x-forwarded-uri", format!("/app?sid={t}"))),
        ("path parameter", c.get(n.u(&format!("/v1/auth/{t}")))),
        ("path ;jsessionid=", c.get(n.u("/v1/auth")).header("x-forwarded-uri", format!("/app;jsessionid={t}"))),
        ("X-Session-Token header", c.get(n.u("/v1/auth")).header("x-session-token", t)),
        ("X-Auth-Token header", c.get(n.u("/v1/auth")).header("x-auth-token", t)),
        (
            "form field",
            c.post(n.u("/v1/auth"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("__Host-sid={t}&token={t}")),
        ),
        ("JSON body", c.post(n.u("/v1/auth")).json(&json!({ "token": t }))),
        ("other cookie name", c.get(n.u("/v1/auth")).header("cookie", format!("sid={t}; session={t}"))),
        ("Authorization without scheme", c.get(n.u("/v1/auth")).header("authorization", t.as_str())),
    ];
    for (what, req) in attempts {
        let r = send(req.header("x-forwarded-for", "10.5.0.1")).await;
        problem(&r, 401, "invalid-token", what);
        assert!(!r.text.contains(t.as_str()), "{what}: the token is reflected");
    }
    // The same token as the cookie works (the attempts above failed for the transport only).
    let mut b = n.browser(FIREFOX_LINUX, "10.5.0.2");
    b.accept(&a.set_cookie);
    let r = b.visit("GET", "/app", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.text.is_empty(), "forward-auth answers carry no body");
    assert!(r.header("location").is_none());
    for (name, v) in r.headers.iter() {
        assert!(!String::from_utf8_lossy(v.as_bytes()).contains(t.as_str()), "{name} carries the token");
    }
    // A rotated token reaches the browser only in Set-Cookie.
    let rot = n.login(json!({ "subject": "t05-user", "policy": "rotating" })).await;
    let mut b = n.browser(FIREFOX_LINUX, "10.5.0.3");
    b.accept(&rot.set_cookie);
    sleep_ms(1100).await;
    let r = b.visit("GET", "/app", &[]).await;
    let new = b.token().expect("jar").to_owned();
    assert_ne!(new, rot.token);
    assert!(!r.text.contains(&new), "no body carries the token");
    for (name, v) in r.headers.iter().filter(|(k, _)| *k != "set-cookie") {
        assert!(!String::from_utf8_lossy(v.as_bytes()).contains(&new), "{name} carries the token");
    }
    // Logout's answer carries no token either.
    let r = b.logout(&[("sec-fetch-site", "same-origin")]).await;
    assert_eq!(r.status, 204);
    assert!(r.text.is_empty());
}

/// T06 tls-hsts: HSTS ≥ 1 year with includeSubDomains on every response; no plain-HTTP
/// fallback on the TLS port; plain HTTP refused off loopback by configuration.
pub async fn t06(n: Arc<Node>) {
    let a = n.login(json!({ "subject": "t06-user" })).await;
    let c = n.client();
    let reqs = [
        c.get(n.u("/healthz")),
        c.get(n.u("/v1/auth")),
        c.get(n.u("/v1/auth")).header("cookie", format!("{COOKIE}={}", a.token)),
        c.get(n.u("/nothing")),
        c.get(n.u("/v1/logout")),
        c.post(n.u("/v1/sessions")).bearer_auth(KEY).json(&json!({ "subject": "t06-user" })),
        c.post(n.u("/v1/logout")).bearer_auth(&a.token),
        c.get(n.u("/openapi.json")),
    ];
    for (i, req) in reqs.into_iter().enumerate() {
        let r = send(req.header("x-forwarded-for", "10.6.0.1")).await;
        let h = r.header("strict-transport-security").unwrap_or_else(|| panic!("request {i}: no HSTS"));
        let max_age: u64 =
            h.split(';').find_map(|p| p.trim().strip_prefix("max-age=")).and_then(|v| v.parse().ok()).expect("max-age");
        assert!(max_age >= 31_536_000, "request {i}: max-age {max_age}");
        assert!(h.to_ascii_lowercase().contains("includesubdomains"), "request {i}: {h}");
    }
    // Plain HTTP on the TLS port: no HTTP answer, never a cookie.
    let addr = n.addr.clone();
    let token = a.token.clone();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        let _ = s.write_all(format!("GET /v1/auth HTTP/1.1\r\nHost: x\r\nCookie: {COOKIE}={token}\r\n\r\n").as_bytes());
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .expect("probe");
    assert!(!answer.starts_with("HTTP/1.1 2"), "plain HTTP served on the TLS port");
    assert!(!answer.to_ascii_lowercase().contains("set-cookie"), "plain HTTP got a cookie");
    // Configuration: plain HTTP on a public address is refused unless a TLS proxy is declared.
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "listen = \"0.0.0.0:7420\"\n").expect("write");
    let (ok, _, err) = crate::common::run_cli(&["config", "check", cfg.to_str().expect("utf8")], &[]);
    assert!(!ok, "plain HTTP on 0.0.0.0 must be refused: {err}");
}

/// T07 strict-mode: a well-formed token sessiond never issued is unauthenticated, never
/// adopted at login, and logged.
pub async fn t07(n: Arc<Node>) {
    let real = n.login(json!({ "subject": "t07-user" })).await;
    let forged = forged_like(&real.token);
    let mut b = n.browser(FIREFOX_LINUX, "10.7.0.1");
    b.plant(&forged);
    let r = b.visit("GET", "/app", &[]).await;
    problem(&r, 401, "invalid-token", "forged cookie");
    assert!(r.header("set-cookie").is_none(), "no cookie for an unknown id");
    let r = n.resolve(&forged).await;
    problem(&r, 401, "invalid-token", "forged resolve");
    // Login with the forged pre-login token: a fresh token; the forged one stays worthless.
    let l = n.login(json!({ "subject": "t07-user", "previous_token": forged })).await;
    assert_ne!(l.token, forged);
    assert!(l.body["replaced"].is_null(), "nothing adopted or replaced");
    let r = b.visit("GET", "/app", &[]).await;
    problem(&r, 401, "invalid-token", "forged cookie after login");
    // Logged (without the token).
    let log = n.log();
    assert!(log.contains("a session token that sessiond never issued was presented"), "strict-mode event not logged");
}

/// T08 fuzz-cookie: malformed values → 4xx, never 5xx, never reflected; duplicate cookies are
/// ambiguous and refused.
pub async fn t08(n: Arc<Node>) {
    let a = n.login(json!({ "subject": "t08-user" })).await;
    let b = n.login(json!({ "subject": "t08-other" })).await;
    let long = "A".repeat(8192);
    let mut values: Vec<Vec<u8>> = vec![
        long.clone().into_bytes(),
        format!("sds_{long}").into_bytes(),
        b"sds_".to_vec(),
        b"'; DROP TABLE sessions; --".to_vec(),
        b"\"quoted-value\"".to_vec(),
        b"<script>alert(1)</script>".to_vec(),
        b"%00%0d%0aSet-Cookie:%20x=1".to_vec(),
        b"\xff\xfe\xfd-not-utf8".to_vec(),
        b"../../../../etc/passwd".to_vec(),
        b"sds_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!".to_vec(),
        flipped(&a.token, 3).into_bytes(),
        flipped(&a.token, 17).into_bytes(),
        a.token.as_bytes()[..60].to_vec(),
        format!("{}A", a.token).into_bytes(),
        a.token.to_ascii_uppercase().into_bytes(),
    ];
    values.push(format!("{}; {COOKIE}={}", a.token, b.token).into_bytes());
    values.push(format!("garbage; {COOKIE}={}", a.token).into_bytes());
    for (i, v) in values.iter().enumerate() {
        let mut cookie = format!("{COOKIE}=").into_bytes();
        cookie.extend_from_slice(v);
        let hv = reqwest::header::HeaderValue::from_bytes(&cookie).expect("header bytes");
        let r =
            send(n.client().get(n.u("/v1/auth")).header("cookie", hv.clone()).header("x-forwarded-for", "10.8.0.1"))
                .await;
        assert!((400..500).contains(&r.status), "value {i}: status {} {}", r.status, redact(&r.text));
        let shown = String::from_utf8_lossy(v);
        if shown.len() >= 8 {
            assert!(!r.text.contains(shown.as_ref()), "value {i} reflected");
        }
        let r = send(
            n.client()
                .post(n.u("/v1/logout"))
                .header("cookie", hv)
                .header("x-forwarded-for", "10.8.0.2")
                .header("sec-fetch-site", "same-origin"),
        )
        .await;
        assert!(r.status < 500, "logout value {i}: {}", r.status);
    }
    // Two cookies of different sessions (CS-19): refused, not resolved to either.
    let r = send(
        n.client()
            .get(n.u("/v1/auth"))
            .header("cookie", format!("{COOKIE}={}; {COOKIE}={}", a.token, b.token))
            .header("x-forwarded-for", "10.8.0.3"),
    )
    .await;
    problem(&r, 401, "invalid-token", "mixed cookies");
    let r = send(
        n.client()
            .get(n.u("/v1/auth"))
            .header("cookie", format!("{COOKIE}={}", a.token))
            .header("cookie", format!("{COOKIE}={}", b.token))
            .header("x-forwarded-for", "10.8.0.3"),
    )
    .await;
    problem(&r, 401, "invalid-token", "mixed cookie headers");
    // Resolve with malformed tokens: 4xx.
    for v in ["", "sds_", "\u{0}", "x".repeat(10_000).as_str()] {
        let r = n.post("/v1/sessions/resolve", json!({ "token": v, "ip": "10.8.0.4" })).await;
        assert!((400..500).contains(&r.status), "resolve: {}", r.status);
    }
    // Both sessions are still fine.
    assert_eq!(n.resolve(&a.token).await.status, 200);
    assert_eq!(n.resolve(&b.token).await.status, 200);
}

/// T09 rotate-on-auth: new token on login, step-up and rotation; the old one dies.
pub async fn t09(n: Arc<Node>) {
    let pre = n.login(json!({ "subject": "t09-user", "aal": 0 })).await;
    let login = n.login(json!({ "subject": "t09-user", "aal": 1, "previous_token": pre.token })).await;
    assert_ne!(login.token, pre.token);
    assert_eq!(login.body["replaced"], pre.id.as_str());
    problem(&n.resolve(&pre.token).await, 401, "invalid-token", "pre-login token after login");
    // Step-up (re-authentication): new token, the old one only a short read-only alias.
    let r = n
        .post(
            &format!("/v1/sessions/{}/elevate", login.id),
            json!({ "token": login.token, "aal": 2, "amr": ["pwd", "otp"] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", redact(&r.text));
    let up = Login::of(&r);
    assert_ne!(up.token, login.token);
    assert_eq!(up.id, login.id, "the same session");
    assert_eq!(n.resolve(&up.token).await.body["aal"], 2);
    // A privilege change the application signals with rotate.
    let other = n.login(json!({ "subject": "t09-user" })).await;
    let r = n.post(&format!("/v1/sessions/{}/rotate", other.id), json!({ "token": other.token })).await;
    assert_eq!(r.status, 200);
    let rotated = Login::of(&r);
    assert_ne!(rotated.token, other.token);
    sleep_ms(1200).await; // past the 1 s grace window
    let r = n.resolve(&login.token).await;
    assert_eq!(r.status, 401, "pre-step-up token after the grace window: {}", redact(&r.text));
    let r = n.resolve(&other.token).await;
    assert_eq!(r.status, 401, "pre-rotation token after the grace window");
}

/// T10 fixation-forced-cookie: the attacker plants a cookie in the victim's jar; after the
/// victim logs in, the planted cookie gives the attacker nothing.
pub async fn t10(n: Arc<Node>) {
    // A cookie the attacker obtained (a pre-login session of their own).
    let planted = n.login(json!({ "subject": "anonymous", "aal": 0 })).await;
    let mut victim = n.browser(FIREFOX_LINUX, "10.10.0.1");
    let mut attacker = n.browser(CHROME_WINDOWS, "10.10.0.66");
    victim.plant(&planted.token);
    attacker.plant(&planted.token);
    // The victim logs in; the application hands the browser's cookie in as previous_token.
    let l = n.login(json!({ "subject": "t10-victim", "aal": 1, "previous_token": victim.token() })).await;
    victim.accept(&l.set_cookie);
    assert_ne!(victim.token(), Some(planted.token.as_str()), "a fresh cookie at login");
    assert_eq!(l.body["replaced"], planted.id.as_str(), "the planted session was retired");
    let r = victim.visit("GET", "/app", &[]).await;
    assert_eq!((r.status, r.header("x-session-subject").as_deref()), (200, Some("t10-victim")));
    let r = attacker.visit("GET", "/app", &[]).await;
    problem(&r, 401, "invalid-token", "planted cookie after the victim's login");
    // An attacker-chosen value that sessiond never issued is not honoured either.
    let chosen = forged_like(&planted.token);
    let mut v2 = n.browser(FIREFOX_LINUX, "10.10.0.2");
    v2.plant(&chosen);
    let l2 = n.login(json!({ "subject": "t10-victim", "previous_token": v2.token() })).await;
    assert_ne!(l2.token, chosen);
    v2.accept(&l2.set_cookie);
    let mut a2 = n.browser(CHROME_WINDOWS, "10.10.0.67");
    a2.plant(&chosen);
    problem(&a2.visit("GET", "/app", &[]).await, 401, "invalid-token", "chosen cookie");
    assert_eq!(v2.visit("GET", "/app", &[]).await.status, 200);
}

/// T11 logout: clearing cookie + Clear-Site-Data + no-store; replay refused on every
/// endpoint and from a copied jar (other nodes: T23).
pub async fn t11(n: Arc<Node>) {
    let l = n.login(json!({ "subject": "t11-user" })).await;
    let mut victim = n.browser(FIREFOX_LINUX, "10.11.0.1");
    victim.accept(&l.set_cookie);
    let mut copy = n.browser(CHROME_WINDOWS, "10.11.0.66");
    copy.plant(&l.token);
    assert_eq!(copy.visit("GET", "/app", &[]).await.status, 200, "a copied cookie works before logout");
    let r = victim.logout(&[("sec-fetch-site", "same-origin")]).await;
    assert_eq!(r.status, 204, "{}", redact(&r.text));
    let clear = SetCookie::parse(&r.header("set-cookie").expect("clearing Set-Cookie"));
    assert_eq!((clear.name.as_str(), clear.value.as_str(), clear.get("max-age")), (COOKIE, "", Some("0")));
    let set = SetCookie::parse(&l.set_cookie);
    assert_eq!(clear.attrs[..set.attrs.len()], set.attrs[..], "same attributes as the session cookie");
    assert!(r.header("clear-site-data").is_some_and(|v| v.contains("\"cookies\"")));
    assert!(no_store(&r));
    assert!(victim.token().is_none(), "the browser dropped the cookie");
    // Replay everywhere.
    problem(&copy.visit("GET", "/app", &[]).await, 401, "invalid-token", "copied cookie after logout");
    problem(
        &send(n.client().get(n.u("/v1/auth")).bearer_auth(&l.token)).await,
        401,
        "invalid-token",
        "bearer after logout",
    );
    problem(&n.resolve(&l.token).await, 401, "invalid-token", "resolve after logout");
    problem(&n.post("/v1/sessions/peek", json!({ "token": l.token })).await, 401, "invalid-token", "peek after logout");
    let r = n.post(&format!("/v1/sessions/{}/rotate", l.id), json!({ "token": l.token })).await;
    assert_eq!(r.status, 401, "rotate after logout");
    let r = n.post(&format!("/v1/sessions/{}/elevate", l.id), json!({ "token": l.token, "aal": 2 })).await;
    assert_eq!(r.status, 401, "elevate after logout cannot revive it");
    problem(&n.get(&format!("/v1/sessions/{}", l.id)).await, 404, "not-found", "show after logout");
    let ev = n.events(0).await;
    assert!(kinds_for(&ev, &l.id).contains(&"revoked.logout".to_owned()));
    // Logout with the synchronizer token (API clients), and logout with a bearer token.
    let l2 = n.login(json!({ "subject": "t11-user" })).await;
    let mut b2 = n.browser(FIREFOX_LINUX, "10.11.0.2");
    b2.accept(&l2.set_cookie);
    assert_eq!(b2.logout(&[("x-csrf-token", &l2.csrf)]).await.status, 204);
    problem(&n.resolve(&l2.token).await, 401, "invalid-token", "after csrf-token logout");
    let l3 = n.login(json!({ "subject": "t11-user" })).await;
    assert_eq!(send(n.client().post(n.u("/v1/logout")).bearer_auth(&l3.token)).await.status, 204);
    problem(&n.resolve(&l3.token).await, 401, "invalid-token", "after bearer logout");
}

/// T12 idle-timeout: activity before T keeps it alive and resets the timer; silence past T
/// ends it server-side; client-side hints cannot extend it. For SC-10, idle connections are
/// closed too (see [`sc10_connections_close_after_inactivity`]).
pub async fn t12(n: Arc<Node>) {
    let l = n.login(json!({ "subject": "t12-user", "policy": "idle2" })).await;
    let mut b = n.browser(FIREFOX_LINUX, "10.12.0.1");
    b.accept(&l.set_cookie);
    sleep_ms(1200).await;
    assert_eq!(b.visit("GET", "/app", &[]).await.status, 200, "T−ε");
    sleep_ms(1200).await;
    assert_eq!(b.visit("GET", "/app", &[]).await.status, 200, "activity reset the timer (2.4 s after login)");
    sleep_ms(2300).await;
    let tamper = [
        ("x-session-expires-in", "999999"),
        ("date", "Fri, 01 Jan 2100 00:00:00 GMT"),
        ("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT"),
    ];
    let r = b.visit("GET", "/app", &tamper).await;
    assert_expired(&n, &r, &l.id, "idle", "T+ε").await;
    // Server-side: the sweeper removes the record and reports it.
    let mut gone = false;
    for _ in 0..30 {
        if n.get(&format!("/v1/sessions/{}", l.id)).await.status == 404
            && ids(&n.events(0).await, "expired.idle").contains(&l.id)
        {
            gone = true;
            break;
        }
        sleep_ms(200).await;
    }
    assert!(gone, "the expired session is removed server-side with an expired.idle event");
    problem(&b.visit("GET", "/app", &[]).await, 401, "invalid-token", "after the sweep");
    sc10_connections_close_after_inactivity().await;
}

/// SC-10 network disconnect, on a node of its own configured with
/// `idle_connection_timeout = 1` and `header_read_timeout = 1` (the main node keeps the
/// defaults, 75 s and 10 s, which its pooled clients rely on): a connection that sends
/// nothing, a keep-alive connection idle after a response, and a request head that stalls
/// are each closed by the server about a second later (never at once: the close is the
/// timeout, not a refusal), while a connection in use every 300 ms stays open.
async fn sc10_connections_close_after_inactivity() {
    let config = format!("idle_connection_timeout = 1\nheader_read_timeout = 1\n{CONFIG}");
    let n = tokio::task::spawn_blocking(move || Node::start(NodeOpts { config, ..NodeOpts::default() }))
        .await
        .expect("node");
    let within = |what: &str, t: std::time::Duration, low_ms: u64, high_ms: u64| {
        let ms = t.as_millis();
        assert!(
            (u128::from(low_ms)..=u128::from(high_ms)).contains(&ms),
            "SC-10 {what}: closed after {ms} ms, expected {low_ms}-{high_ms} ms"
        );
    };
    // Silent TCP connection (not even a TLS handshake): the idle timer, 1-2 periods.
    let tcp = tokio::net::TcpStream::connect(&n.addr).await.expect("connect");
    within("silent connection", closed_after(tcp).await, 900, 4000);
    // Keep-alive connection idle after a response: the wait for the next request head.
    let mut tls = n.tls_connect().await;
    let head = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", n.addr);
    assert!(exchange(&mut tls, head.as_bytes()).await.starts_with("HTTP/1.1 200"), "SC-10 keep-alive request");
    within("keep-alive connection idle after a response", closed_after(tls).await, 700, 4000);
    // A request head that stops half way (slowloris).
    let mut tls = n.tls_connect().await;
    tls.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n", n.addr).as_bytes()).await.expect("write");
    tls.flush().await.expect("flush");
    within("stalled request head", closed_after(tls).await, 700, 4000);
    // Activity keeps a connection: eleven requests 300 ms apart (3 s in all) on one connection.
    let mut tls = n.tls_connect().await;
    for i in 0..11 {
        if i > 0 {
            sleep_ms(300).await;
        }
        assert!(
            exchange(&mut tls, head.as_bytes()).await.starts_with("HTTP/1.1 200"),
            "SC-10: request {i} on an active connection"
        );
    }
}

/// Sends `request` and reads one response head and its `Content-Length` body.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, request: &[u8]) -> String {
    s.write_all(request).await.expect("write");
    s.flush().await.expect("flush");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("a response within 5 s")
            .expect("read");
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

/// How long until the server closes `s` (end of stream or an error), reading and discarding
/// anything it sends; at most 10 s.
async fn closed_after<S: AsyncRead + Unpin>(mut s: S) -> std::time::Duration {
    let start = std::time::Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut chunk)).await {
            Err(_) => panic!("SC-10: the connection was still open after 10 s"),
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// T13 absolute-timeout: an active session still ends at its absolute lifetime; a new
/// authentication starts both clocks again.
pub async fn t13(n: Arc<Node>) {
    let l = n.login(json!({ "subject": "t13-user", "policy": "abs4" })).await;
    let created = l.body["session"]["created_at"].as_u64().expect("created_at");
    assert_eq!(l.body["session"]["absolute_expires_at"].as_u64().expect("abs") - created, 4000);
    let mut b = n.browser(FIREFOX_LINUX, "10.13.0.1");
    b.accept(&l.set_cookie);
    for i in 1..=4 {
        sleep_ms(900).await;
        let r = b.visit("GET", "/app", &[]).await;
        assert_eq!(r.status, 200, "activity at {} ms: {}", i * 900, redact(&r.text));
    }
    sleep_ms(800).await;
    let r = b.visit("GET", "/app", &[("x-session-expires-in", "999999")]).await;
    assert_expired(&n, &r, &l.id, "absolute", "past the absolute lifetime despite activity").await;
    // Re-authentication: a new session with fresh idle and absolute deadlines.
    let again = n.login(json!({ "subject": "t13-user", "policy": "abs4", "previous_token": b.token() })).await;
    let c2 = again.body["session"]["created_at"].as_u64().expect("created");
    assert!(c2 >= created + 4000);
    assert_eq!(again.body["session"]["absolute_expires_at"].as_u64().expect("abs") - c2, 4000);
    assert_eq!(again.body["session"]["idle_expires_at"].as_u64().expect("idle") - c2, 2000);
}

/// T14 timeout-config-profiles: the presets' deadlines (measured through the API) are within
/// the limits of each profile, and `docs/policies.md` states the same values.
pub async fn t14(n: Arc<Node>) {
    const MIN: u64 = 60;
    const H: u64 = 3600;
    const D: u64 = 86_400;
    // (preset, max idle, max absolute) — checklist §4.3.
    let limits = [
        ("default", 15 * MIN, 12 * H),
        ("nist-aal1", 30 * D, 30 * D),
        ("nist-aal2", 30 * MIN, 12 * H),
        ("nist-aal3", 15 * MIN, 12 * H),
        ("pci-dss", 15 * MIN, 12 * H),
        ("hipaa", 15 * MIN, 12 * H),
        ("remember-me", 30 * D, 30 * D),
    ];
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policies.md"))
        .expect("docs/policies.md");
    let parse = |cell: &str| -> u64 {
        let mut it = cell.split_whitespace();
        let v: u64 = it.next().and_then(|v| v.parse().ok()).expect("number");
        match it.next() {
            Some("min") => v * MIN,
            Some("h") => v * H,
            Some("d") => v * D,
            u => panic!("unit {u:?}"),
        }
    };
    for (preset, max_idle, max_abs) in limits {
        let l = n.login(json!({ "subject": "t14-user", "policy": preset })).await;
        let s = &l.body["session"];
        let c = s["created_at"].as_u64().expect("created");
        let idle = (s["idle_expires_at"].as_u64().expect("idle") - c) / 1000;
        let abs = (s["absolute_expires_at"].as_u64().expect("abs") - c) / 1000;
        assert!(idle <= max_idle, "{preset}: idle {idle} s > {max_idle} s");
        assert!(abs <= max_abs, "{preset}: absolute {abs} s > {max_abs} s");
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{preset}` |")))
            .unwrap_or_else(|| panic!("{preset} not documented"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(parse(cells[2]), idle.min(abs), "{preset}: documented idle differs from the served one");
        assert_eq!(parse(cells[3]), abs, "{preset}: documented absolute differs from the served one");
    }
}

/// T15 renewal: the token rotates after the interval; the old one is a read-only alias for
/// the grace window (same successor for racing requests) and dies after it.
pub async fn t15(n: Arc<Node>) {
    let l = n.login(json!({ "subject": "t15-user", "policy": "rotating" })).await;
    let mut a = n.browser(FIREFOX_LINUX, "10.15.0.1");
    a.accept(&l.set_cookie);
    sleep_ms(1100).await;
    let r = a.visit("GET", "/app", &[]).await;
    assert_eq!(r.status, 200);
    let new = a.token().expect("jar").to_owned();
    assert_ne!(new, l.token, "rotated after the renewal interval");
    // In-flight requests with the old token (two racing clients) get the same successor.
    let mut b1 = n.browser(FIREFOX_LINUX, "10.15.0.2");
    let mut b2 = n.browser(FIREFOX_LINUX, "10.15.0.3");
    b1.plant(&l.token);
    b2.plant(&l.token);
    let (r1, r2) = tokio::join!(b1.visit("GET", "/app", &[]), b2.visit("GET", "/app", &[]));
    assert_eq!((r1.status, r2.status), (200, 200), "old token inside the grace window");
    assert_eq!(b1.token(), Some(new.as_str()), "the same successor");
    assert_eq!(b2.token(), Some(new.as_str()), "the same successor");
    sleep_ms(1200).await;
    let mut late = n.browser(CHROME_WINDOWS, "10.15.0.66");
    late.plant(&l.token);
    let r = late.visit("GET", "/app", &[]).await;
    problem(&r, 401, "session-revoked", "old token after the grace window");
    assert_eq!(r.body["reason"], "token_replayed");
    let ev = n.events(0).await;
    assert!(kinds_for(&ev, &l.id).contains(&"theft_detected".to_owned()));
}

/// T16 no-store: every token-bearing and authenticated response.
pub async fn t16(n: Arc<Node>) {
    let l = n.login(json!({ "subject": "t16-user" })).await;
    let r = n.post("/v1/sessions", json!({ "subject": "t16-user" })).await;
    let mut all = vec![("create", r)];
    let tok = Login::of(&all[0].1).token;
    all.push(("resolve", n.resolve(&tok).await));
    all.push(("peek", n.post("/v1/sessions/peek", json!({ "token": tok })).await));
    let r = n.post(&format!("/v1/sessions/{}/rotate", l.id), json!({ "token": l.token })).await;
    let rot = Login::of(&r);
    all.push(("rotate", r));
    let r = n.post(&format!("/v1/sessions/{}/elevate", l.id), json!({ "token": rot.token, "aal": 2 })).await;
    let el = Login::of(&r);
    all.push(("elevate", r));
    all.push(("show", n.get(&format!("/v1/sessions/{}", l.id)).await));
    all.push(("list", n.get("/v1/subjects/t16-user/sessions").await));
    all.push(("events", n.get("/v1/events?limit=5").await));
    let c = n.client();
    all.push((
        "forward-auth 200",
        send(c.get(n.u("/v1/auth")).header("cookie", format!("{COOKIE}={}", el.token))).await,
    ));
    all.push(("forward-auth 401", send(c.get(n.u("/v1/auth")).header("x-forwarded-for", "10.16.0.1")).await));
    all.push((
        "forward-auth 403",
        send(c.get(n.u("/v1/auth")).header("cookie", format!("{COOKIE}={tok}")).header("x-forwarded-uri", "/admin"))
            .await,
    ));
    all.push(("problem 400", n.post("/v1/sessions", json!({ "subject": "" })).await));
    all.push(("problem 404", send(c.get(n.u("/nope"))).await));
    all.push(("problem 405", send(c.get(n.u("/v1/logout"))).await));
    all.push(("problem 415", send(c.post(n.u("/v1/sessions")).bearer_auth(KEY).body("{}")).await));
    all.push(("logout 204", send(c.post(n.u("/v1/logout")).bearer_auth(&el.token)).await));
    for (what, r) in &all {
        assert!(r.status < 500, "{what}: {}", r.status);
        assert!(no_store(r), "{what}: Cache-Control must contain no-store (got {:?})", r.header("cache-control"));
    }
}

/// T17 csrf: cookie-authenticated state changes need a synchronizer token or a same-origin
/// signal; cross-site marks, foreign origins, wrong tokens, `text/plain` JSON and GET for a
/// state change are refused.
pub async fn t17(n: Arc<Node>) {
    let other = n.login(json!({ "subject": "t17-other" })).await;
    let l = n.login(json!({ "subject": "t17-user" })).await;
    let mut b = n.browser(FIREFOX_LINUX, "10.17.0.1");
    b.accept(&l.set_cookie);
    let forged: [(&str, Vec<(&str, &str)>); 7] = [
        ("no token and no browser signal", vec![]),
        ("another session's token", vec![("x-csrf-token", other.csrf.as_str())]),
        ("garbage token", vec![("x-csrf-token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]),
        ("foreign Origin", vec![("origin", "https://evil.example")]),
        ("null Origin", vec![("origin", "null")]),
        ("cross-site fetch", vec![("sec-fetch-site", "cross-site")]),
        ("same-site fetch (sibling subdomain)", vec![("sec-fetch-site", "same-site")]),
    ];
    for (what, h) in &forged {
        let r = b.logout(h).await;
        problem(&r, 403, "csrf-rejected", what);
        assert_eq!(n.resolve(&l.token).await.status, 200, "{what}: the session must survive");
    }
    // The right token, or a same-origin request, logs out.
    assert_eq!(b.logout(&[("x-csrf-token", l.csrf.as_str())]).await.status, 204);
    problem(&n.resolve(&l.token).await, 401, "invalid-token", "after logout");
    let own_origin = format!("https://{}", n.addr);
    for (i, h) in
        [("origin", "https://app.example"), ("sec-fetch-site", "same-origin"), ("origin", own_origin.as_str())]
            .iter()
            .enumerate()
    {
        let s = n.login(json!({ "subject": "t17-user" })).await;
        let mut bb = n.browser(FIREFOX_LINUX, "10.17.0.2");
        bb.accept(&s.set_cookie);
        assert_eq!(bb.logout(&[*h]).await.status, 204, "same-origin variant {i}");
    }
    // Forward-auth, synchronizer route /forms.
    let s = n.login(json!({ "subject": "t17-user" })).await;
    let mut fb = n.browser(FIREFOX_LINUX, "10.17.0.3");
    fb.accept(&s.set_cookie);
    let r = fb.visit("GET", "/forms/profile", &[]).await;
    assert_eq!(r.status, 200, "safe method needs no token");
    assert_eq!(r.header("x-session-csrf-token").as_deref(), Some(s.csrf.as_str()), "the app receives the CSRF token");
    problem(&fb.visit("POST", "/forms/profile", &[]).await, 403, "csrf-rejected", "POST without token");
    problem(
        &fb.visit("POST", "/forms/profile", &[("x-csrf-token", other.csrf.as_str())]).await,
        403,
        "csrf-rejected",
        "POST with a foreign token",
    );
    problem(&fb.visit("DELETE", "/%66orms/x", &[]).await, 403, "csrf-rejected", "encoded path cannot dodge the rule");
    assert_eq!(fb.visit("POST", "/forms/profile", &[("x-csrf-token", s.csrf.as_str())]).await.status, 200);
    let r = send(
        n.client()
            .get(n.u("/v1/auth"))
            .bearer_auth(&s.token)
            .header("x-forwarded-uri", "/forms/x")
            .header("x-forwarded-method", "POST"),
    )
    .await;
    assert_eq!(r.status, 200, "a bearer request is not ambient: no CSRF token needed");
    // Envoy ext_authz: original method and path on the request itself.
    let r = send(fb.req(Method::POST, "/v1/auth/forms/profile")).await;
    problem(&r, 403, "csrf-rejected", "Envoy-style POST without token");
    let r = send(fb.req(Method::PUT, "/v1/auth/forms/profile").header("x-csrf-token", &s.csrf)).await;
    assert_eq!(r.status, 200, "Envoy-style PUT with token: {}", redact(&r.text));
    // Fetch-metadata routes (default mode).
    problem(
        &fb.visit("POST", "/app/settings", &[("sec-fetch-site", "cross-site")]).await,
        403,
        "csrf-rejected",
        "cross-site POST",
    );
    problem(
        &fb.visit("POST", "/app/settings", &[("origin", "https://evil.example")]).await,
        403,
        "csrf-rejected",
        "foreign Origin POST",
    );
    assert_eq!(
        fb.visit("POST", "/app/settings", &[("sec-fetch-site", "same-origin"), ("origin", "https://app.example")])
            .await
            .status,
        200
    );
    // text/plain or form bodies to JSON endpoints, GET for state changes.
    let c = n.client();
    let r = send(
        c.post(n.u("/v1/sessions")).bearer_auth(KEY).header("content-type", "text/plain").body(r#"{"subject":"csrf"}"#),
    )
    .await;
    problem(&r, 415, "unsupported-media-type", "text/plain JSON");
    let r = send(
        c.post(n.u("/v1/sessions"))
            .bearer_auth(KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("subject=csrf"),
    )
    .await;
    problem(&r, 415, "unsupported-media-type", "form body");
    let r = send(fb.req(Method::GET, "/v1/logout").header("sec-fetch-site", "same-origin")).await;
    problem(&r, 405, "method-not-allowed", "GET logout");
    let r = send(c.get(n.u(&format!("/v1/sessions/{}/rotate", s.id))).bearer_auth(KEY)).await;
    problem(&r, 405, "method-not-allowed", "GET rotate");
    assert_eq!(n.resolve(&s.token).await.status, 200, "no side effect");
}

/// T18 half-open: a partially authenticated (AAL 0/1) session cannot reach routes that
/// demand more; session data written by a public flow grants nothing.
pub async fn t18(n: Arc<Node>) {
    let half = n.login(json!({ "subject": "t18-user", "aal": 0, "amr": [], "data": { "reset_user": "admin", "mfa_pending": true } })).await;
    let mut b = n.browser(FIREFOX_LINUX, "10.18.0.1");
    b.accept(&half.set_cookie);
    for path in ["/account", "/account/email", "/admin", "/admin/keys"] {
        problem(&b.visit("GET", path, &[]).await, 403, "step-up-required", path);
    }
    let r = b.visit("GET", "/public", &[]).await;
    assert_eq!((r.status, r.header("x-session-aal").as_deref()), (200, Some("0")), "the app is told AAL 0");
    let pwd = n.login(json!({ "subject": "t18-user", "aal": 1, "amr": ["pwd"] })).await;
    let mut p = n.browser(FIREFOX_LINUX, "10.18.0.2");
    p.accept(&pwd.set_cookie);
    assert_eq!(p.visit("GET", "/account", &[]).await.status, 200);
    problem(&p.visit("GET", "/admin", &[]).await, 403, "step-up-required", "MFA pending");
    let r = n.post("/v1/sessions/resolve", json!({ "token": pwd.token, "require": { "min_aal": 2 } })).await;
    problem(&r, 403, "step-up-required", "resolve demand");
    let full = n.login(json!({ "subject": "t18-user", "aal": 2, "amr": ["pwd", "otp"] })).await;
    let mut f = n.browser(FIREFOX_LINUX, "10.18.0.3");
    f.accept(&full.set_cookie);
    assert_eq!(f.visit("GET", "/admin", &[]).await.status, 200);
}

/// T19 step-up: sensitive routes demand a fresh re-authentication with the right level.
pub async fn t19(n: Arc<Node>) {
    let l = n.login(json!({ "subject": "t19-user", "aal": 1, "amr": ["pwd"] })).await;
    let mut b = n.browser(FIREFOX_LINUX, "10.19.0.1");
    b.accept(&l.set_cookie);
    let r = b.visit("GET", "/admin/keys", &[]).await;
    problem(&r, 403, "step-up-required", "AAL1 on an AAL2 route");
    let www = r.header("www-authenticate").expect("challenge");
    assert!(
        www.contains("insufficient_user_authentication")
            && www.contains("acr_values=\"aal2\"")
            && www.contains("max_age=2"),
        "{www}"
    );
    assert_eq!((r.body["min_aal"].as_u64(), r.body["max_auth_age"].as_u64()), (Some(2), Some(2)));
    let r = n
        .post(&format!("/v1/sessions/{}/elevate", l.id), json!({ "token": b.token(), "aal": 2, "amr": ["pwd", "hwk"] }))
        .await;
    assert_eq!(r.status, 200);
    b.accept(Login::of(&r).set_cookie.as_str());
    let r = b.visit("GET", "/admin/keys", &[]).await;
    assert_eq!((r.status, r.header("x-session-aal").as_deref()), (200, Some("2")));
    sleep_ms(2200).await;
    let r = b.visit("GET", "/admin/keys", &[]).await;
    problem(&r, 403, "step-up-required", "stale authentication");
    assert_eq!(b.visit("GET", "/admin", &[]).await.status, 200, "the AAL2 route without max age stays open");
    let r = n
        .post(&format!("/v1/sessions/{}/elevate", l.id), json!({ "token": b.token(), "aal": 2, "amr": ["pwd", "hwk"] }))
        .await;
    assert_eq!(r.status, 200);
    b.accept(Login::of(&r).set_cookie.as_str());
    assert_eq!(b.visit("GET", "/admin/keys", &[]).await.status, 200, "fresh again");
}

/// T20 sessions-api: list own sessions with device facts; kill one; "log out others";
/// epoch bump after a credential change.
pub async fn t20(n: Arc<Node>) {
    let s1 = n.login(json!({ "subject": "t20-user", "user_agent": FIREFOX_LINUX, "ip": "198.51.100.1" })).await;
    let s2 = n.login(json!({ "subject": "t20-user", "user_agent": CHROME_WINDOWS, "ip": "203.0.113.2" })).await;
    let s3 = n.login(json!({ "subject": "t20-user" })).await;
    let r = n.get(&format!("/v1/subjects/t20-user/sessions?current={}", s1.id)).await;
    let list = r.body["sessions"].as_array().expect("sessions").clone();
    assert_eq!(list.len(), 3);
    let me = list.iter().find(|s| s["id"] == s1.id.as_str()).expect("s1 listed");
    assert_eq!(me["is_current"], true);
    assert_eq!(me["device"]["user_agent"], FIREFOX_LINUX);
    assert_eq!(me["device"]["first_ip"], "198.51.100.1");
    assert!(list.iter().filter(|s| s["is_current"] == true).count() == 1);
    assert!(list.iter().all(|s| s.get("token").is_none()), "lists never carry tokens");
    assert_eq!(n.delete(&format!("/v1/sessions/{}", s2.id)).await.status, 204);
    problem(&n.resolve(&s2.token).await, 401, "invalid-token", "killed device");
    let r = n.delete(&format!("/v1/subjects/t20-user/sessions?except={}", s1.id)).await;
    assert_eq!(r.body["revoked"], json!([s3.id]));
    problem(&n.resolve(&s3.token).await, 401, "invalid-token", "other device after log-out-others");
    assert_eq!(n.resolve(&s1.token).await.status, 200, "the current device stays");
    assert_eq!(n.post("/v1/subjects/t20-user/epoch", json!({})).await.status, 200);
    problem(&n.resolve(&s1.token).await, 401, "session-revoked", "after the credential change");
}

/// T21 admin-kill: one user's sessions, a whole tenant, account disable; non-admin refused.
pub async fn t21(n: Arc<Node>) {
    let a1 = n.login(json!({ "subject": "t21-u", "tenant": "t21" })).await;
    let a2 = n.login(json!({ "subject": "t21-u", "tenant": "t21" })).await;
    let b1 = n.login(json!({ "subject": "t21-v", "tenant": "t21" })).await;
    let c1 = n.login(json!({ "subject": "t21-w", "tenant": "t21b" })).await;
    // Non-admin callers.
    let c = n.client();
    for (what, req) in [
        ("no key", c.delete(n.u("/v1/subjects/t21-u/sessions?tenant=t21"))),
        (
            "wrong key",
            c.delete(n.u("/v1/subjects/t21-u/sessions?tenant=t21")).bearer_auth("sdk_wrong_key_0123456789abcdef"),
        ),
        ("a session token as key", c.delete(n.u("/v1/subjects/t21-u/sessions?tenant=t21")).bearer_auth(&a1.token)),
        (
            "a session cookie",
            c.get(n.u("/v1/subjects/t21-u/sessions?tenant=t21")).header("cookie", format!("{COOKIE}={}", a1.token)),
        ),
    ] {
        problem(&send(req.header("x-forwarded-for", "10.21.0.66")).await, 401, "unauthorized-client", what);
    }
    assert_eq!(n.resolve(&a1.token).await.status, 200, "nothing was killed");
    let r = n.delete("/v1/subjects/t21-u/sessions?tenant=t21").await;
    assert_eq!(r.body["revoked"].as_array().map(Vec::len), Some(2));
    for t in [&a1.token, &a2.token] {
        problem(&n.resolve(t).await, 401, "invalid-token", "user kill");
    }
    assert_eq!(n.resolve(&b1.token).await.status, 200, "other users untouched");
    let r = n.delete("/v1/tenants/t21/sessions").await;
    assert_eq!(r.status, 200);
    problem(&n.resolve(&b1.token).await, 401, "invalid-token", "tenant kill");
    assert_eq!(n.resolve(&c1.token).await.status, 200, "other tenants untouched");
    // Account disabled: epoch bump ends every session at once.
    assert_eq!(n.post("/v1/subjects/t21-w/epoch?tenant=t21b", json!({})).await.status, 200);
    problem(&n.resolve(&c1.token).await, 401, "session-revoked", "disabled account");
}

/// T22 concurrency-limit: `max_sessions` enforced as documented, also under parallel logins.
pub async fn t22(n: Arc<Node>) {
    let cursor = n.cursor().await;
    let s1 = n.login(json!({ "subject": "t22-user", "policy": "evict2" })).await;
    let _s2 = n.login(json!({ "subject": "t22-user", "policy": "evict2" })).await;
    let s3 = n.login(json!({ "subject": "t22-user", "policy": "evict2" })).await;
    assert_eq!(s3.body["evicted"], json!([s1.id]));
    problem(&n.resolve(&s1.token).await, 401, "invalid-token", "evicted oldest");
    assert_eq!(n.get("/v1/subjects/t22-user/sessions").await.body["sessions"].as_array().map(Vec::len), Some(2));
    assert!(ids(&n.events(cursor).await, "limit_evicted").contains(&s1.id));
    let d1 = n.login(json!({ "subject": "t22-deny", "policy": "deny1" })).await;
    let r = n.post("/v1/sessions", json!({ "subject": "t22-deny", "policy": "deny1" })).await;
    problem(&r, 409, "limit-reached", "deny_new");
    assert_eq!(n.resolve(&d1.token).await.status, 200);
    // 20 parallel logins: never more than 2 live.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let n = n.clone();
        set.spawn(
            async move { n.post("/v1/sessions", json!({ "subject": "t22-par", "policy": "evict2" })).await.status },
        );
    }
    while let Some(s) = set.join_next().await {
        assert_eq!(s.expect("task"), 201);
    }
    assert_eq!(n.get("/v1/subjects/t22-par/sessions").await.body["sessions"].as_array().map(Vec::len), Some(2));
}

/// T23 multi-node revocation: two sessiond processes over one Redis; logout, kill, epoch and
/// expiry on one node are refused on the other at once.
pub async fn t23(_n: Arc<Node>) {
    crate::common::ensure_services();
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("signing-key");
    crate::common::write_signing_key(&key);
    let prefix = format!("standards-{}", b64url_encode(&random_bytes(6)));
    // Dropped after the two nodes (declared before them): their keys go with the test.
    let _cleanup = crate::common::RedisPrefixGuard(prefix.clone());
    let config = format!("{CONFIG}\n[redis]\nkey_prefix = \"{prefix}\"\n");
    let start = |config: String, key: std::path::PathBuf| {
        Node::start(NodeOpts {
            config,
            store: Some("redis://127.0.0.1:6379".into()),
            signing_key: Some(key),
            ..NodeOpts::default()
        })
    };
    let (a, b) = {
        let (c1, k1, c2, k2) = (config.clone(), key.clone(), config.clone(), key.clone());
        let ha = tokio::task::spawn_blocking(move || start(c1, k1));
        let hb = tokio::task::spawn_blocking(move || start(c2, k2));
        (ha.await.expect("node a"), hb.await.expect("node b"))
    };
    // Seen within 1 s (push invalidation; the near-cache TTL bounds it even if a push is lost).
    async fn refused_on(node: &Node, token: &str, what: &str) {
        for _ in 0..20 {
            if node.resolve(token).await.status == 401 {
                return;
            }
            sleep_ms(50).await;
        }
        panic!("{what}: still accepted on the other node after 1 s");
    }
    // Logout on A → refused on B.
    let l = a.login(json!({ "subject": "t23-user" })).await;
    assert_eq!(b.resolve(&l.token).await.status, 200, "B sees A's session");
    let mut br = a.browser(FIREFOX_LINUX, "10.23.0.1");
    br.accept(&l.set_cookie);
    assert_eq!(br.logout(&[("sec-fetch-site", "same-origin")]).await.status, 204);
    refused_on(&b, &l.token, "logout on A").await;
    let mut on_b = b.browser(FIREFOX_LINUX, "10.23.0.1");
    on_b.plant(&l.token);
    assert_eq!(on_b.visit("GET", "/app", &[]).await.status, 401);
    // Kill on B → refused on A.
    let k = a.login(json!({ "subject": "t23-user" })).await;
    assert_eq!(b.resolve(&k.token).await.status, 200);
    assert_eq!(b.delete(&format!("/v1/sessions/{}", k.id)).await.status, 204);
    refused_on(&a, &k.token, "kill on B").await;
    // Epoch bump (account disable) on A → refused on B.
    let e = b.login(json!({ "subject": "t23-epoch" })).await;
    assert_eq!(a.resolve(&e.token).await.status, 200);
    assert_eq!(a.post("/v1/subjects/t23-epoch/epoch", json!({})).await.status, 200);
    refused_on(&b, &e.token, "epoch bump on A").await;
    // Idle expiry: created on A, silent, refused on B.
    let x = a.login(json!({ "subject": "t23-idle", "policy": "idle2" })).await;
    assert_eq!(b.resolve(&x.token).await.status, 200);
    sleep_ms(2300).await;
    let r = b.resolve(&x.token).await;
    assert_eq!(r.status, 401, "expired on every node: {}", redact(&r.text));
}

/// T24 brute-force-detect: many tokens sessiond never issued from one source → 429 with
/// `Retry-After` and an alert; never a refusal of valid sessions.
pub async fn t24(n: Arc<Node>) {
    let cursor = n.cursor().await;
    let victim = n.login(json!({ "subject": "t24-victim" })).await;
    let attacker_ip = "10.24.0.66";
    let mut statuses = Vec::new();
    let mut first_429 = None;
    for i in 0..200 {
        let forged = forged_like(&victim.token);
        let r = send(
            n.client()
                .get(n.u("/v1/auth"))
                .header("cookie", format!("{COOKIE}={forged}"))
                .header("x-forwarded-for", attacker_ip),
        )
        .await;
        if r.status == 429 && first_429.is_none() {
            first_429 = Some(i);
            problem(&r, 429, "too-many-requests", "throttled");
            let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After seconds");
            assert!((1..=60).contains(&retry), "{retry}");
        }
        assert!(!r.text.contains(&forged));
        statuses.push(r.status);
    }
    // 20 failures are allowed; the bucket refills one failure per 3 s while the loop runs.
    assert!(first_429.is_some_and(|i| (20..=25).contains(&i)), "throttled right after 20 failures: {statuses:?}");
    assert!(statuses[..20].iter().all(|s| *s == 401));
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 170, "{statuses:?}");
    // Valid sessions are never refused: not from other sources, not even from this one.
    let mut v = n.browser(FIREFOX_LINUX, "10.24.0.1");
    v.accept(&victim.set_cookie);
    assert_eq!(v.visit("GET", "/app", &[]).await.status, 200);
    let mut same_ip = n.browser(FIREFOX_LINUX, attacker_ip);
    same_ip.accept(&victim.set_cookie);
    assert_eq!(same_ip.visit("GET", "/app", &[]).await.status, 200, "a valid session behind the attacker's IP");
    let r = send(
        n.client()
            .get(n.u("/v1/auth"))
            .header("cookie", format!("{COOKIE}=garbage"))
            .header("x-forwarded-for", "10.24.0.2"),
    )
    .await;
    problem(&r, 401, "invalid-token", "another source's garbage is not throttled");
    let r = send(
        n.client()
            .post(n.u("/v1/logout"))
            .header("cookie", format!("{COOKIE}=garbage"))
            .header("x-forwarded-for", attacker_ip),
    )
    .await;
    problem(&r, 429, "too-many-requests", "logout from the throttled source");
    // The alert: one brute_force event for the source, and a warning in the log.
    let ev = n.events(cursor).await;
    let alerts: Vec<_> = ev
        .iter()
        .filter(|e| {
            e["kind"] == "brute_force" && e["detail"].as_str().unwrap_or("").contains(&format!("source={attacker_ip} "))
        })
        .collect();
    assert_eq!(alerts.len(), 1, "one alert per window: {alerts:?}");
    assert!(n.log().contains("brute force suspected"));
    // Through resolve, counted against the end user's IP the application passes.
    let mut last = 0;
    for _ in 0..25 {
        last = n
            .post("/v1/sessions/resolve", json!({ "token": forged_like(&victim.token), "ip": "10.24.0.77" }))
            .await
            .status;
    }
    assert_eq!(last, 429, "resolve is throttled per end-user IP");
    assert_eq!(n.post("/v1/sessions/resolve", json!({ "token": victim.token, "ip": "10.24.0.77" })).await.status, 200);
    // API-key guessing: throttled, and then even the right key from that source waits.
    let mut key_statuses = Vec::new();
    for i in 0..25 {
        let r = send(
            n.client()
                .get(n.u("/v1/events"))
                .bearer_auth(format!("sdk_guess_{i:030}"))
                .header("x-forwarded-for", "10.24.0.88"),
        )
        .await;
        key_statuses.push(r.status);
    }
    assert_eq!(&key_statuses[..20], &[401; 20][..]);
    assert!(key_statuses[20..].iter().filter(|s| **s == 429).count() >= 3, "{key_statuses:?}");
    assert_eq!(key_statuses.last(), Some(&429), "{key_statuses:?}");
    let r = send(n.client().get(n.u("/v1/events")).bearer_auth(KEY).header("x-forwarded-for", "10.24.0.88")).await;
    problem(&r, 429, "too-many-requests", "throttled key source");
    let r =
        send(n.client().get(n.u("/v1/events?limit=1")).bearer_auth(KEY).header("x-forwarded-for", "10.24.0.89")).await;
    assert_eq!(r.status, 200, "other sources keep working");
}

/// T25 anomaly: user-agent or IP change mid-session → logged and the policy's action
/// (flag, revoke, step-up); allowed changes (version bump, same /24) kill nothing.
pub async fn t25(n: Arc<Node>) {
    let cursor = n.cursor().await;
    // flag
    let f = n.login(json!({ "subject": "t25-user", "policy": "bind-flag", "user_agent": CHROME_WINDOWS, "ip": "198.51.100.10" })).await;
    let mut b = n.browser(CHROME_WINDOWS, "198.51.100.10");
    b.accept(&f.set_cookie);
    assert_eq!(b.visit("GET", "/app", &[]).await.status, 200);
    b.ua = CHROME_WINDOWS_NEXT.into();
    b.ip = "198.51.100.99".into();
    assert_eq!(b.visit("GET", "/app", &[]).await.status, 200, "browser update and same /24: allowed");
    assert!(
        !kinds_for(&n.events(cursor).await, &f.id).contains(&"anomaly".to_owned()),
        "no anomaly for an allowed change"
    );
    b.ua = FIREFOX_LINUX.into();
    assert_eq!(b.visit("GET", "/app", &[]).await.status, 200, "flag lets the request through");
    let ev = n.events(cursor).await;
    let a = ev.iter().find(|e| e["kind"] == "anomaly" && e["session_id"] == f.id.as_str()).expect("anomaly event");
    assert_eq!(a["detail"], "user_agent_family_changed");
    // revoke
    let r1 = n.login(json!({ "subject": "t25-user", "policy": "bind-revoke", "user_agent": FIREFOX_LINUX })).await;
    let mut b = n.browser(FIREFOX_LINUX, "198.51.100.20");
    b.accept(&r1.set_cookie);
    b.ip = "203.0.113.20".into();
    assert_eq!(b.visit("GET", "/app", &[]).await.status, 200, "IP changes are allowed by this policy");
    let mut thief = n.browser(CHROME_WINDOWS, "203.0.113.66");
    thief.plant(&r1.token);
    let r = thief.visit("GET", "/app", &[]).await;
    problem(&r, 401, "session-revoked", "stolen cookie from another browser");
    assert_eq!(r.body["reason"], "binding");
    problem(&b.visit("GET", "/app", &[]).await, 401, "invalid-token", "revoked for everybody");
    let k = kinds_for(&n.events(cursor).await, &r1.id);
    assert!(k.contains(&"anomaly".to_owned()) && k.contains(&"revoked.binding".to_owned()), "{k:?}");
    // step_up
    let s = n.login(json!({ "subject": "t25-user", "policy": "bind-stepup", "aal": 2, "user_agent": FIREFOX_LINUX, "ip": "198.51.100.30" })).await;
    let mut b = n.browser(FIREFOX_LINUX, "198.51.100.31");
    b.accept(&s.set_cookie);
    let r = b.visit("GET", "/admin", &[]).await;
    assert_eq!((r.status, r.header("x-session-aal").as_deref()), (200, Some("2")), "same /24");
    b.ip = "203.0.113.30".into();
    let r = b.visit("GET", "/app", &[]).await;
    assert_eq!(
        (r.status, r.header("x-session-aal").as_deref()),
        (200, Some("0")),
        "new network: re-authentication demanded"
    );
    problem(&b.visit("GET", "/account", &[]).await, 403, "step-up-required", "AAL 0 after the IP change");
    let r = n
        .post("/v1/sessions/resolve", json!({ "token": s.token, "ip": "203.0.113.30", "user_agent": FIREFOX_LINUX }))
        .await;
    assert_eq!(r.body["aal"], 0, "resolve passes the app's ip/user_agent into the binding check");
    assert!(kinds_for(&n.events(cursor).await, &s.id).contains(&"anomaly".to_owned()));
}

/// T26 logging: life-cycle events are present; no raw token (or CSRF token) appears in the
/// log output (debug level) or the event log.
pub async fn t26(_n: Arc<Node>) {
    let n = tokio::task::spawn_blocking(|| Node::start(NodeOpts { log: "debug", ..NodeOpts::default() }))
        .await
        .expect("node");
    let mut secrets: Vec<String> = Vec::new();
    let l = n
        .login(
            json!({ "subject": "t26-user", "policy": "rotating", "user_agent": FIREFOX_LINUX, "ip": "198.51.100.1" }),
        )
        .await;
    secrets.extend([l.token.clone(), l.csrf.clone()]);
    let mut b = n.browser(FIREFOX_LINUX, "10.26.0.1");
    b.accept(&l.set_cookie);
    sleep_ms(1100).await;
    assert_eq!(b.visit("GET", "/app", &[]).await.status, 200);
    let rotated = b.token().expect("jar").to_owned();
    secrets.push(rotated.clone());
    let r = n.post(&format!("/v1/sessions/{}/elevate", l.id), json!({ "token": rotated, "aal": 2 })).await;
    let up = Login::of(&r);
    secrets.push(up.token.clone());
    let r = n.resolve(&up.token).await;
    assert_eq!(r.status, 200);
    sleep_ms(1200).await;
    // Theft: the pre-rotation token after the grace window.
    assert_eq!(n.resolve(&l.token).await.status, 401);
    let idle = n.login(json!({ "subject": "t26-user", "policy": "idle2" })).await;
    secrets.push(idle.token.clone());
    sleep_ms(300).await;
    assert_eq!(n.resolve(&idle.token).await.body["renewed"], true, "a renewal");
    let out = n.login(json!({ "subject": "t26-user" })).await;
    secrets.extend([out.token.clone(), out.csrf.clone()]);
    let mut ob = n.browser(CHROME_WINDOWS, "10.26.0.2");
    ob.accept(&out.set_cookie);
    assert_eq!(ob.logout(&[("x-csrf-token", out.csrf.as_str())]).await.status, 204);
    for _ in 0..25 {
        let f = forged_like(&out.token);
        secrets.push(f.clone());
        send(
            n.client()
                .get(n.u("/v1/auth"))
                .header("cookie", format!("{COOKIE}={f}"))
                .header("x-forwarded-for", "10.26.0.66"),
        )
        .await;
    }
    let anomaly = n.login(json!({ "subject": "t26-user", "policy": "bind-flag", "user_agent": FIREFOX_LINUX })).await;
    secrets.push(anomaly.token.clone());
    send(n.client().get(n.u("/v1/auth")).bearer_auth(&anomaly.token).header("user-agent", CHROME_WINDOWS)).await;
    // Wait for the idle session to be swept (expired.idle).
    let mut kinds = BTreeSet::new();
    let mut events = Vec::new();
    for _ in 0..40 {
        events = n.events(0).await;
        kinds = events.iter().filter_map(|e| e["kind"].as_str().map(str::to_owned)).collect();
        if kinds.contains("expired.idle") {
            break;
        }
        sleep_ms(200).await;
    }
    for k in [
        "created",
        "renewed",
        "rotated",
        "elevated",
        "revoked.logout",
        "theft_detected",
        "revoked.theft",
        "expired.idle",
        "anomaly",
        "brute_force",
    ] {
        assert!(kinds.contains(k), "event {k} missing: {kinds:?}");
    }
    let created = events.iter().find(|e| e["kind"] == "created").expect("created");
    assert!(created["detail"].as_str().unwrap_or("").starts_with("token_hash="), "tokens appear hashed");
    let log = n.log();
    assert!(log.contains("session event"), "events are logged");
    let events_text = serde_json::to_string(&events).expect("json");
    for (i, s) in secrets.iter().enumerate() {
        let needle = s.strip_prefix("sds_").unwrap_or(s);
        assert!(!log.contains(needle), "secret {i} appears in the log output");
        assert!(!events_text.contains(needle), "secret {i} appears in the event log");
    }
    assert!(log.len() > 10_000, "debug logging captured ({} bytes)", log.len());
}

/// T27 timeout-warning: remaining idle and absolute time, decreasing, without renewal.
pub async fn t27(n: Arc<Node>) {
    let l = n.login(json!({ "subject": "t27-user" })).await;
    let p1 = n.post("/v1/sessions/peek", json!({ "token": l.token })).await;
    assert_eq!(p1.status, 200);
    let (i1, a1) =
        (p1.body["idle_expires_in"].as_u64().expect("idle"), p1.body["absolute_expires_in"].as_u64().expect("abs"));
    assert!(i1 <= 900 && a1 <= 43_200 && i1 > 0 && a1 > 0);
    sleep_ms(1100).await;
    let p2 = n.post("/v1/sessions/peek", json!({ "token": l.token })).await;
    let (i2, a2) =
        (p2.body["idle_expires_in"].as_u64().expect("idle"), p2.body["absolute_expires_in"].as_u64().expect("abs"));
    assert!(i2 < i1 && a2 < a1, "the values decrease and peek does not renew: {i1}->{i2}, {a1}->{a2}");
    let mut b = n.browser(FIREFOX_LINUX, "10.27.0.1");
    b.accept(&l.set_cookie);
    let r = b.visit("GET", "/app", &[]).await;
    let left: u64 = r.header("x-session-expires-in").and_then(|v| v.parse().ok()).expect("X-Session-Expires-In");
    assert!(left > 0 && left <= 900);
}
