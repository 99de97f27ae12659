//! The conformance cases. Each takes a fresh, isolated store and panics on a violation.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sessiond_core::binding::RequestContext;
use sessiond_core::event::{EventKind, RevokeReason};
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::{ClientError, Engine, Error, SessionStore};

use crate::{test_policies, CountingStore, Harness, ABSOLUTE, GRACE, IDLE, ROTATE_EVERY};

const NO_CTX: RequestContext<'static> = RequestContext { ip: None, user_agent: None };

fn client_err<T: std::fmt::Debug>(r: Result<T, Error>) -> ClientError {
    match r {
        Err(Error::Client(c)) => c,
        other => panic!("expected a client error, got {other:?}"),
    }
}

async fn kinds(h: &Harness) -> Vec<String> {
    h.engine.events(0, 10_000).await.expect("events").iter().map(|e| e.kind.name()).collect()
}

/// Create, then resolve, get and CSRF: every field survives the store.
pub async fn create_resolve_round_trip(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let mut req = h.request("alice", "test");
    req.aal = 2;
    req.amr = vec!["pwd".into(), "otp".into()];
    req.device.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0".into());
    req.device.first_ip = Some("192.0.2.10".into());
    req.data.insert("cart".into(), serde_json::json!({"items": [1, 2, 3]}));
    let c = h.engine.create(req).await.expect("create");
    assert!(c.token.expose().starts_with("sds_"));
    assert!(!c.token.expose().contains(&c.session.id.to_string()), "the public id is not part of the token");
    assert!(h.engine.keys().verify_csrf(&c.session.id, &c.csrf_token));

    let r = h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("resolve");
    let s = &r.session;
    assert_eq!(s.id, c.session.id);
    assert_eq!((s.subject.as_str(), s.tenant.as_str(), s.policy.as_str()), ("alice", h.tenant.as_str(), "test"));
    assert_eq!((s.aal, s.amr.clone()), (2, vec!["pwd".to_string(), "otp".to_string()]));
    assert_eq!(s.device.first_ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(s.data["cart"], serde_json::json!({"items": [1, 2, 3]}));
    assert_eq!(s.absolute_expires_at, h.engine.now().plus(ABSOLUTE));
    assert_eq!(s.idle_expires_at, h.engine.now().plus(IDLE));
    assert_eq!(r.expires_in(), IDLE);
    assert!(r.rotated.is_none());
    let by_id = h.engine.get(&c.session.id).await.expect("get").expect("live");
    assert_eq!(by_id.token_hash, *c.token.hash());
    assert_eq!(kinds(&h).await, vec!["created"]);
}

/// Forged, tampered, truncated and random tokens are refused with no store access.
pub async fn forged_tokens_never_reach_the_store(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    let good = c.token.expose().to_owned();
    let other_ring = KeyRing::single(KeyId(1), SigningKey::generate());
    let foreign = other_ring.mint();
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let mut flipped_secret = good.clone().into_bytes();
    flipped_secret[20] = if flipped_secret[20] == b'x' { b'y' } else { b'x' };
    let long = "a".repeat(10_000);
    let before = CountingStore::get(&h.store.finds);
    let bad: Vec<String> = vec![
        String::new(),
        "sds_".into(),
        "garbage".into(),
        long,
        good[..good.len() - 1].to_owned(),
        format!("{good}A"),
        String::from_utf8(tampered).expect("ascii"),
        String::from_utf8(flipped_secret).expect("ascii"),
        foreign.expose().to_owned(),
        good.replace("sds_", "sdx_"),
        "sds_\u{0}\u{1}\u{2}".into(),
        format!("sds_{}", "é".repeat(40)),
    ];
    for b in &bad {
        let e = client_err(h.engine.resolve(b, &NO_CTX).await);
        assert!(matches!(e, ClientError::Malformed(_)), "{e:?}");
    }
    assert_eq!(CountingStore::get(&h.store.finds), before, "a forged token caused a store lookup");
    h.engine.resolve(&good, &NO_CTX).await.expect("the real token still works");
}

/// A well-signed token the store never saw is an unknown session.
pub async fn unknown_token_is_unknown_session(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let t = h.engine.keys().mint();
    assert_eq!(client_err(h.engine.resolve(t.expose(), &NO_CTX).await), ClientError::UnknownSession);
}

/// Just before the idle deadline: fine, and renewed; just after: refused.
pub async fn idle_timeout_ends_session(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    let t = c.token.expose();
    h.advance(IDLE - Duration::from_millis(1));
    let r = h.engine.resolve(t, &NO_CTX).await.expect("T-ε resolves");
    assert!(r.renewed);
    assert_eq!(r.expires_in(), IDLE);
    h.advance(IDLE - Duration::from_millis(1));
    h.engine.resolve(t, &NO_CTX).await.expect("renewed session resolves");
    h.advance(IDLE);
    assert_eq!(client_err(h.engine.resolve(t, &NO_CTX).await), ClientError::IdleExpired);
    assert!(h.engine.get(&c.session.id).await.expect("get").is_none());
}

/// An active session still ends at its absolute deadline.
pub async fn absolute_timeout_ends_active_session(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    let t = c.token.expose();
    let step = IDLE / 2;
    let mut elapsed = Duration::ZERO;
    while elapsed + step < ABSOLUTE {
        h.advance(step);
        elapsed += step;
        let r = h.engine.resolve(t, &NO_CTX).await.expect("active session resolves");
        assert!(r.idle_expires_at <= r.session.absolute_expires_at, "idle deadline past the absolute one");
    }
    h.advance(ABSOLUTE - elapsed);
    assert_eq!(client_err(h.engine.resolve(t, &NO_CTX).await), ClientError::AbsoluteExpired);
}

/// Reads inside the session's renewal threshold (half to all of the renewal fraction of the
/// idle window) write nothing; the first read after it writes once.
pub async fn renewal_is_throttled(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    let policy = test_policies().get("test").cloned().expect("the test policy");
    let threshold = Engine::renewal_threshold(&c.session.id, &policy);
    let fraction = IDLE.mul_f64(policy.renewal_fraction);
    assert!(threshold >= fraction / 2 && threshold <= fraction, "threshold {threshold:?} outside [f/2, f]");
    let writes = CountingStore::get(&h.store.writes);
    let step = Duration::from_millis(100);
    let mut elapsed = Duration::ZERO;
    while elapsed + step < threshold {
        h.advance(step);
        elapsed += step;
        assert!(!h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("resolve").renewed);
    }
    assert_eq!(CountingStore::get(&h.store.writes), writes, "read-only resolves wrote to the store");
    h.advance(threshold - elapsed + Duration::from_millis(1)); // the clock counts whole ms
    let r = h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("resolve");
    assert!(r.renewed);
    assert_eq!(CountingStore::get(&h.store.renews), 1);
    let stored = h.engine.get(&c.session.id).await.expect("get").expect("live");
    assert_eq!(stored.idle_expires_at, r.idle_expires_at, "the renewal reached the store");
    assert_eq!(stored.last_seen_at, h.engine.now());
}

/// Within the grace window the old token yields the same successor; after it, the replay
/// revokes the session and raises theft_detected.
pub async fn rotation_grace_returns_same_successor_then_detects_theft(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    let old = c.token.expose().to_owned();
    let (s, new) = h.engine.rotate(&old).await.expect("rotate");
    assert_eq!(s.id, c.session.id);
    assert_ne!(new.expose(), old);
    h.advance(GRACE - Duration::from_millis(1));
    for _ in 0..3 {
        let r = h.engine.resolve(&old, &NO_CTX).await.expect("old token inside grace");
        assert_eq!(r.rotated.as_ref().map(|t| t.expose().to_owned()).as_deref(), Some(new.expose()));
        let (_, again) = h.engine.rotate(&old).await.expect("rotate with the old token again");
        assert_eq!(again.expose(), new.expose(), "a retried rotation must return the same successor");
    }
    h.engine.resolve(new.expose(), &NO_CTX).await.expect("successor works");
    h.advance(Duration::from_millis(2));
    assert_eq!(client_err(h.engine.resolve(&old, &NO_CTX).await), ClientError::TokenReplayed);
    assert_eq!(
        client_err(h.engine.resolve(new.expose(), &NO_CTX).await),
        ClientError::UnknownSession,
        "theft revokes the whole session"
    );
    let k = kinds(&h).await;
    assert!(k.contains(&"theft_detected".to_string()) && k.contains(&"revoked.theft".to_string()), "{k:?}");
}

/// Three parallel resolves that all find rotation due get one and the same successor.
pub async fn parallel_resolves_during_rotation_share_one_successor(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "rotating")).await.expect("create");
    let old = c.token.expose().to_owned();
    h.advance(ROTATE_EVERY);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let e = h.engine.clone();
        let t = old.clone();
        tasks.push(tokio::spawn(async move { e.resolve(&t, &RequestContext::default()).await }));
    }
    let mut successors = HashSet::new();
    for t in tasks {
        let r = t.await.expect("join").expect("every parallel resolve succeeds");
        successors.insert(r.rotated.expect("rotation was due").expose().to_owned());
    }
    assert_eq!(successors.len(), 1, "parallel resolves saw different successors");
    let succ = successors.into_iter().next().expect("one");
    let r = h.engine.resolve(&succ, &NO_CTX).await.expect("successor resolves");
    assert!(r.rotated.is_none());
    let rotations = kinds(&h).await.iter().filter(|k| *k == "rotated").count();
    assert_eq!(rotations, 1);
}

