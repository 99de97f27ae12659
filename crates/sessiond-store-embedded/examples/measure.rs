//! Measurements for `docs/performance.md` that criterion does not fit: memory per
//! live session (RSS delta / count), disk bytes per session, restart (open) time, durable
//! creates/s with 64 concurrent writers, and `Engine::resolve` throughput at small vs large
//! session counts, with the in-memory store as the baseline in the same run.
//!
//! ```text
//! cargo run --release -p sessiond-store-embedded --example measure -- 1000000
//! ```
//!
//! Linux only (reads `/proc/self/statm`).
#![allow(clippy::disallowed_methods)] // a measurement tool: it times itself
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessiond_core::binding::RequestContext;
use sessiond_core::record::DeviceInfo;
use sessiond_core::store::memory::MemoryStore;
use sessiond_core::store::SessionStore;
use sessiond_core::time::{ManualClock, UnixMs};
use sessiond_core::token::{KeyId, KeyRing, SigningKey};
use sessiond_core::Engine;
use sessiond_store_embedded::{EmbeddedOptions, EmbeddedStore, DB_FILE};

#[path = "common/mod.rs"]
mod common;
use common::{cpu, record, rss, T0};

const SAMPLE: usize = 100_000;
const NO_CTX: RequestContext<'static> = RequestContext { ip: None, user_agent: None };

/// Fills an embedded store in `dir` with `n` sessions through `import_jsonl` (chunks of 100k
/// per transaction); returns a sample of tokens.
async fn fill_embedded(dir: &std::path::Path, keys: &KeyRing, n: usize) -> Vec<String> {
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open");
    let mut sample = Vec::new();
    let mut i = 0;
    while i < n {
        let mut buf = Vec::new();
        let end = (i + 100_000).min(n);
        for j in i..end {
            let t = keys.mint();
            if sample.len() < SAMPLE {
                sample.push(t.expose().to_owned());
            }
            let r = record(j, *t.hash());
            buf.extend_from_slice(br#"{"type":"session","record":"#);
            buf.extend_from_slice(&r.encode());
            buf.extend_from_slice(b"}\n");
        }
        store.import_jsonl(&buf[..]).await.expect("import");
        i = end;
    }
    drop(store);
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).expect("conn");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
    sample
}

async fn fill_memory(store: &MemoryStore, keys: &KeyRing, n: usize) -> Vec<String> {
    let mut sample = Vec::new();
    for j in 0..n {
        let t = keys.mint();
        if sample.len() < SAMPLE {
            sample.push(t.expose().to_owned());
        }
        store.create(record(j, *t.hash()), None, T0).await.expect("create");
    }
    sample
}

/// Resolves `rounds` times over the sampled tokens on one task; returns resolves/s.
async fn resolve_rate(store: Arc<dyn SessionStore>, key: &SigningKey, tokens: &[String], rounds: usize) -> f64 {
    let engine = Engine::builder(store, KeyRing::single(KeyId(1), key.clone()))
        .with_clock(Arc::new(ManualClock::new(UnixMs(T0.0 + 1000))))
        .build();
    for t in tokens.iter().take(1000) {
        engine.resolve(t, &NO_CTX).await.expect("warm up");
    }
    let started = Instant::now();
    for k in 0..rounds {
        let r = engine.resolve(&tokens[(k * 7919) % tokens.len()], &NO_CTX).await.expect("resolve");
        assert!(!r.renewed);
    }
    rounds as f64 / started.elapsed().as_secs_f64()
}

