//! The fleet CA: signs a host's certificate signing request (CSR) for exactly the identity it
//! names, as a client certificate and nothing else.
//!
//! Nothing a CSR asks for is copied but its public key and its host identity: the certificate
//! is never a CA, is for client authentication only, names the host in its common name and
//! its subjectAltName URI `driftwatch:host:<host id>`, is valid from a few minutes ago (clocks
//! differ) for the configured validity, and has a random serial (rcgen's default serial is
//! derived from the key, so a renewal would repeat it).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use rcgen::{
    CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::access::cert::HOST_URI;
use crate::store::{Issued, Millis};

/// How long an issued certificate is valid unless told otherwise (`--enroll-cert-validity`).
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
/// How far back a certificate's validity starts (a tenth of the validity at most): a host
/// whose clock is behind the collector's still accepts it at once.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// The shortest validity: agents renew a third before the end, and need time to.
pub const MIN_VALIDITY: Duration = Duration::from_secs(30);
/// The longest host id a certificate names (as the agent stream's hello).
const MAX_HOST_ID: usize = 512;

/// The fleet CA's certificate and key.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    validity: Duration,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Authority")
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

/// A certificate just signed.
#[derive(Clone, Debug)]
pub struct Signed {
    pub pem: String,
    pub not_before: Millis,
    pub issued: Issued,
}

/// Why a CSR is not signed.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("the certificate signing request is not a valid signed PEM CSR ({0})")]
    Unreadable(rcgen::Error),
    #[error(
        "the certificate signing request must name its host with exactly one subjectAltName \
         URI {HOST_URI}<host id>; it names {0}"
    )]
    Unnamed(String),
    #[error(
        "the host id {0:?} is empty, longer than {MAX_HOST_ID} bytes or holds control characters"
    )]
    BadHost(String),
    #[error("signing the certificate: {0}")]
    Signing(rcgen::Error),
}

impl Authority {
    /// Loads the CA certificate and its key (PEM files), checking that the certificate is a
    /// CA and the key is its key.
    pub fn load(cert: &Path, key: &Path, validity: Duration) -> Result<Authority> {
        let ca_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("reading the enrollment CA certificate {}", cert.display()))?;
        let key_pem = std::fs::read_to_string(key)
            .with_context(|| format!("reading the enrollment CA key {}", key.display()))?;
        Authority::from_pem(&ca_pem, &key_pem, validity).with_context(|| {
            format!(
                "the enrollment CA ({} and {})",
                cert.display(),
                key.display()
            )
        })
    }

    pub fn from_pem(ca_pem: &str, key_pem: &str, validity: Duration) -> Result<Authority> {
        if validity < MIN_VALIDITY {
            bail!("a certificate validity under {MIN_VALIDITY:?} leaves no time to renew");
        }
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| anyhow::anyhow!("the key is not a PEM private key rcgen can sign with (ECDSA P-256/P-384, Ed25519 or RSA): {e}"))?;
        let der = pem_der(ca_pem).context("the certificate is not PEM")?;
        let (_, ca) = X509Certificate::from_der(&der)
            .map_err(|e| anyhow::anyhow!("the certificate is not X.509: {e}"))?;
        if !ca.is_ca() {
            bail!("the certificate is not a CA (it needs basicConstraints CA:TRUE)");
        }
        if ca.public_key().raw != key.subject_public_key_info().as_slice() {
            bail!("the key is not the certificate's key");
        }
        let issuer = Issuer::from_ca_cert_der(&der.into(), key)
            .map_err(|e| anyhow::anyhow!("reading the CA certificate: {e}"))?;
        Ok(Authority {
            issuer,
            ca_pem: ca_pem.to_owned(),
            validity,
        })
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Signs `csr_pem` for the host it names, valid from `now` (a little before).
    pub fn sign(&self, csr_pem: &str, now: Millis) -> Result<Signed, CsrError> {
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(CsrError::Unreadable)?;
        let host = named_host(&csr.params.subject_alt_names)?;
        let mut params = csr.params;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            format!("{HOST_URI}{host}")
                .try_into()
                .map_err(|_| CsrError::BadHost(host.clone()))?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.name_constraints = None;
        params.crl_distribution_points = Vec::new();
        params.custom_extensions = Vec::new();
        params.use_authority_key_identifier_extension = true;
        let start = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        params.not_before = start - BACKDATE.min(self.validity / 10);
        params.not_after = start + self.validity;
        let serial = random_serial();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let key_sha256: [u8; 32] = Sha256::digest(csr.public_key.subject_public_key_info()).into();
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(CsrError::Signing)?;
        Ok(Signed {
            pem: cert.pem(),
            not_before: millis(params.not_before),
            issued: Issued {
                host,
                key_sha256,
                serial: hex::encode(serial),
                issued_at: now,
                not_after: millis(params.not_after),
            },
        })
    }
}