/// A resolve after the rotation interval rotates; the new token carries on.
pub async fn interval_rotation_on_resolve(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "rotating")).await.expect("create");
    h.advance(ROTATE_EVERY - Duration::from_secs(1));
    assert!(h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("resolve").rotated.is_none());
    h.advance(Duration::from_secs(1));
    let r = h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("resolve");
    let next = r.rotated.expect("rotated");
    h.advance(GRACE);
    assert_eq!(client_err(h.engine.resolve(c.token.expose(), &NO_CTX).await), ClientError::TokenReplayed);
    let _ = next;
}

/// Elevation records auth_time, AAL and AMR, rotates, and satisfies step-up requirements.
pub async fn elevate_updates_assurance_and_rotates(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    let req = sessiond_core::Requirement { min_aal: 2, max_auth_age: Some(Duration::from_secs(30)) };
    let r = h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("resolve");
    assert!(matches!(r.require(&req), Err(Error::Client(ClientError::StepUpRequired(_)))));
    h.advance(Duration::from_secs(40));
    let (s, t) =
        h.engine.elevate(c.token.expose(), 2, vec!["pwd".into(), "hwk".into()], &NO_CTX).await.expect("elevate");
    assert_eq!((s.aal, s.auth_time), (2, h.engine.now()));
    assert_ne!(t.expose(), c.token.expose());
    let r = h.engine.resolve(t.expose(), &NO_CTX).await.expect("resolve");
    r.require(&req).expect("fresh AAL2 satisfies");
    h.advance(Duration::from_secs(31));
    let r = h.engine.resolve(t.expose(), &NO_CTX).await.expect("resolve");
    assert!(r.require(&req).is_err(), "auth older than max_auth_age");
    assert!(h.engine.elevate(t.expose(), 4, vec![], &NO_CTX).await.is_err());
    assert!(kinds(&h).await.contains(&"elevated".to_string()));
}

