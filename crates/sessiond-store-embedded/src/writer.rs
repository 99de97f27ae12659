//! The writer thread: group commit.
//!
//! Every durable change is a [`Op`] sent over a channel. The thread takes the first queued
//! op, drains whatever else is queued (up to `max_batch`), evaluates them in order against a
//! [`Stage`] (committed state plus the batch so far), writes all their rows in ONE SQLite
//! transaction, commits (WAL, `synchronous=FULL`: the commit is fsynced), then applies the
//! batch to the in-memory index and only then answers every waiter. A reader therefore never
//! sees a change that is not on disk, and a caller never gets `Ok` for one.
//!
//! Deferred renewals (see [`crate::EmbeddedStore`]'s `renew`) ride along with a batch at most
//! every `renewal_flush_interval`, when `renewal_flush_max` are pending, or on `flush`.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use sessiond_core::event::Event;
use sessiond_core::id::SessionId;
use sessiond_core::policy::LimitAction;
use sessiond_core::record::SessionRecord;
use sessiond_core::store::{expiry_reason, CreateOutcome, Expired, LimitRule, UpdateOutcome};
use sessiond_core::time::UnixMs;
use sessiond_core::StoreError;

use crate::mem::{subject_key, FastSet, Stage};
use crate::{compact, EmbeddedOptions, Shared};

/// Where a request's answer goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One durable change request.
pub(crate) enum Op {
    Create {
        record: Arc<SessionRecord>,
        json: Vec<u8>,
        limit: Option<LimitRule>,
        now: UnixMs,
        reply: Reply<CreateOutcome>,
    },
    Update {
        record: Arc<SessionRecord>,
        json: Vec<u8>,
        expected: u64,
        reply: Reply<UpdateOutcome>,
    },
    Delete {
        id: SessionId,
        reply: Reply<Option<Arc<SessionRecord>>>,
    },
    DeleteSubject {
        tenant: String,
        subject: String,
        except: Option<SessionId>,
        reply: Reply<Vec<Arc<SessionRecord>>>,
    },
    DeleteTenant {
        tenant: String,
        reply: Reply<Vec<Arc<SessionRecord>>>,
    },
    BumpEpoch {
        tenant: String,
        subject: String,
        reply: Reply<u64>,
    },
    Sweep {
        now: UnixMs,
        max: usize,
        reply: Reply<Vec<Expired>>,
    },
    Import {
        sessions: Vec<(usize, Arc<SessionRecord>)>,
        epochs: Vec<(String, String, u64)>,
        reply: Reply<u64>,
    },
    Flush {
        reply: Reply<()>,
    },
    /// Wake up and write what waits in memory: many renewals or events are pending, or a
    /// reader waits for the queued events.
    Nudge,
}

/// A row change, written in the batch's transaction.
enum Sql {
    /// Insert or replace a session.
    Put {
        record: Arc<SessionRecord>,
        json: Vec<u8>,
    },
    Delete {
        id: SessionId,
    },
    Epoch {
        tenant: String,
        subject: String,
        epoch: u64,
    },
    Renew {
        id: SessionId,
        deadline: UnixMs,
        json: Vec<u8>,
    },
}

/// Sends an op's answer once the batch's fate is known (`Some(message)`: the commit failed).
type Pending = Box<dyn FnOnce(Option<&str>) + Send>;

fn pending<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Pending {
    Box::new(move |failure: Option<&str>| {
        let out = match (failure, result) {
            (Some(msg), Ok(_)) => Err(StoreError::Unavailable { message: msg.to_owned(), source: None }),
            (_, r) => r,
        };
        // The caller may have gone away (cancelled request): nothing to tell it.
        let _ = reply.send(out);
    })
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) rx: Receiver<Op>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) options: EmbeddedOptions,
    /// Failed commits in a row that carried queued events (see [`MAX_EVENT_ATTEMPTS`]).
    pub(crate) event_failures: u32,
}

/// Commits a batch's events may fail in a row before they are dropped. Until then they are
/// queued again for the next batch, so that a transient failure (a full disk freed, a lock
/// released) loses nothing; the bound keeps events that cannot be written (or a disk that
/// stays broken) from failing every later batch that would carry them.
pub(crate) const MAX_EVENT_ATTEMPTS: u32 = 3;

