//! driftwatch's formats.
//!
//! - [`baseline`]: the baseline file baked into images (format, id, signature) and its domain
//!   types. The generated protobuf types stay inside this crate's [`pb`] module; everything else
//!   uses the hand-written domain types.
//! - [`keys`]: ed25519 signing and verifying keys (PKCS#8 / SPKI PEM, as `openssl genpkey
//!   -algorithm ed25519` writes them).
//! - [`text`]: rendering raw path bytes for people and JSON.

pub mod baseline;
pub mod keys;
pub mod text;

/// Generated protobuf code. Kept at the edge: convert to domain types before use.
pub mod pb {
    pub mod baseline {
        #![allow(clippy::all, missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/driftwatch.baseline.v1.rs"));
    }
}
