//! Where the database is and how to reach it: the URL, the password, TLS.
//!
//! The URL is libpq's (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?key=value…]`), read by
//! tokio-postgres, except for two keys this module takes out first, because tokio-postgres
//! does not know them (its `sslmode` is `disable | prefer | require` only, and `prefer` falls
//! back to plaintext without a word):
//!
//! - `sslmode`: `disable`; `require` (encrypted, the server's certificate not checked, as
//!   libpq's `require`); `verify-full` (the certificate must chain to `sslrootcert`, else to
//!   the Web PKI roots, and name the host). Without one: `disable` for a loopback address or
//!   a socket directory, `verify-full` for anything else.
//! - `sslrootcert`: a PEM file of the CA certificates `verify-full` accepts.
//!
//! The password comes from `--database-password-file` if given, else from the URL, else from
//! `PGPASSWORD`.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;

use postgres::Config;
use postgres::config::{Host, SslMode as PgSslMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{Result, StoreError};

/// How the connection is protected (`sslmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Require,
    VerifyFull,
}

/// A parsed database URL: the driver's configuration and its TLS connector.
pub struct Target {
    pub config: Config,
    pub tls: MakeRustlsConnect,
    pub ssl: SslMode,
    /// The URL without its password, for logs and errors.
    pub shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("database", &self.shown)
            .field("ssl", &self.ssl)
            .finish_non_exhaustive()
    }
}

fn bad(url: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("database URL {url:?}: {why}"))
}

/// Parses `url`; `password` (from `--database-password-file`) wins over the URL's, which
/// wins over `PGPASSWORD`.
pub fn target(url: &str, password: Option<&str>) -> Result<Target> {
    let shown = hide_password(url);
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut ssl = None;
    let mut root: Option<PathBuf> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                ssl = Some(match value {
                    "disable" => SslMode::Disable,
                    "require" => SslMode::Require,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(bad(
                            &shown,
                            format!(
                                "sslmode {other:?} is not supported: use disable, require or \
                                 verify-full"
                            ),
                        ));
                    }
                })
            }
            "sslrootcert" => root = Some(PathBuf::from(value)),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config = Config::from_str(&rest).map_err(|e| bad(&shown, describe(&e)))?;
    if config.get_hosts().is_empty() {
        return Err(bad(&shown, "it names no host"));
    }
    if config.get_dbname().is_none() {
        return Err(bad(&shown, "it names no database"));
    }
    let ssl = ssl.unwrap_or_else(|| {
        if config.get_hosts().iter().all(is_local) {
            SslMode::Disable
        } else {
            SslMode::VerifyFull
        }
    });
    if let Some(password) = password {
        config.password(password);
    } else if config.get_password().is_none()
        && let Ok(password) = std::env::var("PGPASSWORD")
    {
        config.password(password);
    }
    config.ssl_mode(match ssl {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Require | SslMode::VerifyFull => PgSslMode::Require,
    });
    if config.get_application_name().is_none() {
        config.application_name("driftwatch-collector");
    }
    let tls = MakeRustlsConnect::new(client_tls(ssl, root.as_deref()).map_err(|e| bad(&shown, e))?);
    Ok(Target {
        config,
        tls,
        ssl,
        shown,
    })
}

fn is_local(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]"),
    }
}

/// The URL with any password replaced by `***` (for logs; any database URL).
pub fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or("");
            format!("{scheme}://{name}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

/// The rustls configuration for `ssl` (unused with `disable`: tokio-postgres never starts TLS).
fn client_tls(
    ssl: SslMode,
    root: Option<&Path>,
) -> std::result::Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(match ssl {
        SslMode::Disable | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
        SslMode::VerifyFull => {
            let mut roots = rustls::RootCertStore::empty();
            match root {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                        .map_err(|e| format!("reading sslrootcert {}: {e}", path.display()))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(format!(
                            "sslrootcert {} holds no usable CA certificate",
                            path.display()
                        ));
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    })
}

/// `sslmode=require`: the channel is encrypted and the handshake's signatures checked, but
/// any certificate is accepted (libpq's meaning; `verify-full` is the one to use).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A driver error with everything it carries: the server's message, code and detail for a
/// database error (tokio-postgres displays those as just "db error"), else the error's chain.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_password() {
        let t = target(
            "postgres://dw:secret@db.example/fleet?sslmode=require",
            None,
        )
        .unwrap();
        assert_eq!(t.ssl, SslMode::Require);
        assert_eq!(
            t.shown,
            "postgres://dw:***@db.example/fleet?sslmode=require"
        );
        assert_eq!(t.config.get_password(), Some(&b"secret"[..]));
        let t = target("postgres://dw@db.example/fleet", Some("fromfile")).unwrap();
        assert_eq!(t.ssl, SslMode::VerifyFull);
        assert_eq!(t.config.get_password(), Some(&b"fromfile"[..]));
        let t = target("postgres://dw@127.0.0.1:5433/fleet", None).unwrap();
        assert_eq!(t.ssl, SslMode::Disable);
        assert!(target("postgres://dw@db/fleet?sslmode=prefer", None).is_err());
        assert!(target("postgres://dw@db", None).is_err());
    }
}