impl Writer {
    /// The thread's body: runs until every sender is gone, then flushes pending renewals.
    pub(crate) fn run(mut self) {
        // However the thread ends (even by a panic), wake readers waiting for events.
        let _stopped = StopGuard(self.shared.clone());
        #[allow(clippy::disallowed_methods)] // batching cadence only; session time comes from callers
        let mut last_flush = Instant::now();
        loop {
            let dirty = !self.shared.dirty_is_empty() || self.shared.events_pending();
            #[allow(clippy::disallowed_methods)] // batching cadence only
            let waited = last_flush.elapsed();
            let timeout = if dirty {
                self.options.renewal_flush_interval.saturating_sub(waited)
            } else {
                self.options.renewal_flush_interval
            };
            let mut batch = Vec::new();
            let mut closing = false;
            match self.rx.recv_timeout(timeout) {
                Ok(op) => batch.push(op),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closing = true,
            }
            while batch.len() < self.options.max_batch {
                match self.rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            #[allow(clippy::disallowed_methods)] // batching cadence only
            let due = last_flush.elapsed() >= self.options.renewal_flush_interval;
            let flush = closing
                || due
                || self.shared.dirty_len() >= self.options.renewal_flush_max
                || batch.iter().any(|op| matches!(op, Op::Flush { .. }));
            let nudged = batch.iter().any(|op| matches!(op, Op::Nudge));
            batch.retain(|op| !matches!(op, Op::Nudge));
            // Renewals or events may have been queued while this thread waited.
            let pending = !self.shared.dirty_is_empty() || self.shared.events_pending();
            if !batch.is_empty() || nudged || (flush && pending) {
                self.run_batch(batch, flush);
            }
            if flush {
                #[allow(clippy::disallowed_methods)] // batching cadence only
                let now = Instant::now();
                last_flush = now;
            }
            if closing {
                tracing::debug!("embedded store writer stopped");
                return;
            }
        }
    }

    fn run_batch(&mut self, batch: Vec<Op>, flush_renewals: bool) {
        // Every queued event rides with this batch; the highest cursor is settled once the
        // batch's fate is known.
        let events = self.shared.take_events();
        let last_event = events.last().map(|e| e.0);
        let mut sql: Vec<Sql> = Vec::new();
        let mut answers: Vec<Pending> = Vec::with_capacity(batch.len());
        metrics::histogram!("sessiond_store_batch_requests").record(batch.len() as f64);
        let renewals = if flush_renewals { self.shared.take_dirty() } else { FastSet::default() };
        let (recs, epochs) = {
            let mem = self.shared.read();
            let mut stage = Stage::new(&mem);
            for op in batch {
                evaluate(op, &mut stage, &mut sql, &mut answers);
            }
            for id in &renewals {
                if stage.recs.contains_key(id) {
                    continue; // replaced or deleted in this batch: the staged state wins
                }
                if let Some(r) = mem.sessions.get(id).and_then(|s| s.record()) {
                    sql.push(Sql::Renew { id: *id, deadline: r.deadline(), json: r.encode() });
                }
            }
            (stage.recs, stage.epochs)
        };
        let result = write(&mut self.conn, &events, &sql);
        match result {
            Ok(()) => {
                let blobs: Vec<_> =
                    recs.iter().map(|(id, r)| (*id, r.as_ref().map(|r| (r.clone(), compact::encode(r))))).collect();
                {
                    let mut mem = self.shared.write();
                    for (id, _) in &blobs {
                        mem.remove(id);
                    }
                    for (_, r) in blobs {
                        if let Some((r, blob)) = r {
                            mem.insert(&r, blob);
                        }
                    }
                    for (key, epoch) in &epochs {
                        mem.set_epoch(key, *epoch);
                    }
                }
                if let Some(c) = last_event {
                    self.event_failures = 0;
                    self.shared.settle_events(c);
                }
                for a in answers {
                    a(None);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded store commit failed");
                metrics::counter!("sessiond_store_commit_failures_total").increment(1);
                self.shared.restore_dirty(renewals);
                if let Some(c) = last_event {
                    self.event_failures += 1;
                    if self.event_failures < MAX_EVENT_ATTEMPTS {
                        tracing::warn!(
                            up_to_cursor = c,
                            attempt = self.event_failures,
                            "events kept for the next batch after a failed commit"
                        );
                        self.shared.restore_events(events);
                    } else {
                        // Their callers already had `Ok`: the events are lost (a gap in the
                        // cursors), as when the process dies before they are committed.
                        self.event_failures = 0;
                        metrics::counter!("sessiond_store_events_lost_total").increment(1);
                        tracing::error!(
                            up_to_cursor = c,
                            attempts = MAX_EVENT_ATTEMPTS,
                            "events lost: no commit carrying them succeeded"
                        );
                        self.shared.settle_events(c);
                    }
                }
                let msg = format!("the embedded store could not commit: {e}");
                for a in answers {
                    a(Some(&msg));
                }
            }
        }
    }
}

/// Tells event readers that the writer has stopped when dropped.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.events_stopped();
    }
}

