//! Enrollment: the host's client certificate from the collector's fleet CA, so no one makes
//! certificates by hand (`[enroll] token_file` / `--enroll-token-file`).
//!
//! - The key is generated here and never leaves the host: `<state_dir>/enroll/host.key`, mode
//!   0600 (ECDSA P-256). The certificate is `host.crt` beside it.
//! - With no certificate for this host (or one past its validity), the uplink enrolls before
//!   it connects: a CSR naming the host (subjectAltName URI `driftwatch:host:<host id>`) and
//!   the join token read from the token file (`driftwatch.v1.Enrollment/Enroll`, over TLS
//!   without a client certificate). The collector answers with a certificate for exactly that
//!   identity, or refuses with what to do (a token past its TTL or uses, an identity enrolled
//!   with another key); the uplink retries with its backoff, so a token replaced in the file
//!   is picked up.
//! - Once two thirds of the certificate's validity have passed, [`renewal`] asks for a new one
//!   with the certificate itself (`Renew`, mTLS): the token is needed once. The stream keeps
//!   its connection; the next connection presents the new certificate.
//! - A revoked certificate is refused at the next connection; the collector's message says to
//!   remove `host.crt`, after which the next attempt enrolls again (with a join token).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use driftwatch_proto::v1::{self, enrollment_client::EnrollmentClient};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::identity::HostIdentity;
use crate::config::CollectorConfig;

/// The directory inside the state directory.
pub const DIR: &str = "enroll";
const KEY_FILE: &str = "host.key";
const CERT_FILE: &str = "host.crt";
/// The URI prefix naming a host in its certificate (as the collector reads it).
const HOST_URI: &str = "driftwatch:host:";
/// The host key and certificate are a few hundred bytes; a larger file is not read whole.
const PEM_MAX_BYTES: u64 = 1 << 20;
/// A join token file larger than this is not a join token.
const MAX_TOKEN_BYTES: u64 = 4096;

/// `[enroll]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollConfig {
    /// The join token (`dwj_…`), read when the host has no certificate.
    pub token_file: PathBuf,
    /// Where the key and the certificate live (`<state_dir>/enroll`).
    pub dir: PathBuf,
}

impl EnrollConfig {
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }
}

/// Why the host has no certificate (each ends one connection attempt; the uplink retries).
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "this host has no certificate yet and its join token cannot be read from {}: {source} \
         (an admin makes one with `driftwatch enroll token create`)",
        path.display()
    )]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the join token file {} holds no join token (one line, dwj_…)", .0.display())]
    NotAToken(PathBuf),
    #[error("the host key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("the certificate signing request: {0}")]
    Request(rcgen::Error),
    #[error("cannot reach the collector at {url} to enroll")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the collector refused to {action}: {code:?}: {message}")]
    Refused {
        action: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("the collector's answer is not a certificate for this host: {0}")]
    BadAnswer(String),
}

/// The host's key and certificate, ready for TLS.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub host: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub serial: String,
    /// Issued just now (not read from the state directory).
    pub fresh: bool,
}

impl Credentials {
    /// When to ask for a new certificate: two thirds into its validity.
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + lifetime * 2 / 3
    }

    fn valid_now(&self) -> bool {
        SystemTime::now() < self.not_after
    }
}

