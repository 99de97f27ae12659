//! Resolve throughput as the store grows, separating the store's algorithm from the CPU
//! caches (`docs/performance.md`, "Resolve at 10 thousand, 1 million and 10 million"):
//!
//! - **hot set:** the SAME 10,000 sessions (the first ones created), resolved in random order,
//!   in a store holding only them (10k) and in the big store (each of the given sizes): what
//!   the store adds as it grows;
//! - **uniform:** random order over a uniform sample of up to 1,000,000 of ALL the sessions
//!   of the big store: dominated by DRAM latency once the store outgrows the CPU caches (in the
//!   10k store, uniform over all sessions IS the hot set).
//!
//! Both are measured through `Engine::resolve` (tag check, hash, lookup, checks) and through
//! the store's `find_by_token` alone, with the resolve cache off (the baseline) and on (the
//! default), one task on a current-thread runtime. The 10k and big stores are open side by
//! side and measured alternately (10k, big hot, big uniform; 5 runs), so that both see the
//! same machine load; ratios are taken per run, then the median is printed.
//! At each size it also reports the disk per session (after a WAL checkpoint) and, in a fresh
//! child process (a real restart), the reopen time and the memory per session (RSS growth
//! across `open`, divided by the count).
//!
//! ```text
//! cargo run --release -p sessiond-store-embedded --example resolve_scale -- 10000 1000000 10000000
//! ```
//!
//! The store is filled through the real store API in bulk: `import_jsonl`, 100,000 sessions
//! per call (one transaction, fsynced), not through 10 million single creates. Sizes must be
//! ascending; the data goes to a temporary directory (`SESSIOND_MEASURE_DIR` to choose where;
//! 10 million sessions take ~10 GB of disk and ~7 GB of RAM, twice during the restart step).
//! Tokens stay in this process's memory and are never printed or written. Linux only (reads
//! `/proc/self/statm` and `/proc/self/stat`).
#![allow(clippy::disallowed_methods)] // a measurement tool: it times itself
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use sessiond_core::binding::RequestContext;
use sessiond_core::store::SessionStore;
use sessiond_core::time::{ManualClock, UnixMs};
use sessiond_core::token::{KeyId, KeyRing, SigningKey, TokenHash};
use sessiond_core::Engine;
use sessiond_store_embedded::{EmbeddedOptions, EmbeddedStore, DB_FILE};

#[path = "common/mod.rs"]
mod common;
use common::{cpu, record, rss, T0};

const HOT: usize = 10_000;
const UNIFORM: usize = 1_000_000;
const ROUNDS: usize = 500_000;
const RUNS: usize = 5;
const CHUNK: usize = 100_000;
const NO_CTX: RequestContext<'static> = RequestContext { ip: None, user_agent: None };

/// xorshift64*: cheap, good enough to pick indexes.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        Self(u64::from_le_bytes(sessiond_core::token::os_random::<8>()) | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % n as u64) as usize
    }
}

/// The tokens the measurement resolves: the hot set, and a uniform sample (reservoir) of
/// every session created so far.
struct Tokens {
    hot: Vec<(String, TokenHash)>,
    uniform: Vec<(String, TokenHash)>,
    created: usize,
    rng: Rng,
}

impl Tokens {
    fn add(&mut self, token: String, hash: TokenHash) {
        let i = self.created;
        self.created += 1;
        if self.hot.len() < HOT {
            self.hot.push((token.clone(), hash));
        }
        if self.uniform.len() < UNIFORM {
            self.uniform.push((token, hash));
        } else {
            let j = self.rng.below(i + 1);
            if j < UNIFORM {
                self.uniform[j] = (token, hash);
            }
        }
    }
}