async fn fill(h: &Harness, policy: &str, n: usize) -> Vec<sessiond_core::Created> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(h.engine.create(h.request("bob", policy)).await.expect("create"));
        h.advance(Duration::from_millis(10));
    }
    out
}

/// deny_new refuses the sixth session and keeps the five.
pub async fn limit_deny_new(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let five = fill(&h, "limit-deny", 5).await;
    assert_eq!(client_err(h.engine.create(h.request("bob", "limit-deny")).await), ClientError::LimitReached);
    for c in &five {
        h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("existing sessions untouched");
    }
    // Expired sessions do not count.
    h.advance(IDLE);
    h.engine.create(h.request("bob", "limit-deny")).await.expect("room after expiry");
}

/// evict_oldest ends the earliest-created session.
pub async fn limit_evict_oldest(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let five = fill(&h, "limit-oldest", 5).await;
    let sixth = h.engine.create(h.request("bob", "limit-oldest")).await.expect("create");
    assert_eq!(sixth.evicted, vec![five[0].session.id]);
    assert_eq!(client_err(h.engine.resolve(five[0].token.expose(), &NO_CTX).await), ClientError::UnknownSession);
    let page = h.engine.list(&h.tenant, "bob", None, 100).await.expect("list");
    assert_eq!(page.sessions.len(), 5);
    assert!(kinds(&h).await.contains(&"limit_evicted".to_string()));
}

/// evict_idlest ends the least recently used session.
pub async fn limit_evict_idlest(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let five = fill(&h, "limit-idlest", 5).await;
    h.advance(Duration::from_secs(7));
    for c in five.iter().filter(|c| c.session.id != five[2].session.id) {
        assert!(h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("resolve").renewed);
    }
    let sixth = h.engine.create(h.request("bob", "limit-idlest")).await.expect("create");
    assert_eq!(sixth.evicted, vec![five[2].session.id]);
}

