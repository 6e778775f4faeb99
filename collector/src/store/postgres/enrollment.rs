//! Enrollment: the `join_tokens`, `enrollments` and `certificates` tables.

use std::collections::HashMap;

use postgres::Row;

use super::tx::{Query, Tx};

use crate::store::enrollment::{
    EnrollRefusal, EnrolledHost, Enrollment, Issued, IssuedCertificate, JoinToken, NewJoinToken,
};
use crate::store::{Millis, Result, StoreError};

/// Counts are BIGINT; the model's are `u32` (a negative or larger count cannot be written).
fn count(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

pub(super) fn create_token(tx: &mut Tx<'_>, token: &NewJoinToken) -> Result<()> {
    let live: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM join_tokens WHERE name = $1 AND revoked_at IS NULL)",
            &[&token.name],
        )?
        .get(0);
    if live {
        return Err(StoreError::Rejected(format!(
            "a join token named {:?} exists; revoke it first, or choose another name",
            token.name
        )));
    }
    tx.execute(
        "INSERT INTO join_tokens (name, sha256, created_at, expires_at, uses, image, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &token.name,
            &token.sha256.as_slice(),
            &token.created_at,
            &token.expires_at,
            &i64::from(token.uses),
            &token.image,
            &token.created_by,
        ],
    )?;
    Ok(())
}

const TOKEN_COLUMNS: &str =
    "name, created_at, expires_at, uses, used, image, created_by, revoked_at";

fn token(r: &Row) -> JoinToken {
    JoinToken {
        name: r.get(0),
        created_at: r.get(1),
        expires_at: r.get(2),
        uses: count(r.get(3)),
        used: count(r.get(4)),
        image: r.get(5),
        created_by: r.get(6),
        revoked_at: r.get(7),
    }
}

pub(super) fn tokens(tx: &mut Tx<'_>) -> Result<Vec<JoinToken>> {
    Ok(tx
        .query(
            &format!("SELECT {TOKEN_COLUMNS} FROM join_tokens ORDER BY id"),
            &[],
        )?
        .iter()
        .map(token)
        .collect())
}

pub(super) fn revoke_token(tx: &mut Tx<'_>, name: &str, now: Millis) -> Result<bool> {
    let n = tx.execute(
        "UPDATE join_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
        &[&name, &now],
    )?;
    Ok(n > 0)
}

/// Checks the token and the identity, then spends one use of the token, binds the identity
/// to the key and records the certificate. The token's row is locked (`FOR UPDATE`), so
/// collectors sharing the database cannot spend its last use twice.
pub(super) fn enroll(
    tx: &mut Tx<'_>,
    e: &Enrollment<'_>,
) -> Result<std::result::Result<String, EnrollRefusal>> {
    let cert = e.certificate;
    let found = tx
        .query_opt(
            &format!("SELECT {TOKEN_COLUMNS} FROM join_tokens WHERE sha256 = $1 FOR UPDATE"),
            &[&e.token_sha256.as_slice()],
        )?
        .as_ref()
        .map(token);
    let Some(t) = found else {
        return Ok(Err(EnrollRefusal::UnknownToken));
    };
    let name = match e.admitted_by(t) {
        Ok(name) => name,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let bound = bound_key(tx, &cert.host)?;
    if bound.as_deref().is_some_and(|k| k != cert.key_sha256) {
        return Ok(Err(EnrollRefusal::IdentityTaken(cert.host.clone())));
    }
    tx.execute(
        "UPDATE join_tokens SET used = used + 1 WHERE sha256 = $1",
        &[&e.token_sha256.as_slice()],
    )?;
    // The same key enrolling again (its certificate was lost) keeps the first enrollment.
    tx.execute(
        "INSERT INTO enrollments (host, key_sha256, token, enrolled_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (host) DO NOTHING",
        &[
            &cert.host,
            &cert.key_sha256.as_slice(),
            &name,
            &cert.issued_at,
        ],
    )?;
    record(tx, cert)?;
    Ok(Ok(name))
}

/// A renewal: the certificate presented must be a live one of the host, and the new one
/// certifies the same key.
pub(super) fn renew(
    tx: &mut Tx<'_>,
    presented: &str,
    cert: &Issued,
) -> Result<std::result::Result<(), EnrollRefusal>> {
    let live: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM certificates
             WHERE serial = $1 AND host = $2 AND revoked_at IS NULL)",
            &[&presented, &cert.host],
        )?
        .get(0);
    let bound = bound_key(tx, &cert.host)?;
    match bound {
        Some(key) if live && key == cert.key_sha256 => {}
        Some(_) if live => return Ok(Err(EnrollRefusal::KeyChanged(cert.host.clone()))),
        _ => return Ok(Err(EnrollRefusal::NotEnrolled(cert.host.clone()))),
    }
    record(tx, cert)?;
    Ok(Ok(()))
}

