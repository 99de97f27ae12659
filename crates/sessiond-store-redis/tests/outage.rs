//! Failure behaviour: an unreachable Redis is `StoreError::Unavailable` within the timeout
//! for every operation, never a panic, a hang or "not found"; a restarted Redis is picked up
//! again, and near-caches are told to resync.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests measure wall time
mod support;

use std::time::{Duration, Instant};

use sessiond_conformance::relay::Relay;
use sessiond_core::event::{Event, EventKind};
use sessiond_core::id::SessionId;
use sessiond_core::time::{Clock, SystemClock, UnixMs};
use sessiond_core::token::TokenHash;
use sessiond_core::{SessionStore, StoreError};
use sessiond_store_redis::{Invalidation, RedisOptions, RedisStore};
use support::{free_port, random_prefix, Server};

mod records {
    include!("support/records.rs");
}

async fn every_operation_is_unavailable(store: &RedisStore, within: Duration) {
    let r = records::record("t", "s", UnixMs(1_000));
    let id = SessionId::from_bytes([1; 16]);
    let now = UnixMs(1_000);
    macro_rules! check {
        ($name:literal, $e:expr) => {{
            let t = Instant::now();
            let res = $e.await;
            assert!(matches!(res, Err(StoreError::Unavailable { .. })), "{}: {:?}", $name, res.map(|_| ()));
            assert!(t.elapsed() <= within, "{} took {:?}", $name, t.elapsed());
        }};
    }
    check!("create", store.create(r.clone(), None, now));
    check!("find_by_token", store.find_by_token(&TokenHash([2; 32])));
    check!("find_by_id", store.find_by_id(&id));
    check!("update", store.update(r.clone(), 0));
    let later = UnixMs(r.last_seen_at.0 + 60_000);
    check!("renew", store.renew(&r, later, UnixMs(r.idle_expires_at.0 + 60_000), None));
    check!("delete", store.delete(&id));
    check!("delete_subject", store.delete_subject("t", "s", None));
    check!("delete_tenant", store.delete_tenant("t"));
    check!("list_subject", store.list_subject("t", "s", None, 10, now));
    check!("subject_epoch", store.subject_epoch("t", "s"));
    check!("bump_epoch", store.bump_epoch("t", "s"));
    check!("sweep_expired", store.sweep_expired(now, 10));
    // Events are queued (decision D28) and appended once Redis answers: queuing succeeds, and a
    // read on this node, which waits for them first, is refused within the timeout.
    store.append_events(vec![Event::new(now, EventKind::Created, Some(id), "s", "t")]).await.expect("queued");
    check!("read_events", store.read_events(0, 10));
    check!("ping", store.ping());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_is_unavailable_within_the_timeout() {
    let port = free_port(); // nothing listens there
    let url = format!("redis://127.0.0.1:{port}");
    let timeout = Duration::from_millis(300);
    let opts = RedisOptions { key_prefix: random_prefix(), timeout, lazy_connect: true, ..Default::default() };
    let store = RedisStore::connect(&url, opts.clone()).await.expect("lazy connect never fails on reachability");
    every_operation_is_unavailable(&store, timeout + Duration::from_millis(500)).await;

    // Without lazy_connect, start-up fails fast and says why.
    let t = Instant::now();
    let eager = RedisOptions { lazy_connect: false, connect_timeout: Duration::from_millis(500), ..opts };
    let err = RedisStore::connect(&url, eager).await.expect_err("nothing to connect to");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "connect took {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_redis_is_unavailable_then_recovers_and_resyncs_caches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = Server::start(port, dir.path(), &[]);
    let url = format!("redis://127.0.0.1:{port}");
    let timeout = Duration::from_millis(400);
    let store = RedisStore::connect(&url, RedisOptions { key_prefix: random_prefix(), timeout, ..Default::default() })
        .await
        .expect("connect");
    let mut inv = store.invalidations();
    // Subscribed: either the Resync is already out (listening) or it is on its way.
    for _ in 0..100 {
        if store.listening() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.listening(), "the invalidation channel never came up");
    // The first Resync is out (sent under the same lock that set `listening`): drain it.
    while inv.try_recv().is_ok() {}
    let now = SystemClock.now();
    let r = records::record("t", "alice", now);
    store.create(r.clone(), None, now).await.expect("create");
    assert!(store.find_by_token(&r.token_hash).await.expect("find").is_some());

    drop(server); // kill -9
                  // Loss detection: the channel says it is lost, and stays lost while Redis is down.
    let lost = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match inv.recv().await {
                Ok(Invalidation::Lost) => return true,
                Ok(Invalidation::Resync) => return false,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(lost.ok(), Some(true), "no Lost when the channel's server died");
    assert!(!store.listening());
    tokio::time::sleep(Duration::from_millis(200)).await;
    every_operation_is_unavailable(&store, timeout + Duration::from_millis(500)).await;

    // Same port again (data is gone: no persistence in this test server).
    let _server = Server::start(port, dir.path(), &[]);
    let mut ok = false;
    for _ in 0..100 {
        if store.ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the store did not reconnect by itself");
    // Unknown after the restart (nothing persisted), and an answer, not an error.
    assert!(store.find_by_token(&r.token_hash).await.expect("find").is_none());
    // Near-caches were told to drop everything.
    let resync = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match inv.recv().await {
                Ok(Invalidation::Resync) => return true,
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(resync.ok(), Some(true), "no Resync after the reconnect");
    assert!(store.listening());
}

async fn until_listening(store: &RedisStore, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if store.listening() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn next_link_change(
    inv: &mut tokio::sync::broadcast::Receiver<Invalidation>,
    within: Duration,
) -> Option<Invalidation> {
    tokio::time::timeout(within, async {
        loop {
            match inv.recv().await {
                Ok(i @ (Invalidation::Lost | Invalidation::Resync)) => return Some(i),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// A subscriber connection that goes silent without any socket error is caught by the
/// heartbeat: the channel is declared lost (near-caches stop answering) within a few periods,
/// and trusted again only after the subscriber reconnected and resubscribed. Without the
/// heartbeat (the control) the same silence goes unnoticed, which is why it exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_subscription_is_detected_by_the_heartbeat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = Server::start(port, dir.path(), &[]);
    let relay = Relay::start(format!("127.0.0.1:{port}")).await;
    let url = format!("redis://127.0.0.1:{}", relay.port());
    let beat = Duration::from_millis(200);
    let opts = RedisOptions {
        key_prefix: random_prefix(),
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(500),
        heartbeat: beat,
        ..Default::default()
    };
    let store = RedisStore::connect(&url, opts.clone()).await.expect("connect through the relay");
    let mut inv = store.invalidations();
    assert!(until_listening(&store, Duration::from_secs(5)).await, "the channel never came up");
    while inv.try_recv().is_ok() {}
    // Healthy: heartbeats keep coming back, the channel stays trusted well past the deadline.
    tokio::time::sleep(beat * 6).await;
    assert!(store.listening(), "a healthy channel was declared lost");

    relay.set_open(false);
    let t = Instant::now();
    assert_eq!(
        next_link_change(&mut inv, Duration::from_secs(5)).await,
        Some(Invalidation::Lost),
        "silence not detected"
    );
    assert!(!store.listening());
    // Three periods plus at most one tick of lateness, with room for a loaded machine.
    assert!(t.elapsed() < Duration::from_secs(3), "detection took {:?}", t.elapsed());
    // Still silent: not trusted again.
    tokio::time::sleep(beat * 3).await;
    assert!(!store.listening(), "trusted again while the relay is still a black hole");

    relay.set_open(true);
    let mut resynced = false;
    for _ in 0..10 {
        match next_link_change(&mut inv, Duration::from_secs(3)).await {
            Some(Invalidation::Resync) => {
                resynced = true;
                break;
            }
            _ => continue,
        }
    }
    assert!(resynced, "no Resync after the relay healed");
    assert!(until_listening(&store, Duration::from_secs(5)).await);

    // Control: the same silence with the heartbeat off is never noticed.
    let quiet = RedisStore::connect(&url, RedisOptions { heartbeat: Duration::ZERO, ..opts })
        .await
        .expect("connect through the relay");
    assert!(until_listening(&quiet, Duration::from_secs(5)).await, "the control channel never came up");
    relay.set_open(false);
    tokio::time::sleep(beat * 10).await;
    assert!(quiet.listening(), "without a heartbeat, silence should go unnoticed (else this test proves nothing)");
    relay.set_open(true);
}