/// 100 parallel creates for one subject with limit 5 leave exactly 5 (evict) and admit
/// exactly 5 (deny).
pub async fn parallel_creates_never_exceed_limit(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    for (policy, subject) in [("limit-oldest", "carol"), ("limit-deny", "dave")] {
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let e = h.engine.clone();
            let r = h.request(subject, policy);
            tasks.push(tokio::spawn(async move { e.create(r).await }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.expect("join") {
                Ok(_) => ok += 1,
                Err(Error::Client(ClientError::LimitReached)) => {}
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        let live = h.engine.list(&h.tenant, subject, None, 1000).await.expect("list").sessions.len();
        assert_eq!(live, 5, "{policy}: {live} live sessions");
        if policy == "limit-deny" {
            assert_eq!(ok, 5, "deny_new admitted {ok}");
        } else {
            assert_eq!(ok, 100);
        }
    }
}

/// Data compare-and-set, and a write after revocation never brings the session back.
pub async fn data_compare_and_set_and_no_resurrection(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    let id = c.session.id;
    let r1 = h.engine.set_data(&id, "theme", "dark".into(), Some(0)).await.expect("set");
    assert_eq!(r1, 1);
    assert!(matches!(
        h.engine.set_data(&id, "theme", "light".into(), Some(0)).await,
        Err(Error::Conflict { current: 1 })
    ));
    let r2 = h.engine.set_data(&id, "lang", "fr".into(), None).await.expect("set");
    assert_eq!(r2, 2);
    let r3 = h.engine.remove_data(&id, "theme", Some(2)).await.expect("remove");
    assert_eq!(r3, 3);
    let s = h.engine.get(&id).await.expect("get").expect("live");
    assert_eq!(s.data.get("lang"), Some(&serde_json::json!("fr")));
    assert!(!s.data.contains_key("theme"));
    // Reading writes nothing.
    let w = CountingStore::get(&h.store.writes);
    h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("resolve");
    assert_eq!(CountingStore::get(&h.store.writes), w);
    // Bad keys and oversized data are refused.
    assert!(h.engine.set_data(&id, "", 1.into(), None).await.is_err());
    assert!(h.engine.set_data(&id, "big", "x".repeat(10_000).into(), None).await.is_err());
    assert!(h.engine.revoke(&id, RevokeReason::Admin).await.expect("revoke"));
    assert!(matches!(h.engine.set_data(&id, "late", 1.into(), None).await, Err(Error::NotFound(_))));
    assert!(h.engine.get(&id).await.expect("get").is_none());
    assert!(h.store.find_by_id(&id).await.expect("find").is_none(), "a late write resurrected the session");
    // A stale full-record update cannot resurrect it either.
    let mut stale = (*s).clone();
    stale.version += 1;
    assert!(matches!(
        h.store.update(stale, s.version).await.expect("update"),
        sessiond_core::store::UpdateOutcome::Missing
    ));
    // With an address: the one-round-trip path of the stores that renew from the copy.
    h.store.renew(&s, h.engine.now(), h.engine.now().plus(IDLE), Some("198.51.100.9")).await.expect("renew");
    assert!(h.store.find_by_id(&id).await.expect("find").is_none(), "renew resurrected the session");
    assert_eq!(client_err(h.engine.resolve(c.token.expose(), &NO_CTX).await), ClientError::UnknownSession);
}

/// Revoke one, a subject (except the current one), a tenant.
pub async fn revoke_one_subject_tenant(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let a: Vec<_> = fill(&h, "test", 3).await;
    let mut other_tenant = h.request("bob", "test");
    other_tenant.tenant = format!("{}-other", h.tenant);
    let outsider = h.engine.create(other_tenant.clone()).await.expect("create");
    let eve = h.engine.create(h.request("eve", "test")).await.expect("create");

    assert!(h.engine.revoke(&a[0].session.id, RevokeReason::Admin).await.expect("revoke"));
    assert!(!h.engine.revoke(&a[0].session.id, RevokeReason::Admin).await.expect("revoke twice"));
    let gone = h
        .engine
        .revoke_subject(&h.tenant, "bob", Some(&a[2].session.id), RevokeReason::Subject)
        .await
        .expect("subject");
    assert_eq!(gone, vec![a[1].session.id]);
    h.engine.resolve(a[2].token.expose(), &NO_CTX).await.expect("the kept session works");
    assert_eq!(client_err(h.engine.resolve(a[1].token.expose(), &NO_CTX).await), ClientError::UnknownSession);

    let gone = h.engine.revoke_tenant(&h.tenant).await.expect("tenant");
    assert_eq!(gone.len(), 2);
    for t in [&a[2], &eve] {
        assert_eq!(client_err(h.engine.resolve(t.token.expose(), &NO_CTX).await), ClientError::UnknownSession);
    }
    h.engine.resolve(outsider.token.expose(), &NO_CTX).await.expect("other tenant untouched");
    let k = kinds(&h).await;
    for want in ["revoked.admin", "revoked.subject", "revoked.tenant"] {
        assert!(k.contains(&want.to_string()), "{want} missing from {k:?}");
    }
}

/// Bumping the epoch kills every existing session of the subject at once; new ones work.
pub async fn epoch_bump_revokes_existing_sessions_only(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let old = fill(&h, "test", 3).await;
    let other = h.engine.create(h.request("zoe", "test")).await.expect("create");
    assert_eq!(h.engine.bump_epoch(&h.tenant, "bob").await.expect("bump"), 1);
    for c in &old {
        assert_eq!(client_err(h.engine.resolve(c.token.expose(), &NO_CTX).await), ClientError::EpochRevoked);
        assert!(h.engine.get(&c.session.id).await.expect("get").is_none());
    }
    assert!(h.engine.list(&h.tenant, "bob", None, 10).await.expect("list").sessions.is_empty());
    h.engine.resolve(other.token.expose(), &NO_CTX).await.expect("other subject unaffected");
    let fresh = h.engine.create(h.request("bob", "test")).await.expect("create");
    h.engine.resolve(fresh.token.expose(), &NO_CTX).await.expect("a session after the bump works");
    assert_eq!(h.engine.bump_epoch(&h.tenant, "bob").await.expect("bump"), 2);
    assert!(h.engine.resolve(fresh.token.expose(), &NO_CTX).await.is_err());
}

/// Sessions an epoch bump ended do not count toward the limit and are not evicted: after a
/// "log out everywhere" a `deny_new` subject can log in again at once, an evicting one loses
/// none of its new sessions to make room, and the limit still holds for the new sessions.
pub async fn epoch_ended_sessions_do_not_count_toward_limits(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    // deny_new: five sessions, a bump, then a full set of five new ones and no sixth.
    fill(&h, "limit-deny", 5).await;
    h.engine.bump_epoch(&h.tenant, "bob").await.expect("bump");
    let fresh = fill(&h, "limit-deny", 5).await;
    assert_eq!(client_err(h.engine.create(h.request("bob", "limit-deny")).await), ClientError::LimitReached);
    for c in &fresh {
        h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("the new sessions live");
    }
    // Evicting policies: the dead sessions are neither counted nor reported as evicted, and
    // the first session to make room is the oldest (and idlest: none was used) new one.
    for (policy, subject) in [("limit-oldest", "erin"), ("limit-idlest", "fay")] {
        for _ in 0..5 {
            h.engine.create(h.request(subject, policy)).await.expect("create");
            h.advance(Duration::from_millis(10));
        }
        h.engine.bump_epoch(&h.tenant, subject).await.expect("bump");
        let mut new = Vec::new();
        for _ in 0..5 {
            let c = h.engine.create(h.request(subject, policy)).await.expect("create");
            assert!(c.evicted.is_empty(), "{policy}: room for five new sessions, but {:?} evicted", c.evicted);
            new.push(c);
            h.advance(Duration::from_millis(10));
        }
        let sixth = h.engine.create(h.request(subject, policy)).await.expect("create");
        assert_eq!(sixth.evicted, vec![new[0].session.id], "{policy}: the oldest new session makes room");
        for c in &new[1..] {
            h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("the other new sessions live");
        }
    }
}

/// Pages of a subject's live sessions, oldest first, excluding expired and foreign ones.
pub async fn list_paginates_live_sessions_of_one_subject(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let early = fill(&h, "test", 2).await;
    h.advance(IDLE / 2);
    let later = fill(&h, "test", 5).await;
    h.engine.create(h.request("someone-else", "test")).await.expect("create");
    // Keep the later ones alive, let the early ones expire.
    h.advance(IDLE / 2 + Duration::from_secs(1));
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = h.engine.list(&h.tenant, "bob", cursor, 2).await.expect("list");
        assert!(page.sessions.len() <= 2);
        seen.extend(page.sessions.iter().map(|s| s.id));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let want: Vec<_> = later.iter().map(|c| c.session.id).collect();
    assert_eq!(seen, want);
    assert!(early.iter().all(|c| !seen.contains(&c.session.id)));
}

/// The sweeper removes expired sessions in bounded batches and emits expiry events.
pub async fn sweeper_removes_expired_and_emits_events(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let idle_ones = fill(&h, "test", 3).await;
    let active = h.engine.create(h.request("bob", "test")).await.expect("create");
    h.advance(IDLE - Duration::from_secs(1));
    h.engine.resolve(active.token.expose(), &NO_CTX).await.expect("keep active alive");
    h.advance(Duration::from_secs(2));
    assert_eq!(h.engine.sweep(2).await.expect("sweep"), 2, "batch bound");
    assert_eq!(h.engine.sweep(100).await.expect("sweep"), 1);
    assert_eq!(h.engine.sweep(100).await.expect("sweep"), 0);
    for c in &idle_ones {
        assert!(h.store.find_by_id(&c.session.id).await.expect("find").is_none());
        assert!(h.store.find_by_token(c.token.hash()).await.expect("find").is_none());
    }
    h.engine.resolve(active.token.expose(), &NO_CTX).await.expect("active session survives the sweep");
    // Keep it active until the absolute deadline.
    while h.engine.now().since(active.session.created_at) + IDLE / 2 < ABSOLUTE {
        h.advance(IDLE / 2);
        h.engine.resolve(active.token.expose(), &NO_CTX).await.expect("alive");
    }
    h.advance(IDLE / 2);
    assert_eq!(h.engine.sweep(100).await.expect("sweep"), 1);
    let k = kinds(&h).await;
    assert_eq!(k.iter().filter(|k| *k == "expired.idle").count(), 3, "{k:?}");
    assert_eq!(k.iter().filter(|k| *k == "expired.absolute").count(), 1, "{k:?}");
    assert!(h.engine.list(&h.tenant, "bob", None, 10).await.expect("list").sessions.is_empty());
}

/// Cursors strictly increase and reading after a cursor returns exactly the rest.
pub async fn events_are_ordered_and_read_from_a_cursor(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = fill(&h, "test", 3).await;
    h.engine.revoke(&c[0].session.id, RevokeReason::Admin).await.expect("revoke");
    let all = h.engine.events(0, 100).await.expect("events");
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].cursor < w[1].cursor));
    assert!(all[0].cursor > 0);
    let rest = h.engine.events(all[1].cursor, 100).await.expect("events");
    assert_eq!(rest, all[2..].to_vec());
    let one = h.engine.events(0, 1).await.expect("events");
    assert_eq!(one, all[..1].to_vec());
    assert_eq!(all[3].kind, EventKind::Revoked(RevokeReason::Admin));
    assert_eq!(all[3].session_id, Some(c[0].session.id));
    for e in &all {
        let text = format!("{e:?}");
        for s in &c {
            assert!(!text.contains(s.token.expose()), "a raw token reached the event log");
        }
    }
}