/// The host's credentials for `host`: the stored ones while they are valid and name it, or
/// new ones from an enrollment with the join token.
pub async fn ensure(
    config: &EnrollConfig,
    collector: &CollectorConfig,
    id: &HostIdentity,
    image_name: &str,
) -> Result<Credentials, EnrollError> {
    let key = host_key(config)?;
    match stored(config, &key) {
        Ok(Some(c)) if c.host == id.host && c.valid_now() => return Ok(c),
        Ok(Some(c)) if c.host != id.host => tracing::warn!(
            certificate_host = %c.host, host = %id.host,
            "The host certificate names another host; enrolling again."
        ),
        Ok(Some(c)) => tracing::warn!(
            host = %c.host, serial = %c.serial,
            "The host certificate has expired; enrolling again with the join token."
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %crate::errors::error_chain(&e), "The stored host certificate is unusable; enrolling again.")
        }
    }
    let token = join_token(&config.token_file)?;
    let request = v1::EnrollRequest {
        join_token: token,
        csr_pem: csr(&key, &id.host)?,
        image_id: id.image_id.clone(),
        image_name: image_name.to_owned(),
    };
    let channel = super::endpoint_with(collector, None)
        .map_err(|e| EnrollError::BadAnswer(crate::errors::error_chain(&e)))?;
    let answer = call(collector, channel, "enroll", |mut client| async move {
        client.enroll(request).await
    })
    .await?;
    let credentials = save(config, &key, &answer, &id.host)?;
    tracing::info!(host = %credentials.host, serial = %credentials.serial, not_after = %humantime::format_rfc3339_seconds(credentials.not_after), "Enrolled: the collector issued this host's certificate.");
    Ok(credentials)
}

/// Renews the certificate before it expires, for as long as the agent runs: the token is not
/// needed. A failed renewal is retried (more often as the expiry nears) and logged; a
/// certificate that expires all the same is replaced by an enrollment at the next connection.
pub async fn renewal(
    config: EnrollConfig,
    collector: CollectorConfig,
    enrolled: Arc<Notify>,
    cancel: CancellationToken,
) {
    // Not enrolled yet: the uplink says when it is (checked now and then all the same).
    const NOT_ENROLLED_YET: Duration = Duration::from_secs(600);
    let mut failures = 0u32;
    loop {
        let wait = match host_key(&config).and_then(|key| stored(&config, &key).map(|c| (key, c))) {
            Ok((key, Some(current))) => {
                let due = current.renew_at();
                match due.duration_since(SystemTime::now()) {
                    Ok(wait) if failures == 0 => wait,
                    _ => match renew_anywhere(&config, &collector, &key, &current).await {
                        Ok(renewed) => {
                            failures = 0;
                            tracing::info!(host = %renewed.host, serial = %renewed.serial, not_after = %humantime::format_rfc3339_seconds(renewed.not_after), "Renewed the host certificate.");
                            renewed
                                .renew_at()
                                .duration_since(SystemTime::now())
                                .unwrap_or_default()
                        }
                        Err(e) => {
                            failures += 1;
                            let left = current
                                .not_after
                                .duration_since(SystemTime::now())
                                .unwrap_or_default();
                            let retry = (left / 10)
                                .clamp(Duration::from_secs(10), Duration::from_secs(3600));
                            tracing::warn!(error = %crate::errors::error_chain(&e), expires_in = %humantime::format_duration(Duration::from_secs(left.as_secs())), retry_in = %humantime::format_duration(retry), "Cannot renew the host certificate.");
                            retry
                        }
                    },
                }
            }
            Ok((_, None)) => NOT_ENROLLED_YET,
            Err(e) => {
                tracing::debug!(error = %crate::errors::error_chain(&e), "No host key yet.");
                NOT_ENROLLED_YET
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = enrolled.notified() => failures = 0,
            _ = tokio::time::sleep(wait.max(Duration::from_secs(1))) => {}
        }
    }
}

/// [`renew`] with the first collector URL that answers (replicas).
async fn renew_anywhere(
    config: &EnrollConfig,
    collector: &CollectorConfig,
    key: &KeyPair,
    current: &Credentials,
) -> Result<Credentials, EnrollError> {
    let mut collector = collector.clone();
    for _ in 1..collector.urls.len() {
        match renew(config, &collector, key, current).await {
            Err(EnrollError::Connect { .. }) => collector.fail_over(),
            result => return result,
        };
    }
    renew(config, &collector, key, current).await
}

async fn renew(
    config: &EnrollConfig,
    collector: &CollectorConfig,
    key: &KeyPair,
    current: &Credentials,
) -> Result<Credentials, EnrollError> {
    let request = v1::RenewRequest {
        csr_pem: csr(key, &current.host)?,
    };
    let channel = super::endpoint_with(collector, Some(current))
        .map_err(|e| EnrollError::BadAnswer(crate::errors::error_chain(&e)))?;
    let answer = call(
        collector,
        channel,
        "renew the host certificate",
        |mut client| async move { client.renew(request).await },
    )
    .await?;
    save(config, key, &answer, &current.host)
}

async fn call<F, Fut>(
    collector: &CollectorConfig,
    endpoint: Endpoint,
    action: &'static str,
    f: F,
) -> Result<v1::Certificate, EnrollError>
where
    F: FnOnce(EnrollmentClient<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<v1::Certificate>, tonic::Status>>,
{
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| EnrollError::Connect {
            url: collector.url().to_owned(),
            source,
        })?;
    f(EnrollmentClient::new(channel))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| EnrollError::Refused {
            action,
            code: status.code(),
            message: status.message().to_owned(),
        })
}

