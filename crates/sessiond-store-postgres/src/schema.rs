//! Schema migrations: a version in `sessiond_meta`, one function per version, each applied
//! in the same transaction as the version bump, under an advisory lock so that nodes
//! starting together migrate once.

use tokio_postgres::Transaction;

/// The schema version this build writes.
pub(crate) const CURRENT: i32 = 1;

/// Checks a schema name: a lowercase SQL identifier of at most 40 bytes (so that the
/// notification channel `sessiond_inv_<schema>` stays under PostgreSQL's 63-byte limit).
pub(crate) fn valid_schema(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && s.len() <= 40
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Version 1: sessions, token hashes, epochs and events.
async fn v1(tx: &Transaction<'_>, s: &str) -> Result<(), tokio_postgres::Error> {
    tx.batch_execute(&format!(
        r#"
        CREATE TABLE "{s}".sessions (
            id           bytea  PRIMARY KEY,
            tenant       text   NOT NULL,
            subject      text   NOT NULL,
            created_at   bigint NOT NULL,
            last_seen_at bigint NOT NULL,
            deadline     bigint NOT NULL,
            version      bigint NOT NULL,
            record       text   NOT NULL
        );
        CREATE INDEX sessions_by_subject ON "{s}".sessions (tenant, subject, created_at, id);
        CREATE INDEX sessions_by_deadline ON "{s}".sessions (deadline);
        CREATE TABLE "{s}".token_hashes (
            hash       bytea PRIMARY KEY,
            session_id bytea NOT NULL REFERENCES "{s}".sessions (id) ON DELETE CASCADE
        );
        CREATE INDEX token_hashes_by_session ON "{s}".token_hashes (session_id);
        CREATE TABLE "{s}".epochs (
            tenant  text   NOT NULL,
            subject text   NOT NULL,
            epoch   bigint NOT NULL,
            PRIMARY KEY (tenant, subject)
        );
        CREATE TABLE "{s}".events (
            cursor bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            body   text   NOT NULL
        );
        "#
    ))
    .await
}

/// Brings schema `s` to [`CURRENT`]. Returns the version found before.
pub(crate) async fn migrate(client: &mut tokio_postgres::Client, s: &str) -> Result<i32, MigrateError> {
    let tx = client.transaction().await?;
    tx.query_one("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("sessiond-migrate:{s}")]).await?;
    tx.batch_execute(&format!(
        r#"CREATE SCHEMA IF NOT EXISTS "{s}";
           CREATE TABLE IF NOT EXISTS "{s}".sessiond_meta (
               id      int PRIMARY KEY CHECK (id = 1),
               version int NOT NULL
           );
           INSERT INTO "{s}".sessiond_meta (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;"#
    ))
    .await?;
    let found: i32 =
        tx.query_one(&format!(r#"SELECT version FROM "{s}".sessiond_meta WHERE id = 1"#), &[]).await?.try_get(0)?;
    if found > CURRENT {
        return Err(MigrateError::Newer(found));
    }
    for v in found + 1..=CURRENT {
        #[allow(clippy::single_match)] // one arm per version, more to come
        match v {
            1 => v1(&tx, s).await?,
            _ => {}
        }
        tx.execute(&format!(r#"UPDATE "{s}".sessiond_meta SET version = $1 WHERE id = 1"#), &[&v]).await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// Why migration failed.
#[derive(Debug)]
pub(crate) enum MigrateError {
    /// The database said no.
    Db(tokio_postgres::Error),
    /// The schema was written by a newer build.
    Newer(i32),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Db(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema("sessiond"));
        assert!(valid_schema("t_0123abcd"));
        for bad in ["", "0abc", "Upper", "a-b", "a\"b", "a;drop", &"x".repeat(41)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