/// A token presented at login is revoked, never adopted (session fixation).
pub async fn prelogin_token_is_revoked_not_adopted(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let planted = h.engine.create(h.request("attacker", "test")).await.expect("create");
    let mut req = h.request("victim", "test");
    req.previous_token = Some(planted.token.expose().to_owned());
    let c = h.engine.create(req).await.expect("create");
    assert_ne!(c.token.expose(), planted.token.expose());
    assert_ne!(c.session.id, planted.session.id);
    assert_eq!(c.replaced, Some(planted.session.id));
    assert_eq!(client_err(h.engine.resolve(planted.token.expose(), &NO_CTX).await), ClientError::UnknownSession);
    assert_eq!(h.engine.resolve(c.token.expose(), &NO_CTX).await.expect("resolve").session.subject, "victim");
    // A garbage pre-login token is ignored, not an error.
    let mut req = h.request("victim", "test");
    req.previous_token = Some("garbage".into());
    h.engine.create(req).await.expect("create with garbage previous token");
    assert!(kinds(&h).await.contains(&"revoked.fixation".to_string()));
}

/// After logout the token is dead everywhere; logging out again is harmless.
pub async fn logout_replay_is_refused(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    assert_eq!(h.engine.logout(c.token.expose()).await.expect("logout"), Some(c.session.id));
    assert_eq!(client_err(h.engine.resolve(c.token.expose(), &NO_CTX).await), ClientError::UnknownSession);
    assert_eq!(client_err(h.engine.peek(c.token.expose()).await), ClientError::UnknownSession);
    assert!(h.engine.rotate(c.token.expose()).await.is_err());
    assert_eq!(h.engine.logout(c.token.expose()).await.expect("second logout"), None);
}

