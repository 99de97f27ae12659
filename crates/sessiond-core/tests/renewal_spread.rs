//! Renewal jitter: sessions created together renew spread over half the renewal fraction
//! instead of in one burst, and none renews later than the fraction (so none ends more than
//! the fraction early) or earlier than half of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sessiond_conformance::{test_policies, Harness, IDLE};
use sessiond_core::id::{IdSource, OsIdSource};
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::{Engine, RequestContext};

const NO_CTX: RequestContext<'static> = RequestContext { ip: None, user_agent: None };

#[test]
fn thresholds_cover_half_to_all_of_the_fraction_uniformly() {
    let policy = test_policies().get("test").cloned().expect("test policy");
    let fraction = IDLE.mul_f64(policy.renewal_fraction);
    let ids = OsIdSource;
    let mut buckets = [0usize; 10];
    for _ in 0..10_000 {
        let t = Engine::renewal_threshold(&ids.session_id(), &policy);
        assert!(t >= fraction / 2 && t <= fraction, "threshold {t:?} outside [{:?}, {fraction:?}]", fraction / 2);
        let share = (t.as_secs_f64() / fraction.as_secs_f64() - 0.5) * 2.0; // 0..=1
        buckets[((share * 10.0) as usize).min(9)] += 1;
    }
    // Uniform: 1,000 expected per tenth (standard deviation ~30).
    assert!(buckets.iter().all(|&n| (700..=1300).contains(&n)), "not uniform: {buckets:?}");
}

#[tokio::test]
async fn sessions_created_together_renew_spread_out() {
    let h = Harness::new(Arc::new(MemoryStore::new()));
    let mut tokens = Vec::new();
    for i in 0..300 {
        let c = h.engine.create(h.request(&format!("user-{i}"), "test")).await.expect("create");
        tokens.push(c.token.expose().to_owned());
    }
    let fraction = IDLE.mul_f64(test_policies().get("test").expect("test policy").renewal_fraction);
    // Every session is used every 100 ms for one whole renewal fraction.
    let step = Duration::from_millis(100);
    let mut renewals_at: BTreeMap<u128, usize> = BTreeMap::new();
    let mut renewed = vec![false; tokens.len()];
    let mut elapsed = Duration::ZERO;
    while elapsed < fraction {
        h.advance(step);
        elapsed += step;
        for (i, t) in tokens.iter().enumerate() {
            let r = h.engine.resolve(t, &NO_CTX).await.expect("live session resolves");
            if r.renewed {
                assert!(!renewed[i], "session {i} renewed twice within one fraction");
                assert!(elapsed >= fraction / 2, "session {i} renewed after {elapsed:?}, before half the fraction");
                renewed[i] = true;
                *renewals_at.entry(elapsed.as_millis()).or_default() += 1;
            }
        }
    }
    assert!(renewed.iter().all(|r| *r), "a session did not renew within the fraction");
    let busiest = renewals_at.values().max().copied().unwrap_or(0);
    // 300 renewals over 30 steps of 100 ms: ~10 per step; one burst would be 300.
    assert!(busiest <= 40, "renewals bunched: {renewals_at:?}");
    assert!(renewals_at.len() >= 20, "renewals in only {} steps: {renewals_at:?}", renewals_at.len());
}
