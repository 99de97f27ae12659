//! The metrics recorder does not keep one sample per request when nobody scrapes `/metrics`
//! (decision D27). Its own test binary, so that the process's memory is this test's alone.

use std::time::Duration;

use sessiond_server::app::{install_metrics, METRICS_UPKEEP_PERIOD};

/// The process's resident memory, in bytes (Linux).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[test]
fn histogram_samples_do_not_pile_up_without_a_scrape() {
    let handle = install_metrics().expect("the recorder installs");
    let histogram = metrics::histogram!("sessiond_test_upkeep_seconds");
    // One batch is up to 24 MB of pending samples (24 bytes each). Without the upkeep thread
    // the five batches stay in memory (measured: +82 MB); with it, each batch is folded into
    // the buckets and freed during the pause after it, and the next batch reuses that memory
    // (measured: +17 MB, less than one batch).
    const BATCH: u32 = 1_000_000;
    const BATCHES: u32 = 5;
    let before = rss();
    for _ in 0..BATCHES {
        for i in 0..BATCH {
            histogram.record(f64::from(i % 1000) * 1e-6);
        }
        std::thread::sleep(METRICS_UPKEEP_PERIOD * 2 + Duration::from_millis(200));
    }
    let grown = rss().saturating_sub(before);
    let batch_bytes = u64::from(BATCH) * 24;
    eprintln!("resident memory grew by {grown} bytes over {BATCHES} batches");
    assert!(
        grown < 2 * batch_bytes,
        "resident memory grew by {grown} bytes over {BATCHES} batches of {BATCH} samples: \
         the samples were kept (one batch is {batch_bytes} bytes)"
    );
    // Folded, not lost: the scrape reports every sample.
    let text = handle.render();
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("sessiond_test_upkeep_seconds_count "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("the histogram's count line");
    assert_eq!(count, u64::from(BATCH * BATCHES));
}