/// A policy that revokes on device drift does so; the same device is fine.
pub async fn binding_revoke_policy(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
    let mut req = h.request("alice", "bind-revoke");
    req.device.user_agent = Some(ua.into());
    req.device.first_ip = Some("192.0.2.10".into());
    let c = h.engine.create(req).await.expect("create");
    let same = RequestContext { ip: "192.0.2.77".parse().ok(), user_agent: Some(ua) };
    h.engine.resolve(c.token.expose(), &same).await.expect("same /24 and family");
    let moved = RequestContext { ip: "198.51.100.1".parse().ok(), user_agent: Some(ua) };
    assert_eq!(client_err(h.engine.resolve(c.token.expose(), &moved).await), ClientError::BindingRevoked);
    assert_eq!(client_err(h.engine.resolve(c.token.expose(), &same).await), ClientError::UnknownSession);
    let k = kinds(&h).await;
    assert!(k.contains(&"anomaly".to_string()) && k.contains(&"revoked.binding".to_string()), "{k:?}");
}

/// Under `ip_prefix = step_up` a request from another network gets the session at AAL 0
/// until the user re-authenticates, and keeps getting it so: the renewals its requests cause
/// must not record the new address, or the next request would see no drift at all (a stolen
/// token regaining full assurance by waiting for a renewal).
pub async fn step_up_binding_survives_renewals(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let mut req = h.request("alice", "bind-step-up");
    req.device.first_ip = Some("192.0.2.10".into());
    let c = h.engine.create(req).await.expect("create");
    let home = RequestContext { ip: "192.0.2.77".parse().ok(), user_agent: None };
    let away = RequestContext { ip: "198.51.100.1".parse().ok(), user_agent: None };
    let r = h.engine.resolve(c.token.expose(), &home).await.expect("home");
    assert!(!r.step_up_forced);
    // From the other network, across several renewals.
    for round in 0..4 {
        let r = h.engine.resolve(c.token.expose(), &away).await.expect("away");
        assert!(r.step_up_forced, "round {round}: the drift was forgotten");
        assert_eq!(r.aal(), 0, "round {round}");
        h.advance(IDLE.mul_f64(0.2));
    }
    let stored = h.store.find_by_id(&c.session.id).await.expect("find").expect("live").record;
    assert!(stored.last_seen_at > c.session.last_seen_at, "the requests renewed the session");
    assert_ne!(stored.device.last_ip.as_deref(), Some("198.51.100.1"), "the unadopted address was recorded");
    if let Some(Ok(r)) = h.engine.resolve_now(c.token.expose(), &away) {
        assert!(r.step_up_forced, "the non-waiting path lost the drift");
    }
    let r = h.engine.resolve(c.token.expose(), &home).await.expect("home again");
    assert!(!r.step_up_forced);
}

/// A renewal carries the caller's copy of the record, which a store may write from: a copy
/// older than an update (data change, rotation) must not overwrite it, and a copy renewed
/// less recently than the stored session must not move its deadlines backwards.
pub async fn renewal_from_a_stale_copy_never_overwrites_newer_state(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    let id = c.session.id;
    let before = h.store.find_by_id(&id).await.expect("find").expect("live").record;

    // An update and a rotation after the copy was read.
    h.advance(Duration::from_secs(1));
    h.engine.set_data(&id, "lang", "fr".into(), None).await.expect("set");
    let (_, token) = h.engine.rotate(c.token.expose()).await.expect("rotate");
    let updated = h.store.find_by_id(&id).await.expect("find").expect("live").record;
    assert!(updated.version > before.version);
    h.advance(Duration::from_secs(7));
    let now = h.engine.now();
    h.store.renew(&before, now, now.plus(IDLE), Some("198.51.100.1")).await.expect("renew");
    let after = h.store.find_by_id(&id).await.expect("find").expect("live").record;
    assert_eq!(after.data.get("lang"), Some(&serde_json::json!("fr")), "a stale copy undid an update");
    assert_eq!(after.token_hash, updated.token_hash, "a stale copy undid a rotation");
    assert_eq!(after.version, updated.version);
    assert_eq!(after.last_seen_at, now, "the renewal itself must still apply");
    assert!(h.engine.resolve(token.expose(), &NO_CTX).await.is_ok(), "the rotated token must still resolve");

    // Two renewals from the same copy, the later one first: no step backwards.
    let copy = h.store.find_by_id(&id).await.expect("find").expect("live").record;
    let (t1, t2, t3) =
        (now.plus(Duration::from_secs(1)), now.plus(Duration::from_secs(2)), now.plus(Duration::from_secs(3)));
    h.store.renew(&copy, t2, t2.plus(IDLE), Some("198.51.100.2")).await.expect("renew");
    h.store.renew(&copy, t1, t1.plus(IDLE), Some("198.51.100.1")).await.expect("renew");
    let last = h.store.find_by_id(&id).await.expect("find").expect("live").record;
    assert_eq!(last.last_seen_at, t2, "an older renewal moved last_seen_at backwards");
    assert_eq!(last.idle_expires_at, t2.plus(IDLE), "an older renewal moved the idle deadline backwards");
    assert_eq!(last.device.last_ip.as_deref(), Some("198.51.100.2"), "an older renewal's address won");
    assert_eq!(last.data.get("lang"), Some(&serde_json::json!("fr")));
    // A later renewal without an address, from a copy that predates the last address: the
    // newer address stays.
    h.store.renew(&copy, t3, t3.plus(IDLE), None).await.expect("renew");
    let last = h.store.find_by_id(&id).await.expect("find").expect("live").record;
    assert_eq!(last.last_seen_at, t3);
    assert_eq!(last.device.last_ip.as_deref(), Some("198.51.100.2"), "the copy's older address came back");
}

