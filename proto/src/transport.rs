//! Why a connection to a collector failed, in words a person can act on.
//!
//! tonic reports a failed connection as `transport error` and a failed call on a broken
//! connection as `operation was canceled`; the reason (a certificate nobody trusts, a client
//! certificate the collector wants, a plaintext port) sits at the bottom of the error's source
//! chain: `tonic::transport::Error` → hyper → `std::io::Error` → `rustls::Error`. [`diagnose`]
//! walks that chain (looking inside `io::Error`s too, whose `source()` skips the error they
//! wrap) and says which side refused and why, naming the settings to change (the CLI's
//! `--ca`/`--cert`, the agent's `collector.ca`/`collector.cert`: see [`Settings`]).
//!
//! Under TLS 1.3 the client finishes its handshake before the server checks the client's
//! certificate, so a collector that requires one and gets none just closes the connection:
//! the client sees a reset, a broken pipe or a closed connection on its first call, never the
//! alert. When no client certificate was presented over https, such an error is reported as
//! the likely cause ("the collector may require a client certificate"), said as a guess.

use std::error::Error;
use std::io;

use rustls::CertificateError;

/// How the failing connection was made, and what its settings are called where it was
/// configured (flags for the CLI, config keys for the agent).
#[derive(Clone, Debug)]
pub struct Settings<'a> {
    /// The collector's URL as given.
    pub url: &'a str,
    /// The CA file that verifies the collector, if one was given.
    pub ca: Option<&'a str>,
    /// Whether a client certificate was presented.
    pub client_cert: bool,
    /// The names of the settings, e.g. `"--ca"` and `"--cert and --key"`.
    pub ca_setting: &'a str,
    pub cert_setting: &'a str,
}

impl Settings<'_> {
    fn is_tls(&self) -> bool {
        self.url.starts_with("https://")
    }

    fn authority(&self) -> &str {
        let rest = self
            .url
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        rest.split('/').next().unwrap_or(rest)
    }
}

/// What went wrong, by which side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Diagnosis {
    /// Nothing listens at the address.
    Refused,
    /// The name does not resolve.
    UnknownHost,
    /// The collector's certificate is not signed by a trusted CA.
    UntrustedServer { reason: String },
    /// The collector's certificate has expired (or is not valid yet).
    ServerCertExpired { reason: String },
    /// The collector's certificate is not for the name or address in the URL.
    NameMismatch { reason: String },
    /// Some other problem with the collector's certificate.
    BadServerCert { reason: String },
    /// The collector said it requires a client certificate (TLS alert).
    ClientCertRequired,
    /// The collector refused the client certificate presented (TLS alert).
    ClientCertRefused { reason: String },
    /// The connection was closed or reset right after the handshake, no client certificate
    /// having been presented: most likely a collector that requires one (TLS 1.3).
    ClientCertProbablyRequired,
    /// Closed or reset right after the handshake although a client certificate was presented:
    /// most likely the collector did not accept it.
    ClientCertProbablyRefused,
    /// https URL, but the collector answered in plaintext.
    PlaintextServer,
    /// http URL, but the collector seems to speak TLS.
    TlsServer,
    /// The TLS handshake failed otherwise (an alert from the collector, a protocol mismatch).
    Tls { reason: String },
}

