#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Criterion benchmarks of the engine on the in-memory store: resolve (hit, no renewal due),
//! its parts (tag verification alone, and a bare hash-map lookup as a floor), and create;
//! and decoding a stored record (`record_decode`): `SessionRecord::decode` (one pass through a
//! `#[serde(flatten)]` wrapper) against a two-pass decoder that was tried instead and found
//! slower (`docs/performance.md`, eighth session).
//!
//! Run: `cargo bench -p sessiond-core --bench engine`

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::time::{ManualClock, UnixMs};
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::{CreateRequest, Engine, RequestContext};

/// Polls a future that completes without waiting (the memory store never waits), with no
/// runtime in the measurement.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn engine() -> Engine {
    let clock = Arc::new(ManualClock::new(UnixMs(1_800_000_000_000)));
    Engine::builder(Arc::new(MemoryStore::new()), KeyRing::single(KeyId(1), SigningKey::generate()))
        .with_clock(clock)
        .build()
}

fn request(i: usize) -> CreateRequest {
    CreateRequest { subject: format!("user-{i}"), aal: 1, amr: vec!["pwd".into()], ..Default::default() }
}

fn bench(c: &mut Criterion) {
    const SESSIONS: usize = 10_000;
    let e = engine();
    let tokens: Vec<String> =
        (0..SESSIONS).map(|i| ready(e.create(request(i))).expect("create").token.expose().to_owned()).collect();
    let ctx = RequestContext::default();

    let mut g = c.benchmark_group("resolve");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("resolve_hit_no_renewal_10k", |b| {
        b.iter(|| {
            i = (i + 1) % SESSIONS;
            let r = ready(e.resolve(black_box(&tokens[i]), &ctx)).expect("resolve");
            debug_assert!(!r.renewed);
            black_box(r.session.aal)
        })
    });
    let mut i = 0usize;
    g.bench_function("verify_tag_only", |b| {
        b.iter(|| {
            i = (i + 1) % SESSIONS;
            black_box(e.keys().verify(black_box(&tokens[i])).expect("verify").hash().0[0])
        })
    });
    let map: std::collections::HashMap<usize, Arc<String>> =
        (0..SESSIONS).map(|i| (i, Arc::new(tokens[i].clone()))).collect();
    let mut i = 0usize;
    g.bench_function("baseline_hashmap_get_arc_clone", |b| {
        b.iter(|| {
            i = (i + 1) % SESSIONS;
            black_box(map.get(black_box(&i)).cloned())
        })
    });
    let mut i = 0usize;
    g.bench_function("forged_token_rejected", |b| {
        let forged: Vec<String> = tokens.iter().map(|t| format!("{}A", &t[..t.len() - 1])).collect();
        b.iter(|| {
            i = (i + 1) % SESSIONS;
            black_box(ready(e.resolve(black_box(&forged[i]), &ctx)).is_err())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("create");
    g.throughput(Throughput::Elements(1));
    let e = engine();
    let mut n = 0usize;
    g.bench_function("create_memory_store", |b| {
        b.iter(|| {
            n += 1;
            black_box(ready(e.create(request(n))).expect("create").session.id)
        })
    });
    g.finish();
}

/// The version field alone: the first pass of the two-pass decoder.
#[derive(serde::Deserialize)]
struct VersionOnly {
    v: u32,
}

/// The two-pass decoder that was tried instead of `SessionRecord::decode`: the version, then
/// the record directly (it ignores the `v` field).
fn two_pass(bytes: &[u8]) -> Option<sessiond_core::SessionRecord> {
    match serde_json::from_slice::<VersionOnly>(bytes) {
        Ok(VersionOnly { v: 1 }) => serde_json::from_slice(bytes).ok(),
        _ => None,
    }
}

fn record_decode(c: &mut Criterion) {
    let e = engine();
    let mut req = request(1);
    req.device.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0".into());
    req.device.first_ip = Some("203.0.113.7".into());
    req.data.insert("role".into(), serde_json::json!({"name": "editor", "teams": [1, 2, 3]}));
    let created = ready(e.create(req)).expect("create");
    let bytes = created.session.encode();
    assert_eq!(two_pass(&bytes).as_ref(), Some(&*created.session), "both decoders agree");
    let mut g = c.benchmark_group("record_decode");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("decode", |b| b.iter(|| sessiond_core::SessionRecord::decode(black_box(&bytes))));
    g.bench_function("two_pass", |b| b.iter(|| two_pass(black_box(&bytes))));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench, record_decode
}
criterion_main!(benches);