/// A renewed session is swept at its new deadline, not its first one (stores that index
/// deadlines lazily must still get there).
pub async fn renewed_session_is_swept_at_its_new_deadline(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    let id = c.session.id;
    let first = c.session.idle_expires_at;
    let copy = h.store.find_by_id(&id).await.expect("find").expect("live").record;
    let seen = c.session.last_seen_at.plus(Duration::from_secs(30));
    let second = seen.plus(IDLE);
    h.store.renew(&copy, seen, second, Some("198.51.100.3")).await.expect("renew");
    let swept = h.store.sweep_expired(first.plus(Duration::from_millis(1)), 100).await.expect("sweep");
    assert!(swept.is_empty(), "swept at the deadline it had before its renewal");
    assert!(h.store.find_by_id(&id).await.expect("find").is_some());
    let swept = h.store.sweep_expired(second.plus(Duration::from_millis(1)), 100).await.expect("sweep");
    assert_eq!(swept.iter().map(|e| e.record.id).collect::<Vec<_>>(), vec![id], "not swept at its new deadline");
    assert!(h.store.find_by_id(&id).await.expect("find").is_none());
}

/// peek reports the remaining time and writes nothing.
pub async fn peek_does_not_renew(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    h.advance(Duration::from_secs(40));
    let w = CountingStore::get(&h.store.writes);
    let rem = h.engine.peek(c.token.expose()).await.expect("peek");
    assert_eq!(rem.idle, IDLE - Duration::from_secs(40));
    assert_eq!(rem.absolute, ABSOLUTE - Duration::from_secs(40));
    assert_eq!(CountingStore::get(&h.store.writes), w);
    h.advance(Duration::from_secs(21));
    assert_eq!(client_err(h.engine.peek(c.token.expose()).await), ClientError::IdleExpired);
}

/// The store finds a record by each retired hash it keeps, and by no dropped one.
pub async fn retired_token_found_only_while_remembered(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    let mut tokens = vec![c.token];
    for _ in 0..6 {
        h.advance(GRACE);
        let (_, t) = h.engine.rotate(tokens.last().expect("one").expose()).await.expect("rotate");
        tokens.push(t);
    }
    let current = h.store.find_by_token(tokens[6].hash()).await.expect("find").expect("current");
    assert_eq!(current.record.retired.len(), sessiond_core::record::RETIRED_KEPT);
    for (i, t) in tokens.iter().enumerate() {
        let found = h.store.find_by_token(t.hash()).await.expect("find");
        let remembered = i + sessiond_core::record::RETIRED_KEPT >= 6;
        assert_eq!(found.is_some(), remembered, "token {i}");
    }
}

