//! Operators' credentials as the store keeps them: bearer tokens by the SHA-256 of their
//! secret (the secret itself is shown once, when made, and kept nowhere), with a role.

use std::fmt;
use std::str::FromStr;

use super::Millis;

/// What an operator may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Every query and `watch`.
    Reader,
    /// Also IaC imports (and the drift actions to come).
    Operator,
    /// Also tokens and enrollment.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Reader, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?} (roles: reader, operator, admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A token to store: the hash of its secret.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
    pub created_at: Millis,
    /// When it stops being accepted (never if `None`).
    pub expires_at: Option<Millis>,
}

/// A stored token (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorToken {
    pub name: String,
    pub role: Role,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}
