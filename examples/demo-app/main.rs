//! A demo application protected by sessiond through a reverse proxy (forward-auth).
//!
//! **DEMO ONLY.** The user store is one hard-coded account (`alice` / `alice-password`,
//! one-time code `123456` for step-up). Never copy that part.
//!
//! What it shows:
//! - `POST /login` checks the password, then creates the session with `POST /v1/sessions`
//!   (service API key), handing in the browser's pre-login cookie as `previous_token`
//!   (fixation defence) and relaying the returned `Set-Cookie`.
//! - `GET /app` is a protected page: the reverse proxy asked `GET /v1/auth` and passed the
//!   session facts as `X-Session-*` request headers; the page shows what it received.
//! - `GET /admin` needs AAL 2 (a sessiond route rule; the proxy turns the 403 into a redirect
//!   to `/elevate`). `POST /elevate` calls `POST /v1/sessions/{id}/elevate` and relays the
//!   rotated cookie.
//! - `POST /logout` calls `POST /v1/logout` with the browser's cookie and relays the clearing
//!   `Set-Cookie` and `Clear-Site-Data`.
//! - `GET /public` is not protected; it shows which `X-Session-*` headers reached it (through a
//!   correct proxy: none, whatever the client sent).
//!
//! Every page answers with `Cache-Control: no-store`, so after logout the back button and a
//! reload go to the server again (and get the login page) instead of showing a stored copy.
//!
//! Run it (see `docs/protect-any-app.md`):
//!
//! ```sh
//! SESSIOND_API_KEY=… cargo run -p sessiond --example demo-app -- \
//!     --listen 127.0.0.1:8080 --sessiond http://127.0.0.1:7420 --cookie-name sid
//! ```
//!
//! It prints `demo-app listening on http://ADDR` once it accepts connections.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE, USER_AGENT};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};

/// DEMO ONLY: the one account this demo knows. A real application checks a password hash,
/// a passkey or an OIDC response here.
const DEMO_USER: &str = "alice";
/// DEMO ONLY: the demo account's password.
const DEMO_PASSWORD: &str = "alice-password";
/// DEMO ONLY: the "one-time code" accepted by the step-up page.
const DEMO_OTP: &str = "123456";

/// The `X-Session-*` headers the proxy copies from the `GET /v1/auth` response.
const SESSION_HEADERS: [&str; 6] = [
    "x-session-subject",
    "x-session-id",
    "x-session-tenant",
    "x-session-aal",
    "x-session-auth-time",
    "x-session-expires-in",
];

#[derive(Debug, Parser)]
#[command(name = "demo-app", about = "sessiond demo application (DEMO ONLY: hard-coded user alice)")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "DEMO_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Base URL of the sessiond server (plain HTTP on loopback, or HTTPS).
    #[arg(long, env = "SESSIOND_URL", default_value = "http://127.0.0.1:7420")]
    sessiond: String,
    /// The session cookie's name: `__Host-sid` (sessiond without `--dev`) or `sid` (`--dev`).
    #[arg(long, env = "DEMO_COOKIE_NAME", default_value = "__Host-sid")]
    cookie_name: String,
    /// The service API key for sessiond (read from the environment, never a flag).
    #[arg(skip)]
    api_key: String,
}

struct App {
    http: reqwest::Client,
    sessiond: String,
    api_key: String,
    cookie_name: String,
}

