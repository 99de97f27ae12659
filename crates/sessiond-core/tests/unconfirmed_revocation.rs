//! A revocation the store applied but could not confirm (`StoreError::Unconfirmed`, e.g. a
//! Redis `wait_replicas` shortfall) fails the call, so that nobody is told "logged out
//! everywhere" on the strength of a change a failover could undo; but the sessions it did end
//! still get their `revoked.*` events, marked `unconfirmed`. A retry finds nothing left to end
//! and writes nothing, so without those events the audit trail would lose the revocation.

use std::sync::Arc;

use sessiond_conformance::CountingStore;
use sessiond_core::event::UNCONFIRMED;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::{
    CreateRequest, Engine, Error, Event, EventKind, RequestContext, RevokeReason, SessionId, StoreError,
};

fn request(tenant: &str, subject: &str) -> CreateRequest {
    CreateRequest { subject: subject.into(), tenant: tenant.into(), ..Default::default() }
}

fn unconfirmed<T: std::fmt::Debug>(r: sessiond_core::Result<T>) -> usize {
    match r {
        Err(Error::Store(StoreError::Unconfirmed { ended, .. })) => ended.len(),
        other => panic!("expected an unconfirmed store error, got {other:?}"),
    }
}

/// The `revoked.*` events in the log, as (reason, session, detail).
async fn revocations(engine: &Engine) -> Vec<(RevokeReason, Option<SessionId>, Option<String>)> {
    let events: Vec<Event> = engine.events(0, 1000).await.expect("events");
    events
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Revoked(reason) => Some((reason, e.session_id, e.detail)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_unconfirmed_revocation_fails_but_its_events_are_written() {
    let store = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let engine = Engine::builder(store.clone(), KeyRing::single(KeyId(1), SigningKey::generate())).build();
    let ctx = RequestContext::default();
    let a1 = engine.create(request("t", "alice")).await.expect("create");
    let a2 = engine.create(request("t", "alice")).await.expect("create");
    let b = engine.create(request("t", "bob")).await.expect("create");
    let c = engine.create(request("t", "carol")).await.expect("create");
    let d = engine.create(request("t", "dave")).await.expect("create");
    let u = |id: SessionId, reason| (reason, Some(id), Some(UNCONFIRMED.to_owned()));

    store.unconfirm_revocations(true);

    // One session: the call fails (503 over HTTP), the session is gone all the same, and its
    // event is in the log, marked.
    assert_eq!(unconfirmed(engine.revoke(&a1.session.id, RevokeReason::Admin).await), 1);
    assert!(engine.resolve(a1.token.expose(), &ctx).await.is_err(), "the revocation was applied");
    assert_eq!(revocations(&engine).await, vec![u(a1.session.id, RevokeReason::Admin)]);
    // Its retry ends nothing and adds no event (nor a second one for the same session).
    assert_eq!(unconfirmed(engine.revoke(&a1.session.id, RevokeReason::Admin).await), 0);
    assert_eq!(revocations(&engine).await.len(), 1);

    // Logout, a subject, an epoch bump, a tenant.
    assert_eq!(unconfirmed(engine.logout(a2.token.expose()).await), 1);
    assert_eq!(unconfirmed(engine.revoke_subject("t", "bob", None, RevokeReason::Subject).await), 1);
    unconfirmed(engine.bump_epoch("t", "carol").await);
    assert!(engine.resolve(c.token.expose(), &ctx).await.is_err(), "the epoch bump was applied");
    assert_eq!(unconfirmed(engine.revoke_tenant("t").await), 2, "carol's (already dead) and dave's sessions");
    let all = revocations(&engine).await;
    assert_eq!(
        all[..4],
        [
            u(a1.session.id, RevokeReason::Admin),
            u(a2.session.id, RevokeReason::Logout),
            u(b.session.id, RevokeReason::Subject),
            (RevokeReason::Epoch, None, Some(UNCONFIRMED.to_owned())),
        ]
    );
    // The tenant's two, in the store's order.
    let tenant = &all[4..];
    assert_eq!(tenant.len(), 2);
    for id in [c.session.id, d.session.id] {
        assert!(tenant.contains(&u(id, RevokeReason::Tenant)), "{id} missing from {tenant:?}");
    }

    // Confirmed again: events carry no mark.
    store.unconfirm_revocations(false);
    let e = engine.create(request("t", "erin")).await.expect("create");
    assert!(engine.revoke(&e.session.id, RevokeReason::Admin).await.expect("confirmed"));
    assert_eq!(revocations(&engine).await.last(), Some(&(RevokeReason::Admin, Some(e.session.id), None)));
}

#[tokio::test]
async fn a_login_replacing_a_pre_login_session_reports_it_even_unconfirmed() {
    let store = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let engine = Engine::builder(store.clone(), KeyRing::single(KeyId(1), SigningKey::generate())).build();
    let pre = engine.create(request("t", "anon")).await.expect("pre-login session");
    store.unconfirm_revocations(true);
    let login = CreateRequest { previous_token: Some(pre.token.expose().to_owned()), ..request("t", "alice") };
    // The fixation defence ended the pre-login session but could not confirm it: the login
    // fails (and is retried by the client), and the ended session's event is written.
    assert_eq!(unconfirmed(engine.create(login).await), 1);
    assert_eq!(
        revocations(&engine).await,
        vec![(RevokeReason::Fixation, Some(pre.session.id), Some(UNCONFIRMED.to_owned()))]
    );
}

#[tokio::test]
async fn the_error_names_ended_sessions_by_id_only_and_merges_part_way_failures() {
    let engine =
        Engine::builder(Arc::new(MemoryStore::new()), KeyRing::single(KeyId(1), SigningKey::generate())).build();
    let mut req = request("t", "alice");
    req.data = serde_json::from_str(r#"{"card": "4111-secret-data"}"#).expect("json");
    let a = engine.create(req).await.expect("create").session;
    let b = engine.create(request("t", "bob")).await.expect("create").session;

    // `Debug` (what `?e` in a log line prints) shows ids, never a record's contents.
    let e = StoreError::Unconfirmed { message: "m".into(), ended: vec![a.clone()] };
    let debug = format!("{e:?}");
    assert!(debug.contains(&a.id.to_string()), "{debug}");
    for leak in ["4111-secret-data", "alice", "card"] {
        assert!(!debug.contains(leak), "record contents in the Debug form: {debug}");
    }

    // A failure after sessions ended becomes Unconfirmed with them (earlier ones first);
    // nothing ended leaves it as it was.
    let down = || StoreError::Unavailable { message: "down".into(), source: None };
    assert!(matches!(down().after_ending(Vec::new()), StoreError::Unavailable { .. }));
    match down().after_ending(vec![a.clone()]) {
        StoreError::Unconfirmed { message, ended } => {
            assert!(message.contains("down") && message.contains("1 sessions"), "{message}");
            assert_eq!(ended.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a.id]);
        }
        other => panic!("{other:?}"),
    }
    match e.after_ending(vec![b.clone()]) {
        StoreError::Unconfirmed { message, ended } => {
            assert_eq!(message, "m");
            assert_eq!(ended.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b.id, a.id]);
        }
        other => panic!("{other:?}"),
    }
}
