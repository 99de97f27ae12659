//! The whole conformance suite against a real three-master Redis Cluster started for the
//! test (and killed at the end by drop guards).
#![allow(clippy::unwrap_used)]
mod support;

use std::sync::Arc;
use std::time::Duration;

use sessiond_core::SessionStore;
use sessiond_store_redis::{RedisOptions, RedisStore};
use support::{cli, free_port, random_prefix, test_options, Server};

struct Cluster {
    nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("nodes-{port}.conf"));
            let conf = conf.to_str().expect("utf-8 path").to_owned();
            nodes.push(Server::start(
                port,
                dir.path(),
                &["--cluster-enabled", "yes", "--cluster-config-file", &conf, "--cluster-node-timeout", "2000"],
            ));
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = Cluster { nodes, _dir: dir };
        for _ in 0..200 {
            if cluster.nodes.iter().all(|n| cli(n.port, &["cluster", "info"]).contains("cluster_state:ok")) {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster never reached cluster_state:ok");
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_a_three_master_cluster() {
    let cluster = Cluster::start();
    let url = cluster.url();
    sessiond_conformance::run_all(|| async {
        let store = RedisStore::connect(&url, RedisOptions { key_prefix: random_prefix(), ..test_options() })
            .await
            .expect("connect to the cluster");
        Arc::new(store) as Arc<dyn SessionStore>
    })
    .await;
    // The data really is spread over the masters (so cross-slot mistakes would have shown).
    let busy = cluster.nodes.iter().filter(|n| cli(n.port, &["dbsize"]).trim().parse::<u64>().unwrap_or(0) > 0).count();
    assert!(busy >= 2, "all keys landed on {busy} node(s)");
}