async fn creates_64(dir: &std::path::Path, per_writer: usize) -> f64 {
    let store = Arc::new(EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open"));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..per_writer {
                let mut h = [0u8; 32];
                h[..8].copy_from_slice(&((w * per_writer + k) as u64).to_le_bytes());
                h[8..].copy_from_slice(&sessiond_core::token::os_random::<24>());
                let r = record(w * per_writer + k, sessiond_core::token::TokenHash(h));
                s.create(r, None, T0).await.expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    (64 * per_writer) as f64 / started.elapsed().as_secs_f64()
}

/// `Engine::create` (store create + its `created` event) with 64 concurrent writers.
async fn engine_creates_64(dir: &std::path::Path, keys: &KeyRing, per_writer: usize) -> f64 {
    let store = Arc::new(EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open"));
    let engine = Engine::builder(store.clone(), keys.clone())
        .with_clock(Arc::new(ManualClock::new(UnixMs(T0.0 + 1000))))
        .build();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let e = engine.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..per_writer {
                let req = sessiond_core::CreateRequest {
                    subject: format!("user-{w:02}-{k:06}"),
                    tenant: "acme".into(),
                    aal: 1,
                    amr: vec!["pwd".into()],
                    device: DeviceInfo {
                        user_agent: Some(
                            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36".into(),
                        ),
                        first_ip: Some("203.0.113.57".into()),
                        last_ip: Some("203.0.113.57".into()),
                    },
                    ..Default::default()
                };
                e.create(req).await.expect("engine create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let rate = (64 * per_writer) as f64 / started.elapsed().as_secs_f64();
    let events = store.read_events(0, usize::MAX).await.expect("events").len();
    assert_eq!(events, 64 * per_writer, "one created event per create");
    rate
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let small = 10_000usize.min(n);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let key = SigningKey::generate();
    let keys = KeyRing::single(KeyId(1), key.clone());
    let tmp = tempfile::tempdir().expect("tmp");
    let mut out = std::io::stdout();

    // Durable creates with 64 concurrent writers (fresh store).
    let rate = rt.block_on(creates_64(&tmp.path().join("creates"), 500));
    writeln!(out, "durable creates/s, 64 writers, 32,000 creates: {rate:.0}").unwrap();
    let rate = rt.block_on(engine_creates_64(&tmp.path().join("engine-creates"), &keys, 500));
    writeln!(out, "durable Engine::create/s (with its event), 64 writers, 32,000 creates: {rate:.0}").unwrap();

    // Fill both sizes on disk first, then measure each open in isolation.
    let big_dir = tmp.path().join("big");
    let small_dir = tmp.path().join("small");
    let t = Instant::now();
    let big_tokens = rt.block_on(fill_embedded(&big_dir, &keys, n));
    writeln!(out, "filled {n} sessions by import in {:.1}s", t.elapsed().as_secs_f64()).unwrap();
    let small_tokens = rt.block_on(fill_embedded(&small_dir, &keys, small));
    let disk = std::fs::metadata(big_dir.join(DB_FILE)).expect("db").len();
    writeln!(out, "disk: {} MiB for {n} sessions = {} bytes/session (after checkpoint)", disk >> 20, disk / n as u64)
        .unwrap();

    let before = rss();
    let (t, c) = (Instant::now(), cpu());
    let big = Arc::new(EmbeddedStore::open(&big_dir, EmbeddedOptions::default()).expect("open"));
    let (open_time, open_cpu) = (t.elapsed(), cpu() - c);
    let after = rss();
    writeln!(
        out,
        "restart (open) with {n} sessions: {:.2}s wall, {:.2}s CPU (all threads)",
        open_time.as_secs_f64(),
        open_cpu.as_secs_f64()
    )
    .unwrap();
    writeln!(
        out,
        "memory: RSS +{} MiB for {n} sessions = {} bytes/session including indexes",
        (after - before) >> 20,
        (after - before) / n as u64
    )
    .unwrap();

    let rounds = 500_000;
    let single = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let small_store = Arc::new(EmbeddedStore::open(&small_dir, EmbeddedOptions::default()).expect("open"));
    let e_small = single.block_on(resolve_rate(small_store, &key, &small_tokens, rounds));
    let e_big = single.block_on(resolve_rate(big.clone(), &key, &big_tokens, rounds));
    drop(big);

    let m_small_store = Arc::new(MemoryStore::new());
    let m_small_tokens = single.block_on(fill_memory(&m_small_store, &keys, small));
    let m_small = single.block_on(resolve_rate(m_small_store, &key, &m_small_tokens, rounds));
    let before = rss();
    let m_big_store = Arc::new(MemoryStore::new());
    let m_big_tokens = single.block_on(fill_memory(&m_big_store, &keys, n));
    let m_rss = rss() - before;
    let m_big = single.block_on(resolve_rate(m_big_store, &key, &m_big_tokens, rounds));
    writeln!(out, "resolve/s on one task (Engine::resolve, no renewal), {rounds} resolves over 100k tokens:").unwrap();
    writeln!(out, "  embedded {small:>9}: {e_small:>10.0}   memory {small:>9}: {m_small:>10.0}").unwrap();
    writeln!(out, "  embedded {n:>9}: {e_big:>10.0}   memory {n:>9}: {m_big:>10.0}").unwrap();
    writeln!(
        out,
        "  embedded {n} vs {small}: {:+.1}%   (MemoryStore RSS for {n}: {} bytes/session)",
        (e_big / e_small - 1.0) * 100.0,
        m_rss / n as u64
    )
    .unwrap();
    let _ = Duration::ZERO;
}