/// Writes a batch — `events` (numbered, in cursor order), then `sql` — in one transaction and
/// commits it.
fn write(conn: &mut Connection, events: &[(u64, UnixMs, String)], sql: &[Sql]) -> rusqlite::Result<()> {
    if events.is_empty() && sql.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    for (cursor, at, body) in events {
        // The cursor was assigned when the event was queued (see `append_events`).
        tx.prepare_cached("INSERT INTO events (cursor, at, body) VALUES (?1, ?2, ?3)")?.execute(params![
            sql_i64(*cursor),
            sql_i64(at.0),
            body
        ])?;
    }
    for s in sql {
        match s {
            Sql::Put { record: r, json } => {
                tx.prepare_cached(
                    "INSERT INTO sessions (id, token_hash, tenant, subject, created_at, deadline, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash,
                       deadline = excluded.deadline, record = excluded.record",
                )?
                .execute(params![
                    &r.id.as_bytes()[..],
                    &r.token_hash.0[..],
                    r.tenant,
                    r.subject,
                    sql_i64(r.created_at.0),
                    sql_i64(r.deadline().0),
                    json
                ])?;
            }
            Sql::Delete { id } => {
                tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?.execute([&id.as_bytes()[..]])?;
            }
            Sql::Epoch { tenant, subject, epoch } => {
                tx.prepare_cached(
                    "INSERT INTO epochs (tenant, subject, epoch) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant, subject) DO UPDATE SET epoch = max(epoch, excluded.epoch)",
                )?
                .execute(params![tenant, subject, sql_i64(*epoch)])?;
            }
            Sql::Renew { id, deadline, json } => {
                // Updates only a row that still exists: a renewal never resurrects.
                tx.prepare_cached("UPDATE sessions SET deadline = ?2, record = ?3 WHERE id = ?1")?.execute(params![
                    &id.as_bytes()[..],
                    sql_i64(deadline.0),
                    json
                ])?;
            }
        }
    }
    tx.commit()
}

/// SQLite integers are signed: times and counters past `i64::MAX` saturate.
pub(crate) fn sql_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn evaluate(op: Op, stage: &mut Stage<'_>, sql: &mut Vec<Sql>, answers: &mut Vec<Pending>) {
    match op {
        Op::Create { record, json, limit, now, reply } => {
            let out = create(stage, sql, record, json, limit, now);
            answers.push(pending(reply, out));
        }
        Op::Update { record, json, expected, reply } => {
            let out = match stage.get(&record.id) {
                None => Ok(UpdateOutcome::Missing),
                Some(cur) if cur.version != expected => Ok(UpdateOutcome::Conflict(cur)),
                Some(cur) if cur.subject != record.subject || cur.tenant != record.tenant => {
                    Err(StoreError::Corrupt("update may not change a session's subject or tenant".into()))
                }
                Some(cur) => {
                    let taken =
                        record.lookup_hashes().any(|h| !cur.lookup_hashes().any(|c| c == h) && stage.hash_in_use(h));
                    if taken {
                        Err(StoreError::Corrupt("update with a token hash already in use".into()))
                    } else {
                        stage.put_update(&cur, record.clone());
                        sql.push(Sql::Put { record, json });
                        Ok(UpdateOutcome::Updated)
                    }
                }
            };
            answers.push(pending(reply, out));
        }
        Op::Delete { id, reply } => {
            let gone = stage.get(&id);
            if let Some(r) = &gone {
                stage.delete(r);
                sql.push(delete_row(r));
            }
            answers.push(pending(reply, Ok(gone)));
        }
        Op::DeleteSubject { tenant, subject, except, reply } => {
            let ids = stage.subject_ids(&tenant, &subject);
            let gone = delete_all(stage, sql, ids.into_iter().filter(|id| Some(id) != except.as_ref()));
            answers.push(pending(reply, Ok(gone)));
        }
        Op::DeleteTenant { tenant, reply } => {
            let ids = stage.tenant_ids(&tenant);
            let gone = delete_all(stage, sql, ids.into_iter());
            answers.push(pending(reply, Ok(gone)));
        }
        Op::BumpEpoch { tenant, subject, reply } => {
            let key = subject_key(&tenant, &subject);
            // An epoch at the largest value a row keeps cannot move on: refuse rather than
            // wrap to 0 (which would revoke nothing) or saturate (the same).
            match stage.epoch(&key).checked_add(1).filter(|e| *e <= sessiond_core::record::MAX_EPOCH) {
                Some(epoch) => {
                    stage.epochs.insert(key, epoch);
                    sql.push(Sql::Epoch { tenant, subject, epoch });
                    answers.push(pending(reply, Ok(epoch)));
                }
                None => answers
                    .push(pending(reply, Err(StoreError::Corrupt("the subject's epoch is at its maximum".into())))),
            }
        }
        Op::Sweep { now, max, reply } => {
            let due = stage.expired(now, max);
            let mut out = Vec::with_capacity(due.len());
            for r in due {
                stage.delete(&r);
                sql.push(delete_row(&r));
                out.push(Expired { why: expiry_reason(&r, now), record: r });
            }
            answers.push(pending(reply, Ok(out)));
        }
        Op::Import { sessions, epochs, reply } => {
            let out = import(stage, sql, sessions, epochs);
            answers.push(pending(reply, out));
        }
        Op::Flush { reply } => answers.push(pending(reply, Ok(()))),
        Op::Nudge => {}
    }
}

