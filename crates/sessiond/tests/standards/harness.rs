//! The black-box harness: real `sessiond` processes over TLS (rcgen self-signed certificate
//! the clients trust), and "browsers" with their own cookie jar, User-Agent and source IP
//! (`X-Forwarded-For`, trusted by the test configuration) playing victim and attacker.
//!
//! Raw tokens never reach test output: assertion messages go through [`redact`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{send, Res, SetCookie};

pub const BIN: &str = env!("CARGO_BIN_EXE_sessiond");
/// The service API key of every test node.
pub const KEY: &str = "sdk_standards_suite_key_0123456789abcdef";
/// The production cookie name.
pub const COOKIE: &str = "__Host-sid";

/// Test-sized policies and rules of the main node (see the module docs of `standards.rs`).
pub const CONFIG: &str = r#"
rotation_grace = 1
trust_forwarded_headers = true

[brute_force]
max_failures = 20
window_secs = 60

[csrf]
trusted_origins = ["https://app.example"]

[[policies]]
name = "idle2"
idle_timeout = 2
absolute_lifetime = 60
renewal_fraction = 0.1
on_limit = "evict_oldest"

[[policies]]
name = "abs4"
idle_timeout = 2
absolute_lifetime = 4
renewal_fraction = 0.1
on_limit = "evict_oldest"

[[policies]]
name = "rotating"
idle_timeout = 600
absolute_lifetime = 3600
rotation_interval = 1
renewal_fraction = 0.1
on_limit = "evict_oldest"

[[policies]]
name = "remember"
idle_timeout = 600
absolute_lifetime = 3600
renewal_fraction = 0.1
on_limit = "evict_oldest"
persistent = true

[[policies]]
name = "evict2"
idle_timeout = 600
absolute_lifetime = 3600
renewal_fraction = 0.1
max_sessions = 2
on_limit = "evict_oldest"

[[policies]]
name = "deny1"
idle_timeout = 600
absolute_lifetime = 3600
renewal_fraction = 0.1
max_sessions = 1
on_limit = "deny_new"

[[policies]]
name = "bind-flag"
idle_timeout = 600
absolute_lifetime = 3600
renewal_fraction = 0.1
on_limit = "evict_oldest"
binding = { user_agent = "flag", ip_prefix = "flag" }

[[policies]]
name = "bind-revoke"
idle_timeout = 600
absolute_lifetime = 3600
renewal_fraction = 0.1
on_limit = "evict_oldest"
binding = { user_agent = "revoke", ip_prefix = "allow" }

[[policies]]
name = "bind-stepup"
idle_timeout = 600
absolute_lifetime = 3600
renewal_fraction = 0.1
on_limit = "evict_oldest"
binding = { user_agent = "allow", ip_prefix = "step_up" }

[[routes]]
prefix = "/account"
min_aal = 1

[[routes]]
prefix = "/admin"
min_aal = 2

[[routes]]
prefix = "/admin/keys"
min_aal = 2
max_auth_age = 2

[[routes]]
prefix = "/forms"
csrf = "synchronizer"
"#;

pub const FIREFOX_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
pub const CHROME_WINDOWS: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
pub const CHROME_WINDOWS_NEXT: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0 Safari/537.36";

/// How to start a node.
pub struct NodeOpts {
    pub config: String,
    /// `SESSIOND_LOG`.
    pub log: &'static str,
    /// `--store`, e.g. `redis://…`; default the embedded store.
    pub store: Option<String>,
    /// A signing key file shared by nodes.
    pub signing_key: Option<PathBuf>,
}

impl Default for NodeOpts {
    fn default() -> Self {
        Self { config: CONFIG.to_owned(), log: "info", store: None, signing_key: None }
    }
}

/// A `sessiond serve` process over TLS.
pub struct Node {
    child: Child,
    pub url: String,
    pub addr: String,
    ca_pem: String,
    tmp: tempfile::TempDir,
    client: reqwest::Client,
}

