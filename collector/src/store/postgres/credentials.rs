//! Operator tokens: the `tokens` table.

use postgres::Row;

use super::tx::Tx;

use crate::store::{Millis, NewToken, OperatorToken, Result, Role, StoreError};

pub(super) fn create(tx: &mut Tx<'_>, token: &NewToken) -> Result<()> {
    let live: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM tokens WHERE name = $1 AND revoked_at IS NULL)",
            &[&token.name],
        )?
        .get(0);
    if live {
        return Err(StoreError::Rejected(format!(
            "a token named {:?} exists; revoke it first, or choose another name",
            token.name
        )));
    }
    tx.execute(
        "INSERT INTO tokens (name, role, sha256, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &token.name,
            &token.role.as_str(),
            &token.sha256.as_slice(),
            &token.created_at,
            &token.expires_at,
        ],
    )?;
    Ok(())
}

pub(super) fn list(tx: &mut Tx<'_>) -> Result<Vec<OperatorToken>> {
    tx.query(
        "SELECT name, role, created_at, expires_at, revoked_at FROM tokens ORDER BY id",
        &[],
    )?
    .iter()
    .map(token)
    .collect()
}

pub(super) fn revoke(tx: &mut Tx<'_>, name: &str, now: Millis) -> Result<bool> {
    let n = tx.execute(
        "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
        &[&name, &now],
    )?;
    Ok(n > 0)
}

pub(super) fn find(
    tx: &mut Tx<'_>,
    sha256: &[u8; 32],
    now: Millis,
) -> Result<Option<OperatorToken>> {
    tx.query_opt(
        "SELECT name, role, created_at, expires_at, revoked_at FROM tokens
         WHERE sha256 = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
        &[&sha256.as_slice(), &now],
    )?
    .as_ref()
    .map(token)
    .transpose()
}

fn token(r: &Row) -> Result<OperatorToken> {
    let role: &str = r.get(1);
    Ok(OperatorToken {
        name: r.get(0),
        role: role
            .parse::<Role>()
            .map_err(|e| StoreError::Database(format!("a stored token's role: {e}")))?,
        created_at: r.get(2),
        expires_at: r.get(3),
        revoked_at: r.get(4),
    })
}