impl Diagnosis {
    /// The sentence for a person: what refused, why, and what to change.
    pub fn explain(&self, s: &Settings<'_>) -> String {
        let addr = s.authority();
        let ca = match s.ca {
            Some(file) => format!("by {} {file}", s.ca_setting),
            None => format!(
                "(no {} given, and no system CA is trusted: give {} with the CA that signed it)",
                s.ca_setting, s.ca_setting
            ),
        };
        match self {
            Diagnosis::Refused => format!(
                "connection refused at {addr}: no collector listens there (is it running, on \
                 this address and port?)"
            ),
            Diagnosis::UnknownHost => format!("the host name in {} does not resolve", s.url),
            Diagnosis::UntrustedServer { reason } => {
                format!("the collector's certificate is not trusted {ca}: {reason}")
            }
            Diagnosis::ServerCertExpired { reason } => format!(
                "the collector's certificate has expired or is not valid yet ({reason}): renew \
                 it (or check this machine's clock)"
            ),
            Diagnosis::NameMismatch { reason } => format!(
                "hostname mismatch: the collector's certificate is not for {addr} ({reason}): \
                 use the name or address it was issued for in the URL"
            ),
            Diagnosis::BadServerCert { reason } => {
                format!("the collector's certificate was refused: {reason}")
            }
            Diagnosis::ClientCertRequired => format!(
                "the collector requires a client certificate (mTLS): give {}",
                s.cert_setting
            ),
            Diagnosis::ClientCertRefused { reason } => format!(
                "the collector refused the client certificate ({reason}): it must be signed by \
                 the CA the collector trusts for clients (its --client-ca), for client \
                 authentication, and not expired"
            ),
            Diagnosis::ClientCertProbablyRequired => format!(
                "the collector closed the connection right after the TLS handshake; no client \
                 certificate was presented, and the collector may require one (mTLS): give {}",
                s.cert_setting
            ),
            Diagnosis::ClientCertProbablyRefused => format!(
                "the collector closed the connection right after the TLS handshake; it may have \
                 refused the client certificate ({}): it must be signed by the CA the collector \
                 trusts for clients (its --client-ca), for client authentication, and not \
                 expired",
                s.cert_setting
            ),
            Diagnosis::PlaintextServer => format!(
                "the collector at {addr} speaks plaintext but the URL is https: use http://{addr} \
                 (or start the collector with --tls-cert and --tls-key)"
            ),
            Diagnosis::TlsServer => format!(
                "the collector at {addr} seems to speak TLS but the URL is http: use \
                 https://{addr} (with {})",
                s.ca_setting
            ),
            Diagnosis::Tls { reason } => format!("the TLS handshake failed: {reason}"),
        }
    }
}

/// How rustls words an alert received from the peer.
const ALERT: &str = "received fatal alert: ";

/// Classifies a failed connection or call (a `tonic::transport::Error`, a `tonic::Status`, or
/// anything with one of them in its source chain). `None`: nothing recognised; show the error
/// as it is.
pub fn diagnose(error: &(dyn Error + 'static), s: &Settings<'_>) -> Option<Diagnosis> {
    let mut closed = false;
    let mut http2_error = false;
    for e in chain(error) {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(from_rustls(tls, s));
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return Some(Diagnosis::Refused),
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => closed = true,
                _ => {}
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && (h.is_canceled() || h.is_closed() || h.is_incomplete_message())
        {
            closed = true;
        }
        let text = e.to_string();
        if let Some(at) = text.find(ALERT) {
            let name = text[at + ALERT.len()..]
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or("");
            return Some(from_alert(name, text[at..].to_owned(), s));
        }
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return Some(Diagnosis::UnknownHost);
        }
        if text.contains("operation was canceled") || text.contains("connection closed") {
            closed = true;
        }
        // h2's own errors (hyper keeps h2 a private dependency): a peer that is not HTTP/2.
        if text.contains("frame with invalid size") || text.contains("protocol error") {
            http2_error = true;
        }
    }
    match (s.is_tls(), s.client_cert) {
        (true, false) if closed => Some(Diagnosis::ClientCertProbablyRequired),
        (true, true) if closed => Some(Diagnosis::ClientCertProbablyRefused),
        // A TLS server answers an HTTP/2 preface with a TLS alert record and closes.
        (false, _) if closed || http2_error => Some(Diagnosis::TlsServer),
        _ => None,
    }
}

/// The error and its sources, including what an `io::Error` wraps (its `source()` skips it).
fn chain<'a>(error: &'a (dyn Error + 'static)) -> Vec<&'a (dyn Error + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        out.push(e);
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            out.push(inner);
            next = inner.source();
        } else {
            next = e.source();
        }
        if out.len() > 32 {
            break;
        }
    }
    out
}

fn from_rustls(e: &rustls::Error, s: &Settings<'_>) -> Diagnosis {
    let reason = e.to_string();
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                Diagnosis::UntrustedServer { reason }
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                Diagnosis::ServerCertExpired { reason }
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Diagnosis::NameMismatch { reason }
            }
            _ => Diagnosis::BadServerCert { reason },
        },
        rustls::Error::AlertReceived(alert) => from_alert(&format!("{alert:?}"), reason, s),
        rustls::Error::InvalidMessage(_) => Diagnosis::PlaintextServer,
        _ => Diagnosis::Tls { reason },
    }
}

