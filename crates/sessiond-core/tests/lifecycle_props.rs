//! Property tests on the lifecycle: random sequences of operations and clock jumps never
//! leave a revoked or expired session resolvable, never exceed a concurrent limit, and never
//! let an old token outlive its grace window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sessiond_conformance::{Harness, ABSOLUTE, GRACE, IDLE};
use sessiond_core::event::RevokeReason;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::time::UnixMs;
use sessiond_core::{ClientError, Error, RequestContext, SessionId};

#[derive(Debug, Clone)]
enum Op {
    Create(usize),
    Resolve(usize),
    Rotate(usize),
    Logout(usize),
    RevokeSubject(usize),
    BumpEpoch(usize),
    Advance(u64),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4usize).prop_map(Op::Create),
        6 => any::<usize>().prop_map(Op::Resolve),
        2 => any::<usize>().prop_map(Op::Rotate),
        1 => any::<usize>().prop_map(Op::Logout),
        1 => (0..4usize).prop_map(Op::RevokeSubject),
        1 => (0..4usize).prop_map(Op::BumpEpoch),
        4 => prop_oneof![0..5_000u64, 5_000..40_000u64, 40_000..400_000u64].prop_map(Op::Advance),
        1 => Just(Op::Sweep),
    ]
}

const SUBJECTS: [&str; 4] = ["s0", "s1", "s2", "s3"];
const POLICIES: [&str; 4] = ["limit-oldest", "limit-deny", "rotating", "test"];

/// What the model knows for sure about a token.
struct Tok {
    text: String,
    session: SessionId,
    subject: usize,
    /// Latest time by which the session must be dead unless used (last success + idle).
    retired_at: Option<UnixMs>,
}

#[derive(Default)]
struct Model {
    tokens: Vec<Tok>,
    dead: std::collections::HashSet<SessionId>,
    last_success: HashMap<SessionId, UnixMs>,
    created: HashMap<SessionId, UnixMs>,
    epoch_cut: HashMap<usize, usize>,
    created_step: HashMap<SessionId, usize>,
}

fn must_fail(model: &Model, t: &Tok, now: UnixMs) -> Option<&'static str> {
    if model.dead.contains(&t.session) {
        return Some("revoked session resolved");
    }
    if now >= model.created[&t.session].plus(ABSOLUTE) {
        return Some("session resolved past its absolute deadline");
    }
    if now >= model.last_success[&t.session].plus(IDLE) {
        return Some("session resolved past its idle deadline");
    }
    if let Some(r) = t.retired_at {
        if now >= r.plus(GRACE) {
            return Some("retired token outlived its grace window");
        }
    }
    if model.epoch_cut.get(&t.subject).is_some_and(|cut| model.created_step[&t.session] < *cut) {
        return Some("session survived an epoch bump");
    }
    None
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let h = Harness::new(Arc::new(MemoryStore::new()));
    let mut m = Model::default();
    let ctx = RequestContext::default();
    for (step, op) in ops.into_iter().enumerate() {
        let now = h.engine.now();
        match op {
            Op::Create(s) => match h.engine.create(h.request(SUBJECTS[s], POLICIES[s])).await {
                Ok(c) => {
                    for e in &c.evicted {
                        m.dead.insert(*e);
                    }
                    m.created.insert(c.session.id, now);
                    m.created_step.insert(c.session.id, step);
                    m.last_success.insert(c.session.id, now);
                    m.tokens.push(Tok {
                        text: c.token.expose().to_owned(),
                        session: c.session.id,
                        subject: s,
                        retired_at: None,
                    });
                }
                Err(Error::Client(ClientError::LimitReached)) => prop_assert_eq!(POLICIES[s], "limit-deny"),
                Err(e) => return Err(TestCaseError::fail(format!("create failed: {e}"))),
            },
            Op::Resolve(i) | Op::Rotate(i) if !m.tokens.is_empty() => {
                let i = i % m.tokens.len();
                let rotate = matches!(op, Op::Rotate(_));
                let res = if rotate {
                    h.engine.rotate(&m.tokens[i].text).await.map(|(s, t)| (s.id, Some(t)))
                } else {
                    h.engine.resolve(&m.tokens[i].text, &ctx).await.map(|r| (r.session.id, r.rotated))
                };
                let t = &m.tokens[i];
                match res {
                    Ok((id, successor)) => {
                        if let Some(why) = must_fail(&m, t, now) {
                            return Err(TestCaseError::fail(why));
                        }
                        prop_assert_eq!(id, t.session);
                        m.last_success.insert(id, now);
                        if let Some(succ) = successor {
                            let (session, subject) = (t.session, t.subject);
                            if t.retired_at.is_none() {
                                m.tokens[i].retired_at = Some(now);
                            }
                            if !m.tokens.iter().any(|x| x.text == succ.expose()) {
                                m.tokens.push(Tok {
                                    text: succ.expose().to_owned(),
                                    session,
                                    subject,
                                    retired_at: None,
                                });
                            }
                        }
                    }
                    Err(Error::Client(ClientError::TokenReplayed)) => {
                        m.dead.insert(t.session);
                    }
                    Err(Error::Client(_)) => {}
                    Err(e) => return Err(TestCaseError::fail(format!("resolve failed: {e}"))),
                }
            }
            Op::Logout(i) if !m.tokens.is_empty() => {
                let i = i % m.tokens.len();
                if let Ok(Some(id)) = h.engine.logout(&m.tokens[i].text).await {
                    m.dead.insert(id);
                }
            }
            Op::RevokeSubject(s) => {
                for id in
                    h.engine.revoke_subject(&h.tenant, SUBJECTS[s], None, RevokeReason::Subject).await.expect("revoke")
                {
                    m.dead.insert(id);
                }
            }
            Op::BumpEpoch(s) => {
                h.engine.bump_epoch(&h.tenant, SUBJECTS[s]).await.expect("bump");
                m.epoch_cut.insert(s, step);
            }
            Op::Advance(ms) => h.advance(Duration::from_millis(ms)),
            Op::Sweep => {
                h.engine.sweep(3).await.expect("sweep");
            }
            _ => {}
        }
        // Invariant: limits hold after every step.
        for subject in &SUBJECTS[..2] {
            let live = h.engine.list(&h.tenant, subject, None, 1000).await.expect("list").sessions.len();
            prop_assert!(live <= 5, "{} has {} live sessions", subject, live);
        }
        // Invariant: a token the model knows must be dead is refused right now.
        let now = h.engine.now();
        for t in &m.tokens {
            if must_fail(&m, t, now).is_some() {
                let r = h.engine.peek(&t.text).await;
                prop_assert!(r.is_err(), "peek accepted a token that must be dead: {:?}", must_fail(&m, t, now));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn lifecycle_invariants_hold(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(run(ops))?;
    }
}
