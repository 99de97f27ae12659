//! Harness for the proxy and browser tests: runs the real `sessiond` binary, the demo
//! application (`examples/demo-app`, built by `cargo test` / `cargo build --examples`) and a
//! real reverse proxy (nginx or Caddy) on loopback, on free ports, in temp dirs. Every process
//! is started in its own process group and killed (group-wide) when its guard drops.
//!
//! The attack scenarios live here too, so that nginx and Caddy are held to the same checks.
//! Raw session tokens never appear in test output: failure messages go through [`redact`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

pub const SESSIOND: &str = env!("CARGO_BIN_EXE_sessiond");
/// The service API key the demo application and the tests use.
pub const KEY: &str = "sdk_proxy_test_key_0123456789abcdef";
/// DEMO ONLY credentials, hard-coded in examples/demo-app.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "alice-password";
pub const OTP: &str = "123456";

/// Test-sized policies and the step-up rule the proxies enforce.
pub const SESSIOND_CONFIG: &str = r#"
rotation_grace = 2

[[policies]]
name = "short"
idle_timeout = 1
absolute_lifetime = 60
renewal_fraction = 0.1
on_limit = "evict_oldest"

[[policies]]
name = "rotating"
idle_timeout = 600
absolute_lifetime = 3600
rotation_interval = 1
renewal_fraction = 0.1
on_limit = "evict_oldest"

[[routes]]
prefix = "/admin"
min_aal = 2
"#;

/// The repository root (for `examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// The demo application's binary, next to the `sessiond` binary under `examples/`.
pub fn demo_app_bin() -> PathBuf {
    let bin = Path::new(SESSIOND).parent().expect("binary dir").join("examples").join("demo-app");
    assert!(
        bin.is_file(),
        "the demo application is not built ({}). `cargo test -p sessiond` builds examples; with \
         `--test NAME` filters run `cargo build -p sessiond --example demo-app` first.",
        bin.display()
    );
    bin
}

/// Finds a tool on PATH (or in the sbin directories). When it is missing the test is skipped,
/// unless `SESSIOND_REQUIRE_TOOLS` is set (as `scripts/test.sh` does), where it fails.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("SESSIOND_REQUIRE_TOOLS").is_none(),
            "{name} is required: run scripts/ensure-tools.sh (installs nginx, caddy, chromium, chromium-driver)"
        );
        eprintln!("SKIPPED: {name} not installed; run scripts/ensure-tools.sh");
    }
    found
}