/// A TLS alert from the collector, by its name in rustls (`CertificateRequired`): the typed
/// `rustls::Error` when it is at hand, else the name in the text tokio-rustls leaves after a
/// handshake ("received fatal alert: CertificateRequired").
fn from_alert(name: &str, reason: String, s: &Settings<'_>) -> Diagnosis {
    match name {
        "CertificateRequired" => Diagnosis::ClientCertRequired,
        "HandshakeFailure" if !s.client_cert => Diagnosis::ClientCertRequired,
        "BadCertificate"
        | "UnsupportedCertificate"
        | "CertificateUnknown"
        | "UnknownCA"
        | "CertificateExpired"
        | "CertificateRevoked"
        | "DecryptError"
        | "AccessDenied"
            if s.client_cert =>
        {
            Diagnosis::ClientCertRefused { reason }
        }
        _ => Diagnosis::Tls {
            reason: format!("the collector sent {reason}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, client_cert: bool) -> Settings<'_> {
        Settings {
            url,
            ca: Some("ca.pem"),
            client_cert,
            ca_setting: "--ca",
            cert_setting: "--cert and --key",
        }
    }

    /// rustls errors arrive wrapped in an `io::Error` (tokio-rustls), itself a source of
    /// hyper's and tonic's errors.
    #[derive(Debug, thiserror::Error)]
    #[error("transport error")]
    struct Outer(#[source] io::Error);

    fn wrapped(e: rustls::Error) -> Outer {
        Outer(io::Error::new(io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn rustls_reasons_become_sentences_naming_the_setting() {
        let https = settings("https://c.example:7470", false);
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "not trusted by --ca ca.pem",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                "expired",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                "hostname mismatch",
            ),
            (
                rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
                "requires a client certificate (mTLS): give --cert and --key",
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                "speaks plaintext but the URL is https",
            ),
        ];
        for (error, want) in cases {
            let d = diagnose(&wrapped(error.clone()), &https).unwrap();
            let text = d.explain(&https);
            assert!(text.contains(want), "{error:?}: {text}");
        }
        let with_cert = settings("https://c.example:7470", true);
        let d = diagnose(
            &wrapped(rustls::Error::AlertReceived(
                rustls::AlertDescription::UnknownCA,
            )),
            &with_cert,
        );
        assert!(
            matches!(d, Some(Diagnosis::ClientCertRefused { .. })),
            "{d:?}"
        );
        // What hyper keeps of an alert after the handshake: its text.
        let text = Outer(io::Error::new(
            io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        ));
        assert_eq!(diagnose(&text, &https), Some(Diagnosis::ClientCertRequired));
        let text = Outer(io::Error::new(
            io::ErrorKind::InvalidData,
            "received fatal alert: UnsupportedCertificate",
        ));
        assert!(matches!(
            diagnose(&text, &with_cert),
            Some(Diagnosis::ClientCertRefused { .. })
        ));
    }

    #[test]
    fn a_closed_connection_is_a_guess_about_client_certificates_or_tls() {
        let reset = || Outer(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(
            diagnose(&reset(), &settings("https://c:1", false)),
            Some(Diagnosis::ClientCertProbablyRequired)
        );
        assert_eq!(
            diagnose(&reset(), &settings("https://c:1", true)),
            Some(Diagnosis::ClientCertProbablyRefused)
        );
        assert_eq!(
            diagnose(&reset(), &settings("http://c:1", false)),
            Some(Diagnosis::TlsServer)
        );
        let refused = Outer(io::Error::from(io::ErrorKind::ConnectionRefused));
        let s = settings("http://c:1", false);
        assert!(
            diagnose(&refused, &s)
                .unwrap()
                .explain(&s)
                .contains("connection refused at c:1")
        );
        let other = Outer(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(diagnose(&other, &s), None);
    }

    #[test]
    fn without_a_ca_the_advice_is_to_give_one() {
        let s = Settings {
            ca: None,
            ..settings("https://c:1", false)
        };
        let d = diagnose(
            &wrapped(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
            &s,
        )
        .unwrap();
        assert!(d.explain(&s).contains("no --ca given"), "{}", d.explain(&s));
    }
}
