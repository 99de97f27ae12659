//! Export and import as JSON lines, and reading the event log.
//!
//! Line format (one JSON object per line, UTF-8, `\n`-terminated):
//!
//! ```text
//! {"type":"epoch","tenant":"acme","subject":"alice","epoch":2}
//! {"type":"session","record":{"v":1,"id":"ses_…","token_hash":"…",…}}
//! ```
//!
//! `record` is exactly [`SessionRecord::encode`]'s versioned JSON. Empty lines are ignored.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::Arc;

use rusqlite::Connection;

use sessiond_core::event::Event;
use sessiond_core::id::SessionId;
use sessiond_core::record::{check_name, json_depth, SessionRecord, MAX_DATA_DEPTH, MAX_DATA_KEYS, MAX_EPOCH};
use sessiond_core::token::TokenHash;
use sessiond_core::StoreError;

use crate::mem::FastSet;
use crate::{sql_err, Shared};

/// Lines per message from the database reader to the writing task.
const CHUNK: usize = 512;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Epoch { tenant: String, subject: String, epoch: u64 },
    Session { record: serde_json::Value },
}

/// Streams every session and epoch of one database snapshot to `w`.
pub(crate) async fn export(shared: Arc<Shared>, mut w: impl Write + Send) -> Result<u64, StoreError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let reader = tokio::task::spawn_blocking(move || {
        shared.with_reader(|conn| {
            let snapshot = conn.transaction().map_err(sql_err("start an export snapshot"))?;
            let mut buf = Vec::new();
            let mut lines = 0usize;
            let emit = |buf: &mut Vec<u8>, lines: &mut usize| -> bool {
                *lines += 1;
                if *lines % CHUNK == 0 {
                    return tx.blocking_send(std::mem::take(buf)).is_ok();
                }
                true
            };
            {
                let mut stmt = snapshot
                    .prepare("SELECT tenant, subject, epoch FROM epochs WHERE epoch > 0 ORDER BY tenant, subject")
                    .map_err(sql_err("export epochs"))?;
                let mut rows = stmt.query([]).map_err(sql_err("export epochs"))?;
                while let Some(row) = rows.next().map_err(sql_err("export epochs"))? {
                    let line = Line::Epoch {
                        tenant: row.get(0).map_err(sql_err("export epochs"))?,
                        subject: row.get(1).map_err(sql_err("export epochs"))?,
                        epoch: u64::try_from(row.get::<_, i64>(2).map_err(sql_err("export epochs"))?).unwrap_or(0),
                    };
                    // Serialising plain strings and numbers cannot fail.
                    serde_json::to_writer(&mut buf, &line).unwrap_or_default();
                    buf.push(b'\n');
                    if !emit(&mut buf, &mut lines) {
                        return Ok(0);
                    }
                }
            }
            let mut sessions = 0u64;
            let mut stmt = snapshot
                .prepare("SELECT record FROM sessions ORDER BY created_at, id")
                .map_err(sql_err("export sessions"))?;
            let mut rows = stmt.query([]).map_err(sql_err("export sessions"))?;
            while let Some(row) = rows.next().map_err(sql_err("export sessions"))? {
                let bytes = row.get_ref(0).map_err(sql_err("export sessions"))?.as_bytes_or_null().ok().flatten();
                // Undecodable records are absent (decode counts them) and are not exported.
                let Some(r) = bytes.and_then(SessionRecord::decode) else { continue };
                buf.extend_from_slice(br#"{"type":"session","record":"#);
                buf.extend_from_slice(&r.encode());
                buf.extend_from_slice(b"}\n");
                sessions += 1;
                if !emit(&mut buf, &mut lines) {
                    return Ok(sessions);
                }
            }
            if !buf.is_empty() {
                let _ = tx.blocking_send(buf);
            }
            Ok(sessions)
        })
    });
    let mut failed = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = w.write_all(&chunk) {
            failed = Some(e);
            break;
        }
    }
    drop(rx);
    let n = reader.await.map_err(|e| StoreError::unavailable("embedded store: the export reader failed", e))??;
    if let Some(e) = failed {
        return Err(StoreError::unavailable("embedded store: could not write the export", e));
    }
    w.flush().map_err(|e| StoreError::unavailable("embedded store: could not write the export", e))?;
    Ok(n)
}