/// Creates sessions up to `n` in total, by `import_jsonl` (100,000 per transaction); the
/// first [`HOT`] also go to `small`.
async fn fill(store: &EmbeddedStore, small: &EmbeddedStore, keys: &KeyRing, tokens: &mut Tokens, n: usize) {
    let (mut buf, mut hot) = (Vec::new(), Vec::new());
    while tokens.created < n {
        buf.clear();
        hot.clear();
        let end = (tokens.created + CHUNK).min(n);
        for j in tokens.created..end {
            let t = keys.mint();
            let r = record(j, *t.hash());
            tokens.add(t.expose().to_owned(), *t.hash());
            let at = buf.len();
            buf.extend_from_slice(br#"{"type":"session","record":"#);
            buf.extend_from_slice(&r.encode());
            buf.extend_from_slice(b"}\n");
            if j < HOT {
                hot.extend_from_slice(&buf[at..]);
            }
        }
        store.import_jsonl(&buf[..]).await.expect("import");
        if !hot.is_empty() {
            small.import_jsonl(&hot[..]).await.expect("import");
        }
    }
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:>9.0} [{:.0} - {:.0}]", v[v.len() / 2], v[0], v[v.len() - 1])
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Resolves/s through the engine and lookups/s through the store, over `set` in random order.
async fn rates(engine: &Engine, store: &EmbeddedStore, set: &[(String, TokenHash)]) -> (f64, f64) {
    let mut rng = Rng::new();
    // Warm up: every session of the hot set once (a uniform run in between may have evicted
    // them from the resolve cache), or as many random ones of a bigger set.
    for k in 0..set.len().min(HOT) {
        let (t, _) = if set.len() <= HOT { &set[k] } else { &set[rng.below(set.len())] };
        engine.resolve(t, &NO_CTX).await.expect("warm up");
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let r = engine.resolve(&set[rng.below(set.len())].0, &NO_CTX).await.expect("resolve");
        assert!(!r.renewed);
    }
    let engine_rate = ROUNDS as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let found = store.find_by_token(&set[rng.below(set.len())].1).await.expect("find");
        assert!(found.is_some());
    }
    (engine_rate, ROUNDS as f64 / started.elapsed().as_secs_f64())
}

