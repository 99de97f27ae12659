//! TLS (`sslmode=require`) with password credentials against a private PostgreSQL started for
//! the test on a free port: TLS-only (`hostssl` is its only TCP rule, `scram-sha-256`), with a
//! certificate authority made for the test and trusted through `SSL_CERT_FILE` (how operators
//! trust a private CA: `docs/postgres-store.md`). The whole conformance suite and the pushed
//! invalidations run over TLS. The attacks: a wrong password, a plain connection, and a server
//! certificate from an untrusted CA are all refused at start-up.
#![allow(clippy::unwrap_used)]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sessiond_conformance::pki::make_pki;
use sessiond_core::time::{Clock, SystemClock};
use sessiond_core::SessionStore;
use sessiond_store_postgres::{Invalidation, PostgresOptions, PostgresStore};
use support::{random_schema, test_options, wait_for};

mod records {
    include!("support/records.rs");
}

const PASSWORD: &str = "s3cret-pw";

/// A PostgreSQL server program: the newest Debian install, else the one on `PATH`.
fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent().and_then(Path::parent).and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| PathBuf::from(name))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` run as the `postgres` user when we are root (PostgreSQL refuses to run as
/// root), else as ourselves.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A TLS-only `postgres` in `dir/<name>-data`, serving the certificate `<name>-srv.pem`.
struct TlsServer {
    port: u16,
    data: PathBuf,
    /// `postgres`, or `runuser` running it.
    child: Child,
}

impl TlsServer {
    fn start(dir: &Path, name: &str) -> TlsServer {
        support::ensure_services(); // installs PostgreSQL if missing
        let data = dir.join(format!("{name}-data"));
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        let key = dir.join(format!("{name}-srv.key"));
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:"]).arg(dir);
                    c
                },
                "chown the test directory to postgres",
            );
        }
        let mut initdb = as_server_user(&pg_bin("initdb"));
        initdb.arg("-D").arg(&data).arg(format!("--pwfile={}", pwfile.display()));
        initdb.args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"]);
        run(initdb, "initdb");
        // The only TCP rule requires TLS: a plain connection finds no pg_hba.conf entry.
        std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
            .unwrap();
        let mut chmod = as_server_user(Path::new("chmod"));
        chmod.arg("600").arg(&key);
        run(chmod, "chmod the server key");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut postgres = as_server_user(&pg_bin("postgres"));
        postgres.arg("-D").arg(&data).args(["-p", &port.to_string(), "-k"]).arg(dir);
        postgres.args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c", "fsync=off"]);
        postgres.arg("-c").arg(format!("ssl_cert_file={}", dir.join(format!("{name}-srv.pem")).display()));
        postgres.arg("-c").arg(format!("ssl_key_file={}", key.display()));
        let child = postgres.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start postgres with TLS");
        let server = TlsServer { port, data, child };
        for _ in 0..200 {
            let ready = Command::new(pg_bin("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the TLS postgres on port {port} did not come up");
    }

    fn url(&self, password: &str, sslmode: &str) -> String {
        format!("postgres://postgres:{password}@127.0.0.1:{}/postgres?sslmode={sslmode}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        // Immediate shutdown of the postmaster itself (its pid is the first line of
        // `postmaster.pid`; `runuser` does not pass signals on): it takes its children with
        // it, where a SIGKILL would leave them running.
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
            .unwrap_or_else(|| self.child.id().to_string());
        let _ = Command::new("kill").args(["-QUIT", &pid]).status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_password_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_pki(dir.path(), "good");
    make_pki(dir.path(), "rogue");
    // Trust the test CA only (this test binary has this one test, so nothing races the
    // environment).
    std::env::set_var("SSL_CERT_FILE", dir.path().join("good-ca.pem"));
    let good = TlsServer::start(dir.path(), "good");
    let rogue = TlsServer::start(dir.path(), "rogue");
    let url = good.url(PASSWORD, "require");

    sessiond_conformance::run_all(|| async {
        let store = PostgresStore::connect(&url, test_options(&random_schema())).await.expect("connect over TLS");
        Arc::new(store) as Arc<dyn SessionStore>
    })
    .await;

    // The push channel (LISTEN on its own connection) runs over TLS too.
    let schema = random_schema();
    let a = PostgresStore::connect(&url, test_options(&schema)).await.expect("node A over TLS");
    let b = PostgresStore::connect(&url, test_options(&schema)).await.expect("node B over TLS");
    let mut rx = b.invalidations();
    assert!(wait_for(&mut rx, |i| *i == Invalidation::Resync).await, "B's listener never subscribed over TLS");
    let now = SystemClock.now();
    let r = records::record("acme", "alice", now);
    a.create(r.clone(), None, now).await.unwrap();
    a.delete(&r.id).await.unwrap();
    let id = r.id;
    assert!(
        wait_for(&mut rx, |i| matches!(i, Invalidation::Session { id: x, .. } if *x == id)).await,
        "a revocation on A was not pushed to B over TLS"
    );

    let fast = || PostgresOptions { connect_timeout: Duration::from_secs(3), ..test_options(&random_schema()) };
    let wrong_password = good.url("wrong", "require");
    assert!(PostgresStore::connect(&wrong_password, fast()).await.is_err(), "a wrong password connected");
    let plain = good.url(PASSWORD, "disable");
    assert!(PostgresStore::connect(&plain, fast()).await.is_err(), "a plain connection was accepted");
    let untrusted = rogue.url(PASSWORD, "require");
    assert!(
        PostgresStore::connect(&untrusted, fast()).await.is_err(),
        "a certificate from an untrusted CA was accepted"
    );
}
