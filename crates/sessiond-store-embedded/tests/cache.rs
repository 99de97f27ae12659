//! The resolve cache never serves a record after a change: every write path (update,
//! rotation, renew, delete, delete_subject, delete_tenant, limit eviction, sweep, import,
//! epoch bump) is checked with the record cached first (two lookups returning the same `Arc`
//! prove it is), and a concurrent test checks that once a revocation has returned, no resolve
//! started afterwards sees the session.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sessiond_conformance::test_policies;
use sessiond_core::binding::RequestContext;
use sessiond_core::policy::LimitAction;
use sessiond_core::record::{RetiredToken, SessionRecord};
use sessiond_core::store::{LimitRule, Lookup, SessionStore, UpdateOutcome};
use sessiond_core::time::{ManualClock, UnixMs};
use sessiond_core::token::{os_random, KeyId, KeyRing, SigningKey, TokenHash};
use sessiond_core::{ClientError, CreateRequest, Engine, Error};
use sessiond_store_embedded::{EmbeddedOptions, EmbeddedStore};

use common::{record, temp_store};

const T0: UnixMs = UnixMs(1_700_000_000_000);
const NO_CTX: RequestContext<'static> = RequestContext { ip: None, user_agent: None };

fn new_record(tenant: &str, subject: &str) -> SessionRecord {
    record(os_random::<16>(), os_random::<32>(), tenant, subject, T0)
}

/// Looks `h` up twice and checks that the second lookup was served from the cache (same
/// `Arc`); returns it.
async fn cached(s: &EmbeddedStore, h: &TokenHash) -> Lookup {
    let a = s.find_by_token(h).await.expect("find").expect("present");
    let b = s.find_by_token(h).await.expect("find").expect("present");
    assert!(Arc::ptr_eq(&a.record, &b.record), "the second lookup is a cache hit");
    b
}