type Shared = State<Arc<App>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.api_key = std::env::var("SESSIOND_API_KEY")
        .map_err(|_| anyhow::anyhow!("set SESSIOND_API_KEY to a sessiond service API key"))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let app = Arc::new(App {
        http,
        sessiond: args.sessiond.trim_end_matches('/').to_owned(),
        api_key: args.api_key,
        cookie_name: args.cookie_name,
    });
    let router = Router::new()
        .route("/", get(|| async { redirect("/app") }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/login", get(login_page).post(login))
        .route("/app", get(protected_page))
        .route("/admin", get(admin_page))
        .route("/elevate", get(elevate_page).post(elevate))
        .route("/logout", axum::routing::post(logout))
        .route("/public", get(public_page))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("demo-app listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}

// --- pages -------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
    logged_out: Option<String>,
}

async fn login_page(Query(q): Query<NextQuery>) -> Response {
    let notice = if q.logged_out.is_some() { "<p id=\"notice\">You are logged out.</p>" } else { "" };
    login_form(StatusCode::OK, notice, &safe_next(q.next.as_deref(), "/app"))
}

fn login_form(status: StatusCode, notice: &str, next: &str) -> Response {
    let body = format!(
        "{notice}<form id=\"login\" method=\"post\" action=\"/login\">\
         <label>User <input id=\"username\" name=\"username\" autocomplete=\"username\"></label>\
         <label>Password <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\"></label>\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <button id=\"submit\" type=\"submit\">Log in</button></form>\
         <p class=\"demo\">DEMO ONLY: user <code>alice</code>, password <code>alice-password</code>.</p>",
        esc(next)
    );
    page(status, "Log in", &body)
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

async fn login(State(app): Shared, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if cross_site(&headers) {
        return page(StatusCode::FORBIDDEN, "Refused", "<p>Cross-site login refused.</p>");
    }
    let next = safe_next(f.next.as_deref(), "/app");
    // DEMO ONLY: a real application verifies a password hash, passkey or OIDC response here.
    if f.username != DEMO_USER || f.password != DEMO_PASSWORD {
        return login_form(StatusCode::UNAUTHORIZED, "<p id=\"error\">Wrong user or password.</p>", &next);
    }
    let body = json!({
        "subject": f.username,
        "aal": 1,
        "amr": ["pwd"],
        "user_agent": header_str(&headers, USER_AGENT.as_str()),
        "ip": client_ip(&headers),
        // Fixation defence: the pre-login session (if any) is revoked, never adopted.
        "previous_token": app.session_token(&headers),
    });
    match app.call("/v1/sessions", &body).await {
        Ok((StatusCode::CREATED, v)) => {
            let mut res = redirect(&next);
            set_cookie_from(&mut res, &v);
            res
        }
        Ok((status, v)) => upstream_error(status, &v),
        Err(e) => unavailable(&e),
    }
}

async fn protected_page(headers: HeaderMap) -> Response {
    let Some(facts) = SessionFacts::from_proxy(&headers) else {
        return redirect("/login?next=/app");
    };
    let body = format!(
        "<p id=\"welcome\">Hello, <b>{}</b>. The proxy passed these session facts:</p>{}\
         <p><a id=\"admin-link\" href=\"/admin\">Admin area (needs AAL 2)</a> · \
         <a id=\"elevate-link\" href=\"/elevate?next=/app\">Step up now</a></p>{}",
        esc(&facts.subject),
        session_header_table(&headers),
        LOGOUT_FORM
    );
    page(StatusCode::OK, "Protected page", &body)
}

async fn admin_page(headers: HeaderMap) -> Response {
    let Some(facts) = SessionFacts::from_proxy(&headers) else {
        return redirect("/login?next=/admin");
    };
    // Defence in depth: the proxy already enforced the sessiond route rule for /admin, but the
    // application checks the assurance level it was told about too.
    if facts.aal < 2 {
        return redirect("/elevate?next=/admin");
    }
    let body = format!(
        "<p id=\"admin\">Admin area for <b>{}</b> at AAL {}.</p>{}<p><a href=\"/app\">Back</a></p>{}",
        esc(&facts.subject),
        facts.aal,
        session_header_table(&headers),
        LOGOUT_FORM
    );
    page(StatusCode::OK, "Admin area", &body)
}

async fn elevate_page(headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let Some(facts) = SessionFacts::from_proxy(&headers) else {
        return redirect("/login?next=/app");
    };
    elevate_form(StatusCode::OK, "", &facts, &safe_next(q.next.as_deref(), "/admin"))
}

fn elevate_form(status: StatusCode, notice: &str, facts: &SessionFacts, next: &str) -> Response {
    let body = format!(
        "{notice}<p>Confirm it is you, <b>{}</b> (now at AAL {}).</p>\
         <form id=\"elevate\" method=\"post\" action=\"/elevate\">\
         <label>Password <input id=\"password\" name=\"password\" type=\"password\"></label>\
         <label>One-time code <input id=\"otp\" name=\"otp\" inputmode=\"numeric\"></label>\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <button id=\"submit\" type=\"submit\">Step up</button></form>\
         <p class=\"demo\">DEMO ONLY: the one-time code is <code>123456</code>.</p>",
        esc(&facts.subject),
        facts.aal,
        esc(next)
    );
    page(status, "Step up", &body)
}

#[derive(Debug, Deserialize)]
struct ElevateForm {
    password: String,
    otp: String,
    next: Option<String>,
}

async fn elevate(State(app): Shared, headers: HeaderMap, Form(f): Form<ElevateForm>) -> Response {
    if cross_site(&headers) {
        return page(StatusCode::FORBIDDEN, "Refused", "<p>Cross-site step-up refused.</p>");
    }
    let (Some(facts), Some(token)) = (SessionFacts::from_proxy(&headers), app.session_token(&headers)) else {
        return redirect("/login?next=/app");
    };
    let next = safe_next(f.next.as_deref(), "/admin");
    // DEMO ONLY: a real application verifies a second factor here (TOTP, WebAuthn, …).
    if facts.subject != DEMO_USER || f.password != DEMO_PASSWORD || f.otp != DEMO_OTP {
        return elevate_form(StatusCode::UNAUTHORIZED, "<p id=\"error\">Wrong password or code.</p>", &facts, &next);
    }
    let body = json!({
        "token": token,
        "aal": 2,
        "amr": ["pwd", "otp"],
        "user_agent": header_str(&headers, USER_AGENT.as_str()),
        "ip": client_ip(&headers),
    });
    // The session id comes from the proxy (X-Session-Id); sessiond checks that the token
    // belongs to it (403 token-mismatch otherwise).
    match app.call(&format!("/v1/sessions/{}/elevate", facts.id), &body).await {
        Ok((StatusCode::OK, v)) => {
            let mut res = redirect(&next);
            set_cookie_from(&mut res, &v);
            res
        }
        Ok((StatusCode::UNAUTHORIZED, _)) => redirect("/login?next=/app"),
        Ok((status, v)) => upstream_error(status, &v),
        Err(e) => unavailable(&e),
    }
}

const LOGOUT_FORM: &str = "<form id=\"logout\" method=\"post\" action=\"/logout\">\
    <button id=\"logout-button\" type=\"submit\">Log out</button></form>";

async fn logout(State(app): Shared, headers: HeaderMap) -> Response {
    // Logout CSRF: refuse a form post the browser marks as cross-site (the cookie is
    // `SameSite=Lax`, so a cross-site POST carries none anyway).
    if cross_site(&headers) {
        return upstream_error(StatusCode::FORBIDDEN, &serde_json::json!({ "detail": "cross-site logout refused" }));
    }
    // The application calls sessiond server-to-server: it presents the browser's token as a
    // bearer credential (not an ambient cookie, so sessiond's own cookie-CSRF proof does not
    // apply; the check above is the application's).
    let mut req = app.http.post(format!("{}/v1/logout", app.sessiond));
    if let Some(token) = app.session_token(&headers) {
        req = req.bearer_auth(token);
    }
    match req.send().await {
        Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => {
            let mut res = redirect("/login?logged_out=1");
            let h = res.headers_mut();
            // Relay the clearing cookie (same attributes, Max-Age=0) and Clear-Site-Data.
            for v in r.headers().get_all(SET_COOKIE) {
                if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                    h.append(SET_COOKIE, v);
                }
            }
            if let Some(v) = r.headers().get("clear-site-data") {
                if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                    h.insert(HeaderName::from_static("clear-site-data"), v);
                }
            }
            res
        }
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let v = r.json::<Value>().await.unwrap_or(Value::Null);
            upstream_error(status, &v)
        }
        Err(e) => unavailable(&e),
    }
}

