//! Shared by the measurement examples and the criterion bench: the session records they load.

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