/// Child process: open the store once, print wall time, CPU time, RSS growth, the session
/// count, then the RSS growth from filling the resolve cache (looking up as many stored token
/// hashes, read from the database, as the cache holds: no token is needed).
fn child_open(dir: &Path) {
    let before = rss();
    let (t, c) = (Instant::now(), cpu());
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open");
    let (wall, cpu_time) = (t.elapsed(), cpu() - c);
    let grown = rss() - before;
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).expect("conn");
    let entries = EmbeddedOptions::default().resolve_cache;
    let hashes: Vec<TokenHash> = conn
        .prepare("SELECT token_hash FROM sessions LIMIT ?1")
        .expect("prepare")
        .query_map([entries as i64], |r| r.get::<_, Vec<u8>>(0))
        .expect("query")
        .map(|h| TokenHash(h.expect("row").try_into().expect("32 bytes")))
        .collect();
    drop(conn);
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
    let before_cache = rss();
    for h in &hashes {
        assert!(rt.block_on(store.find_by_token(h)).expect("find").is_some());
    }
    let cache = rss().saturating_sub(before_cache);
    println!("{} {} {} {} {} {}", wall.as_millis(), cpu_time.as_millis(), grown, store.len(), cache, hashes.len());
    std::mem::forget(store); // exit without the final flush: nothing is pending
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--open") {
        child_open(Path::new(&args[1]));
        return;
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![10_000, 1_000_000]
    } else {
        args.iter().map(|a| a.parse().expect("a session count")).collect()
    };
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "sizes must be ascending");
    let tmp = match std::env::var_os("SESSIOND_MEASURE_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("tmp");
    let dir = tmp.path().join("store");
    let small_dir = tmp.path().join("small");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let single = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let key = SigningKey::generate();
    let keys = KeyRing::single(KeyId(1), key.clone());
    let mut tokens = Tokens { hot: Vec::new(), uniform: Vec::new(), created: 0, rng: Rng::new() };
    let mut out = std::io::stdout();
    let mut store = Some(EmbeddedStore::open(&dir, EmbeddedOptions::default()).expect("open"));
    let small = EmbeddedStore::open(&small_dir, EmbeddedOptions::default()).expect("open");
    rt.block_on(fill(store.as_ref().expect("store"), &small, &keys, &mut tokens, HOT));
    drop(small);
    writeln!(out, "hot set: the first {HOT} sessions; the 10k store holds exactly them").unwrap();

    for &n in &sizes {
        let t = Instant::now();
        let from = tokens.created;
        let small = EmbeddedStore::open(&small_dir, EmbeddedOptions::default()).expect("open");
        rt.block_on(fill(store.as_ref().expect("store"), &small, &keys, &mut tokens, n));
        drop(small);
        writeln!(out, "\n== {n} sessions (filled {} by import in {:.1}s)", n - from, t.elapsed().as_secs_f64())
            .unwrap();
        drop(store.take());
        let conn = rusqlite::Connection::open(dir.join(DB_FILE)).expect("conn");
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
        drop(conn);
        let disk = std::fs::metadata(dir.join(DB_FILE)).expect("db").len();
        writeln!(out, "disk: {} MiB = {} bytes/session (after checkpoint)", disk >> 20, disk / n as u64).unwrap();

        let child =
            Command::new(std::env::current_exe().expect("exe")).arg("--open").arg(&dir).output().expect("child");
        assert!(child.status.success(), "child open failed: {}", String::from_utf8_lossy(&child.stderr));
        let line = String::from_utf8_lossy(&child.stdout);
        let f: Vec<u64> = line.split_whitespace().map(|x| x.parse().expect("number")).collect();
        assert_eq!(f[3], n as u64, "every session loaded");
        writeln!(
            out,
            "restart (open, fresh process): {:.2}s wall, {:.2}s CPU; memory: RSS +{} MiB = {} bytes/session; \
             then filling the resolve cache ({} lookups): RSS +{} MiB = {} bytes/session",
            f[0] as f64 / 1000.0,
            f[1] as f64 / 1000.0,
            f[2] >> 20,
            f[2] / n as u64,
            f[5],
            f[4] >> 20,
            f[4] / n as u64
        )
        .unwrap();

        for (label, cache) in [("cache off", 0), ("cache on ", EmbeddedOptions::default().resolve_cache)] {
            let opts = EmbeddedOptions::default().with_resolve_cache(cache);
            let big = Arc::new(EmbeddedStore::open(&dir, opts.clone()).expect("open"));
            let small = Arc::new(EmbeddedStore::open(&small_dir, opts).expect("open"));
            let engine = |s: &Arc<EmbeddedStore>| {
                Engine::builder(s.clone(), KeyRing::single(KeyId(1), key.clone()))
                    .with_clock(Arc::new(ManualClock::new(UnixMs(T0.0 + 1000))))
                    .build()
            };
            let (e_big, e_small) = (engine(&big), engine(&small));
            let before = rss();
            // [small hot, big hot, big uniform] x [engine, store], one entry per run.
            let mut r: [[Vec<f64>; 2]; 3] = Default::default();
            for _ in 0..RUNS {
                for (k, (e, s, set)) in
                    [(&e_small, &small, &tokens.hot), (&e_big, &big, &tokens.hot), (&e_big, &big, &tokens.uniform)]
                        .into_iter()
                        .enumerate()
                {
                    let (er, sr) = single.block_on(rates(e, s, set));
                    r[k][0].push(er);
                    r[k][1].push(sr);
                }
            }
            let grown = rss().saturating_sub(before);
            for (m, what) in [(0, "Engine::resolve/s"), (1, "find_by_token/s  ")] {
                let ratio = |k: usize| {
                    let v: Vec<f64> = r[k][m].iter().zip(&r[0][m]).map(|(b, s)| (b / s - 1.0) * 100.0).collect();
                    median(&v)
                };
                writeln!(
                    out,
                    "{label} {what} 10k {} | {n} hot {} ({:+.1}%) | {n} uniform over {} {} ({:+.1}%)",
                    stats(r[0][m].clone()),
                    stats(r[1][m].clone()),
                    ratio(1),
                    tokens.uniform.len(),
                    stats(r[2][m].clone()),
                    ratio(2)
                )
                .unwrap();
            }
            writeln!(out, "{label} RSS +{} MiB while resolving (both stores)", grown >> 20).unwrap();
            drop((e_big, e_small, small));
            if cache != 0 {
                store = Arc::into_inner(big);
            }
        }
    }
    drop(store);
}
