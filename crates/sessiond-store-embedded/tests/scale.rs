//! Scale test: N sessions (20,000 by default; `SESSIOND_SCALE=1000000` for a million), then
//! resolve, list and sweep still work, and the time to reopen is reported.

mod common;

use std::sync::Arc;
use std::time::Duration;

use sessiond_core::store::SessionStore;
use sessiond_core::time::UnixMs;
use sessiond_store_embedded::{EmbeddedOptions, EmbeddedStore};

const T0: UnixMs = UnixMs(1_700_000_000_000);

fn id_of(i: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&i.to_le_bytes());
    b[8..].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
    b
}

fn hash_of(i: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&id_of(i));
    b[16..24].copy_from_slice(&(i ^ 0xA5A5).to_le_bytes());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)] // timing the test itself
async fn many_sessions_resolve_list_sweep_and_reopen() {
    let n: u64 = std::env::var("SESSIOND_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("open"));
    let started = std::time::Instant::now();
    // Half the sessions expire at T0 + 30 min, half a day later; 4 sessions per subject.
    let writers = 128u64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                let mut r = common::record(id_of(i), hash_of(i), "scale", &format!("user{}", i / 4), UnixMs(T0.0 + i));
                r.idle_expires_at = UnixMs(T0.0 + if i % 2 == 0 { 86_400_000 } else { 30 * 60_000 });
                r.absolute_expires_at = UnixMs(T0.0 + 86_400_000);
                s.create(r, None, T0).await.expect("create");
                i += writers;
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let fill = started.elapsed();
    assert_eq!(store.len() as u64, n);
    drop(store);

    let started = std::time::Instant::now();
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("reopen");
    let reopen = started.elapsed();
    assert_eq!(store.len() as u64, n);
    for i in (0..n).step_by((n / 1000).max(1) as usize) {
        let found = store.find_by_token(&sessiond_core::token::TokenHash(hash_of(i))).await.expect("find");
        assert_eq!(found.expect("resolves").record.id.as_bytes(), &id_of(i));
    }
    let page = store.list_subject("scale", "user10", None, 10, T0).await.expect("list");
    assert_eq!(page.sessions.len(), 4.min(n as usize));
    // After 31 minutes the odd half is expired: not listed, then swept in bounded batches.
    let later = UnixMs(T0.0 + 31 * 60_000);
    let page = store.list_subject("scale", "user10", None, 10, later).await.expect("list");
    assert_eq!(page.sessions.len(), 2.min(n as usize));
    let started = std::time::Instant::now();
    let mut swept = 0u64;
    loop {
        let batch = store.sweep_expired(later, 10_000).await.expect("sweep");
        assert!(batch.len() <= 10_000);
        if batch.is_empty() {
            break;
        }
        swept += batch.len() as u64;
    }
    let sweep = started.elapsed();
    assert_eq!(swept, n / 2, "every expired session swept, no live one");
    assert_eq!(store.len() as u64, n - n / 2);
    assert!(store.find_by_token(&sessiond_core::token::TokenHash(hash_of(1))).await.expect("find").is_none());
    assert!(store.find_by_token(&sessiond_core::token::TokenHash(hash_of(0))).await.expect("find").is_some());
    let disk: u64 =
        std::fs::read_dir(dir.path()).expect("dir").map(|f| f.expect("f").metadata().expect("m").len()).sum();
    eprintln!(
        "scale n={n}: fill {:.1}s ({:.0} creates/s, 128 writers), reopen {:.2}s, sweep of {swept} {:.2}s, disk {} MiB",
        fill.as_secs_f64(),
        n as f64 / fill.as_secs_f64(),
        reopen.as_secs_f64(),
        sweep.as_secs_f64(),
        disk >> 20
    );
    assert!(reopen < Duration::from_secs(600));
}