/// A free loopback port (bound and released; the tiny race is acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A child process, killed with its whole process group on drop (TERM, then KILL).
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` in a new process group with stderr (and stdout unless piped) to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf, pipe_stdout: bool) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        cmd.stdin(Stdio::null()).stderr(file.try_clone().expect("log file")).process_group(0);
        if pipe_stdout {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(file);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child, log }
    }

    pub fn log_text(&self) -> String {
        redact(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Waits for the first stdout line starting with `prefix`; returns its remainder.
    pub fn wait_line(&mut self, prefix: &'static str, timeout: Duration) -> String {
        let stdout = self.child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        let _ = tx.send(rest.to_owned());
                        sent = true;
                    }
                }
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(v) => v,
            Err(_) => panic!("{} did not start (no {prefix:?} line):\n{}", self.name, self.log_text()),
        }
    }

    /// Waits until `addr` accepts TCP connections, failing early if the process exits.
    pub fn wait_port(&mut self, addr: SocketAddr, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{} exited early ({st}):\n{}", self.name, self.log_text());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} does not listen on {addr}:\n{}", self.name, self.log_text());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (workers, browser helpers).
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running sessiond.
pub struct Sessiond {
    pub proc: Proc,
    pub url: String,
    pub addr: SocketAddr,
    pub cookie_name: &'static str,
}

impl Sessiond {
    /// `dev`: plain HTTP with cookie `sid`; otherwise plain HTTP on loopback (allowed without
    /// `--dev`: a TLS-terminating proxy sits in front) with the production cookie `__Host-sid`.
    pub fn start(dir: &Path, dev: bool) -> Sessiond {
        let cfg = dir.join("sessiond.toml");
        std::fs::write(&cfg, SESSIOND_CONFIG).expect("config");
        let mut cmd = Command::new(SESSIOND);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.join("sessiond-data"))
            .arg("--config")
            .arg(&cfg)
            .arg("--trust-forwarded-headers")
            .env("SESSIOND_API_KEY", KEY)
            .env("SESSIOND_LOG", "info,sessiond_core=warn")
            .env_remove("SESSIOND_CONFIG");
        if dev {
            cmd.arg("--dev");
        }
        let mut proc = Proc::spawn("sessiond", cmd, dir.join("sessiond.log"), true);
        let url = proc.wait_line("sessiond listening on ", Duration::from_secs(30));
        let addr = url.trim_start_matches("http://").parse().expect("sessiond address");
        Sessiond { proc, url, addr, cookie_name: if dev { "sid" } else { "__Host-sid" } }
    }

    /// Creates a session directly through the API (as an application backend would).
    pub async fn create(&self, subject: &str, policy: &str) -> String {
        let r = http()
            .post(format!("{}/v1/sessions", self.url))
            .bearer_auth(KEY)
            .json(&json!({ "subject": subject, "policy": policy }))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status().as_u16(), 201, "create session");
        let v: Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_owned()
    }
}

/// The demo application.
pub struct Demo {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Demo {
    pub fn start(dir: &Path, sessiond: &Sessiond) -> Demo {
        let mut cmd = Command::new(demo_app_bin());
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--sessiond")
            .arg(&sessiond.url)
            .arg("--cookie-name")
            .arg(sessiond.cookie_name)
            .env("SESSIOND_API_KEY", KEY);
        let mut proc = Proc::spawn("demo-app", cmd, dir.join("demo-app.log"), true);
        let url = proc.wait_line("demo-app listening on ", Duration::from_secs(30));
        let addr = url.trim_start_matches("http://").parse().expect("demo address");
        Demo { proc, addr }
    }
}

/// Copies `examples/<sub>/*` (files only) into `dir`.
pub fn copy_examples(sub: &str, dir: &Path) {
    for e in std::fs::read_dir(repo_root().join("examples").join(sub)).expect("examples dir") {
        let p = e.expect("entry").path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy example");
        }
    }
}

/// A real nginx in front of the demo application and sessiond, with the example
/// configuration files of `examples/nginx/` included as they are.
pub fn start_nginx(dir: &Path, sessiond: &Sessiond, demo: &Demo, tls: Option<(&Path, &Path)>) -> (Proc, u16) {
    let nginx = tool("nginx").expect("nginx");
    let conf_dir = dir.join("nginx");
    std::fs::create_dir_all(&conf_dir).expect("nginx dir");
    copy_examples("nginx", &conf_dir);
    let port = free_port();
    let d = conf_dir.display();
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let user = if is_root { "user root root;" } else { "" };
    let (listen, certs) = match tls {
        Some((cert, key)) => (
            format!("listen 127.0.0.1:{port} ssl;"),
            format!("ssl_certificate {};\n        ssl_certificate_key {};", cert.display(), key.display()),
        ),
        None => (format!("listen 127.0.0.1:{port};"), String::new()),
    };
    let conf = format!(
        r#"# generated by crates/sessiond/tests/proxy_support
{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream sessiond {{ server {sessiond}; keepalive 8; keepalive_timeout 5s; }}
    upstream app {{ server {app}; }}
    server {{
        {listen}
        server_name localhost;
        {certs}
        include demo-site.conf;
    }}
}}
"#,
        sessiond = sessiond.addr,
        app = demo.addr,
    );
    // The example's full nginx.conf is replaced by this one (ports, paths); its includes are not.
    std::fs::write(conf_dir.join("nginx.conf"), conf).expect("nginx.conf");
    let test = Command::new(&nginx)
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(&conf_dir)
        .arg("-e")
        .arg(conf_dir.join("error.log"))
        .arg("-c")
        .arg(conf_dir.join("nginx.conf"))
        .output()
        .expect("nginx -t");
    assert!(test.status.success(), "nginx -t refused the configuration:\n{}", String::from_utf8_lossy(&test.stderr));
    let mut cmd = Command::new(&nginx);
    cmd.arg("-p")
        .arg(&conf_dir)
        .arg("-e")
        .arg(conf_dir.join("error.log"))
        .arg("-c")
        .arg(conf_dir.join("nginx.conf"))
        .arg("-g")
        .arg("daemon off;");
    let mut proc = Proc::spawn("nginx", cmd, conf_dir.join("stderr.log"), false);
    proc.log = conf_dir.join("error.log");
    proc.wait_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20));
    (proc, port)
}

/// A real Caddy running `examples/caddy/Caddyfile` as is; addresses come from environment
/// placeholders, the admin endpoint is off, and there is no automatic HTTPS (`http://` site).
pub fn start_caddy(dir: &Path, sessiond: &Sessiond, demo: &Demo) -> (Proc, u16) {
    let caddy = tool("caddy").expect("caddy");
    let conf_dir = dir.join("caddy");
    std::fs::create_dir_all(&conf_dir).expect("caddy dir");
    copy_examples("caddy", &conf_dir);
    let port = free_port();
    let mut cmd = Command::new(caddy);
    cmd.current_dir(&conf_dir)
        .args(["run", "--config", "Caddyfile", "--adapter", "caddyfile"])
        .env("SITE_ADDRESS", format!("http://127.0.0.1:{port}"))
        .env("SESSIOND_UPSTREAM", sessiond.addr.to_string())
        .env("APP_UPSTREAM", demo.addr.to_string())
        // Keep Caddy's own storage (certificates, autosave) inside the temp dir.
        .env("HOME", &conf_dir)
        .env("XDG_DATA_HOME", conf_dir.join("data"))
        .env("XDG_CONFIG_HOME", conf_dir.join("config"));
    let mut proc = Proc::spawn("caddy", cmd, conf_dir.join("caddy.log"), false);
    proc.wait_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20));
    (proc, port)
}

/// Everything of one test: dropped in field order (proxy, app, sessiond), then the temp dir.
pub struct Stack {
    pub proxy: Proc,
    pub demo: Demo,
    pub sessiond: Sessiond,
    pub base: String,
    pub tmp: tempfile::TempDir,
}

impl Stack {
    pub fn nginx() -> Option<Stack> {
        tool("nginx")?;
        let tmp = tempfile::tempdir().expect("tempdir");
        let sessiond = Sessiond::start(tmp.path(), true);
        let demo = Demo::start(tmp.path(), &sessiond);
        let (proxy, port) = start_nginx(tmp.path(), &sessiond, &demo, None);
        Some(Stack { proxy, demo, sessiond, base: format!("http://127.0.0.1:{port}"), tmp })
    }

    pub fn caddy() -> Option<Stack> {
        tool("caddy")?;
        let tmp = tempfile::tempdir().expect("tempdir");
        let sessiond = Sessiond::start(tmp.path(), true);
        let demo = Demo::start(tmp.path(), &sessiond);
        let (proxy, port) = start_caddy(tmp.path(), &sessiond, &demo);
        Some(Stack { proxy, demo, sessiond, base: format!("http://127.0.0.1:{port}"), tmp })
    }

    fn cookie(&self, token: &str) -> String {
        format!("{}={token}", self.sessiond.cookie_name)
    }

    pub async fn get(&self, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Res {
        let mut req = http().get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("cookie", self.cookie(t));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        Res::of(req).await
    }

    pub async fn post_form(&self, path: &str, token: Option<&str>, form: &[(&str, &str)]) -> Res {
        let mut req = http()
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_form(form));
        if let Some(t) = token {
            req = req.header("cookie", self.cookie(t));
        }
        Res::of(req).await
    }

    /// Logs in through the proxy and the demo app; returns the session token.
    pub async fn login(&self, previous: Option<&str>) -> String {
        let r =
            self.post_form("/login", previous, &[("username", USER), ("password", PASSWORD), ("next", "/app")]).await;
        assert_eq!(r.status, 303, "login: {}", r.brief());
        assert_eq!(r.header("location").as_deref(), Some("/app"), "login redirect");
        r.new_cookie(self.sessiond.cookie_name).expect("login sets the session cookie")
    }

    /// Diagnostics for a failed assertion (tokens redacted).
    pub fn logs(&self) -> String {
        format!(
            "--- proxy\n{}\n--- demo-app\n{}\n--- sessiond\n{}",
            tail(&self.proxy.log_text()),
            tail(&self.demo.proc.log_text()),
            tail(&self.sessiond.proc.log_text())
        )
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn encode_form(form: &[(&str, &str)]) -> String {
    form.iter().map(|(k, v)| format!("{}={}", pct(k), pct(v))).collect::<Vec<_>>().join("&")
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A client without redirects and without a cookie jar: every cookie is explicit.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A response through the proxy.
pub struct Res {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Res {
    pub async fn of(req: reqwest::RequestBuilder) -> Res {
        let r = req.send().await.expect("request through the proxy");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        Res { status, headers, text }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect()
    }

    /// The non-empty value of a `Set-Cookie` for `name`, if any.
    pub fn new_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let (k, v) = c.split(';').next()?.split_once('=')?;
            (k.trim() == name && !v.is_empty()).then(|| v.trim().to_owned())
        })
    }

    /// The text of the element with `id` (the demo app's `<dd id="…">` facts).
    pub fn field(&self, id: &str) -> Option<String> {
        let marker = format!("id=\"{id}\">");
        let start = self.text.find(&marker)? + marker.len();
        let end = self.text[start..].find('<')? + start;
        Some(self.text[start..end].to_owned())
    }

    /// The demo page's `<dl id="facts">`: the X-Session-* headers the application received.
    pub fn facts(&self) -> String {
        let start = self.text.find("<dl id=\"facts\">").unwrap_or(self.text.len());
        let end = self.text[start..].find("</dl>").map_or(self.text.len(), |e| e + start);
        self.text[start..end].to_owned()
    }

    /// Status, headers and the start of the body, for assertion messages (tokens redacted).
    pub fn brief(&self) -> String {
        let headers: Vec<String> =
            self.headers.iter().map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes()))).collect();
        let body: String = self.text.chars().take(600).collect();
        redact(&format!("{} {}\n{}", self.status, headers.join("\n"), body))
    }

    /// A redirect to the login page.
    pub fn is_login_redirect(&self) -> bool {
        matches!(self.status, 302 | 303) && self.header("location").is_some_and(|l| l.starts_with("/login"))
    }
}

/// Replaces every `sds_…` token by its first characters.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("sds_") {
        out.push_str(&rest[..i]);
        let tok = &rest[i..];
        let len = tok.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(tok.len());
        out.push_str(&tok[..len.min(8)]);
        if len > 8 {
            out.push('…');
        }
        rest = &tok[len..];
    }
    out.push_str(rest);
    out
}

/// A short, safe label for a token in messages.
pub fn short(token: &str) -> String {
    redact(token)
}

/// Flips one character in the middle of a token (a forged token with a broken tag).
pub fn forge(token: &str) -> String {
    let mut b = token.as_bytes().to_vec();
    let i = b.len() / 2;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).expect("ascii")
}

// --- scenarios shared by every proxy ------------------------------------------------------

/// Login, the protected page with the cookie, the session facts, `no-store`, and the
/// pre-login session retired on login (fixation defence).
pub async fn login_reaches_protected_page(s: &Stack) {
    let r = s.get("/app", None, &[]).await;
    assert!(r.is_login_redirect(), "without a cookie: {}\n{}", r.brief(), s.logs());
    assert_eq!(r.header("location").as_deref(), Some("/login?next=/app"));

    let r = s.get("/login?next=/app", None, &[]).await;
    assert_eq!(r.status, 200, "login page: {}", r.brief());
    assert!(r.text.contains("id=\"login\""), "{}", r.brief());

    let r = s.post_form("/login", None, &[("username", USER), ("password", "wrong"), ("next", "/app")]).await;
    assert_eq!(r.status, 401, "wrong password: {}", r.brief());
    assert!(r.set_cookies().is_empty(), "no cookie for a wrong password");

    let token = s.login(None).await;
    assert!(token.starts_with("sds_"), "token shape: {}", short(&token));
    let r = s.get("/app", Some(&token), &[]).await;
    assert_eq!(r.status, 200, "protected page with the cookie: {}\n{}", r.brief(), s.logs());
    assert_eq!(r.field("subject").as_deref(), Some(USER), "{}", r.brief());
    assert!(r.field("id").is_some_and(|id| id.starts_with("ses_")), "{}", r.brief());
    assert!(matches!(r.field("tenant").as_deref(), Some("(none)" | "")), "empty tenant: {}", r.brief());
    assert_eq!(r.field("aal").as_deref(), Some("1"), "{}", r.brief());
    let auth_time: u64 = r.field("auth-time").and_then(|t| t.parse().ok()).expect("auth time");
    assert!(auth_time > 1_600_000_000, "auth time in Unix seconds: {auth_time}");
    let expires_in: u64 = r.field("expires-in").and_then(|t| t.parse().ok()).expect("expires in");
    assert!((1..=900).contains(&expires_in), "expires in: {expires_in}");
    assert!(r.header("cache-control").is_some_and(|c| c.contains("no-store")), "{}", r.brief());
    assert!(!r.text.contains(&token), "the page never shows the token");

    // Logging in again while holding that cookie retires the old session.
    let second = s.login(Some(&token)).await;
    assert_ne!(second, token, "a fresh token on every login");
    let r = s.get("/app", Some(&second), &[]).await;
    assert_eq!(r.status, 200, "new session: {}", r.brief());
    let r = s.get("/app", Some(&token), &[]).await;
    assert!(r.is_login_redirect(), "pre-login session must be revoked (fixation defence): {}", r.brief());
}

/// Forged, garbage and expired cookies get the login redirect, never the page.
pub async fn bad_cookies_are_refused(s: &Stack) {
    let token = s.login(None).await;
    let r = s.get("/app", Some(&token), &[]).await;
    assert_eq!(r.status, 200, "the genuine cookie works: {}", r.brief());

    let forged = forge(&token);
    for bad in
        [forged.as_str(), "sds_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "garbage", "\"\""]
    {
        let r = s.get("/app", Some(bad), &[]).await;
        assert!(r.is_login_redirect(), "cookie {} must be refused: {}", short(bad), r.brief());
        assert!(r.field("subject").is_none(), "no session facts leak");
    }
    // The same forged token as a bearer token.
    let r = s.get("/app", None, &[("authorization", &format!("Bearer {forged}"))]).await;
    assert!(r.is_login_redirect(), "forged bearer: {}", r.brief());

    // A real session on a 1-second idle policy: valid at first, refused once idle too long.
    let short_lived = s.sessiond.create(USER, "short").await;
    let r = s.get("/app", Some(&short_lived), &[]).await;
    assert_eq!(r.status, 200, "fresh short-lived session works: {}", r.brief());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = s.get("/app", Some(&short_lived), &[]).await;
    assert!(r.is_login_redirect(), "an expired session must be refused: {}", r.brief());
}

/// Logout revokes the session, clears the cookie, and the old cookie is refused afterwards.
pub async fn logout_then_replay_is_refused(s: &Stack) {
    let token = s.login(None).await;
    let r = s.get("/app", Some(&token), &[]).await;
    assert_eq!(r.status, 200, "{}", r.brief());

    let r = s.post_form("/logout", Some(&token), &[]).await;
    assert_eq!(r.status, 303, "logout: {}\n{}", r.brief(), s.logs());
    assert_eq!(r.header("location").as_deref(), Some("/login?logged_out=1"));
    let clear = r.set_cookies();
    let name = s.sessiond.cookie_name;
    assert!(
        clear.iter().any(|c| c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0")),
        "logout clears the cookie: {}",
        r.brief()
    );
    assert_eq!(r.header("clear-site-data").as_deref(), Some("\"cookies\""), "{}", r.brief());
    assert!(r.header("cache-control").is_some_and(|c| c.contains("no-store")), "{}", r.brief());

    // Replaying the old cookie (an attacker who copied it, or the back button): refused.
    for path in ["/app", "/admin", "/elevate"] {
        let r = s.get(path, Some(&token), &[]).await;
        assert!(r.is_login_redirect(), "replay of a logged-out cookie on {path}: {}", r.brief());
    }
    // Logging out again (or with garbage) still answers with the clearing response.
    let r = s.post_form("/logout", Some("garbage"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.brief());
}

/// The six session headers a client might forge.
const FORGED: [(&str, &str); 6] = [
    ("X-Session-Subject", "admin"),
    ("X-Session-Id", "ses_forged"),
    ("X-Session-Tenant", "evil-corp"),
    ("X-Session-Aal", "3"),
    ("X-Session-Auth-Time", "4102444800"),
    ("X-Session-Expires-In", "999999"),
];

/// Client-sent `X-Session-*` headers never reach the application.
pub async fn client_session_headers_are_ignored(s: &Stack) {
    // Logged out: the protected page is not shown, whatever headers the client sends.
    let r = s.get("/app", None, &FORGED).await;
    assert!(r.is_login_redirect(), "forged headers alone must not open the page: {}", r.brief());
    assert!(!r.text.contains("admin"), "{}", r.brief());

    // A public page sees no session headers at all.
    let r = s.get("/public", None, &FORGED).await;
    assert_eq!(r.status, 200, "{}", r.brief());
    for id in ["subject", "id", "tenant", "aal", "auth-time", "expires-in"] {
        assert_eq!(
            r.field(id).as_deref(),
            Some("(none)"),
            "public page got a client-sent X-Session-{id}: {}",
            r.brief()
        );
    }
    let lower: Vec<(&str, &str)> = vec![("x-session-subject", "admin"), ("X-SESSION-SUBJECT", "root")];
    let r = s.get("/public", None, &lower).await;
    assert_eq!(r.field("subject").as_deref(), Some("(none)"), "case variants: {}", r.brief());
    let r = s.get("/login", None, &FORGED).await;
    assert_eq!(r.status, 200, "{}", r.brief());

    // Logged in as alice: the application sees alice's facts, not the forged ones.
    let token = s.login(None).await;
    let r = s.get("/app", Some(&token), &FORGED).await;
    assert_eq!(r.status, 200, "{}\n{}", r.brief(), s.logs());
    assert_eq!(r.field("subject").as_deref(), Some(USER), "forged subject reached the app: {}", r.brief());
    assert_eq!(r.field("aal").as_deref(), Some("1"), "forged AAL reached the app: {}", r.brief());
    let id = r.field("id").unwrap_or_default();
    assert!(id.starts_with("ses_") && id != "ses_forged" && !id.contains('|'), "forged id: {}", r.brief());
    let facts = r.facts();
    for forged in ["admin", "evil-corp", "4102444800", "999999", "ses_forged"] {
        assert!(!facts.contains(forged), "forged value {forged} reached the app: {}", r.brief());
    }
    // A forged AAL does not open the step-up area either.
    let r = s.get("/admin", Some(&token), &FORGED).await;
    assert!(
        r.status == 302 && r.header("location").is_some_and(|l| l.starts_with("/elevate")),
        "forged AAL must not skip step-up: {}",
        r.brief()
    );
}

/// A route rule (`/admin` needs AAL 2): 403 from sessiond becomes a redirect (302, from the
/// proxy itself: the demo app's own defence-in-depth redirect is a 303) to the elevate page; after step-up (a rotated cookie) the page opens. Spoofed URI headers do not dodge it.
pub async fn step_up_redirects_to_elevate(s: &Stack) {
    let token = s.login(None).await;
    let r = s.get("/admin", Some(&token), &[]).await;
    assert!(
        r.status == 302 && r.header("location").as_deref() == Some("/elevate?next=/admin"),
        "AAL 1 on /admin → elevate: {}\n{}",
        r.brief(),
        s.logs()
    );
    // A client that claims the request is for a public path.
    let spoof = [("X-Forwarded-Uri", "/public"), ("X-Original-URI", "/public"), ("X-Forwarded-Method", "GET")];
    let r = s.get("/admin", Some(&token), &spoof).await;
    assert!(
        r.status == 302 && r.header("location").is_some_and(|l| l.starts_with("/elevate")),
        "spoofed X-Forwarded-Uri must not dodge step-up: {}",
        r.brief()
    );
    for sneaky in ["/admin/", "/admin?x=1", "/%61dmin", "//admin", "/app/../admin"] {
        let r = s.get(sneaky, Some(&token), &[]).await;
        assert!(
            r.field("admin").is_none() && !r.text.contains("id=\"admin\""),
            "{sneaky} opened the admin page at AAL 1: {}",
            r.brief()
        );
    }

    let r = s.get("/elevate?next=/admin", Some(&token), &[]).await;
    assert_eq!(r.status, 200, "elevate page: {}", r.brief());
    assert!(r.text.contains("id=\"elevate\""), "{}", r.brief());
    let r =
        s.post_form("/elevate", Some(&token), &[("password", PASSWORD), ("otp", "000000"), ("next", "/admin")]).await;
    assert_eq!(r.status, 401, "wrong code: {}", r.brief());

    let r = s.post_form("/elevate", Some(&token), &[("password", PASSWORD), ("otp", OTP), ("next", "/admin")]).await;
    assert_eq!(r.status, 303, "step-up: {}\n{}", r.brief(), s.logs());
    assert_eq!(r.header("location").as_deref(), Some("/admin"));
    let elevated = r.new_cookie(s.sessiond.cookie_name).expect("step-up rotates the cookie");
    assert_ne!(elevated, token, "step-up must rotate the token");

    let r = s.get("/admin", Some(&elevated), &[]).await;
    assert_eq!(r.status, 200, "elevated: {}\n{}", r.brief(), s.logs());
    assert!(r.text.contains("id=\"admin\""), "{}", r.brief());
    assert_eq!(r.field("aal").as_deref(), Some("2"), "{}", r.brief());
    assert_eq!(r.field("subject").as_deref(), Some(USER));
}

/// A token rotated by forward-auth (the policy's rotation interval passed) reaches the browser
/// through the proxy as `Set-Cookie`, and the new cookie works.
pub async fn rotated_cookie_reaches_the_browser(s: &Stack) {
    let token = s.sessiond.create(USER, "rotating").await;
    let r = s.get("/app", Some(&token), &[]).await;
    assert_eq!(r.status, 200, "{}", r.brief());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = s.get("/app", Some(&token), &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.brief(), s.logs());
    let rotated = r.new_cookie(s.sessiond.cookie_name);
    let rotated = rotated.unwrap_or_else(|| panic!("the rotated cookie must reach the client: {}", r.brief()));
    assert_ne!(rotated, token);
    let r = s.get("/app", Some(&rotated), &[]).await;
    assert_eq!(r.status, 200, "the rotated cookie works: {}", r.brief());
    assert_eq!(r.field("subject").as_deref(), Some(USER));
}
