//! `wait_replicas`: a revocation or epoch bump is reported done only once the configured
//! number of replicas acknowledged it (`WAIT`). Against a real master and a real replica on
//! free ports: with the replica running, revocations succeed and are on the replica when they
//! return; with the replica stopped (SIGSTOP), the same changes, and their retries on every
//! pooled connection, fail with `StoreError::Unconfirmed` (naming the sessions they ended, whose
//! events the engine still writes) instead of being confirmed while a failover could still
//! lose them.
#![allow(clippy::unwrap_used)]
mod support;

use std::time::Duration;

use std::sync::Arc;

use sessiond_core::event::{self, EventKind, RevokeReason};
use sessiond_core::time::{Clock, SystemClock};
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::{CreateRequest, Engine, SessionStore, StoreError};
use sessiond_store_redis::{RedisOptions, RedisStore, ReplicaShortfall};
use support::{cli, free_port, random_prefix, signal, Cluster, Resume, Server};

mod records {
    include!("support/records.rs");
}

/// Waits until the replica reports its link to the master up and in sync.
fn wait_for_link(replica: u16) {
    for _ in 0..200 {
        if cli(replica, &["info", "replication"]).contains("master_link_status:up") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the replica on port {replica} never linked to its master");
}

fn replica_keys(replica: u16, prefix: &str) -> usize {
    cli(replica, &["--scan", "--pattern", &format!("{prefix}:*:s:*")]).lines().filter(|l| !l.trim().is_empty()).count()
}

/// The message of an `Unconfirmed` error and how many sessions it reports ended.
fn unconfirmed<T>(r: Result<T, StoreError>) -> (String, usize) {
    match r {
        Err(StoreError::Unconfirmed { message, ended }) => (message, ended.len()),
        Err(e) => panic!("expected Unconfirmed, got {e:?}"),
        Ok(_) => panic!("expected Unconfirmed, got Ok: the change was confirmed without its replica"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_confirmed_only_once_a_replica_has_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mdir, rdir) = (dir.path().join("m"), dir.path().join("r"));
    std::fs::create_dir_all(&mdir).unwrap();
    std::fs::create_dir_all(&rdir).unwrap();
    let master = Server::start(free_port(), &mdir, &[]);
    let replica = Server::start(free_port(), &rdir, &["--replicaof", "127.0.0.1", &master.port.to_string()]);
    wait_for_link(replica.port);

    let prefix = random_prefix();
    let url = format!("redis://127.0.0.1:{}", master.port);
    // A generous wait where the replica is up (a busy machine must not fail the positive
    // checks), a short one where it is stopped.
    let patient = RedisOptions {
        key_prefix: prefix.clone(),
        timeout: Duration::from_secs(5),
        wait_replicas: 1,
        wait_timeout: Duration::from_secs(2),
        ..RedisOptions::default()
    };
    let options = RedisOptions { wait_timeout: Duration::from_millis(300), ..patient.clone() };
    let store = RedisStore::connect(&url, patient.clone()).await.expect("connect");
    let hasty = RedisStore::connect(&url, options.clone()).await.expect("connect");

    // The replica count the start-up warning is based on: one online replica meets
    // `wait_replicas = 1`, not 2.
    assert_eq!(store.replica_shortfalls().await.expect("INFO replication"), vec![]);
    let greedy =
        RedisStore::connect(&url, RedisOptions { wait_replicas: 2, ..patient.clone() }).await.expect("connect");
    assert_eq!(
        greedy.replica_shortfalls().await.expect("INFO replication"),
        vec![ReplicaShortfall { primary: "the primary".into(), online: 1, wanted: 2 }]
    );
    let now = SystemClock.now();

    // Replica up: a revocation succeeds and is on the replica when it returns.
    let (a, b, c) =
        (records::record("t", "alice", now), records::record("t", "alice", now), records::record("t", "bob", now));
    for r in [&a, &b, &c] {
        store.create(r.clone(), None, now).await.expect("create with the replica up");
    }
    assert!(store.delete(&a.id).await.expect("delete").is_some());
    assert_eq!(replica_keys(replica.port, &prefix), 2, "a confirmed revocation is on the replica");

    // Replica stopped: the primary still applies revocations, but none is confirmed.
    signal(replica.child.id(), "-STOP");
    let resume = Resume(replica.child.id());
    let (m, ended) = unconfirmed(hasty.delete(&b.id).await);
    assert!(m.contains("0 of 1 replicas"), "{m}");
    // The primary did apply it: the session is gone there (nothing comes back on a retry),
    // and the error names it, so that its revocation event is still written.
    assert_eq!(ended, 1, "the session the unconfirmed revocation ended is reported");
    assert!(hasty.find_by_id(&b.id).await.expect("find").is_none());
    // Retries find nothing to delete, on every pooled connection in turn, and still are not
    // confirmed: the earlier, unreplicated revocation is what they wait for.
    for _ in 0..6 {
        let (m, ended) = unconfirmed(hasty.delete(&b.id).await);
        assert!(m.contains("replicas") && ended == 0, "{m} ({ended} ended)");
    }
    let (m, ended) = unconfirmed(hasty.delete_subject("t", "bob", None).await);
    assert!(m.contains("replicas") && ended == 1, "bob's one session ended: {m} ({ended} ended)");
    let (m, ended) = unconfirmed(hasty.delete_tenant("t").await);
    assert!(m.contains("replicas") && ended == 0, "nothing left in t: {m} ({ended} ended)");
    assert!(unconfirmed(hasty.bump_epoch("t", "carol").await).0.contains("replicas"));

    // Through the engine: a tenant revocation fails (503 over HTTP) but writes the events of
    // the sessions it ended, marked unconfirmed (a retry would find nothing to report).
    let engine = Engine::builder(Arc::new(hasty.clone()), KeyRing::single(KeyId(1), SigningKey::generate())).build();
    for sub in ["erin", "frank"] {
        engine
            .create(CreateRequest { subject: sub.into(), tenant: "u".into(), ..Default::default() })
            .await
            .expect("a create does not wait");
    }
    let before = engine.events(0, 10_000).await.expect("events").len();
    match engine.revoke_tenant("u").await {
        Err(sessiond_core::Error::Store(StoreError::Unconfirmed { ended, .. })) => assert_eq!(ended.len(), 2),
        other => panic!("expected an unconfirmed tenant revocation, got {other:?}"),
    }
    let events = engine.events(0, 10_000).await.expect("events");
    let marked: Vec<_> = events[before..]
        .iter()
        .filter(|e| {
            e.kind == EventKind::Revoked(RevokeReason::Tenant) && e.detail.as_deref() == Some(event::UNCONFIRMED)
        })
        .map(|e| e.subject.as_str())
        .collect();
    assert_eq!(marked.len(), 2, "both sessions' events, marked: {:?}", &events[before..]);
    assert!(marked.contains(&"erin") && marked.contains(&"frank"), "{marked:?}");

    // A logout that is not confirmed, then its retries: the record is gone but the token's
    // pointer is kept, so each retry runs the revocation again and waits, rather than finding
    // nothing and answering "logged out" (204) before the first attempt is replicated.
    let gina = engine
        .create(CreateRequest { subject: "gina".into(), tenant: "u".into(), ..Default::default() })
        .await
        .expect("a create does not wait");
    match engine.logout(gina.token.expose()).await {
        Err(sessiond_core::Error::Store(StoreError::Unconfirmed { ended, .. })) => assert_eq!(ended.len(), 1),
        other => panic!("expected an unconfirmed logout, got {other:?}"),
    }
    for _ in 0..3 {
        match engine.logout(gina.token.expose()).await {
            Err(sessiond_core::Error::Store(StoreError::Unconfirmed { ended, .. })) => assert!(ended.is_empty()),
            other => panic!("ATTACK WINDOW: a retried logout was answered before it was replicated: {other:?}"),
        }
    }
    // Creates do not wait (losing one in a failover logs a user out; it revives nothing).
    let d = records::record("t", "dave", now);
    hasty.create(d.clone(), None, now).await.expect("a create does not wait");

    // Replica back: the retried revocation finds nothing and is confirmed once replicated.
    drop(resume);
    assert!(store.delete(&b.id).await.expect("retried delete is confirmed").is_none());
    assert!(store.delete_subject("t", "bob", None).await.expect("confirmed").is_empty(), "bob went while stopped");
    // The replica has caught up (the patient store's waits above were confirmed): the
    // retried logout is confirmed, and it drops the kept pointers, so the next one no longer
    // reaches the revocation script.
    assert_eq!(engine.logout(gina.token.expose()).await.expect("the retried logout is confirmed"), None);
    assert_eq!(engine.logout(gina.token.expose()).await.expect("idempotent"), None);
    assert_eq!(replica_keys(replica.port, &prefix), 1, "the replica caught up: only dave's session is left");

    // Without waiting (the default), the same revocation is confirmed with the replica
    // stopped: what the option is for.
    let plain = RedisStore::connect(&url, RedisOptions { wait_replicas: 0, ..options.clone() }).await.expect("connect");
    signal(replica.child.id(), "-STOP");
    let resume = Resume(replica.child.id());
    assert!(plain.delete(&d.id).await.expect("no wait: confirmed").is_some());
    drop(resume);

    // A wait that would block forever or outlast the operation timeout is refused.
    for wait in [Duration::ZERO, Duration::from_secs(5), Duration::from_secs(9)] {
        let bad = RedisOptions { wait_timeout: wait, ..options.clone() };
        assert!(RedisStore::connect(&url, bad).await.is_err(), "wait_timeout {wait:?} accepted");
    }
}

/// In a Redis Cluster each revocation waits for a replica of the master that owns its
/// subject's slot (the script, the marker and `WAIT` are pinned to that node): with one
/// replica stopped, exactly the subjects whose slots its master owns are refused, and every
/// other revocation is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_each_revocation_waits_for_its_own_masters_replica() {
    let cluster = Cluster::start(3, 1);
    let replicas = cluster.replicas();
    assert_eq!(replicas.len(), 3, "three masters with a replica each");
    let stopped = replicas[0];
    let info = cli(stopped.port, &["info", "replication"]);
    let master_port: u16 = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("master_port:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("the replica names its master");

    let prefix = random_prefix();
    let url = cluster.url();
    let options = RedisOptions {
        key_prefix: prefix.clone(),
        timeout: Duration::from_secs(5),
        wait_replicas: 1,
        wait_timeout: Duration::from_secs(2),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&url, options.clone()).await.expect("connect to the cluster");
    let now = SystemClock.now();
    let subjects: Vec<String> = (0..24).map(|i| format!("user{i}")).collect();
    for sub in &subjects {
        store.create(records::record("t", sub, now), None, now).await.expect("create");
    }
    // Every master has its one replica online; asking for two finds all three short.
    assert_eq!(store.replica_shortfalls().await.expect("INFO replication"), vec![]);
    let greedy =
        RedisStore::connect(&url, RedisOptions { wait_replicas: 2, ..options.clone() }).await.expect("connect");
    let short = greedy.replica_shortfalls().await.expect("INFO replication");
    assert_eq!(short.len(), 3, "{short:?}");
    assert!(short.iter().all(|r| r.online == 1 && r.wanted == 2 && r.primary.contains(':')), "{short:?}");
    // All replicas up: every revocation is confirmed, whichever master owns it.
    for sub in &subjects[..4] {
        assert_eq!(store.delete_subject("t", sub, None).await.expect("confirmed").len(), 1);
    }

    // Which of the remaining subjects live on the stopped replica's master.
    let on_master = |sub: &str| {
        let key = format!("{prefix}:{{t/{sub}}}:idx");
        let slot = cli(master_port, &["cluster", "keyslot", &key]).trim().to_owned();
        cli(master_port, &["cluster", "countkeysinslot", &slot]).trim().parse::<u64>().unwrap_or(0) > 0
    };
    let rest: Vec<(String, bool)> = subjects[4..].iter().map(|s| (s.clone(), on_master(s))).collect();
    assert!(rest.iter().any(|(_, m)| *m) && rest.iter().any(|(_, m)| !*m), "subjects on both sides: {rest:?}");

    // Connected before the replica stops: a seed node that does not answer would hold up
    // the connection (the URL lists every node, the stopped replica included).
    let hasty = RedisStore::connect(&url, RedisOptions { wait_timeout: Duration::from_millis(300), ..options })
        .await
        .expect("connect to the cluster");
    signal(stopped.child.id(), "-STOP");
    let resume = Resume(stopped.child.id());
    for (sub, behind_stopped_replica) in &rest {
        let r = hasty.delete_subject("t", sub, None).await;
        if *behind_stopped_replica {
            let (m, ended) = unconfirmed(r);
            assert!(m.contains("0 of 1 replicas") && ended == 1, "{sub}: {m} ({ended} ended)");
        } else {
            assert_eq!(r.expect("another master's replica is up: confirmed").len(), 1, "{sub}");
        }
    }
    drop(resume);
}
