#![allow(missing_docs)] // criterion_group! generates undocumented items
#![allow(clippy::disallowed_methods)] // benchmarks time themselves
//! A renewal over Redis, two ways in the same run (issue 5):
//! - `from_copy`: `renew` with the copy the engine holds, still current — the one-script path
//!   (`renew_copy`: one round trip);
//! - `from_stale_copy`: `renew` with a copy whose version is outdated, so the store falls back
//!   to renewing the stored record: the `renew_copy` attempt, then the id pointer `GET`, the
//!   `load` script, the sweep hint and the compare-and-set `renew` script (what every renewal
//!   cost before the one-script path, plus that first attempt).
//!
//! Before the timings it prints the Redis commands per renewal of each way (`INFO
//! commandstats` deltas over 1,000 renewals; script-inner commands included).
//!
//! Run: `cargo bench -p sessiond-store-redis --bench renew` (Redis on 127.0.0.1:6379, or
//! `SESSIOND_TEST_REDIS_URL`; keys under a random prefix, deleted at the end).

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sessiond_core::record::SessionRecord;
use sessiond_core::time::{Clock, SystemClock, UnixMs};
use sessiond_core::SessionStore;
use sessiond_store_redis::{RedisOptions, RedisStore};

const SESSIONS: usize = 1_000;

fn redis_url() -> String {
    std::env::var("SESSIOND_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Total calls of every command so far (`INFO commandstats`), through `redis-cli`.
fn commands(url: &str) -> u64 {
    let out = Command::new("redis-cli").args(["-u", url, "info", "commandstats"]).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .sum()
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    store: RedisStore,
    prefix: String,
    sessions: Vec<SessionRecord>,
    /// Strictly increasing renewal times, so that every renewal writes.
    clock: AtomicU64,
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let prefix = format!(
            "sdb-{}",
            sessiond_core::token::os_random::<8>().iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let options = RedisOptions { key_prefix: prefix.clone(), ..Default::default() };
        let store = rt.block_on(RedisStore::connect(&redis_url(), options)).expect("connect to redis");
        // TTLs follow the real clock.
        let now = SystemClock.now();
        let sessions: Vec<SessionRecord> =
            (0..SESSIONS).map(|i| sessiond_conformance::record("bench", &format!("user-{i}"), now)).collect();
        rt.block_on(async {
            for r in &sessions {
                store.create(r.clone(), None, now).await.expect("create");
            }
        });
        Self { rt, store, prefix, sessions, clock: AtomicU64::new(now.0) }
    }

    /// Renews session `i` one millisecond later than the previous renewal, from its current
    /// copy or (`stale`) from a copy with an outdated version.
    async fn renew(&self, i: usize, stale: bool) {
        let current = &self.sessions[i % SESSIONS];
        let seen = UnixMs(self.clock.fetch_add(1, Ordering::Relaxed) + 1);
        let idle = seen.plus(Duration::from_secs(30 * 60));
        if stale {
            let mut old = current.clone();
            old.version = old.version.wrapping_add(1);
            self.store.renew(&old, seen, idle, None).await.expect("renew");
        } else {
            self.store.renew(current, seen, idle, None).await.expect("renew");
        }
    }

    fn commands_per_renewal(&self, stale: bool) -> f64 {
        let url = redis_url();
        let before = commands(&url);
        self.rt.block_on(async {
            for i in 0..1_000 {
                self.renew(i, stale).await;
            }
        });
        // The INFO call itself counts once.
        (commands(&url) - before).saturating_sub(1) as f64 / 1_000.0
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let line = format!(
            "redis-cli -u '{}' --scan --pattern '{}:*' | xargs -r -n 500 redis-cli -u '{}' del >/dev/null",
            redis_url(),
            self.prefix,
            redis_url()
        );
        let _ = Command::new("sh").arg("-c").arg(line).status();
    }
}

fn bench(c: &mut Criterion) {
    let f = Fixture::new();
    println!(
        "Redis commands per renewal: from_copy {:.2}, from_stale_copy {:.2}",
        f.commands_per_renewal(false),
        f.commands_per_renewal(true)
    );
    let mut g = c.benchmark_group("redis_renew");
    for (name, stale) in [("from_copy", false), ("from_stale_copy", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                f.rt.block_on(async {
                    let t = Instant::now();
                    for i in 0..iters {
                        f.renew(i as usize, stale).await;
                    }
                    t.elapsed()
                })
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
