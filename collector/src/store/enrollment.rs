//! Enrollment as the store keeps it: join tokens (by the SHA-256 of their secret, with a TTL
//! and a number of uses), the hosts enrolled with the key each is bound to, and every
//! certificate issued, by serial, with its revocation.
//!
//! The rules live here, in one transaction each, so that they hold across collector
//! processes sharing a database: a token's uses are counted in the database, an identity is
//! bound to the first key that enrolled it until an admin revokes it, and a revoked
//! certificate stays refused.

use super::Millis;

/// A join token to store: the hash of its secret.
#[derive(Clone, Debug)]
pub struct NewJoinToken {
    pub name: String,
    pub sha256: [u8; 32],
    pub created_at: Millis,
    pub expires_at: Millis,
    /// How many hosts may enroll with it.
    pub uses: u32,
    /// Only hosts reporting this image may enroll with it.
    pub image: Option<String>,
    /// Who made it (the caller, as shown in history).
    pub created_by: String,
}

/// A stored join token (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    pub name: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub uses: u32,
    pub used: u32,
    pub image: Option<String>,
    pub created_by: String,
    pub revoked_at: Option<Millis>,
}

/// A certificate the fleet CA signed, to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub host: String,
    /// SHA-256 of the certified public key (its SubjectPublicKeyInfo).
    pub key_sha256: [u8; 32],
    /// Lowercase hex.
    pub serial: String,
    pub issued_at: Millis,
    pub not_after: Millis,
}

/// An enrollment to record: the certificate, and what entitles the host to it.
#[derive(Clone, Debug)]
pub struct Enrollment<'a> {
    pub token_sha256: &'a [u8; 32],
    /// The cloud image the host runs and the image name of its baseline ("" when unknown):
    /// a token for an image enrolls hosts where either is that image.
    pub image_id: &'a str,
    pub image_name: &'a str,
    pub certificate: &'a Issued,
}

impl Enrollment<'_> {
    /// Whether `token` (the one this enrollment presents, as stored) admits it: not revoked,
    /// not expired when the certificate is issued, uses left, and the host's image if it names
    /// one. Both backends decide with this, inside their transaction. Returns the token's name.
    pub fn admitted_by(&self, t: JoinToken) -> Result<String, EnrollRefusal> {
        if t.revoked_at.is_some() {
            return Err(EnrollRefusal::TokenRevoked(t.name));
        }
        if t.expires_at <= self.certificate.issued_at {
            return Err(EnrollRefusal::TokenExpired(t.name));
        }
        if t.used >= t.uses {
            return Err(EnrollRefusal::TokenUsedUp {
                name: t.name,
                uses: t.uses,
            });
        }
        if let Some(image) = t
            .image
            .filter(|image| image != self.image_id && image != self.image_name)
        {
            let reported: Vec<&str> = [self.image_id, self.image_name]
                .into_iter()
                .filter(|i| !i.is_empty())
                .collect();
            return Err(EnrollRefusal::WrongImage {
                name: t.name,
                image,
                reported: reported.join(" / "),
            });
        }
        Ok(t.name)
    }
}

/// A host enrolled, and its newest certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolledHost {
    pub host: String,
    pub enrolled_at: Millis,
    /// The join token it enrolled with.
    pub token: String,
    pub key_sha256: [u8; 32],
    pub serial: String,
    pub not_after: Millis,
    pub certificates: u32,
}

/// A certificate issued, as found by its serial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub host: String,
    pub serial: String,
    pub issued_at: Millis,
    pub not_after: Millis,
    pub revoked_at: Option<Millis>,
    pub revoked_by: Option<String>,
}

/// Why an enrollment or a renewal is refused; each says what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnrollRefusal {
    #[error("the join token is not known to this collector (mistyped, or made for another one)")]
    UnknownToken,
    #[error("the join token {0:?} was revoked; ask an admin for a new one")]
    TokenRevoked(String),
    #[error(
        "the join token {0:?} expired; ask an admin for a new one (`driftwatch enroll token create`)"
    )]
    TokenExpired(String),
    #[error(
        "the join token {name:?} has no uses left (it allowed {uses}); ask an admin for a new one"
    )]
    TokenUsedUp { name: String, uses: u32 },
    #[error(
        "the join token {name:?} is for hosts of image {image}; this host reports {}",
        reported_image(.reported)
    )]
    WrongImage {
        name: String,
        image: String,
        reported: String,
    },
    #[error(
        "host {0} is already enrolled with another key; if this machine replaces it, an admin \
         runs `driftwatch enroll revoke {0}` first"
    )]
    IdentityTaken(String),
    #[error(
        "host {0} is not enrolled with this certificate (revoked, or issued by another CA); \
         enroll again with a join token"
    )]
    NotEnrolled(String),
    #[error(
        "host {0} is enrolled with another key than the one this request is signed with; a \
         renewal keeps the key"
    )]
    KeyChanged(String),
}

fn reported_image(image: &str) -> &str {
    if image.is_empty() { "no image" } else { image }
}