fn create(
    stage: &mut Stage<'_>,
    sql: &mut Vec<Sql>,
    record: Arc<SessionRecord>,
    json: Vec<u8>,
    limit: Option<LimitRule>,
    now: UnixMs,
) -> Result<CreateOutcome, StoreError> {
    if stage.exists(&record.id) || record.lookup_hashes().any(|h| stage.hash_in_use(h)) {
        return Err(StoreError::Corrupt("create with an id or token hash already in use".into()));
    }
    let mut evicted = Vec::new();
    if let Some(rule) = limit {
        // Sessions an epoch bump ended are dead: they neither count nor get evicted.
        let epoch = stage.epoch(&subject_key(&record.tenant, &record.subject));
        let mut live: Vec<Arc<SessionRecord>> = stage
            .subject_ids(&record.tenant, &record.subject)
            .iter()
            .filter_map(|id| stage.get(id))
            .filter(|r| r.is_live(now) && r.epoch >= epoch)
            .collect();
        let max = rule.max as usize;
        if live.len() >= max {
            match rule.action {
                LimitAction::DenyNew => return Ok(CreateOutcome::LimitReached),
                LimitAction::EvictOldest => live.sort_by_key(|r| (r.created_at, r.id)),
                LimitAction::EvictIdlest => live.sort_by_key(|r| (r.last_seen_at, r.created_at, r.id)),
                #[allow(unreachable_patterns)]
                _ => return Ok(CreateOutcome::LimitReached),
            }
            let excess = live.len() + 1 - max;
            for r in live.into_iter().take(excess) {
                stage.delete(&r);
                sql.push(delete_row(&r));
                evicted.push(r);
            }
        }
    }
    stage.put_new(record.clone());
    sql.push(Sql::Put { record, json });
    Ok(CreateOutcome::Created { evicted })
}

fn delete_row(r: &SessionRecord) -> Sql {
    Sql::Delete { id: r.id }
}

fn delete_all(
    stage: &mut Stage<'_>,
    sql: &mut Vec<Sql>,
    ids: impl Iterator<Item = SessionId>,
) -> Vec<Arc<SessionRecord>> {
    let mut gone = Vec::new();
    for id in ids {
        if let Some(r) = stage.get(&id) {
            stage.delete(&r);
            sql.push(delete_row(&r));
            gone.push(r);
        }
    }
    gone
}

fn import(
    stage: &mut Stage<'_>,
    sql: &mut Vec<Sql>,
    sessions: Vec<(usize, Arc<SessionRecord>)>,
    epochs: Vec<(String, String, u64)>,
) -> Result<u64, StoreError> {
    // Validate everything first: nothing is staged unless the whole import is acceptable.
    for (line, r) in &sessions {
        let old = stage.get(&r.id);
        if let Some(old) = &old {
            if old.tenant != r.tenant || old.subject != r.subject {
                return Err(StoreError::Corrupt(format!(
                    "line {line}: session {} already exists with another subject",
                    r.id
                )));
            }
        }
        let own = |h| old.as_ref().is_some_and(|o| o.lookup_hashes().any(|x| x == h));
        if r.lookup_hashes().any(|h| !own(h) && stage.hash_in_use(h)) {
            return Err(StoreError::Corrupt(format!(
                "line {line}: a token hash of session {} is already in use",
                r.id
            )));
        }
    }
    let n = sessions.len() as u64;
    for (_, r) in sessions {
        match stage.get(&r.id) {
            Some(old) => stage.put_update(&old, r.clone()),
            None => stage.put_new(r.clone()),
        }
        let json = r.encode();
        sql.push(Sql::Put { record: r, json });
    }
    for (tenant, subject, epoch) in epochs {
        let key = subject_key(&tenant, &subject);
        // An import never lowers an epoch: that would bring revoked sessions back.
        let epoch = epoch.max(stage.epoch(&key));
        stage.epochs.insert(key, epoch);
        sql.push(Sql::Epoch { tenant, subject, epoch });
    }
    Ok(n)
}

/// Encodes events for the events table (their JSON bodies, with their times); cursors are
/// assigned when they are queued.
pub(crate) fn event_bodies(events: &[Event]) -> Vec<(UnixMs, String)> {
    // Serialising plain data cannot fail.
    events.iter().map(|e| (e.at, serde_json::to_string(e).unwrap_or_default())).collect()
}
