//! Attacks on the Redis layout that must fail: stale or forged pointers never resolve to a
//! session that does not list the hash, and no session data is left without a TTL.
#![allow(clippy::unwrap_used)]
mod support;

use std::sync::Arc;

use sessiond_core::record::RetiredToken;
use sessiond_core::store::{CreateOutcome, UpdateOutcome};
use sessiond_core::time::{Clock, SystemClock};
use sessiond_core::token::TokenHash;
use sessiond_core::SessionStore;
use support::{cli, fresh, test_options};

mod records {
    include!("support/records.rs");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes a pointer key by hand, as a failed best-effort cleanup (or an attacker with write
/// access to a pointer key only) would leave it.
fn plant_token_pointer(prefix: &str, hash: &TokenHash, tenant: &str, subject: &str, id: &[u8; 16]) {
    let key = format!("{prefix}:t:{}", hash.to_hex());
    let value = format!("{tenant}/{subject}/{}", hex(id));
    assert_eq!(cli(6379, &["set", &key, &value]).trim(), "OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pointers_to_a_deleted_session_do_not_resolve() {
    let (store, prefix) = fresh(test_options()).await;
    let _cleanup = support::PrefixGuard(prefix.clone());
    let now = SystemClock.now();
    let r = records::record("acme", "alice", now);
    assert!(matches!(store.create(r.clone(), None, now).await.unwrap(), CreateOutcome::Created { .. }));
    assert!(store.delete(&r.id).await.unwrap().is_some());
    // The delete removed the pointers; put them back as if that had failed.
    plant_token_pointer(&prefix, &r.token_hash, "acme", "alice", r.id.as_bytes());
    let idkey = format!("{prefix}:i:{}", hex(r.id.as_bytes()));
    cli(6379, &["set", &idkey, "acme/alice"]);
    assert!(store.find_by_token(&r.token_hash).await.unwrap().is_none(), "a revoked session resolved");
    assert!(store.find_by_id(&r.id).await.unwrap().is_none(), "a revoked session was found by id");
    // Nor can a late write bring it back through them.
    let mut late = r.clone();
    late.version += 1;
    assert!(matches!(store.update(late, r.version).await.unwrap(), UpdateOutcome::Missing));
    store.renew(&r, now, now.plus(std::time::Duration::from_secs(60)), Some("198.51.100.9")).await.unwrap();
    assert!(store.find_by_id(&r.id).await.unwrap().is_none(), "renew resurrected a deleted session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pointer_to_another_session_does_not_resolve() {
    let (store, prefix) = fresh(test_options()).await;
    let _cleanup = support::PrefixGuard(prefix.clone());
    let now = SystemClock.now();
    let victim = records::record("acme", "alice", now);
    let other = records::record("acme", "mallory", now);
    store.create(victim.clone(), None, now).await.unwrap();
    store.create(other.clone(), None, now).await.unwrap();
    // Point mallory's token hash at alice's session, and a never-issued hash too.
    plant_token_pointer(&prefix, &other.token_hash, "acme", "alice", victim.id.as_bytes());
    let forged = TokenHash([0x42; 32]);
    plant_token_pointer(&prefix, &forged, "acme", "alice", victim.id.as_bytes());
    assert!(store.find_by_token(&other.token_hash).await.unwrap().is_none());
    assert!(store.find_by_token(&forged).await.unwrap().is_none());
    // A pointer that names the right session under the wrong subject leads nowhere either.
    plant_token_pointer(&prefix, &victim.token_hash, "acme", "mallory", victim.id.as_bytes());
    assert!(store.find_by_token(&victim.token_hash).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_retired_hash_does_not_resolve_even_with_its_pointer() {
    let (store, prefix) = fresh(test_options()).await;
    let _cleanup = support::PrefixGuard(prefix.clone());
    let now = SystemClock.now();
    let r = records::record("acme", "alice", now);
    store.create(r.clone(), None, now).await.unwrap();
    // Rotate: the old hash becomes a retired one…
    let mut v1 = r.clone();
    v1.token_hash = TokenHash([7; 32]);
    v1.retired = vec![RetiredToken { hash: r.token_hash, grace_until: now, successor: None }];
    v1.version = 1;
    assert!(matches!(store.update(v1.clone(), 0).await.unwrap(), UpdateOutcome::Updated));
    assert_eq!(store.find_by_token(&r.token_hash).await.unwrap().unwrap().record.id, r.id);
    // …then forgotten.
    let mut v2 = v1.clone();
    v2.retired.clear();
    v2.version = 2;
    assert!(matches!(store.update(v2, 1).await.unwrap(), UpdateOutcome::Updated));
    assert!(store.find_by_token(&r.token_hash).await.unwrap().is_none());
    plant_token_pointer(&prefix, &r.token_hash, "acme", "alice", r.id.as_bytes());
    assert!(store.find_by_token(&r.token_hash).await.unwrap().is_none(), "a forgotten token resolved");
    assert!(store.find_by_token(&TokenHash([7; 32])).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_key_has_a_ttl() {
    let (store, prefix) = fresh(test_options()).await;
    let _cleanup = support::PrefixGuard(prefix.clone());
    let store: Arc<dyn SessionStore> = Arc::new(store);
    let now = SystemClock.now();
    for subject in ["alice", "bob"] {
        let r = records::record("acme", subject, now);
        store.create(r, None, now).await.unwrap();
    }
    store.bump_epoch("acme", "bob").await.unwrap();
    let keys: Vec<String> =
        cli(6379, &["--scan", "--pattern", &format!("{prefix}:*")]).lines().map(str::to_owned).collect();
    assert!(keys.len() >= 10, "{keys:?}");
    for k in &keys {
        let ttl: i64 = cli(6379, &["pttl", k]).trim().parse().unwrap();
        if k.ends_with(":epoch") {
            // Deliberately persistent: an epoch that expired would revive revoked sessions.
            assert_eq!(ttl, -1, "{k}");
        } else {
            assert!(ttl > 0, "{k} has no TTL ({ttl})");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_stores_are_told_about_changes() {
    let (a, prefix) = fresh(test_options()).await;
    let _cleanup = support::PrefixGuard(prefix.clone());
    let b = support::another(&prefix).await;
    let mut rx = b.invalidations();
    let now = SystemClock.now();
    let r = records::record("acme", "alice", now);
    a.create(r.clone(), None, now).await.unwrap();
    // The subscription is set up in the background: retry the epoch bump until seen.
    let mut seen_subject = false;
    for _ in 0..50 {
        a.bump_epoch("acme", "alice").await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_millis(200), async {
            loop {
                match rx.recv().await {
                    Ok(sessiond_store_redis::Invalidation::Subject { tenant, subject }) => {
                        return tenant == "acme" && subject == "alice"
                    }
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            }
        })
        .await;
        if got == Ok(true) {
            seen_subject = true;
            break;
        }
    }
    assert!(seen_subject, "no subject invalidation");
    // Every change is announced by the script that made it.
    let next_session = |rx: &mut tokio::sync::broadcast::Receiver<sessiond_store_redis::Invalidation>| {
        let mut rx = rx.resubscribe();
        async move {
            tokio::time::timeout(std::time::Duration::from_secs(5), async {
                loop {
                    if let Ok(sessiond_store_redis::Invalidation::Session { id, .. }) = rx.recv().await {
                        return id;
                    }
                }
            })
            .await
            .expect("a session invalidation")
        }
    };
    let mut updated = r.clone();
    updated.version += 1;
    let seen = next_session(&mut rx);
    a.update(updated, r.version).await.unwrap();
    assert_eq!(seen.await, r.id, "update not announced");
    let seen = next_session(&mut rx);
    a.delete(&r.id).await.unwrap();
    assert_eq!(seen.await, r.id, "delete not announced");
    // A whole subject: each of its sessions.
    let s1 = records::record("acme", "bob", now);
    let s2 = records::record("acme", "bob", now);
    a.create(s1.clone(), None, now).await.unwrap();
    a.create(s2.clone(), None, now).await.unwrap();
    let mut sub = rx.resubscribe();
    a.delete_subject("acme", "bob", None).await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < 2 {
        match tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv()).await {
            Ok(Ok(sessiond_store_redis::Invalidation::Session { id, .. })) => ids.push(id),
            Ok(_) => continue,
            Err(_) => panic!("delete_subject announced {} of 2 sessions", ids.len()),
        }
    }
    ids.sort();
    let mut want = vec![s1.id, s2.id];
    want.sort();
    assert_eq!(ids, want);
}

/// A renewal from the engine's copy leaves the sweep hint at the earlier deadline (one round
/// trip fewer). The sweeper must then carry the hint — and the hint shard's TTL — to the real
/// deadline, or a session renewed past its shard's lifetime would lose its hint and never be
/// reported as expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_left_behind_by_a_renewal_is_moved_with_its_shard_ttl() {
    let (store, prefix) = fresh(test_options()).await;
    let _cleanup = support::PrefixGuard(prefix.clone());
    let now = SystemClock.now();
    let r = records::record("acme", "alice", now);
    store.create(r.clone(), None, now).await.unwrap();
    let shard_ttl = || -> i64 {
        let keys = cli(6379, &["--scan", "--pattern", &format!("{prefix}:exp:*")]);
        keys.lines().map(|k| cli(6379, &["pexpiretime", k]).trim().parse::<i64>().unwrap()).max().unwrap()
    };
    let grace = i64::try_from(test_options().expiry_grace.as_millis()).unwrap();
    let first = i64::try_from(r.deadline().0).unwrap();
    assert!(shard_ttl() <= first + grace, "the shard outlives its first deadline already");

    // Renewed to five hours from now: far past the shard's current lifetime.
    let seen = now.plus(std::time::Duration::from_secs(4 * 3600));
    let later = now.plus(std::time::Duration::from_secs(5 * 3600));
    store.renew(&r, seen, later, Some("198.51.100.7")).await.unwrap();
    assert!(shard_ttl() <= first + grace, "the renewal is expected to leave the hint alone");

    // The sweeper passes the old deadline: nothing is due, the hint and the shard move on.
    let swept = store.sweep_expired(r.deadline().plus(std::time::Duration::from_millis(1)), 100).await.unwrap();
    assert!(swept.is_empty());
    let last = i64::try_from(later.0).unwrap();
    assert!(shard_ttl() >= last + grace, "the sweeper moved the hint but the shard would expire before it");
    let swept = store.sweep_expired(later.plus(std::time::Duration::from_millis(1)), 100).await.unwrap();
    assert_eq!(swept.len(), 1, "the renewed session was not swept at its real deadline");
}

/// Revoking a tenant reaches every subject that had a session when the call started, even
/// while subjects it has already visited log in again. Their new logins raise their score in
/// the tenant set (ordered by latest deadline) and move them to its end; a revocation that
/// paged that set by position would then skip a subject it never visited, whose sessions
/// would stay valid although the call returned `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_revocation_reaches_every_subject_while_others_log_in_again() {
    let (store, prefix) = fresh(test_options()).await;
    let _cleanup = support::PrefixGuard(prefix.clone());
    let store = Arc::new(store);
    let now = SystemClock.now();
    // More subjects than one page (256), in deadline order s000 < s001 < …
    let mut originals = Vec::new();
    for i in 0..700u64 {
        let mut r = records::record("big", &format!("s{i:03}"), now);
        r.absolute_expires_at = now.plus(std::time::Duration::from_secs(3600) + std::time::Duration::from_millis(i));
        store.create(r.clone(), None, now).await.unwrap();
        originals.push(r);
    }
    // Subjects log in again, earliest first, with later deadlines than anyone: each moves
    // from the front of the set to its end while the revocation runs.
    let relogin = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..400u64 {
                let mut r = records::record("big", &format!("s{i:03}"), now);
                r.absolute_expires_at =
                    now.plus(std::time::Duration::from_secs(7200) + std::time::Duration::from_millis(i));
                store.create(r, None, now).await.unwrap();
            }
        })
    };
    store.delete_tenant("big").await.unwrap();
    relogin.await.unwrap();
    let mut survivors = Vec::new();
    for r in &originals {
        if store.find_by_id(&r.id).await.unwrap().is_some()
            || store.find_by_token(&r.token_hash).await.unwrap().is_some()
        {
            survivors.push(r.subject.clone());
        }
    }
    assert!(survivors.is_empty(), "sessions that existed before the tenant was revoked survived: {survivors:?}");
}

/// A burst on the invalidation channel larger than the subscriber's queue (a tenant
/// revocation announces every session it removed) must not silence the node: changes made
/// after the burst still reach it, and it trusts its channel again. A listener that stopped at
/// the first overrun would never hear another invalidation, so a revocation made elsewhere
/// would keep being accepted from its near-cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invalidation_listener_survives_a_burst_larger_than_its_queue() {
    let (a, prefix) = fresh(test_options()).await;
    let _cleanup = support::PrefixGuard(prefix.clone());
    let b = support::another(&prefix).await;
    let mut rx = b.invalidations();
    for _ in 0..100 {
        if b.listening() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(b.listening(), "the subscription never started");
    // 50,000 messages published inside one script: they reach the subscriber back to back.
    let burst = "for i = 1, 50000 do redis.call('PUBLISH', KEYS[1], '{\"kind\":\"noise\"}') end";
    cli(6379, &["eval", burst, "1", &format!("{prefix}:inv")]);
    let now = SystemClock.now();
    let r = records::record("acme", "alice", now);
    a.create(r.clone(), None, now).await.unwrap();
    assert!(a.delete(&r.id).await.unwrap().is_some());
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Ok(sessiond_store_redis::Invalidation::Session { id, .. }) if id == r.id => return true,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await;
    assert_eq!(heard, Ok(true), "the deletion after the burst was never announced to the other store");
    assert!(b.listening(), "the channel is not trusted again after the burst");
}

/// A node remembers the token pointers it followed (one round trip per lookup instead of
/// two); what another node changes meanwhile must still decide every answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_pointers_never_outlive_what_another_node_changed() {
    let (a, prefix) = fresh(test_options()).await;
    let _cleanup = support::PrefixGuard(prefix.clone());
    let b = support::another(&prefix).await;
    let now = SystemClock.now();

    // Revoked on B: A, which followed the pointer before, finds nothing.
    let r = records::record("acme", "alice", now);
    a.create(r.clone(), None, now).await.unwrap();
    assert!(a.find_by_token(&r.token_hash).await.unwrap().is_some());
    assert!(b.delete(&r.id).await.unwrap().is_some());
    assert!(a.find_by_token(&r.token_hash).await.unwrap().is_none(), "a revoked session resolved on A");
    // Even with the pointer put back by hand (a failed cleanup).
    plant_token_pointer(&prefix, &r.token_hash, "acme", "alice", r.id.as_bytes());
    assert!(a.find_by_token(&r.token_hash).await.unwrap().is_none(), "a revoked session resolved on A");

    // An epoch bump on B: A reads the new epoch (the record and epoch are never remembered).
    let s = records::record("acme", "bob", now);
    a.create(s.clone(), None, now).await.unwrap();
    let before = a.find_by_token(&s.token_hash).await.unwrap().unwrap().subject_epoch;
    let after = b.bump_epoch("acme", "bob").await.unwrap();
    assert!(after > before);
    assert_eq!(a.find_by_token(&s.token_hash).await.unwrap().unwrap().subject_epoch, after);

    // Rotated on B with no grace: the old token is dead on A, the new one resolves.
    let t = records::record("acme", "carol", now);
    a.create(t.clone(), None, now).await.unwrap();
    assert!(a.find_by_token(&t.token_hash).await.unwrap().is_some());
    let mut rotated = t.clone();
    rotated.token_hash = TokenHash([9; 32]);
    rotated.version = 1;
    assert!(matches!(b.update(rotated, 0).await.unwrap(), UpdateOutcome::Updated));
    assert!(a.find_by_token(&t.token_hash).await.unwrap().is_none(), "a rotated-away token resolved on A");
    assert_eq!(a.find_by_token(&TokenHash([9; 32])).await.unwrap().unwrap().record.id, t.id);
}

/// The saving itself, counted by a private Redis: a lookup whose pointer the node already
/// followed costs one `GET` fewer (the `load` script's own `GET` of the epoch remains).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_pointer_saves_the_get_on_later_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::Server::start(support::free_port(), dir.path(), &[]);
    let store = sessiond_store_redis::RedisStore::connect(
        &format!("redis://127.0.0.1:{}", server.port),
        sessiond_store_redis::RedisOptions { key_prefix: "memo".into(), ..test_options() },
    )
    .await
    .unwrap();
    let now = SystemClock.now();
    let r = records::record("acme", "alice", now);
    store.create(r.clone(), None, now).await.unwrap();
    let gets = || {
        cli(server.port, &["info", "commandstats"])
            .lines()
            .find_map(|l| l.trim().strip_prefix("cmdstat_get:calls=")?.split(',').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let g0 = gets();
    assert!(store.find_by_token(&r.token_hash).await.unwrap().is_some());
    let first = gets() - g0;
    let g1 = gets();
    for _ in 0..20 {
        assert!(store.find_by_token(&r.token_hash).await.unwrap().is_some());
    }
    let later = gets() - g1;
    assert_eq!(first, 2, "the first lookup: the pointer and the epoch");
    assert_eq!(later, 20, "later lookups: the epoch only");
}