/// The host key: read, or generated and stored 0600 (in a 0700 directory) the first time.
fn host_key(config: &EnrollConfig) -> Result<KeyPair, EnrollError> {
    let path = config.key_path();
    // PEM files of a few hundred bytes: any size is not read whole.
    match crate::fsutil::read_bounded(&path, PEM_MAX_BYTES) {
        Ok(pem) => {
            KeyPair::from_pem(&String::from_utf8_lossy(&pem)).map_err(|e| EnrollError::Key {
                path,
                message: e.to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            private_dir(&config.dir)?;
            let key = KeyPair::generate().map_err(|e| EnrollError::Key {
                path: path.clone(),
                message: e.to_string(),
            })?;
            crate::fsutil::write_atomically(&path, key.serialize_pem().as_bytes(), 0o600).map_err(
                |source| EnrollError::Io {
                    what: "cannot write the host key",
                    path: path.clone(),
                    source,
                },
            )?;
            tracing::info!(path = %path.display(), "Generated this host's key (it never leaves the host).");
            Ok(key)
        }
        Err(source) => Err(EnrollError::Io {
            what: "cannot read the host key",
            path,
            source,
        }),
    }
}

fn private_dir(dir: &Path) -> Result<(), EnrollError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| EnrollError::Io {
            what: "cannot create",
            path: dir.to_path_buf(),
            source,
        })
}

/// The stored certificate, if any, read (it must certify `key`).
fn stored(config: &EnrollConfig, key: &KeyPair) -> Result<Option<Credentials>, EnrollError> {
    let path = config.cert_path();
    let pem = match crate::fsutil::read_bounded(&path, PEM_MAX_BYTES) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(EnrollError::Io {
                what: "cannot read the host certificate",
                path,
                source,
            });
        }
    };
    read_certificate(pem, key).map(Some)
}

/// Checks an issued certificate (it certifies `key` and names one host) and reads it.
fn read_certificate(cert_pem: Vec<u8>, key: &KeyPair) -> Result<Credentials, EnrollError> {
    use rcgen::PublicKeyData as _;
    let bad = |m: String| EnrollError::BadAnswer(m);
    let (_, block) = x509_parser::pem::parse_x509_pem(&cert_pem).map_err(|e| bad(e.to_string()))?;
    let (_, cert) = X509Certificate::from_der(&block.contents).map_err(|e| bad(e.to_string()))?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(bad("it certifies another key than the host's".into()));
    }
    let hosts: Vec<&str> = cert
        .subject_alternative_name()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .flat_map(|san| &san.value.general_names)
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(HOST_URI),
            _ => None,
        })
        .collect();
    let [host] = hosts.as_slice() else {
        return Err(bad(format!("it names {} hosts", hosts.len())));
    };
    let time = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
    };
    Ok(Credentials {
        host: (*host).to_owned(),
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
        serial: hex::encode(cert.raw_serial()),
        key_pem: key.serialize_pem().into_bytes(),
        cert_pem,
        fresh: false,
    })
}

