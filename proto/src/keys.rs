//! ed25519 keys for signing baselines.
//!
//! Keys are stored as PEM: the private key as PKCS#8 (`-----BEGIN PRIVATE KEY-----`), the public
//! key as SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`). These are the files
//! `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write, so keys can come from
//! an existing PKI or a secrets manager as well as from `driftwatch-agent baseline keygen`.

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use ed25519_dalek::pkcs8::{EncodePublicKey as _, spki::der::pem::LineEnding};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// A key file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an ed25519 private key in PKCS#8 PEM form: {0}")]
    BadPrivateKey(String),
    #[error("not an ed25519 public key in PEM form: {0}")]
    BadPublicKey(String),
    #[error("could not gather randomness for a new key: {0}")]
    Random(String),
}

/// Generates a new signing key from the operating system's randomness.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Parses a PKCS#8 PEM private key.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| KeyError::BadPrivateKey(e.to_string()))
}

/// Parses a public key: SPKI PEM, or the 64 hex digits of the raw key.
pub fn verifying_key_from_text(text: &str) -> Result<VerifyingKey, KeyError> {
    let text = text.trim();
    if let Ok(raw) = hex::decode(text) {
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| KeyError::BadPublicKey("hex key is not 32 bytes".into()))?;
        return VerifyingKey::from_bytes(&raw).map_err(|e| KeyError::BadPublicKey(e.to_string()));
    }
    VerifyingKey::from_public_key_pem(text).map_err(|e| KeyError::BadPublicKey(e.to_string()))
}

/// The private key as PKCS#8 PEM.
pub fn signing_key_to_pem(key: &SigningKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF)
        .expect("ed25519 keys always encode")
        .to_string()
}

/// The public key as SPKI PEM.
pub fn verifying_key_to_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("ed25519 keys always encode")
}

/// A short, stable name for a public key: `ed25519:` and the first 16 hex digits of its
/// SHA-256.
pub fn fingerprint(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("ed25519:{}", &hex::encode(digest)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip() {
        let key = generate().unwrap();
        let back = signing_key_from_pem(&signing_key_to_pem(&key)).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        let public = verifying_key_from_text(&verifying_key_to_pem(&key.verifying_key())).unwrap();
        assert_eq!(public, key.verifying_key());
        let hexed = verifying_key_from_text(&hex::encode(key.verifying_key().as_bytes())).unwrap();
        assert_eq!(hexed, key.verifying_key());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(signing_key_from_pem("nope").is_err());
        assert!(
            verifying_key_from_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
    }
}