/// The host a CSR's subjectAltNames name: exactly one `driftwatch:host:` URI.
fn named_host(sans: &[SanType]) -> Result<String, CsrError> {
    let hosts: Vec<&str> = sans
        .iter()
        .filter_map(|san| match san {
            SanType::URI(uri) => uri.as_str().strip_prefix(HOST_URI),
            _ => None,
        })
        .collect();
    let [host] = hosts.as_slice() else {
        let named = match hosts.len() {
            0 => "no host".to_owned(),
            n => format!("{n} hosts ({})", hosts.join(", ")),
        };
        return Err(CsrError::Unnamed(named));
    };
    if host.is_empty() || host.len() > MAX_HOST_ID || host.chars().any(char::is_control) {
        return Err(CsrError::BadHost((*host).to_owned()));
    }
    Ok((*host).to_owned())
}

/// 16 random bytes, positive and without a leading zero byte, so its DER encoding is these
/// bytes (and the serial read back from the certificate is the one recorded).
fn random_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).expect("the system's random source works");
    serial[0] = (serial[0] & 0x7f) | 0x40;
    serial
}

fn millis(t: time::OffsetDateTime) -> Millis {
    (t.unix_timestamp_nanos() / 1_000_000) as Millis
}

/// The first certificate of a PEM text, as DER.
fn pem_der(pem: &str) -> Result<Vec<u8>> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    if block.label != "CERTIFICATE" {
        bail!("its first block is {:?}, not CERTIFICATE", block.label);
    }
    Ok(block.contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams};
    use x509_parser::extensions::GeneralName;

    fn ca() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn csr(uris: &[&str], ask_for_ca: bool) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        params
            .subject_alt_names
            .push(SanType::DnsName("evil.example".try_into().unwrap()));
        if ask_for_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        (params.serialize_request(&key).unwrap().pem().unwrap(), key)
    }

    const NOW: Millis = 1_700_000_000_000;

    #[test]
    fn a_csr_gets_a_client_certificate_for_its_host_and_nothing_it_asked_for_else() {
        let (ca_pem, ca_key) = ca();
        let authority = Authority::from_pem(&ca_pem, &ca_key, DEFAULT_VALIDITY).unwrap();
        let (request, key) = csr(&["driftwatch:host:i-0abc"], true);
        let signed = authority.sign(&request, NOW).unwrap();
        let der = x509_parser::pem::parse_x509_pem(signed.pem.as_bytes())
            .unwrap()
            .1
            .contents;
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(!cert.is_ca());
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::URI(u) => (*u).to_owned(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, ["driftwatch:host:i-0abc"]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(hex::encode(cert.raw_serial()), signed.issued.serial);
        assert_eq!(signed.issued.host, "i-0abc");
        assert_eq!(
            signed.issued.key_sha256,
            <[u8; 32]>::from(Sha256::digest(key.subject_public_key_info()))
        );
        assert_eq!(
            signed.issued.not_after,
            NOW + DEFAULT_VALIDITY.as_millis() as Millis
        );
        assert_eq!(
            cert.validity().not_after.timestamp() * 1000,
            signed.issued.not_after
        );
        assert!(signed.not_before < NOW);
        // Serials are random: the same request signed twice differs.
        assert_ne!(
            authority.sign(&request, NOW).unwrap().issued.serial,
            signed.issued.serial
        );
    }

    #[test]
    fn a_csr_names_exactly_one_host() {
        let (ca_pem, ca_key) = ca();
        let authority = Authority::from_pem(&ca_pem, &ca_key, DEFAULT_VALIDITY).unwrap();
        for uris in [&[][..], &["driftwatch:host:a", "driftwatch:host:b"][..]] {
            let e = authority.sign(&csr(uris, false).0, NOW).unwrap_err();
            assert!(matches!(e, CsrError::Unnamed(_)), "{e}");
        }
        let e = authority.sign("not a csr", NOW).unwrap_err();
        assert!(e.to_string().contains("not a valid signed PEM CSR"), "{e}");
    }

    #[test]
    fn only_a_ca_with_its_own_key_signs() {
        let (ca_pem, _) = ca();
        let (_, other_key) = ca();
        let e = Authority::from_pem(&ca_pem, &other_key, DEFAULT_VALIDITY).unwrap_err();
        assert!(e.to_string().contains("not the certificate's key"), "{e}");
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::default()
            .self_signed(&leaf_key)
            .unwrap()
            .pem();
        let e =
            Authority::from_pem(&leaf, &leaf_key.serialize_pem(), DEFAULT_VALIDITY).unwrap_err();
        assert!(e.to_string().contains("not a CA"), "{e}");
        let e = Authority::from_pem(&ca_pem, "garbage", DEFAULT_VALIDITY).unwrap_err();
        assert!(e.to_string().contains("PEM private key"), "{e}");
    }
}
