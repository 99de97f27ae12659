//! The whole conformance suite against a real three-master Redis Cluster started for the
//! test (and killed at the end by drop guards).
#![allow(clippy::unwrap_used)]
mod support;

use std::sync::Arc;
use std::time::Duration;

use sessiond_conformance::cases;
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

macro_rules! run_cases {
    ($url:expr; $($case:ident),* $(,)?) => {
        $(
            let store = RedisStore::connect($url, RedisOptions { key_prefix: random_prefix(), ..test_options() })
                .await
                .expect("connect to the cluster");
            let store: Arc<dyn SessionStore> = Arc::new(store);
            cases::$case(store).await;
        )*
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_a_three_master_cluster() {
    let cluster = Cluster::start();
    let url = cluster.url();
    run_cases!(&url;
        create_resolve_round_trip,
        forged_tokens_never_reach_the_store,
        unknown_token_is_unknown_session,
        idle_timeout_ends_session,
        absolute_timeout_ends_active_session,
        renewal_is_throttled,
        rotation_grace_returns_same_successor_then_detects_theft,
        parallel_resolves_during_rotation_share_one_successor,
        interval_rotation_on_resolve,
        elevate_updates_assurance_and_rotates,
        limit_deny_new,
        limit_evict_oldest,
        limit_evict_idlest,
        parallel_creates_never_exceed_limit,
        data_compare_and_set_and_no_resurrection,
        revoke_one_subject_tenant,
        epoch_bump_revokes_existing_sessions_only,
        list_paginates_live_sessions_of_one_subject,
        sweeper_removes_expired_and_emits_events,
        events_are_ordered_and_read_from_a_cursor,
        prelogin_token_is_revoked_not_adopted,
        logout_replay_is_refused,
        binding_revoke_policy,
        peek_does_not_renew,
        retired_token_found_only_while_remembered,
    );
    // The data really is spread over the masters (so cross-slot mistakes would have shown).
    let busy = cluster.nodes.iter().filter(|n| cli(n.port, &["dbsize"]).trim().parse::<u64>().unwrap_or(0) > 0).count();
    assert!(busy >= 2, "all keys landed on {busy} node(s)");
}
