//! Criterion benchmarks of the embedded store: durable creates with 64 concurrent writers
//! (group commit), and `Engine::resolve` / `find_by_token` over the embedded store (with its
//! resolve cache, and with the cache off: the baseline in the same run) vs the in-memory
//! store at 10,000 sessions. Larger counts (1 million, 10 million) are measured by
//! `examples/measure.rs`, because filling them does not fit criterion's loop.
//!
//! ```text
//! cargo bench -p sessiond-store-embedded --bench embedded
//! cargo bench -p sessiond-store-embedded --bench embedded -- resolve   # resolve groups only
//! ```
#![allow(clippy::disallowed_methods)] // benchmarks time themselves
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sessiond_core::binding::RequestContext;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::store::SessionStore;
use sessiond_core::time::{ManualClock, UnixMs};
use sessiond_core::token::{KeyId, KeyRing, SigningKey, TokenHash};
use sessiond_core::Engine;
use sessiond_store_embedded::{EmbeddedOptions, EmbeddedStore};

#[path = "../examples/common/mod.rs"]
mod common;
use common::{record, T0};

const NO_CTX: RequestContext<'static> = RequestContext { ip: None, user_agent: None };

fn creates(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap());
    let counter = Arc::new(AtomicU64::new(0));
    let per_writer = 16u64;
    let mut g = c.benchmark_group("durable_create");
    g.throughput(Throughput::Elements(64 * per_writer));
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("64_writers", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let mut tasks = Vec::new();
                    for _ in 0..64 {
                        let (s, counter) = (store.clone(), counter.clone());
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..per_writer {
                                let n = counter.fetch_add(1, Ordering::Relaxed);
                                let mut h = sessiond_core::token::os_random::<32>();
                                h[..8].copy_from_slice(&n.to_le_bytes());
                                s.create(record(n as usize, TokenHash(h)), None, T0).await.unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                }
                started.elapsed()
            })
        })
    });
    g.finish();
}

fn resolve(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key = SigningKey::generate();
    let keys = KeyRing::single(KeyId(1), key.clone());
    let dir = tempfile::tempdir().unwrap();
    let n = 10_000u64;
    let embedded = Arc::new(EmbeddedStore::open(dir.path().join("cached"), EmbeddedOptions::default()).unwrap());
    let nocache = Arc::new(
        EmbeddedStore::open(dir.path().join("nocache"), EmbeddedOptions::default().with_resolve_cache(0)).unwrap(),
    );
    let memory = Arc::new(MemoryStore::new());
    let mut tokens = Vec::new();
    let mut hashes = Vec::new();
    rt.block_on(async {
        for i in 0..n {
            let t = keys.mint();
            let r = record(i as usize, *t.hash());
            embedded.create(r.clone(), None, T0).await.unwrap();
            nocache.create(r.clone(), None, T0).await.unwrap();
            memory.create(r, None, T0).await.unwrap();
            tokens.push(t.expose().to_owned());
            hashes.push(*t.hash());
        }
    });
    let stores: [(&str, Arc<dyn SessionStore>); 3] =
        [("embedded", embedded), ("embedded_nocache", nocache), ("memory", memory)];

    let mut g = c.benchmark_group("find_by_token_10k");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(4));
    for (name, store) in &stores {
        let mut k = 0usize;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            // One `block_on` per sample, not per lookup: it would cost as much as a hit.
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        k = (k + 7919) % hashes.len();
                        std::hint::black_box(store.find_by_token(&hashes[k]).await.unwrap().unwrap());
                    }
                    started.elapsed()
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("resolve_10k");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(4));
    for (name, store) in stores {
        let engine = Engine::builder(store, KeyRing::single(KeyId(1), key.clone()))
            .with_clock(Arc::new(ManualClock::new(UnixMs(T0.0 + 1000))))
            .build();
        let mut k = 0usize;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        k = (k + 7919) % tokens.len();
                        std::hint::black_box(engine.resolve(&tokens[k], &NO_CTX).await.unwrap());
                    }
                    started.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, creates, resolve);
criterion_main!(benches);