/// Stores a certificate the collector issued, after checking it is for this host and key.
fn save(
    config: &EnrollConfig,
    key: &KeyPair,
    answer: &v1::Certificate,
    host: &str,
) -> Result<Credentials, EnrollError> {
    let mut credentials = read_certificate(answer.certificate_pem.clone().into_bytes(), key)?;
    credentials.fresh = true;
    if credentials.host != host {
        return Err(EnrollError::BadAnswer(format!(
            "it names host {}, not {host}",
            credentials.host
        )));
    }
    let path = config.cert_path();
    crate::fsutil::write_atomically(&path, &credentials.cert_pem, 0o600).map_err(|source| {
        EnrollError::Io {
            what: "cannot write the host certificate",
            path,
            source,
        }
    })?;
    Ok(credentials)
}

/// A CSR naming `host`, signed with the host key.
fn csr(key: &KeyPair, host: &str) -> Result<String, EnrollError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(
        format!("{HOST_URI}{host}")
            .try_into()
            .map_err(EnrollError::Request)?,
    )];
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(EnrollError::Request)
}

/// The join token in its file: the first line, trimmed.
fn join_token(path: &Path) -> Result<String, EnrollError> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_BYTES).read_to_string(&mut text))
        .map_err(|source| EnrollError::Token {
            path: path.to_path_buf(),
            source,
        })?;
    let token = text.lines().next().unwrap_or_default().trim();
    if !token.starts_with("dwj_") {
        return Err(EnrollError::NotAToken(path.to_path_buf()));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> EnrollConfig {
        EnrollConfig {
            token_file: dir.join("token"),
            dir: dir.join("state").join(DIR),
        }
    }

    #[test]
    fn the_host_key_is_made_once_private_and_kept() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path());
        let first = host_key(&c).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&c.key_path()), 0o600);
        assert_eq!(mode(&c.dir), 0o700);
        assert_eq!(host_key(&c).unwrap().serialize_pem(), first.serialize_pem());
        std::fs::write(c.key_path(), "garbage").unwrap();
        let e = host_key(&c).unwrap_err().to_string();
        assert!(e.contains("host.key"), "{e}");
    }

    #[test]
    fn a_csr_names_the_host_and_a_token_file_holds_one_token() {
        let tmp = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let pem = csr(&key, "i-0abc").unwrap();
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{pem}"
        );
        let c = config(tmp.path());
        let e = join_token(&c.token_file).unwrap_err().to_string();
        assert!(
            e.contains("no certificate yet") && e.contains("token create"),
            "{e}"
        );
        std::fs::write(&c.token_file, "  dwj_abc  \nsecond line\n").unwrap();
        assert_eq!(join_token(&c.token_file).unwrap(), "dwj_abc");
        std::fs::write(&c.token_file, "dwt_operator\n").unwrap();
        assert!(matches!(
            join_token(&c.token_file),
            Err(EnrollError::NotAToken(_))
        ));
    }

    #[test]
    fn a_certificate_for_another_key_or_without_a_host_is_refused() {
        let key = KeyPair::generate().unwrap();
        let other = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI("driftwatch:host:h1".try_into().unwrap())];
        let mine = params.self_signed(&key).unwrap().pem().into_bytes();
        let read = read_certificate(mine.clone(), &key).unwrap();
        assert_eq!(read.host, "h1");
        assert!(read.renew_at() > read.not_before && read.renew_at() < read.not_after);
        let e = read_certificate(mine, &other).unwrap_err().to_string();
        assert!(e.contains("another key"), "{e}");
        let nameless = CertificateParams::default()
            .self_signed(&key)
            .unwrap()
            .pem();
        let e = read_certificate(nameless.into_bytes(), &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("names 0 hosts"), "{e}");
    }
}
