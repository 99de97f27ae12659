//! TLS (`rediss://`) with ACL credentials against a private TLS-only Redis started for the
//! test, with a certificate authority made for the test and trusted through `SSL_CERT_FILE`
//! (how operators trust a private CA: `docs/redis-store.md`). The attacks: a wrong password,
//! plain TCP to the TLS port, and a server certificate from an untrusted CA are all refused at
//! start-up.
#![allow(clippy::unwrap_used)]
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sessiond_conformance::pki::make_pki;
use sessiond_core::SessionStore;
use sessiond_store_redis::{RedisOptions, RedisStore};
use support::{free_port, random_prefix, test_options};

/// A TLS-only `redis-server` whose only user is `sessiond` (the default user is off).
struct TlsServer {
    port: u16,
    child: Child,
}

impl TlsServer {
    fn start(dir: &Path, name: &str, password: &str) -> TlsServer {
        support::ensure_services(); // installs redis-server if missing
        let port = free_port();
        let file = |f: &str| dir.join(format!("{name}-{f}")).display().to_string();
        let pass = format!(">{password}");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", &file("srv.pem"), "--tls-key-file", &file("srv.key")])
            .args(["--tls-ca-cert-file", &file("ca.pem"), "--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir"])
            .arg(dir)
            .args(["--user", "default", "off", "--user", "sessiond", "on", &pass, "~*", "&*", "+@all"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server with TLS");
        let server = TlsServer { port, child };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the TLS redis-server on port {port} did not come up");
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_acl_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_pki(dir.path(), "good");
    make_pki(dir.path(), "rogue");
    // Trust the test CA only (this test binary has this one test, so nothing races the
    // environment).
    std::env::set_var("SSL_CERT_FILE", dir.path().join("good-ca.pem"));
    let good = TlsServer::start(dir.path(), "good", "s3cret-pw");
    let rogue = TlsServer::start(dir.path(), "rogue", "s3cret-pw");
    let fast =
        || RedisOptions { connect_timeout: Duration::from_secs(2), key_prefix: random_prefix(), ..test_options() };

    let url = format!("rediss://sessiond:s3cret-pw@127.0.0.1:{}", good.port);
    sessiond_conformance::run_all(|| async {
        let store = RedisStore::connect(&url, RedisOptions { key_prefix: random_prefix(), ..test_options() })
            .await
            .expect("connect over TLS with ACL credentials");
        Arc::new(store) as Arc<dyn SessionStore>
    })
    .await;

    let wrong_password = format!("rediss://sessiond:wrong@127.0.0.1:{}", good.port);
    assert!(RedisStore::connect(&wrong_password, fast()).await.is_err(), "a wrong password connected");
    let plain = format!("redis://sessiond:s3cret-pw@127.0.0.1:{}", good.port);
    assert!(RedisStore::connect(&plain, fast()).await.is_err(), "plain TCP to the TLS port connected");
    let untrusted = format!("rediss://sessiond:s3cret-pw@127.0.0.1:{}", rogue.port);
    assert!(RedisStore::connect(&untrusted, fast()).await.is_err(), "a certificate from an untrusted CA was accepted");
}
