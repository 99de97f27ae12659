//! Test harness: runs the real `sessiond` binary on a free port with a temporary data
//! directory, and a reqwest client (rustls) to talk to it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_sessiond");
pub const KEY: &str = "sdk_test_key_0123456789abcdefghijklmnop";

/// Test-sized policies and step-up rules.
pub const CONFIG: &str = r#"
rotation_grace = 1

[[policies]]
name = "short"
idle_timeout = 2
absolute_lifetime = 5
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
name = "limited"
idle_timeout = 600
absolute_lifetime = 3600
renewal_fraction = 0.1
max_sessions = 1
on_limit = "deny_new"

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

[[routes]]
prefix = "/admin/keys"
min_aal = 2
max_auth_age = 1

# These tests send many wrong keys and forged tokens from 127.0.0.1 on purpose; brute-force
# throttling has its own tests (tests/standards.rs, T24).
[brute_force]
max_failures = 100000
"#;

pub struct Srv {
    pub child: Child,
    pub url: String,
    pub dir: PathBuf,
    pub tmp: Option<tempfile::TempDir>,
    pub tls: bool,
    pub ca_pem: Option<String>,
}

#[derive(Default)]
pub struct Opts {
    pub tls: bool,
    pub dir: Option<PathBuf>,
    pub extra: Vec<String>,
    pub no_env_key: bool,
}

impl Srv {
    pub fn dev() -> Srv {
        Srv::start(Opts::default())
    }

    pub fn start(opts: Opts) -> Srv {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = opts.dir.clone().unwrap_or_else(|| tmp.path().join("data"));
        let cfg = tmp.path().join("sessiond.toml");
        std::fs::write(&cfg, CONFIG).expect("config");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&dir)
            .arg("--config")
            .arg(&cfg)
            .args(&opts.extra)
            .env_remove("SESSIOND_API_KEY")
            .env("SESSIOND_LOG", "info,sessiond_core=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(tmp.path().join("stderr.log")).expect("log"));
        if !opts.no_env_key {
            cmd.env("SESSIOND_API_KEY", KEY);
        }
        let mut ca_pem = None;
        if opts.tls {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("cert");
            let cert = tmp.path().join("cert.pem");
            let key = tmp.path().join("key.pem");
            std::fs::write(&cert, ck.cert.pem()).expect("cert");
            std::fs::write(&key, ck.key_pair.serialize_pem()).expect("key");
            cmd.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
            ca_pem = Some(ck.cert.pem());
        } else {
            cmd.arg("--dev");
        }
        let (child, url) = spawn_sessiond(&mut cmd, &tmp.path().join("stderr.log"));
        Srv { child, url, dir, tmp: Some(tmp), tls: opts.tls, ca_pem }
    }