impl Node {
    pub fn start(opts: NodeOpts) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = tmp.path().join("sessiond.toml");
        std::fs::write(&cfg, &opts.config).expect("config");
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("cert");
        let cert = tmp.path().join("cert.pem");
        let key = tmp.path().join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).expect("cert");
        std::fs::write(&key, ck.key_pair.serialize_pem()).expect("key");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(tmp.path().join("data"))
            .arg("--config")
            .arg(&cfg)
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .env_remove("SESSIOND_STORE")
            .env_remove("SESSIOND_CONFIG")
            .env("SESSIOND_API_KEY", KEY)
            .env("SESSIOND_LOG", opts.log)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(tmp.path().join("stderr.log")).expect("log"));
        if let Some(store) = &opts.store {
            cmd.arg("--store").arg(store);
        }
        if let Some(k) = &opts.signing_key {
            cmd.arg("--signing-key-file").arg(k);
        }
        let (child, url) = crate::common::spawn_sessiond(&mut cmd, &tmp.path().join("stderr.log"));
        assert!(url.starts_with("https://"), "the suite runs sessiond with TLS: {url}");
        let addr = url.trim_start_matches("https://").to_owned();
        let ca_pem = ck.cert.pem();
        let client = client_for(&ca_pem);
        Node { child, url, addr, ca_pem, tmp, client }
    }

    /// A raw TLS connection to the node, trusting only its certificate, for HTTP/1.1 written
    /// by hand (connection-level checks that an HTTP client's pool would hide).
    pub async fn tls_connect(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("ca")).expect("root");
        let cfg =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(&self.addr).await.expect("connect");
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("TLS handshake")
    }

    pub fn u(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A client with no cookies and no API key.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The process's log output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("stderr.log")).unwrap_or_default()
    }

    /// A new browser with its own cookie jar, User-Agent and source IP.
    pub fn browser(&self, ua: &str, ip: &str) -> Browser {
        Browser {
            client: client_for(&self.ca_pem),
            base: self.url.clone(),
            ua: ua.to_owned(),
            ip: ip.to_owned(),
            jar: BTreeMap::new(),
        }
    }

    // --- service calls (API key) ----------------------------------------------------------

    pub async fn post(&self, path: &str, body: Value) -> Res {
        send(self.client.post(self.u(path)).bearer_auth(KEY).json(&body)).await
    }

    pub async fn get(&self, path: &str) -> Res {
        send(self.client.get(self.u(path)).bearer_auth(KEY)).await
    }

    pub async fn delete(&self, path: &str) -> Res {
        send(self.client.delete(self.u(path)).bearer_auth(KEY)).await
    }

    /// `POST /v1/sessions`; panics unless 201.
    pub async fn login(&self, body: Value) -> Login {
        let r = self.post("/v1/sessions", body).await;
        assert_eq!(r.status, 201, "create: {}", redact(&r.text));
        Login::of(&r)
    }

    pub async fn resolve(&self, token: &str) -> Res {
        self.post("/v1/sessions/resolve", json!({ "token": token })).await
    }

    /// Every event after `after`.
    pub async fn events(&self, after: u64) -> Vec<Value> {
        let r = self.get(&format!("/v1/events?after={after}&limit=10000")).await;
        assert_eq!(r.status, 200, "{}", redact(&r.text));
        r.body["events"].as_array().cloned().unwrap_or_default()
    }

    /// The cursor of the latest event.
    pub async fn cursor(&self) -> u64 {
        let mut after = 0;
        loop {
            let r = self.get(&format!("/v1/events?after={after}&limit=10000")).await;
            let next = r.body["next_cursor"].as_u64().unwrap_or(after);
            if next == after {
                return after;
            }
            after = next;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client_for(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .build()
        .expect("client")
}

/// The answer of `POST /v1/sessions` (or rotate / elevate).
#[derive(Debug, Clone)]
pub struct Login {
    pub token: String,
    pub id: String,
    pub csrf: String,
    pub set_cookie: String,
    pub body: Value,
}

impl Login {
    pub fn of(r: &Res) -> Login {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Login {
            token: s(&r.body["token"]),
            id: s(&r.body["session"]["id"]),
            csrf: s(&r.body["csrf_token"]),
            set_cookie: s(&r.body["set_cookie"]),
            body: r.body.clone(),
        }
    }
}

/// A browser: a cookie jar for `__Host-sid`, a User-Agent and a source IP.
pub struct Browser {
    client: reqwest::Client,
    base: String,
    pub ua: String,
    pub ip: String,
    pub jar: BTreeMap<String, String>,
}

impl Browser {
    /// Stores the session cookie as a browser would from a `Set-Cookie` value.
    pub fn accept(&mut self, set_cookie: &str) {
        let c = SetCookie::parse(set_cookie);
        if c.value.is_empty() || c.get("max-age") == Some("0") {
            self.jar.remove(&c.name);
        } else {
            self.jar.insert(c.name, c.value);
        }
    }

    /// Forces a cookie into the jar (fixation: the attacker planted it).
    pub fn plant(&mut self, token: &str) {
        self.jar.insert(COOKIE.to_owned(), token.to_owned());
    }

    pub fn token(&self) -> Option<&str> {
        self.jar.get(COOKIE).map(String::as_str)
    }

    fn cookie_header(&self) -> Option<String> {
        (!self.jar.is_empty()).then(|| self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "))
    }

    /// A request with the jar's cookies, User-Agent and source IP.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("user-agent", &self.ua)
            .header("x-forwarded-for", &self.ip);
        if let Some(c) = self.cookie_header() {
            r = r.header("cookie", c);
        }
        r
    }

    /// Forward-auth of a navigation to `uri` with `method` (as a proxy relays it), taking any
    /// rotated cookie into the jar.
    pub async fn visit(&mut self, method: &str, uri: &str, extra: &[(&str, &str)]) -> Res {
        let mut r = self
            .req(reqwest::Method::GET, "/v1/auth")
            .header("x-forwarded-uri", uri)
            .header("x-forwarded-method", method);
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        let res = send(r).await;
        for c in res.headers_all("set-cookie") {
            self.accept(&c);
        }
        res
    }

    /// `POST /v1/logout` with the jar and `extra` headers; applies the clearing cookie.
    pub async fn logout(&mut self, extra: &[(&str, &str)]) -> Res {
        let mut r = self.req(reqwest::Method::POST, "/v1/logout");
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        let res = send(r).await;
        if res.status == 204 {
            for c in res.headers_all("set-cookie") {
                self.accept(&c);
            }
        }
        res
    }
}

/// `text` with every `sds_…` token replaced by a placeholder (assertion messages only).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sds_") {
        out.push_str(&rest[..i]);
        out.push_str("sds_<redacted>");
        rest = &rest[i + 4..];
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Asserts that `r` is an RFC 9457 problem of `slug` with `status` (token-free message).
pub fn problem(r: &Res, status: u16, slug: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", redact(&r.text));
    assert_eq!(r.header("content-type").as_deref(), Some("application/problem+json"), "{what}");
    assert_eq!(r.body["type"], format!("https://sessiond.dev/problems/{slug}"), "{what}: {}", redact(&r.text));
}

/// Unpadded base64url decoding (the token alphabet); `None` on any other character.
pub fn b64url(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        })
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = chunk.len() * 6 / 8;
        for i in 0..bytes {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// Unpadded base64url encoding.
pub fn b64url_encode(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &x)| n | (u32::from(x) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read as _;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom").expect("urandom").read_exact(&mut b).expect("random");
    b
}

/// A well-formed token sessiond never issued: right prefix, length, version and key id (copied
/// from `like`), random secret and tag.
pub fn forged_like(like: &str) -> String {
    let raw = b64url(like.trim_start_matches("sds_")).expect("token decodes");
    let mut f = raw[..5].to_vec();
    f.extend(random_bytes(raw.len() - 5));
    format!("sds_{}", b64url_encode(&f))
}

/// `like` with one character of its secret changed (a bit-flip forgery).
pub fn flipped(like: &str, at: usize) -> String {
    let mut b = like.as_bytes().to_vec();
    let i = 4 + 8 + at % 40;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).expect("ascii")
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