async fn gone(s: &EmbeddedStore, h: &TokenHash) -> bool {
    s.find_by_token(h).await.expect("find").is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_path_invalidates_cached_records() {
    let guarded = temp_store();
    let s: &EmbeddedStore = guarded.store();

    // update (same token): the new version is served.
    let a = new_record("acme", "alice");
    s.create(a.clone(), None, T0).await.expect("create");
    assert_eq!(cached(s, &a.token_hash).await.record.version, 0);
    let mut a1 = a.clone();
    a1.version = 1;
    a1.aal = 2;
    assert!(matches!(s.update(a1.clone(), 0).await.expect("update"), UpdateOutcome::Updated));
    let l = cached(s, &a.token_hash).await;
    assert_eq!((l.record.version, l.record.aal), (1, 2), "update seen through the cache");

    // rotation: the old hash only resolves as a retired one, a dropped hash not at all.
    let mut a2 = a1.clone();
    a2.version = 2;
    a2.token_hash = TokenHash(os_random::<32>());
    a2.retired = vec![RetiredToken { hash: a.token_hash, grace_until: UnixMs(T0.0 + 1000), successor: None }];
    assert!(matches!(s.update(a2.clone(), 1).await.expect("rotate"), UpdateOutcome::Updated));
    assert_eq!(cached(s, &a.token_hash).await.record.token_hash, a2.token_hash);
    assert_eq!(cached(s, &a2.token_hash).await.record.version, 2);
    let mut a3 = a2.clone();
    a3.version = 3;
    a3.retired.clear();
    assert!(matches!(s.update(a3.clone(), 2).await.expect("drop retired"), UpdateOutcome::Updated));
    assert!(gone(s, &a.token_hash).await, "a hash no longer in the record does not resolve");

    // renew: the new idle deadline is served at once.
    let before = cached(s, &a3.token_hash).await.record.idle_expires_at;
    let later = UnixMs(before.0 + 60_000);
    s.renew(&a3, UnixMs(T0.0 + 5), later, Some("198.51.100.7")).await.expect("renew");
    let l = cached(s, &a3.token_hash).await;
    assert_eq!(l.record.idle_expires_at, later);
    assert_eq!(l.record.device.last_ip.as_deref(), Some("198.51.100.7"));

    // epoch bump: the cached lookup carries the new subject epoch (the record is revoked).
    assert_eq!(l.subject_epoch, 0);
    assert_eq!(s.bump_epoch("acme", "alice").await.expect("bump"), 1);
    let l = s.find_by_token(&a3.token_hash).await.expect("find").expect("present");
    assert_eq!(l.subject_epoch, 1, "epoch bump seen through the cache");
    assert!(l.record.epoch < l.subject_epoch);

    // delete.
    s.delete(&a3.id).await.expect("delete");
    assert!(gone(s, &a3.token_hash).await, "a deleted session never resolves from the cache");

    // delete_subject (with an exception) and delete_tenant.
    let b1 = new_record("acme", "bob");
    let b2 = new_record("acme", "bob");
    let c = new_record("other", "carol");
    for r in [&b1, &b2, &c] {
        s.create(r.clone(), None, T0).await.expect("create");
        cached(s, &r.token_hash).await;
    }
    s.delete_subject("acme", "bob", Some(&b2.id)).await.expect("delete subject");
    assert!(gone(s, &b1.token_hash).await);
    assert!(!gone(s, &b2.token_hash).await);
    s.delete_tenant("other").await.expect("delete tenant");
    assert!(gone(s, &c.token_hash).await);

    // limit eviction by a create.
    let rule = LimitRule { max: 1, action: LimitAction::EvictOldest };
    let d1 = new_record("acme", "dave");
    s.create(d1.clone(), Some(rule), T0).await.expect("create");
    cached(s, &d1.token_hash).await;
    let mut d2 = new_record("acme", "dave");
    d2.created_at = UnixMs(T0.0 + 1);
    s.create(d2.clone(), Some(rule), UnixMs(T0.0 + 1)).await.expect("create");
    assert!(gone(s, &d1.token_hash).await, "an evicted session never resolves from the cache");

    // sweep.
    let mut e = new_record("acme", "erin");
    e.idle_expires_at = UnixMs(T0.0 + 10);
    s.create(e.clone(), None, T0).await.expect("create");
    cached(s, &e.token_hash).await;
    let swept = s.sweep_expired(UnixMs(T0.0 + 20), 100).await.expect("sweep");
    assert!(swept.iter().any(|x| x.record.id == e.id));
    assert!(gone(s, &e.token_hash).await, "a swept session never resolves from the cache");

    // import replacing a stored session.
    let f = new_record("acme", "frank");
    s.create(f.clone(), None, T0).await.expect("create");
    cached(s, &f.token_hash).await;
    let mut f1 = f.clone();
    f1.version = 7;
    f1.aal = 3;
    let mut line = br#"{"type":"session","record":"#.to_vec();
    line.extend_from_slice(&f1.encode());
    line.extend_from_slice(b"}\n");
    assert_eq!(s.import_jsonl(&line[..]).await.expect("import"), 1);
    let l = cached(s, &f.token_hash).await;
    assert_eq!((l.record.version, l.record.aal), (7, 3), "import seen through the cache");

    // find_by_id agrees with find_by_token after all of this.
    let by_id = s.find_by_id(&f.id).await.expect("find").expect("present");
    assert_eq!(*by_id.record, *l.record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_refuses_revoked_sessions_that_were_cached() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("open"));
    let key = SigningKey::generate();
    let e = Engine::builder(store.clone(), KeyRing::single(KeyId(1), key))
        .with_policies(test_policies())
        .with_clock(Arc::new(ManualClock::new(T0)))
        .build();
    let req = |subject: &str| CreateRequest {
        subject: subject.into(),
        tenant: "acme".into(),
        policy: Some("test".into()),
        aal: 1,
        amr: vec!["pwd".into()],
        ..Default::default()
    };
    let revoked = |r: Result<_, Error>| matches!(r, Err(Error::Client(_)));

    let a = e.create(req("alice")).await.expect("create");
    let b = e.create(req("bob")).await.expect("create");
    let c = e.create(req("carol")).await.expect("create");
    for t in [&a.token, &b.token, &c.token] {
        for _ in 0..3 {
            e.resolve(t.expose(), &NO_CTX).await.expect("resolve");
        }
    }
    assert!(e.revoke(&a.session.id, sessiond_core::event::RevokeReason::Admin).await.expect("revoke"));
    assert!(revoked(e.resolve(a.token.expose(), &NO_CTX).await), "revoked session resolved");
    e.bump_epoch("acme", "bob").await.expect("bump");
    assert!(
        matches!(e.resolve(b.token.expose(), &NO_CTX).await, Err(Error::Client(ClientError::EpochRevoked))),
        "epoch-revoked session resolved"
    );
    e.revoke_subject("acme", "carol", None, sessiond_core::event::RevokeReason::Admin).await.expect("revoke subject");
    assert!(revoked(e.resolve(c.token.expose(), &NO_CTX).await), "subject-revoked session resolved");
}

/// Resolvers run flat out while sessions are deleted or epoch-revoked one by one; a resolve
/// that started after the revocation returned must never see the session as valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_resolve_after_a_revocation_returned() {
    let s = Arc::new(temp_store());
    const N: usize = 400;
    let mut recs = Vec::new();
    for i in 0..N {
        let r = new_record("acme", &format!("user-{i}"));
        s.create(r.clone(), None, T0).await.expect("create");
        recs.push(r);
    }
    let hashes: Arc<Vec<TokenHash>> = Arc::new(recs.iter().map(|r| r.token_hash).collect());
    let revoked: Arc<Vec<AtomicBool>> = Arc::new((0..N).map(|_| AtomicBool::new(false)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let (violations, lookups) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut resolvers = Vec::new();
    for w in 0..3 {
        let (s, hashes, revoked, done) = (s.clone(), hashes.clone(), revoked.clone(), done.clone());
        let (violations, lookups) = (violations.clone(), lookups.clone());
        resolvers.push(tokio::spawn(async move {
            let mut k = w * 7;
            while !done.load(Ordering::Acquire) {
                k = (k + 13) % N;
                let was_revoked = revoked[k].load(Ordering::Acquire);
                let found = s.find_by_token(&hashes[k]).await.expect("find");
                lookups.fetch_add(1, Ordering::Relaxed);
                let valid = found.is_some_and(|l| l.record.epoch >= l.subject_epoch);
                if was_revoked && valid {
                    violations.fetch_add(1, Ordering::Relaxed);
                }
                if k % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for (i, r) in recs.iter().enumerate() {
        if i % 2 == 0 {
            s.delete(&r.id).await.expect("delete");
        } else {
            s.bump_epoch("acme", &r.subject).await.expect("bump");
        }
        revoked[i].store(true, Ordering::Release);
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    done.store(true, Ordering::Release);
    for r in resolvers {
        r.await.expect("resolver");
    }
    assert!(lookups.load(Ordering::Relaxed) > N, "the resolvers ran");
    assert_eq!(violations.load(Ordering::Relaxed), 0, "a revoked session was served");
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("dir");
    let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default().with_resolve_cache(0)).expect("open");
    let r = new_record("acme", "alice");
    s.create(r.clone(), None, T0).await.expect("create");
    let a = s.find_by_token(&r.token_hash).await.expect("find").expect("present");
    let b = s.find_by_token(&r.token_hash).await.expect("find").expect("present");
    assert!(!Arc::ptr_eq(&a.record, &b.record), "no cache: a fresh record per lookup");
    assert_eq!(*a.record, *b.record);
}