    pub fn client(&self) -> reqwest::Client {
        let mut b =
            reqwest::Client::builder().timeout(Duration::from_secs(20)).redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &self.ca_pem {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("ca"));
        }
        b.build().expect("client")
    }

    pub fn u(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn log(&self) -> String {
        self.tmp
            .as_ref()
            .map(|t| std::fs::read_to_string(t.path().join("stderr.log")).unwrap_or_default())
            .unwrap_or_default()
    }

    /// SIGTERM and wait; returns whether the process exited successfully.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        for _ in 0..200 {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Res {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Res {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    pub fn headers_all(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect()
    }

    /// Asserts an RFC 9457 problem of `slug` with `status`.
    pub fn problem(&self, status: u16, slug: &str) -> &Self {
        assert_eq!(self.status, status, "status of {}", self.text);
        self.assert_problem_shape();
        assert_eq!(self.body["type"], format!("https://sessiond.dev/problems/{slug}"), "{}", self.text);
        self
    }

    pub fn assert_problem_shape(&self) {
        assert_eq!(self.header("content-type").as_deref(), Some("application/problem+json"), "{}", self.text);
        assert!(
            self.body["type"].as_str().unwrap_or("").starts_with("https://sessiond.dev/problems/"),
            "{}",
            self.text
        );
        assert!(self.body["title"].is_string(), "{}", self.text);
        assert_eq!(self.body["status"], self.status, "{}", self.text);
        assert!(self.body["detail"].is_string(), "{}", self.text);
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> Res {
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Res { status, headers, body, text }
}

impl Srv {
    pub async fn post(&self, path: &str, body: Value) -> Res {
        send(self.client().post(self.u(path)).bearer_auth(KEY).json(&body)).await
    }

    pub async fn get(&self, path: &str) -> Res {
        send(self.client().get(self.u(path)).bearer_auth(KEY)).await
    }

    pub async fn delete(&self, path: &str) -> Res {
        send(self.client().delete(self.u(path)).bearer_auth(KEY)).await
    }

    /// Creates a session and returns the response body.
    pub async fn create(&self, body: Value) -> Value {
        let r = self.post("/v1/sessions", body).await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body
    }

    pub async fn auth_cookie(&self, token: &str) -> Res {
        let name = if self.tls { "__Host-sid" } else { "sid" };
        send(self.client().get(self.u("/v1/auth")).header("cookie", format!("{name}={token}"))).await
    }

    pub async fn auth_bearer(&self, token: &str) -> Res {
        send(self.client().get(self.u("/v1/auth")).bearer_auth(token)).await
    }

    pub async fn resolve(&self, token: &str) -> Res {
        self.post("/v1/sessions/resolve", serde_json::json!({ "token": token })).await
    }
}

/// A parsed `Set-Cookie`: name, value and lower-cased attributes in order.
#[derive(Debug)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    pub attrs: Vec<(String, Option<String>)>,
}

impl SetCookie {
    pub fn parse(s: &str) -> SetCookie {
        let mut parts = s.split(';');
        let (name, value) = parts.next().unwrap().split_once('=').expect("name=value");
        let attrs = parts
            .map(|a| {
                let a = a.trim();
                match a.split_once('=') {
                    Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_owned())),
                    None => (a.to_ascii_lowercase(), None),
                }
            })
            .collect();
        SetCookie { name: name.trim().to_owned(), value: value.trim().to_owned(), attrs }
    }

    pub fn has(&self, k: &str) -> bool {
        self.attrs.iter().any(|(a, _)| a == k)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.attrs.iter().find(|(a, _)| a == k).and_then(|(_, v)| v.as_deref())
    }
}

pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("SESSIOND_API_KEY").env_remove("SESSIOND_SERVER");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run sessiond");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ------------------------------------------------------------------------------------------
// Many nodes over a shared store (tests/distributed.rs)
// ------------------------------------------------------------------------------------------

impl Srv {
    /// Like [`Srv::start`], with the TOML configuration `config` instead of [`CONFIG`]
    /// (for nodes over a shared store: `--store`, `[redis]`/`[postgres]`, near-cache keys).
    pub fn start_with_config(opts: Opts, config: &str) -> Srv {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = opts.dir.clone().unwrap_or_else(|| tmp.path().join("data"));
        let cfg = tmp.path().join("sessiond.toml");
        std::fs::write(&cfg, config).expect("config");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&dir)
            .arg("--config")
            .arg(&cfg)
            .arg("--dev")
            .args(&opts.extra)
            .env_remove("SESSIOND_API_KEY")
            .env_remove("SESSIOND_STORE")
            .env("SESSIOND_LOG", "info,sessiond_core=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(tmp.path().join("stderr.log")).expect("log"));
        if !opts.no_env_key {
            cmd.env("SESSIOND_API_KEY", KEY);
        }
        let (child, url) = spawn_sessiond(&mut cmd, &tmp.path().join("stderr.log"));
        Srv { child, url, dir, tmp: Some(tmp), tls: false, ca_pem: None }
    }

