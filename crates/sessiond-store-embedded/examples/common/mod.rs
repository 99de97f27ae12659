//! Shared by the measurement examples and the criterion bench: the session records they load.

use std::time::Duration;

use sessiond_core::record::{DeviceInfo, SessionRecord};
use sessiond_core::time::UnixMs;
use sessiond_core::token::TokenHash;
use sessiond_core::SessionId;

/// The fixed "now" of every measurement.
pub const T0: UnixMs = UnixMs(1_700_000_000_000);

/// Session number `i` with token hash `hash`: four sessions per subject, a browser's user
/// agent and address, the default policy, 30 min idle and 12 h absolute lifetime from [`T0`].
pub fn record(i: usize, hash: TokenHash) -> SessionRecord {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i as u64).to_le_bytes());
    id[8..].copy_from_slice(&sessiond_core::token::os_random::<8>());
    SessionRecord {
        id: SessionId::from_bytes(id),
        token_hash: hash,
        subject: format!("user-{:08}", i / 4),
        tenant: "acme".into(),
        policy: "default".into(),
        created_at: T0,
        last_seen_at: T0,
        idle_expires_at: UnixMs(T0.0 + 30 * 60_000),
        absolute_expires_at: UnixMs(T0.0 + 12 * 3_600_000),
        rotated_at: T0,
        auth_time: T0,
        aal: 1,
        amr: vec!["pwd".into()],
        device: DeviceInfo {
            user_agent: Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
                    .into(),
            ),
            first_ip: Some("203.0.113.57".into()),
            last_ip: Some("203.0.113.57".into()),
        },
        data: Default::default(),
        revision: 0,
        epoch: 0,
        version: 0,
        retired: Vec::new(),
    }
}

/// Resident memory of this process, from `/proc/self/statm` (4 KiB pages).
#[allow(dead_code)] // the examples use it; the criterion bench, which shares this file, does not
pub fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").expect("statm");
    s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).expect("rss pages") * 4096
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (clock ticks of
/// 10 ms).
#[allow(dead_code)] // the examples use it; the criterion bench, which shares this file, does not
pub fn cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let after = &s[s.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}
