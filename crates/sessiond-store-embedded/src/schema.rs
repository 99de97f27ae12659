//! The SQLite schema and its migrations: the version lives in the `meta` table; one function
//! per version, each applied in its own transaction when the store opens.

use rusqlite::{Connection, OptionalExtension, Transaction};

use sessiond_core::StoreError;

use crate::sql_err;

/// Schema version written by this build.
pub const SCHEMA_VERSION: u32 = 3;

/// Migration `n` brings a database at version `n - 1` to version `n`.
type Migration = fn(&Transaction<'_>) -> rusqlite::Result<()>;

const MIGRATIONS: [Migration; SCHEMA_VERSION as usize] = [v1_tables, v2_indexes, v3_drop_tokens];

/// Version 1: the tables.
fn v1_tables(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
         CREATE TABLE sessions (
             id BLOB PRIMARY KEY,
             token_hash BLOB NOT NULL,
             tenant TEXT NOT NULL,
             subject TEXT NOT NULL,
             created_at INTEGER NOT NULL,
             deadline INTEGER NOT NULL,
             record BLOB NOT NULL
         );
         CREATE TABLE tokens (hash BLOB PRIMARY KEY, session_id BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE epochs (
             tenant TEXT NOT NULL,
             subject TEXT NOT NULL,
             epoch INTEGER NOT NULL,
             PRIMARY KEY (tenant, subject)
         ) WITHOUT ROWID;
         CREATE TABLE events (cursor INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, body TEXT NOT NULL);",
    )
}

/// Version 2: the subject and expiry indexes on disk, so that tools can list a subject's
/// sessions or find expired ones without a full scan. SQLite maintains them in the same
/// transaction as the session row.
fn v2_indexes(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE INDEX sessions_by_subject ON sessions (tenant, subject, created_at, id);
         CREATE INDEX sessions_by_deadline ON sessions (deadline);",
    )
}

/// Version 3: the `tokens` table is dropped. The in-memory index is the only reader of token
/// hashes (uniqueness is checked there, by the single writer) and the table cost one random
/// B-tree page write (~4 KiB of WAL) per token hash on every create, rotation and delete. The
/// current hash stays in `sessions.token_hash`, retired ones in the record.
fn v3_drop_tokens(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch("DROP TABLE IF EXISTS tokens;")
}

/// The schema version of the database (0 for an empty one).
pub fn version(conn: &Connection) -> Result<u32, StoreError> {
    let has_meta: bool = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(sql_err("read the schema"))?
        > 0;
    if !has_meta {
        return Ok(0);
    }
    let v: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
        .optional()
        .map_err(sql_err("read the schema version"))?;
    u32::try_from(v.unwrap_or(0)).map_err(|_| StoreError::Corrupt("the schema version is out of range".into()))
}

/// Applies every missing migration, one transaction each.
///
/// # Errors
/// [`StoreError::Corrupt`] when the database was written by a newer build;
/// [`StoreError::Unavailable`] when SQLite fails.
pub fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    let mut current = version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than the {SCHEMA_VERSION} this build knows"
        )));
    }
    while current < SCHEMA_VERSION {
        let next = current + 1;
        let tx = conn.transaction().map_err(sql_err("begin a migration"))?;
        MIGRATIONS[current as usize](&tx).map_err(sql_err("apply a migration"))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [next],
        )
        .map_err(sql_err("record the schema version"))?;
        tx.commit().map_err(sql_err("commit a migration"))?;
        tracing::info!(version = next, "embedded store schema migrated");
        current = next;
    }
    Ok(current)
}