/// Sessions (with their line numbers) and epochs parsed from an export.
pub(crate) type Parsed = (Vec<(usize, Arc<SessionRecord>)>, Vec<(String, String, u64)>);

fn bad_line(n: usize, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("import line {n}: {what}"))
}

/// Parses and checks a whole export before anything is written.
pub(crate) fn parse(r: impl BufRead) -> Result<Parsed, StoreError> {
    let mut sessions = Vec::new();
    let mut epochs: HashMap<(String, String), u64> = HashMap::new();
    let mut ids: FastSet<SessionId> = FastSet::default();
    let mut hashes: FastSet<TokenHash> = FastSet::default();
    for (i, line) in r.lines().enumerate() {
        let n = i + 1;
        let line =
            line.map_err(|e| StoreError::unavailable(format!("embedded store: could not read import line {n}"), e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Err(e) => return Err(bad_line(n, format_args!("not an export line ({e})"))),
            Ok(Line::Epoch { tenant, subject, epoch }) => {
                if epoch > MAX_EPOCH {
                    return Err(bad_line(n, "the epoch is larger than a store keeps"));
                }
                let e = epochs.entry((tenant, subject)).or_default();
                *e = (*e).max(epoch);
            }
            Ok(Line::Session { record }) => {
                // Re-serialising a parsed JSON value cannot fail.
                let bytes = serde_json::to_vec(&record).unwrap_or_default();
                let Some(r) = SessionRecord::decode(&bytes) else {
                    return Err(bad_line(n, "the session record does not decode (bad fields or unknown version)"));
                };
                if let Some(why) = implausible(&r) {
                    return Err(bad_line(n, format_args!("session {}: {why}", r.id)));
                }
                if !ids.insert(r.id) {
                    return Err(bad_line(n, format_args!("session {} appears twice", r.id)));
                }
                if r.lookup_hashes().any(|h| !hashes.insert(*h)) {
                    return Err(bad_line(n, format_args!("a token hash of session {} appears twice", r.id)));
                }
                sessions.push((n, Arc::new(r)));
            }
        }
    }
    let mut epochs: Vec<_> = epochs.into_iter().map(|((t, s), e)| (t, s, e)).collect();
    epochs.sort();
    Ok((sessions, epochs))
}

/// Why an imported record could not have been written by sessiond, if so: an export is
/// trusted no more than any other input (a hand-edited or hostile file must not plant an
/// epoch no bump can pass, data that cannot be read back, or deadlines out of order).
fn implausible(r: &SessionRecord) -> Option<&'static str> {
    if r.epoch > MAX_EPOCH {
        return Some("its epoch is larger than a store keeps");
    }
    if r.aal > 3 {
        return Some("its assurance level is above 3");
    }
    if r.idle_expires_at > r.absolute_expires_at || r.created_at > r.absolute_expires_at {
        return Some("its deadlines are out of order");
    }
    if r.auth_time > r.created_at.max(r.rotated_at).max(r.last_seen_at) {
        return Some("its authentication time is later than anything the session did");
    }
    if check_name(&r.subject, "subject").is_err() || (!r.tenant.is_empty() && check_name(&r.tenant, "tenant").is_err())
    {
        return Some("its subject or tenant breaks the naming rules");
    }
    if r.data.len() > MAX_DATA_KEYS || r.data.values().any(|v| json_depth(v) > MAX_DATA_DEPTH) {
        return Some("its data breaks the limits (keys or nesting)");
    }
    None
}

/// Events after `after`, in cursor order.
pub(crate) fn read_events(conn: &mut Connection, after: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT cursor, body FROM events WHERE cursor > ?1 ORDER BY cursor LIMIT ?2")
        .map_err(sql_err("read events"))?;
    let mut rows = stmt.query([after, limit]).map_err(sql_err("read events"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql_err("read events"))? {
        let cursor: i64 = row.get(0).map_err(sql_err("read events"))?;
        let body: String = row.get(1).map_err(sql_err("read events"))?;
        match serde_json::from_str::<Event>(&body) {
            Ok(mut e) => {
                e.cursor = u64::try_from(cursor).unwrap_or(0);
                out.push(e);
            }
            Err(e) => {
                metrics::counter!("sessiond_store_undecodable_events_total").increment(1);
                tracing::warn!(cursor, error = %e, "undecodable event skipped");
            }
        }
    }
    Ok(out)
}
