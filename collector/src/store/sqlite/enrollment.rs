//! Enrollment: the `join_tokens`, `enrollments` and `certificates` tables (schema version 6).

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::enrollment::{
    EnrollRefusal, EnrolledHost, Enrollment, Issued, IssuedCertificate, JoinToken, NewJoinToken,
};
use crate::store::{Millis, Result, StoreError};

use super::Context as _;

pub(super) const SCHEMA_V6: &str = "
CREATE TABLE join_tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    sha256     BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    uses       INTEGER NOT NULL CHECK (uses > 0),
    used       INTEGER NOT NULL DEFAULT 0,
    image      TEXT,
    created_by TEXT NOT NULL,
    revoked_at INTEGER
);
CREATE UNIQUE INDEX join_tokens_live_name ON join_tokens (name) WHERE revoked_at IS NULL;
-- An identity is bound to the key that enrolled it, until an admin revokes the host.
CREATE TABLE enrollments (
    host        TEXT PRIMARY KEY,
    key_sha256  BLOB NOT NULL,
    token       TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL
);
-- Every certificate issued; revoked ones are refused at their next connection.
CREATE TABLE certificates (
    serial     TEXT PRIMARY KEY,
    host       TEXT NOT NULL,
    key_sha256 BLOB NOT NULL,
    issued_at  INTEGER NOT NULL,
    not_after  INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_by TEXT
);
CREATE INDEX certificates_host ON certificates (host, issued_at);
";

pub(super) fn create_token(conn: &Connection, token: &NewJoinToken) -> Result<()> {
    let live: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM join_tokens WHERE name = ?1 AND revoked_at IS NULL)",
            [&token.name],
            |r| r.get(0),
        )
        .context("looking up a join token name")?;
    if live {
        return Err(StoreError::Rejected(format!(
            "a join token named {:?} exists; revoke it first, or choose another name",
            token.name
        )));
    }
    conn.execute(
        "INSERT INTO join_tokens (name, sha256, created_at, expires_at, uses, image, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            token.name,
            token.sha256.as_slice(),
            token.created_at,
            token.expires_at,
            token.uses,
            token.image,
            token.created_by,
        ],
    )
    .context("storing a join token")?;
    Ok(())
}

const TOKEN_COLUMNS: &str =
    "name, created_at, expires_at, uses, used, image, created_by, revoked_at";

fn token(r: &Row<'_>) -> rusqlite::Result<JoinToken> {
    Ok(JoinToken {
        name: r.get(0)?,
        created_at: r.get(1)?,
        expires_at: r.get(2)?,
        uses: r.get(3)?,
        used: r.get(4)?,
        image: r.get(5)?,
        created_by: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

pub(super) fn tokens(conn: &Connection) -> rusqlite::Result<Vec<JoinToken>> {
    conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM join_tokens ORDER BY id"
    ))?
    .query_map([], token)?
    .collect()
}

pub(super) fn revoke_token(conn: &Connection, name: &str, now: Millis) -> Result<bool> {
    let n = conn
        .execute(
            "UPDATE join_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, now],
        )
        .context("revoking a join token")?;
    Ok(n > 0)
}

/// Checks the token and the identity, then spends one use of the token, binds the identity
/// to the key and records the certificate.
pub(super) fn enroll(
    conn: &Connection,
    e: &Enrollment<'_>,
) -> Result<std::result::Result<String, EnrollRefusal>> {
    let cert = e.certificate;
    let found = conn
        .query_row(
            &format!("SELECT {TOKEN_COLUMNS} FROM join_tokens WHERE sha256 = ?1"),
            [e.token_sha256.as_slice()],
            token,
        )
        .optional()
        .context("looking up a join token")?;
    let Some(t) = found else {
        return Ok(Err(EnrollRefusal::UnknownToken));
    };
    let name = match e.admitted_by(t) {
        Ok(name) => name,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let bound = bound_key(conn, &cert.host)?;
    if bound.as_deref().is_some_and(|k| k != cert.key_sha256) {
        return Ok(Err(EnrollRefusal::IdentityTaken(cert.host.clone())));
    }
    conn.execute(
        "UPDATE join_tokens SET used = used + 1 WHERE sha256 = ?1",
        [e.token_sha256.as_slice()],
    )
    .context("spending a join token")?;
    // The same key enrolling again (its certificate was lost) keeps the first enrollment.
    conn.execute(
        "INSERT INTO enrollments (host, key_sha256, token, enrolled_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (host) DO NOTHING",
        params![cert.host, cert.key_sha256.as_slice(), name, cert.issued_at],
    )
    .context("recording an enrollment")?;
    record(conn, cert)?;
    Ok(Ok(name))
}

/// A renewal: the certificate presented must be a live one of the host, and the new one
/// certifies the same key.
pub(super) fn renew(
    conn: &Connection,
    presented: &str,
    cert: &Issued,
) -> Result<std::result::Result<(), EnrollRefusal>> {
    let live: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM certificates
             WHERE serial = ?1 AND host = ?2 AND revoked_at IS NULL)",
            params![presented, cert.host],
            |r| r.get(0),
        )
        .context("looking up a certificate")?;
    let bound = bound_key(conn, &cert.host)?;
    match bound {
        Some(key) if live && key == cert.key_sha256 => {}
        Some(_) if live => return Ok(Err(EnrollRefusal::KeyChanged(cert.host.clone()))),
        _ => return Ok(Err(EnrollRefusal::NotEnrolled(cert.host.clone()))),
    }
    record(conn, cert)?;
    Ok(Ok(()))
}