/// The non-waiting path (`Engine::resolve_now` over `SessionStore::find_by_token_now`) gives
/// only answers the full `resolve` would give: the same session while nothing is due, the
/// same refusal for forged, revoked, epoch-bumped and (idle or absolutely) expired sessions —
/// never a session that a returned revocation ended — and it leaves every write or event
/// (renewal, interval rotation, grace alias, theft, device drift) to the full path. Stores
/// that cannot answer without waiting may always say `None`.
pub async fn resolve_now_answers_only_what_resolve_would(store: Arc<dyn SessionStore>) {
    let h = Harness::new(store);
    let refused = |r: Option<Result<sessiond_core::Resolution, Error>>, what: &str| match r {
        None => None,
        Some(Ok(r)) => panic!("{what}: resolve_now accepted session {}", r.session.id),
        Some(Err(Error::Client(c))) => Some(c),
        Some(Err(e)) => panic!("{what}: unexpected error {e:?}"),
    };
    let forged = h.engine.keys().mint();
    let other_ring = KeyRing::single(KeyId(1), SigningKey::generate()).mint();
    let finds = CountingStore::get(&h.store.finds);
    let forged_refusal = refused(h.engine.resolve_now(other_ring.expose(), &NO_CTX), "forged");
    assert!(matches!(forged_refusal, Some(ClientError::Malformed(_))), "{forged_refusal:?}");
    assert_eq!(CountingStore::get(&h.store.finds), finds, "a forged token caused a store lookup");
    if let Some(c) = refused(h.engine.resolve_now(forged.expose(), &NO_CTX), "unknown") {
        assert_eq!(c, ClientError::UnknownSession);
    }

    let c = h.engine.create(h.request("alice", "test")).await.expect("create");
    let t = c.token.expose().to_owned();
    let full = h.engine.resolve(&t, &NO_CTX).await.expect("resolve");
    let writes = CountingStore::get(&h.store.writes);
    for _ in 0..3 {
        h.advance(Duration::from_secs(1));
        if let Some(r) = h.engine.resolve_now(&t, &NO_CTX) {
            let r = r.expect("a live session resolves");
            assert_eq!((r.session.id, r.session.version), (full.session.id, full.session.version));
            assert_eq!(r.idle_expires_at, full.idle_expires_at);
            assert!(!r.renewed && r.rotated.is_none() && r.drift.is_none());
        }
    }
    assert_eq!(CountingStore::get(&h.store.writes), writes, "resolve_now wrote to the store");

    // A renewal is due: only the full path may answer (it writes).
    h.advance(Duration::from_secs(10));
    assert!(h.engine.resolve_now(&t, &NO_CTX).is_none(), "resolve_now answered a request that must renew");
    assert!(h.engine.resolve(&t, &NO_CTX).await.expect("resolve").renewed);

    // The old token inside its grace window: the successor comes from the full path only.
    let (_, new) = h.engine.rotate(&t).await.expect("rotate");
    assert!(h.engine.resolve_now(&t, &NO_CTX).is_none(), "resolve_now answered for a grace alias");
    if let Some(r) = h.engine.resolve_now(new.expose(), &NO_CTX) {
        assert_eq!(r.expect("the successor resolves").session.id, c.session.id);
    }
    // After the grace window the old token is theft: the full path revokes.
    h.advance(GRACE);
    assert!(h.engine.resolve_now(&t, &NO_CTX).is_none(), "resolve_now answered a replay");

    // A device drift raises an anomaly event: only the full path may answer it.
    let mut req = h.request("erin", "test");
    req.device.first_ip = Some("192.0.2.10".into());
    let drifting = h.engine.create(req).await.expect("create");
    let home = RequestContext { ip: "192.0.2.77".parse().ok(), user_agent: None };
    let away = RequestContext { ip: "198.51.100.1".parse().ok(), user_agent: None };
    h.engine.resolve(drifting.token.expose(), &home).await.expect("resolve");
    if let Some(r) = h.engine.resolve_now(drifting.token.expose(), &home) {
        assert!(r.expect("same /24 resolves").drift.is_none());
    }
    assert!(h.engine.resolve_now(drifting.token.expose(), &away).is_none(), "resolve_now answered a drift");
    assert!(h.engine.resolve(drifting.token.expose(), &away).await.expect("flagged").drift.is_some());
    assert!(kinds(&h).await.contains(&"anomaly".to_string()));

    // An interval rotation due (and no renewal due): only the full path may answer it.
    let rotating = h.engine.create(h.request("frank", "rotating")).await.expect("create");
    h.advance(ROTATE_EVERY - Duration::from_secs(5));
    assert!(h.engine.resolve(rotating.token.expose(), &NO_CTX).await.expect("renews").renewed);
    h.advance(Duration::from_secs(5));
    assert!(h.engine.resolve_now(rotating.token.expose(), &NO_CTX).is_none(), "resolve_now skipped a rotation");
    assert!(h.engine.resolve(rotating.token.expose(), &NO_CTX).await.expect("rotates").rotated.is_some());

    // Revocations and deadlines: never accepted once the revocation has returned.
    let gone = h.engine.create(h.request("bob", "test")).await.expect("create");
    h.engine.resolve(gone.token.expose(), &NO_CTX).await.expect("resolve");
    assert!(h.engine.revoke(&gone.session.id, RevokeReason::Admin).await.expect("revoke"));
    if let Some(c) = refused(h.engine.resolve_now(gone.token.expose(), &NO_CTX), "revoked") {
        assert_eq!(c, ClientError::UnknownSession);
    }
    let bumped = h.engine.create(h.request("carol", "test")).await.expect("create");
    h.engine.resolve(bumped.token.expose(), &NO_CTX).await.expect("resolve");
    h.engine.bump_epoch(&h.tenant, "carol").await.expect("bump");
    if let Some(c) = refused(h.engine.resolve_now(bumped.token.expose(), &NO_CTX), "epoch") {
        assert_eq!(c, ClientError::EpochRevoked);
    }
    let idle = h.engine.create(h.request("dave", "test")).await.expect("create");
    h.engine.resolve(idle.token.expose(), &NO_CTX).await.expect("resolve");
    h.advance(IDLE);
    if let Some(c) = refused(h.engine.resolve_now(idle.token.expose(), &NO_CTX), "idle") {
        assert_eq!(c, ClientError::IdleExpired);
    }
    // Kept active until its absolute deadline, then refused.
    let active = h.engine.create(h.request("gina", "test")).await.expect("create");
    let step = IDLE / 2;
    let mut elapsed = Duration::ZERO;
    while elapsed + step < ABSOLUTE {
        h.advance(step);
        elapsed += step;
        h.engine.resolve(active.token.expose(), &NO_CTX).await.expect("active session resolves");
    }
    h.advance(ABSOLUTE - elapsed);
    if let Some(c) = refused(h.engine.resolve_now(active.token.expose(), &NO_CTX), "absolute") {
        assert_eq!(c, ClientError::AbsoluteExpired);
    }
}
