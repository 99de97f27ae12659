//! A real browser (headless Chromium through chromedriver, driven over WebDriver with the
//! `fantoccini` crate) logs in to the demo application through nginx **with TLS**, in front of
//! sessiond **without** `--dev`, so the cookie is the production `__Host-sid`.
//!
//! Checked: the cookie jar holds `__Host-sid` with `Secure`, `HttpOnly`, `SameSite=Lax`,
//! `Path=/`, host-only (no `Domain`), no expiry (a browser-session cookie), invisible to
//! scripts; step-up through the elevate page works in a real browser; after logout neither the
//! back button nor a reload shows the protected page (the browser lands on the login page).
//!
//! Why WebDriver + fantoccini rather than raw CDP: WebDriver is the W3C standard, chromedriver
//! manages the browser's life, and fantoccini gives typed navigation, forms and waits with
//! little code. fantoccini runs with no TLS feature at all: chromedriver listens on plain HTTP
//! on loopback, and its `rustls-tls` feature would pull hyper-rustls's default aws-lc-rs
//! provider into this crate's test build next to ring (two rustls providers in one build
//! breaks provider auto-selection, and aws-lc-sys is a slow C build). The cookie attributes are
//! read from the raw WebDriver cookie JSON (fantoccini's `cookie::Cookie` strips a leading
//! dot from `domain`, which would hide a domain cookie).
//!
//! Needs Debian's `nginx`, `chromium` and `chromium-driver` (`scripts/ensure-tools.sh`).
//! Skipped when missing, unless `SESSIOND_REQUIRE_TOOLS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod proxy_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use proxy_support::{free_port, start_nginx, tool, Demo, Proc, Sessiond, OTP, PASSWORD, USER};
use serde_json::{json, Value};

/// chromedriver with a fresh profile; killed (with the browser) when dropped.
struct Driver {
    proc: Proc,
    url: String,
}

fn chromium_binary() -> Option<PathBuf> {
    // Debian's /usr/bin/chromium is a shell wrapper; the real binary sits next to its resources.
    let real = Path::new("/usr/lib/chromium/chromium");
    if real.is_file() {
        return Some(real.to_owned());
    }
    tool("chromium")
}

fn start_driver(dir: &Path) -> Driver {
    let port = free_port();
    let mut cmd = Command::new(tool("chromedriver").expect("chromedriver"));
    cmd.arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .arg(format!("--log-path={}", dir.join("chromedriver-verbose.log").display()))
        .env("HOME", dir);
    let mut proc = Proc::spawn("chromedriver", cmd, dir.join("chromedriver.log"), false);
    proc.wait_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20));
    Driver { proc, url: format!("http://127.0.0.1:{port}") }
}

