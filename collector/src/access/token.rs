//! Bearer tokens: operators' (`dwt_`) and join tokens (`dwj_`), each its prefix and 43 characters of base64url over 32 random bytes.
//! The collector keeps only their SHA-256: 256 bits of entropy need no salt or slow hash
//! (NIST SP 800-63B §5.1.2.2), and looking one up by its hash leaks nothing through timing.

use axum::http::HeaderValue;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// What every operator token starts with (so secret scanners and people recognise one).
pub const PREFIX: &str = "dwt_";
/// What every join token (enrollment) starts with.
pub const JOIN_PREFIX: &str = "dwj_";

/// A new operator token: its secret (shown once) and the hash to store.
pub fn generate() -> Result<(String, [u8; 32]), getrandom::Error> {
    generate_with(PREFIX)
}

/// A new token with this prefix: its secret (shown once) and the hash to store.
pub fn generate_with(prefix: &str) -> Result<(String, [u8; 32]), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let secret = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&secret);
    Ok((secret, hash))
}

/// The SHA-256 of a token's text.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Why an `authorization` header holds no token.
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    #[error("the authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("the bearer token is not a driftwatch token (they start with {PREFIX})")]
    NotOurs,
}

/// The token in an `authorization: Bearer …` header.
pub fn bearer(value: &HeaderValue) -> Result<&str, BearerError> {
    let text = value.to_str().map_err(|_| BearerError::NotBearer)?;
    let (scheme, token) = text.split_once(' ').ok_or(BearerError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::NotBearer);
    }
    let token = token.trim();
    if !token.starts_with(PREFIX) {
        return Err(BearerError::NotOurs);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, ha) = generate().unwrap();
        let (b, hb) = generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(a.len(), PREFIX.len() + 43);
        assert_eq!(hash(&a), ha);
    }

    #[test]
    fn only_bearer_headers_with_our_tokens_are_read() {
        let ok = HeaderValue::from_static("Bearer dwt_abc");
        assert_eq!(bearer(&ok).unwrap(), "dwt_abc");
        assert_eq!(
            bearer(&HeaderValue::from_static("bearer  dwt_x ")).unwrap(),
            "dwt_x"
        );
        assert!(matches!(
            bearer(&HeaderValue::from_static("Basic dXNlcjpwYXNz")),
            Err(BearerError::NotBearer)
        ));
        assert!(matches!(
            bearer(&HeaderValue::from_static("Bearer eyJhbGciOi")),
            Err(BearerError::NotOurs)
        ));
    }
}
