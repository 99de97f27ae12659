//! The whole conformance suite against a real three-master Redis Cluster started for the
//! test (and killed at the end by drop guards).
#![allow(clippy::unwrap_used)]
mod support;

use std::sync::Arc;

use sessiond_core::SessionStore;
use sessiond_store_redis::{RedisOptions, RedisStore};
use support::{cli, random_prefix, test_options, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_a_three_master_cluster() {
    let cluster = Cluster::start(3, 0);
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
