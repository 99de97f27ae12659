//! Test support: a store isolated under a random key prefix whose keys are deleted when the
//! last handle goes, and the Redis servers started when absent.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;
use std::sync::{Arc, Once};

use sessiond_core::SessionStore;
use sessiond_store_redis::{RedisOptions, RedisStore};

/// URL of the standalone test server.
pub fn redis_url() -> String {
    std::env::var("SESSIOND_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Runs `scripts/ensure-services.sh` once per test binary when Redis is not reachable.
pub fn ensure_services() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::net::TcpStream::connect("127.0.0.1:6379").is_err() {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/ensure-services.sh");
            let status = Command::new("bash").arg(script).status().expect("run ensure-services.sh");
            assert!(status.success(), "ensure-services.sh failed");
        }
    });
}

/// A random key prefix for one store.
pub fn random_prefix() -> String {
    let b = sessiond_core::token::os_random::<8>();
    format!("sdt-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// Deletes every key under `prefix` on the standalone server (SCAN is fine in tests).
pub fn delete_prefix(port: u16, prefix: &str) {
    // The prefix is `sdt-` and hex only: safe to put in a shell line.
    assert!(prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let line = format!(
        "redis-cli -p {port} --scan --pattern '{prefix}:*' | xargs -r -n 500 redis-cli -p {port} del >/dev/null"
    );
    let _ = Command::new("sh").arg("-c").arg(line).status();
}

/// Options for tests: a generous timeout, since CI machines are small and busy.
pub fn test_options() -> RedisOptions {
    RedisOptions { timeout: std::time::Duration::from_secs(5), ..Default::default() }
}

/// A free TCP port on 127.0.0.1 whose cluster-bus port (+10000) is free too.
pub fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

/// A `redis-server` child process, killed on drop.
pub struct Server {
    pub port: u16,
    pub child: std::process::Child,
}

impl Server {
    /// Starts `redis-server` on `port` in `dir` with extra arguments, and waits until it
    /// answers.
    pub fn start(port: u16, dir: &std::path::Path, extra: &[&str]) -> Server {
        ensure_services(); // installs redis-server if missing
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--dir"])
            .arg(dir)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = Server { port, child };
        for _ in 0..100 {
            if cli(port, &["ping"]).trim() == "PONG" {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("redis-server on port {port} did not come up");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `redis-cli -p port args…` and returns its output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A store under a fresh prefix on the standalone server.
pub async fn fresh(options: RedisOptions) -> (RedisStore, String) {
    ensure_services();
    let prefix = random_prefix();
    let store = RedisStore::connect(&redis_url(), RedisOptions { key_prefix: prefix.clone(), ..options })
        .await
        .expect("connect to redis");
    (store, prefix)
}

/// A second store (another node) on the machine's Redis under `prefix`, with the test options.
#[allow(dead_code)] // not every test file uses it
pub async fn another(prefix: &str) -> RedisStore {
    RedisStore::connect(&redis_url(), RedisOptions { key_prefix: prefix.to_owned(), ..test_options() })
        .await
        .expect("connect to redis")
}

/// The conformance factory: a fresh store under its own prefix, deleted when dropped.
pub async fn redis_store() -> Arc<dyn SessionStore> {
    let (inner, prefix) = fresh(test_options()).await;
    Arc::new(sessiond_conformance::Guarded::new(inner, PrefixGuard(prefix)))
}

/// Deletes a prefix's keys when dropped, so a failing test cleans up too.
pub struct PrefixGuard(pub String);

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        delete_prefix(6379, &self.0);
    }
}

/// A Redis Cluster of `masters` masters with `replicas` replicas each (redis-server in
/// cluster mode on free ports), up with `cluster_state:ok` and every replica linked; the
/// servers are killed when it is dropped.
pub struct Cluster {
    pub nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(masters: usize, replicas: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let port = free_port();
            let conf = dir.path().join(format!("nodes-{port}.conf"));
            let conf = conf.to_str().expect("utf-8 path").to_owned();
            nodes.push(Server::start(
                port,
                dir.path(),
                &["--cluster-enabled", "yes", "--cluster-config-file", &conf, "--cluster-node-timeout", "5000"],
            ));
        }
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = Cluster { nodes, _dir: dir };
        for _ in 0..200 {
            let ok = cluster.nodes.iter().all(|n| cli(n.port, &["cluster", "info"]).contains("cluster_state:ok"));
            if ok
                && cluster
                    .replicas()
                    .iter()
                    .all(|r| cli(r.port, &["info", "replication"]).contains("master_link_status:up"))
            {
                return cluster;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the cluster never reached cluster_state:ok with every replica linked");
    }

    /// The replica nodes.
    pub fn replicas(&self) -> Vec<&Server> {
        self.nodes.iter().filter(|n| cli(n.port, &["info", "replication"]).contains("role:slave")).collect()
    }

    /// `redis+cluster://` with every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

/// Sends `sig` (`-STOP`, `-CONT`…) to process `pid`.
#[allow(dead_code)] // not every test file uses it
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "kill {sig} {pid}");
}

/// Resumes a stopped process even when an assertion fails, so that drop can kill it.
#[allow(dead_code)] // not every test file uses it
pub struct Resume(pub u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}