async fn connect(driver: &Driver, profile: &Path) -> Client {
    let binary = chromium_binary().expect("chromium");
    let caps = json!({
        "browserName": "chrome",
        // The test's certificate is self-signed for localhost.
        "acceptInsecureCerts": true,
        "goog:chromeOptions": {
            "binary": binary,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--ignore-certificate-errors",
                "--window-size=1024,768",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let caps = match caps {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("cannot start a chromium session: {e}\n{}", driver.proc.log_text()))
}

/// The raw WebDriver cookie objects (name, value, path, domain, secure, httpOnly, expiry,
/// sameSite) of the current page.
async fn raw_cookies(driver: &Driver, client: &Client) -> Vec<Value> {
    let id = client.session_id().await.expect("session id").expect("a session");
    let v: Value = proxy_support::http()
        .get(format!("{}/session/{id}/cookie", driver.url))
        .send()
        .await
        .expect("cookies")
        .json()
        .await
        .expect("json");
    v["value"].as_array().cloned().unwrap_or_default()
}

async fn path_of(client: &Client) -> String {
    let u = client.current_url().await.expect("url");
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

async fn text_of(client: &Client, id: &str) -> Option<String> {
    match client.find(Locator::Id(id)).await {
        Ok(e) => Some(e.text().await.expect("text")),
        Err(_) => None,
    }
}

async fn wait_for(client: &Client, id: &str) {
    if let Err(e) = client.wait().at_most(Duration::from_secs(15)).for_element(Locator::Id(id)).await {
        let url = path_of(client).await;
        let src = client.source().await.unwrap_or_default();
        let src: String = src.chars().take(800).collect();
        panic!("element #{id} did not appear ({e}); at {url}:\n{}", proxy_support::redact(&src));
    }
}

async fn fill(client: &Client, id: &str, value: &str) {
    client.find(Locator::Id(id)).await.expect(id).send_keys(value).await.expect("type");
}

/// Asserts the browser shows the login page, not the protected one.
async fn assert_on_login(client: &Client, what: &str, expected: &str) {
    wait_for(client, "login").await;
    let path = path_of(client).await;
    assert_eq!(path, expected, "{what}: expected the login page");
    let src = client.source().await.expect("source");
    assert!(!src.contains("id=\"welcome\"") && !src.contains("id=\"facts\""), "{what}: protected content visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_login_cookie_step_up_logout_back_button() {
    if tool("nginx").is_none() || tool("chromedriver").is_none() || chromium_binary().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();

    // TLS for the browser-facing proxy: a self-signed certificate for localhost.
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let cert = dir.join("localhost.pem");
    let key = dir.join("localhost-key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("cert");
    std::fs::write(&key, ck.key_pair.serialize_pem()).expect("key");

    // sessiond without --dev: plain HTTP on loopback behind the TLS-terminating nginx, with
    // the production cookie __Host-sid (Secure).
    let sessiond = Sessiond::start(dir, false);
    assert_eq!(sessiond.cookie_name, "__Host-sid");
    let demo = Demo::start(dir, &sessiond);
    let (nginx, port) = start_nginx(dir, &sessiond, &demo, Some((&cert, &key)));
    let driver = start_driver(dir);
    let profile = dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).expect("profile dir");
    let client = connect(&driver, &profile).await;
    let base = format!("https://localhost:{port}");

    let result = run(&client, &driver, &base, dir).await;
    let _ = client.close().await;
    if let Err(msg) = result {
        panic!(
            "{msg}\n--- nginx\n{}\n--- demo-app\n{}\n--- sessiond\n{}",
            nginx.log_text(),
            demo.proc.log_text(),
            sessiond.proc.log_text()
        );
    }
    drop(driver);
    drop(nginx);
}

/// The browser flow; `Err` for failures that need the server logs (asserts panic directly).
async fn run(client: &Client, driver: &Driver, base: &str, dir: &Path) -> Result<(), String> {
    // Not logged in: the protected page redirects to the login page.
    client.goto(&format!("{base}/app")).await.map_err(|e| format!("goto /app: {e}"))?;
    assert_on_login(client, "before login", "/login?next=/app").await;

    // Log in through the form.
    fill(client, "username", USER).await;
    fill(client, "password", PASSWORD).await;
    client.find(Locator::Id("submit")).await.expect("submit").click().await.expect("click");
    if client.wait().at_most(Duration::from_secs(15)).for_element(Locator::Id("welcome")).await.is_err() {
        return Err(format!("login did not reach the protected page (at {})", path_of(client).await));
    }
    assert_eq!(path_of(client).await, "/app");
    assert_eq!(text_of(client, "subject").await.as_deref(), Some(USER));
    assert_eq!(text_of(client, "aal").await.as_deref(), Some("1"));
    assert!(text_of(client, "id").await.is_some_and(|id| id.starts_with("ses_")));

    // The cookie jar: exactly the production cookie with every attribute.
    let cookies = raw_cookies(driver, client).await;
    let names: Vec<&str> = cookies.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["__Host-sid"], "cookie jar after login");
    let c = &cookies[0];
    assert!(c["value"].as_str().is_some_and(|v| v.starts_with("sds_")), "token shape");
    assert_eq!(c["secure"], true, "Secure");
    assert_eq!(c["httpOnly"], true, "HttpOnly");
    assert_eq!(c["sameSite"], "Lax", "SameSite=Lax");
    assert_eq!(c["path"], "/", "Path=/");
    // Host-only: WebDriver reports the host without a leading dot (a Domain attribute would
    // make it ".localhost").
    assert_eq!(c["domain"], "localhost", "host-only cookie (no Domain attribute)");
    assert!(c.get("expiry").is_none_or(Value::is_null), "a browser-session cookie has no expiry");
    // HttpOnly: scripts cannot read it.
    let js = client.execute("return document.cookie", vec![]).await.map_err(|e| format!("script: {e}"))?;
    assert!(!js.as_str().unwrap_or("").contains("__Host-sid"), "document.cookie must not show the session cookie");
    let first_token = c["value"].as_str().unwrap_or_default().to_owned();

    // Sanity screenshot of the protected page.
    let png = client.screenshot().await.map_err(|e| format!("screenshot: {e}"))?;
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
    let shot = dir.join("protected-page.png");
    std::fs::write(&shot, &png).expect("write screenshot");
    eprintln!("screenshot of the protected page: {} ({} bytes)", shot.display(), png.len());

    // Step-up: the admin area needs AAL 2; nginx turns sessiond's 403 into the elevate page.
    client.find(Locator::Id("admin-link")).await.expect("admin link").click().await.expect("click");
    wait_for(client, "elevate").await;
    assert_eq!(path_of(client).await, "/elevate?next=/admin");
    fill(client, "password", PASSWORD).await;
    fill(client, "otp", OTP).await;
    client.find(Locator::Id("submit")).await.expect("submit").click().await.expect("click");
    if client.wait().at_most(Duration::from_secs(15)).for_element(Locator::Id("admin")).await.is_err() {
        return Err(format!("step-up did not reach the admin page (at {})", path_of(client).await));
    }
    assert_eq!(path_of(client).await, "/admin");
    assert_eq!(text_of(client, "aal").await.as_deref(), Some("2"));
    let cookies = raw_cookies(driver, client).await;
    assert_eq!(cookies.len(), 1, "one session cookie after step-up");
    assert_ne!(cookies[0]["value"].as_str().unwrap_or_default(), first_token, "step-up rotated the cookie");
    assert_eq!(cookies[0]["secure"], true);
    assert_eq!(cookies[0]["httpOnly"], true);

    // Back to the protected page, then log out.
    client.goto(&format!("{base}/app")).await.map_err(|e| format!("goto /app: {e}"))?;
    wait_for(client, "welcome").await;
    client.find(Locator::Id("logout-button")).await.expect("logout").click().await.expect("click");
    wait_for(client, "notice").await;
    assert_eq!(path_of(client).await, "/login?logged_out=1");
    let cookies = raw_cookies(driver, client).await;
    assert!(
        cookies.iter().all(|c| c["name"] != "__Host-sid"),
        "logout removed the session cookie (left: {:?})",
        cookies.iter().map(|c| c["name"].clone()).collect::<Vec<_>>()
    );

    // The back button: the protected page is not shown again (no-store, session revoked).
    client.back().await.map_err(|e| format!("back: {e}"))?;
    assert_on_login(client, "back button after logout", "/login?next=/app").await;
    // A reload of that entry: still the login page.
    client.refresh().await.map_err(|e| format!("refresh: {e}"))?;
    assert_on_login(client, "reload after logout", "/login?next=/app").await;
    // And navigating to it directly.
    client.goto(&format!("{base}/admin")).await.map_err(|e| format!("goto /admin: {e}"))?;
    assert_on_login(client, "admin after logout", "/login?next=/admin").await;
    Ok(())
}
