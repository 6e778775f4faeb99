//! The caller a client certificate names.
//!
//! - `subjectAltName = URI:driftwatch:host:<host id>`: the agent of that host;
//! - `subjectAltName = URI:driftwatch:operator:<role>`: an operator with that role, named by
//!   the subject's common name;
//! - neither: the agent of the host its subject common name names (certificates from a PKI
//!   that issues one certificate per host, with the host id as CN).
//!
//! A certificate naming two hosts, two roles, or a host and a role names nobody: it is refused.
//! The chain was verified by the TLS handshake against `--client-ca`; this only reads names.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Caller, Role, UnknownRole};

/// The URI prefix of a host identity in a certificate.
pub const HOST_URI: &str = "driftwatch:host:";
/// The URI prefix of an operator's role in a certificate.
pub const OPERATOR_URI: &str = "driftwatch:operator:";

/// Why a certificate names no caller.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("not a readable X.509 certificate: {0}")]
    Unreadable(String),
    #[error("it names no host: no subjectAltName URI {HOST_URI}<host id> and no common name")]
    Unnamed,
    #[error("it names more than one caller ({0}); a certificate names one host or one operator")]
    Ambiguous(String),
    #[error("{uri}: {source}")]
    Role {
        uri: String,
        #[source]
        source: UnknownRole,
    },
}

/// A verified leaf certificate, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub caller: Caller,
    /// Its serial number, lowercase hex (as the enrollment records those it issued).
    pub serial: String,
}

/// The caller `der` (a verified leaf certificate) names.
pub fn caller(der: &[u8]) -> Result<Caller, CertError> {
    read(der).map(|named| named.caller)
}

/// The caller `der` (a verified leaf certificate) names, and its serial.
pub fn read(der: &[u8]) -> Result<Named, CertError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| CertError::Unreadable(e.to_string()))?;
    Ok(Named {
        caller: named(&cert)?,
        serial: hex::encode(cert.raw_serial()),
    })
}

fn named(cert: &X509Certificate<'_>) -> Result<Caller, CertError> {
    let mut named = Vec::new();
    let mut uris = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Unreadable(e.to_string()))?;
    for name in san.iter().flat_map(|san| &san.value.general_names) {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        if let Some(host) = uri.strip_prefix(HOST_URI) {
            named.push(Caller::Agent { host: host.into() });
        } else if let Some(role) = uri.strip_prefix(OPERATOR_URI) {
            let role = role.parse::<Role>().map_err(|source| CertError::Role {
                uri: (*uri).to_owned(),
                source,
            })?;
            named.push(Caller::Operator {
                name: common_name(cert).unwrap_or("operator").to_owned(),
                role,
            });
        } else {
            continue;
        }
        uris.push(*uri);
    }
    match named.len() {
        0 => common_name(cert)
            .filter(|cn| !cn.is_empty())
            .map(|cn| Caller::Agent { host: cn.into() })
            .ok_or(CertError::Unnamed),
        1 => Ok(named.remove(0)),
        _ => Err(CertError::Ambiguous(uris.join(", "))),
    }
}

fn common_name<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a str> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn certificate(cn: Option<&str>, uris: &[&str]) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(cn) = cn {
            dn.push(DnType::CommonName, cn);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_host_uri_names_the_agent_of_that_host() {
        let der = certificate(Some("web-1"), &["driftwatch:host:i-0abc"]);
        assert_eq!(
            caller(&der).unwrap(),
            Caller::Agent {
                host: "i-0abc".into()
            }
        );
    }

    #[test]
    fn without_a_driftwatch_uri_the_common_name_is_the_host() {
        let der = certificate(Some("i-0cn"), &["https://example.com/"]);
        assert_eq!(
            caller(&der).unwrap(),
            Caller::Agent {
                host: "i-0cn".into()
            }
        );
        assert!(matches!(
            caller(&certificate(None, &[])),
            Err(CertError::Unnamed)
        ));
    }

    #[test]
    fn an_operator_uri_carries_the_role() {
        let der = certificate(Some("ana"), &["driftwatch:operator:operator"]);
        assert_eq!(
            caller(&der).unwrap(),
            Caller::Operator {
                name: "ana".into(),
                role: Role::Operator
            }
        );
        let bad = caller(&certificate(Some("ana"), &["driftwatch:operator:root"])).unwrap_err();
        assert!(bad.to_string().contains("unknown role \"root\""), "{bad}");
    }

    #[test]
    fn a_certificate_naming_two_callers_names_none() {
        for uris in [
            &["driftwatch:host:a", "driftwatch:host:b"][..],
            &["driftwatch:host:a", "driftwatch:operator:reader"][..],
        ] {
            let e = caller(&certificate(Some("x"), uris)).unwrap_err();
            assert!(matches!(e, CertError::Ambiguous(_)), "{e}");
        }
        assert!(matches!(
            caller(b"not a certificate"),
            Err(CertError::Unreadable(_))
        ));
    }
}