async fn public_page(headers: HeaderMap) -> Response {
    let body = format!(
        "<p id=\"public\">A public page. The <code>X-Session-*</code> headers that reached the \
         application (through a correct proxy: none, whatever the client sent):</p>{}\
         <p><a href=\"/app\">Protected page</a></p>",
        session_header_table(&headers)
    );
    page(StatusCode::OK, "Public page", &body)
}

// --- helpers -----------------------------------------------------------------------------

/// The facts the proxy copied from sessiond's forward-auth answer.
struct SessionFacts {
    subject: String,
    id: String,
    aal: u8,
}

impl SessionFacts {
    /// `None` when the proxy did not vouch for a session (then the page must not be shown:
    /// the proxy configuration should never let this happen, but fail closed anyway).
    fn from_proxy(headers: &HeaderMap) -> Option<Self> {
        let subject = header_str(headers, "x-session-subject").filter(|s| !s.is_empty())?;
        let id = header_str(headers, "x-session-id").filter(|s| s.starts_with("ses_") && !s.contains('/'))?;
        let aal = header_str(headers, "x-session-aal").and_then(|s| s.parse().ok()).unwrap_or(0);
        Some(Self { subject, id, aal })
    }
}

fn session_header_table(headers: &HeaderMap) -> String {
    let mut out = String::from("<dl id=\"facts\">");
    for name in SESSION_HEADERS {
        let values: Vec<String> =
            headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
        let shown = if values.is_empty() { "(none)".to_owned() } else { values.join(" | ") };
        let id = name.trim_start_matches("x-session-");
        let _ = write!(out, "<dt>{}</dt><dd id=\"{id}\">{}</dd>", esc(&display_name(name)), esc(&shown));
    }
    out.push_str("</dl>");
    out
}