/// The SHA-256 of the key the host enrolled with, if it is enrolled.
fn bound_key(tx: &mut Tx<'_>, host: &str) -> Result<Option<Vec<u8>>> {
    Ok(tx
        .query_opt(
            "SELECT key_sha256 FROM enrollments WHERE host = $1",
            &[&host],
        )?
        .map(|r| r.get(0)))
}

fn record(tx: &mut Tx<'_>, cert: &Issued) -> Result<()> {
    tx.execute(
        "INSERT INTO certificates (serial, host, key_sha256, issued_at, not_after)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &cert.serial,
            &cert.host,
            &cert.key_sha256.as_slice(),
            &cert.issued_at,
            &cert.not_after,
        ],
    )?;
    Ok(())
}

pub(super) fn enrolled(tx: &mut Tx<'_>) -> Result<Vec<EnrolledHost>> {
    Ok(tx
        .query(
            "SELECT e.host, e.enrolled_at, e.token, e.key_sha256, c.serial, c.not_after,
                    (SELECT COUNT(*) FROM certificates WHERE host = e.host)
             FROM enrollments e
             JOIN certificates c ON c.serial = (SELECT serial FROM certificates
                                                WHERE host = e.host AND revoked_at IS NULL
                                                ORDER BY issued_at DESC, id DESC LIMIT 1)
             ORDER BY e.host",
            &[],
        )?
        .iter()
        .map(|r| {
            let key: Vec<u8> = r.get(3);
            EnrolledHost {
                host: r.get(0),
                enrolled_at: r.get(1),
                token: r.get(2),
                key_sha256: key.try_into().unwrap_or([0; 32]),
                serial: r.get(4),
                not_after: r.get(5),
                certificates: count(r.get(6)),
            }
        })
        .collect())
}

/// Revokes every live certificate of the host and frees its identity.
pub(super) fn revoke_host(
    tx: &mut Tx<'_>,
    host: &str,
    by: &str,
    now: Millis,
) -> Result<(bool, u32)> {
    let revoked = tx.execute(
        "UPDATE certificates SET revoked_at = $2, revoked_by = $3
         WHERE host = $1 AND revoked_at IS NULL",
        &[&host, &now, &by],
    )?;
    let enrolled = tx.execute("DELETE FROM enrollments WHERE host = $1", &[&host])?;
    Ok((enrolled > 0, u32::try_from(revoked).unwrap_or(u32::MAX)))
}

pub(super) fn certificate(tx: &mut impl Query, serial: &str) -> Result<Option<IssuedCertificate>> {
    Ok(tx
        .query_opt(
            "SELECT host, serial, issued_at, not_after, revoked_at, revoked_by
             FROM certificates WHERE serial = $1",
            &[&serial],
        )?
        .map(|r| issued(&r)))
}

/// [`certificate`] of each serial, in one statement.
pub(super) fn certificates(
    q: &mut impl Query,
    serials: &[String],
) -> Result<Vec<Option<IssuedCertificate>>> {
    let found: HashMap<String, IssuedCertificate> = q
        .query(
            "SELECT host, serial, issued_at, not_after, revoked_at, revoked_by
             FROM certificates WHERE serial = ANY($1)",
            &[&serials],
        )?
        .iter()
        .map(|r| (r.get(1), issued(r)))
        .collect();
    // A serial asked twice gets its certificate twice.
    Ok(serials.iter().map(|s| found.get(s).cloned()).collect())
}

fn issued(r: &Row) -> IssuedCertificate {
    IssuedCertificate {
        host: r.get(0),
        serial: r.get(1),
        issued_at: r.get(2),
        not_after: r.get(3),
        revoked_at: r.get(4),
        revoked_by: r.get(5),
    }
}
