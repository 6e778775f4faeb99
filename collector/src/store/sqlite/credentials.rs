//! Operator tokens: the `tokens` table (schema version 4).

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::{Millis, NewToken, OperatorToken, Result, Role, StoreError};

use super::Context as _;

pub(super) const SCHEMA_V4: &str = "
CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('reader', 'operator', 'admin')),
    sha256     BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
-- One live token per name; revoked ones stay, for the record.
CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;
";

pub(super) fn create(conn: &Connection, token: &NewToken) -> Result<()> {
    let live: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM tokens WHERE name = ?1 AND revoked_at IS NULL)",
            [&token.name],
            |r| r.get(0),
        )
        .context("looking up a token name")?;
    if live {
        return Err(StoreError::Rejected(format!(
            "a token named {:?} exists; revoke it first, or choose another name",
            token.name
        )));
    }
    conn.execute(
        "INSERT INTO tokens (name, role, sha256, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            token.name,
            token.role.as_str(),
            token.sha256.as_slice(),
            token.created_at,
            token.expires_at
        ],
    )
    .context("storing a token")?;
    Ok(())
}

pub(super) fn list(conn: &Connection) -> rusqlite::Result<Vec<OperatorToken>> {
    conn.prepare_cached(
        "SELECT name, role, created_at, expires_at, revoked_at FROM tokens ORDER BY id",
    )?
    .query_map([], token)?
    .collect()
}

pub(super) fn revoke(conn: &Connection, name: &str, now: Millis) -> Result<bool> {
    let n = conn
        .execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, now],
        )
        .context("revoking a token")?;
    Ok(n > 0)
}

pub(super) fn find(
    conn: &Connection,
    sha256: &[u8; 32],
    now: Millis,
) -> rusqlite::Result<Option<OperatorToken>> {
    conn.prepare_cached(
        "SELECT name, role, created_at, expires_at, revoked_at FROM tokens
         WHERE sha256 = ?1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)",
    )?
    .query_row(params![sha256.as_slice(), now], token)
    .optional()
}

fn token(r: &Row<'_>) -> rusqlite::Result<OperatorToken> {
    let role: String = r.get(1)?;
    Ok(OperatorToken {
        name: r.get(0)?,
        role: role.parse::<Role>().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        created_at: r.get(2)?,
        expires_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}