fn display_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

impl App {
    /// The session cookie the browser sent (the first non-empty one).
    fn session_token(&self, headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, v)| k.trim() == self.cookie_name && !v.is_empty())
            .map(|(_, v)| v.trim().to_owned())
    }

    /// A service call (API key) with a JSON body; the status and JSON answer.
    async fn call(&self, path: &str, body: &Value) -> Result<(StatusCode, Value), reqwest::Error> {
        let r = self.http.post(format!("{}{path}", self.sessiond)).bearer_auth(&self.api_key).json(body).send().await?;
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, v))
    }
}

fn set_cookie_from(res: &mut Response, v: &Value) {
    if let Some(c) = v["set_cookie"].as_str().and_then(|c| HeaderValue::from_str(c).ok()) {
        res.headers_mut().append(SET_COOKIE, c);
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The browser's IP as the proxy reported it (`X-Real-IP`, set by the proxy, never the client).
fn client_ip(headers: &HeaderMap) -> Option<String> {
    header_str(headers, "x-real-ip").filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
}

/// A browser-marked cross-site form post (login CSRF, step-up CSRF).
fn cross_site(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site")
}

/// Only same-site relative paths: no open redirect to `//evil` or `https://evil`.
fn safe_next(next: Option<&str>, default: &str) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control() || c == '\\') =>
        {
            n.to_owned()
        }
        _ => default.to_owned(),
    }
}

fn redirect(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(LOCATION, v);
    }
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn upstream_error(status: StatusCode, v: &Value) -> Response {
    // Show the problem type only: details stay in sessiond's log.
    let kind = v["type"].as_str().unwrap_or("unknown");
    page(
        StatusCode::BAD_GATEWAY,
        "sessiond refused",
        &format!("<p id=\"error\">sessiond answered {status}: <code>{}</code></p>", esc(kind)),
    )
}

fn unavailable(e: &reqwest::Error) -> Response {
    eprintln!("demo-app: sessiond unreachable: {e}");
    page(StatusCode::BAD_GATEWAY, "sessiond unreachable", "<p id=\"error\">sessiond is unreachable.</p>")
}

/// An HTML page. `Cache-Control: no-store` on every page: a protected page must never be
/// stored, so that after logout neither the back button nor a reload can show it again.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · sessiond demo</title>\
         <style>body{{font:16px system-ui,sans-serif;max-width:42rem;margin:2rem auto}}\
         dt{{font-weight:bold}}dd{{font-family:monospace;margin:0 0 .5rem 1rem}}\
         label{{display:block;margin:.5rem 0}}.demo{{color:#a40}}</style></head>\
         <body><h1 id=\"title\">{t}</h1>{body}</body></html>",
        t = esc(title)
    );
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
    h.insert(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("same-origin"));
    res
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