/// The SHA-256 of the key the host enrolled with, if it is enrolled.
fn bound_key(conn: &Connection, host: &str) -> Result<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT key_sha256 FROM enrollments WHERE host = ?1",
        [host],
        |r| r.get(0),
    )
    .optional()
    .context("looking up an enrollment")
}

fn record(conn: &Connection, cert: &Issued) -> Result<()> {
    conn.execute(
        "INSERT INTO certificates (serial, host, key_sha256, issued_at, not_after)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            cert.serial,
            cert.host,
            cert.key_sha256.as_slice(),
            cert.issued_at,
            cert.not_after
        ],
    )
    .context("recording a certificate")?;
    Ok(())
}

pub(super) fn enrolled(conn: &Connection) -> rusqlite::Result<Vec<EnrolledHost>> {
    conn.prepare_cached(
        "SELECT e.host, e.enrolled_at, e.token, e.key_sha256, c.serial, c.not_after,
                (SELECT COUNT(*) FROM certificates WHERE host = e.host)
         FROM enrollments e
         JOIN certificates c ON c.serial = (SELECT serial FROM certificates
                                            WHERE host = e.host AND revoked_at IS NULL
                                            ORDER BY issued_at DESC, rowid DESC LIMIT 1)
         ORDER BY e.host",
    )?
    .query_map([], |r| {
        let key: Vec<u8> = r.get(3)?;
        Ok(EnrolledHost {
            host: r.get(0)?,
            enrolled_at: r.get(1)?,
            token: r.get(2)?,
            key_sha256: key.try_into().unwrap_or([0; 32]),
            serial: r.get(4)?,
            not_after: r.get(5)?,
            certificates: r.get(6)?,
        })
    })?
    .collect()
}

/// Revokes every live certificate of the host and frees its identity: whether it was
/// enrolled, and how many certificates were revoked.
pub(super) fn revoke_host(
    conn: &Connection,
    host: &str,
    by: &str,
    now: Millis,
) -> Result<(bool, u32)> {
    let revoked = conn
        .execute(
            "UPDATE certificates SET revoked_at = ?2, revoked_by = ?3
             WHERE host = ?1 AND revoked_at IS NULL",
            params![host, now, by],
        )
        .context("revoking certificates")?;
    let enrolled = conn
        .execute("DELETE FROM enrollments WHERE host = ?1", [host])
        .context("removing an enrollment")?;
    Ok((enrolled > 0, revoked as u32))
}

pub(super) fn certificate(
    conn: &Connection,
    serial: &str,
) -> rusqlite::Result<Option<IssuedCertificate>> {
    conn.prepare_cached(
        "SELECT host, serial, issued_at, not_after, revoked_at, revoked_by
         FROM certificates WHERE serial = ?1",
    )?
    .query_row([serial], |r| {
        Ok(IssuedCertificate {
            host: r.get(0)?,
            serial: r.get(1)?,
            issued_at: r.get(2)?,
            not_after: r.get(3)?,
            revoked_at: r.get(4)?,
            revoked_by: r.get(5)?,
        })
    })
    .optional()
}