    /// SIGKILL and reap: no shutdown, no flush.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The sum of a Prometheus metric's samples (every label set), 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let r = send(self.client().get(self.u("/metrics"))).await;
        r.text
            .lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The status of `GET /readyz`.
    pub async fn ready_status(&self) -> u16 {
        match self.client().get(self.u("/readyz")).timeout(Duration::from_secs(5)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }
}

/// Writes a fresh random signing key (32 bytes, unpadded base64url, mode 0600) to `path`,
/// for nodes that must share one.
pub fn write_signing_key(path: &Path) {
    use std::io::Read as _;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom").expect("urandom").read_exact(&mut b).expect("random");
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &x)| n | (u32::from(x) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    std::fs::write(path, out).expect("write key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

/// A free TCP port on 127.0.0.1 whose Redis Cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

/// Runs `redis-cli -p port args…` and returns its output.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes every key under a Redis key prefix on the machine's Redis (127.0.0.1:6379) when
/// dropped, so that a test sharing that server leaves nothing behind, also when it fails.
/// Declare it before the nodes that write under the prefix: they are dropped (stopped) first.
pub struct RedisPrefixGuard(pub String);

impl Drop for RedisPrefixGuard {
    fn drop(&mut self) {
        // Test prefixes are URL-safe base64 or hex: safe inside the shell's single quotes.
        if !self.0.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return;
        }
        let line = format!(
            "redis-cli -p 6379 --scan --pattern '{}:*' | xargs -r -n 500 redis-cli -p 6379 del >/dev/null",
            self.0
        );
        let _ = Command::new("sh").arg("-c").arg(line).status();
    }
}

/// Runs `scripts/ensure-services.sh` once when Redis or PostgreSQL is not reachable (it
/// installs and starts them).
pub fn ensure_services() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let up = |p: u16| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
        if !up(6379) || !up(5432) {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/ensure-services.sh");
            let status = Command::new("bash").arg(script).status().expect("run ensure-services.sh");
            assert!(status.success(), "ensure-services.sh failed");
        }
    });
}

/// A private `redis-server` child process, killed (SIGKILL) on drop.
pub struct RedisServer {
    pub port: u16,
    pub child: Child,
}

impl RedisServer {
    /// Starts `redis-server` on `port` with its files in `dir` and extra arguments, and
    /// waits until it answers.
    pub fn start(port: u16, dir: &Path, extra: &[&str]) -> RedisServer {
        ensure_services();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--daemonize", "no", "--dir"])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = RedisServer { port, child };
        for _ in 0..200 {
            if redis_cli(port, &["ping"]).trim() == "PONG" {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {port} did not come up");
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A Redis Cluster of three masters on free ports, in a temporary directory.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts three cluster-mode servers, joins them with `redis-cli --cluster create` and
    /// waits for `cluster_state:ok` on every node.
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("nodes-{port}.conf"));
            let conf = conf.to_str().expect("utf-8 path").to_owned();
            nodes.push(RedisServer::start(
                port,
                dir.path(),
                &[
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-node-timeout",
                    "2000",
                ],
            ));
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = RedisCluster { nodes, _dir: dir };
        for _ in 0..200 {
            if cluster.nodes.iter().all(|n| redis_cli(n.port, &["cluster", "info"]).contains("cluster_state:ok")) {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster never reached cluster_state:ok");
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

/// Starts `cmd` (a `sessiond serve` with stdout piped and stderr sent to `stderr_log`) and
/// waits up to 30 s for its "sessiond listening on URL" line; returns the child and the URL,
/// or panics with the server's log.
pub fn spawn_sessiond(cmd: &mut Command, stderr_log: &Path) -> (Child, String) {
    let mut child = cmd.spawn().expect("spawn sessiond");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("sessiond listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => (child, url),
        Err(_) => {
            let _ = child.kill();
            let log = std::fs::read_to_string(stderr_log).unwrap_or_default();
            panic!("sessiond did not start:\n{log}");
        }
    }
}
