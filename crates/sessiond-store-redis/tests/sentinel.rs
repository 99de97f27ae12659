//! The whole conformance suite through Redis Sentinel: a private master and a sentinel that
//! monitors it, started for the test (and killed at the end by drop guards). The store finds
//! the master by asking the sentinel, as in production.
#![allow(clippy::unwrap_used)]
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sessiond_core::SessionStore;
use sessiond_store_redis::{RedisOptions, RedisStore};
use support::{cli, free_port, random_prefix, test_options, Server};

/// A `redis-server --sentinel` child process, killed on drop.
struct Sentinel {
    port: u16,
    child: Child,
}

impl Sentinel {
    fn start(dir: &std::path::Path, master: u16) -> Sentinel {
        let port = free_port();
        let conf = dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor primary 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds primary 5000\n",
                dir.display()
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        let sentinel = Sentinel { port, child };
        for _ in 0..200 {
            let reply = cli(port, &["sentinel", "get-master-addr-by-name", "primary"]);
            if reply.contains(&master.to_string()) {
                return sentinel;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the sentinel on port {port} never reported the master");
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_through_sentinel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let master = Server::start(free_port(), dir.path(), &[]);
    let sentinel = Sentinel::start(dir.path(), master.port);
    let url = format!("redis+sentinel://127.0.0.1:{}/primary", sentinel.port);
    sessiond_conformance::run_all(|| async {
        let store = RedisStore::connect(&url, RedisOptions { key_prefix: random_prefix(), ..test_options() })
            .await
            .expect("connect through the sentinel");
        Arc::new(store) as Arc<dyn SessionStore>
    })
    .await;
    // The data went to the master the sentinel named.
    let keys = cli(master.port, &["dbsize"]).trim().parse::<u64>().unwrap_or(0);
    assert!(keys > 0, "nothing reached the master");
    // A service name the sentinel does not know is refused at start-up, not later.
    let unknown = format!("redis+sentinel://127.0.0.1:{}/nosuchservice", sentinel.port);
    let opts = RedisOptions { connect_timeout: Duration::from_secs(2), ..test_options() };
    assert!(RedisStore::connect(&unknown, opts).await.is_err(), "an unknown service name connected");
}
