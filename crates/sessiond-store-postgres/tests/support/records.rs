// A minimal session record for store-level tests (included by test files).
use sessiond_core::record::{DeviceInfo, SessionRecord};

/// A fresh record with a random id and token hash, live for 60 s from `now`.
pub fn record(tenant: &str, subject: &str, now: sessiond_core::time::UnixMs) -> SessionRecord {
    SessionRecord {
        id: sessiond_core::id::SessionId::from_bytes(sessiond_core::token::os_random::<16>()),
        token_hash: sessiond_core::token::TokenHash(sessiond_core::token::os_random::<32>()),
        subject: subject.into(),
        tenant: tenant.into(),
        policy: "test".into(),
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now.plus(std::time::Duration::from_secs(60)),
        absolute_expires_at: now.plus(std::time::Duration::from_secs(300)),
        rotated_at: now,
        auth_time: now,
        aal: 1,
        amr: vec!["pwd".into()],
        device: DeviceInfo::default(),
        data: Default::default(),
        revision: 0,
        epoch: 0,
        version: 0,
        retired: Vec::new(),
    }
}
