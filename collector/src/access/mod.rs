//! Who is calling, and what they may do: one check in front of every gRPC method and every
//! HTTP route of the port.
//!
//! A caller is known by a bearer token ([`token`]: an operator with a role) or else by its
//! TLS client certificate ([`cert`]): an agent's certificate names one host and opens that
//! host's agent stream and nothing else; an operator's certificate carries a role.
//!
//! Operators need a credential when the collector listens off loopback, with `--client-ca`,
//! or with `--require-auth`; on loopback otherwise (`driftwatch up`, a first try) the port is
//! open. Agents need a certificate with `--client-ca`; without it a hello is taken at its word.
//!
//! | what is called                                   | who may                          |
//! |--------------------------------------------------|----------------------------------|
//! | `Ingest/Stream`, `Enrollment/Renew`              | agents (bound to their host)     |
//! | `Iac/ImportState`, `Iac/ImportManifest`          | operators with role `operator`+  |
//! | join tokens, enrolled hosts (`Enrollment/…`)     | operators with role `admin`      |
//! | every other query, `Watch`, `/api/v1`, `/metrics`| operators with role `reader`+    |
//! | health, reflection, `/healthz`, `Enrollment/Enroll` (the join token is its credential) | anyone |
//!
//! A certificate the fleet CA issued (enrollment) and an admin revoked is refused here, at
//! the next call it makes.
//!
//! A refusal is `UNAUTHENTICATED` / HTTP 401 when no credential was presented and one is
//! needed, `PERMISSION_DENIED` / HTTP 403 when the credential does not allow the call; each
//! says how to get one that does.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::metrics::Metrics;
pub use crate::store::{Role, UnknownRole};
use crate::store::{Store, blocking};

pub mod cert;
pub mod token;

/// Who made a request. Handlers find it in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No credential (the collector does not ask for one).
    Anonymous,
    /// An agent whose certificate names this host.
    Agent { host: String },
    /// An operator with a role.
    Operator { name: String, role: Role },
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Anonymous => f.write_str("anonymous"),
            Caller::Agent { host } => write!(f, "agent {host}"),
            Caller::Operator { name, role } => write!(f, "{name} ({role})"),
        }
    }
}

impl Caller {
    /// Who made `request`: what the access check found (every request passes it first).
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous)
    }
}

/// What a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Nothing,
    /// A host's own calls: its stream, its certificate's renewal.
    Agent,
    Role(Role),
}

/// The serial (lowercase hex) of the client certificate a call presented, for handlers that
/// need more than the [`Caller`] (a renewal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSerial(pub String);

/// What the request path asks for.
pub fn need(path: &str) -> Need {
    const OPEN: [&str; 5] = [
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
        "/healthz",
        "/driftwatch.v1.Enrollment/Enroll",
    ];
    if OPEN
        .iter()
        .any(|p| path == *p || (p.ends_with('/') && path.starts_with(p)))
    {
        Need::Nothing
    } else if path.starts_with("/driftwatch.v1.Ingest/")
        || path == "/driftwatch.v1.Enrollment/Renew"
    {
        Need::Agent
    } else if path.starts_with("/driftwatch.v1.Enrollment/") {
        Need::Role(Role::Admin)
    } else if path.starts_with("/driftwatch.v1.Iac/Import") {
        Need::Role(Role::Operator)
    } else {
        Need::Role(Role::Reader)
    }
}

/// Why a call is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No usable credential: 401 / `UNAUTHENTICATED`.
    Unauthenticated(String),
    /// The credential does not allow this: 403 / `PERMISSION_DENIED`.
    Denied(String),
    /// The credential could not be checked (the database failed): 503 / `UNAVAILABLE`.
    Unavailable(String),
}

/// How the port is guarded.
pub struct Access {
    /// Clients present certificates from the fleet's CA (`--client-ca`, or the enrollment
    /// CA: then a client may connect without one, to enroll).
    pub mtls: bool,
    /// Operators must present a credential (off loopback, mTLS, or `--require-auth`).
    pub require_auth: bool,
    /// Where tokens are looked up.
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
}

const OPERATOR_CERT: &str = "an operator certificate (subjectAltName URI \
    driftwatch:operator:reader, :operator or :admin) from the collector's client CA";

const GET_A_TOKEN: &str = "pass a token with --token or DRIFTWATCH_TOKEN (an admin makes one \
    with `driftwatch-collector token create --name NAME --role reader` on the collector's host)";

impl Access {
    /// Whether `caller` may make a call that needs `need`.
    pub fn decide(&self, caller: &Caller, need: Need) -> Result<(), Refusal> {
        match (need, caller) {
            (Need::Nothing, _) => Ok(()),
            (Need::Agent, Caller::Agent { .. }) => Ok(()),
            (Need::Agent, Caller::Anonymous) if !self.mtls => Ok(()),
            (Need::Agent, Caller::Anonymous) => Err(Refusal::Unauthenticated(
                "the agent stream needs a client certificate for the host".into(),
            )),
            (Need::Agent, Caller::Operator { name, .. }) => Err(Refusal::Denied(format!(
                "{name} presented an operator certificate: only an agent's certificate opens \
                 an agent stream"
            ))),
            (Need::Role(_), Caller::Anonymous) if !self.require_auth => Ok(()),
            (Need::Role(role), Caller::Anonymous) if self.mtls => {
                Err(Refusal::Unauthenticated(format!(
                    "this collector requires a credential with role {role}: {GET_A_TOKEN}, or \
                     present {OPERATOR_CERT}"
                )))
            }
            (Need::Role(role), Caller::Anonymous) => Err(Refusal::Unauthenticated(format!(
                "this collector requires a credential with role {role}: {GET_A_TOKEN}"
            ))),
            (Need::Role(_), Caller::Agent { host }) => Err(Refusal::Denied(format!(
                "the certificate of host {host} opens that host's agent stream and nothing else; \
                 operators use a token or {OPERATOR_CERT}"
            ))),
            (Need::Role(need), Caller::Operator { name, role }) if *role < need => {
                Err(Refusal::Denied(format!(
                    "{name} has role {role}; this call needs role {need} or above"
                )))
            }
            (Need::Role(_), Caller::Operator { .. }) => Ok(()),
        }
    }
}

/// What a request presents, taken out of it (the request's body is not `Sync`, so the
/// request cannot be held across the token lookup).
struct Presented {
    authorization: Option<axum::http::HeaderValue>,
    leaf: Option<tonic::transport::CertificateDer<'static>>,
}

impl Presented {
    fn of(request: &Request) -> Presented {
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|tls| tls.peer_certs());
        Presented {
            authorization: request.headers().get(header::AUTHORIZATION).cloned(),
            leaf: certs.as_deref().and_then(|c| c.first()).cloned(),
        }
    }
}

impl Access {
    /// The caller: its bearer token, else its TLS client certificate (and that
    /// certificate's serial).
    async fn caller(&self, presented: Presented) -> Result<(Caller, Option<String>), Refusal> {
        if let Some(value) = &presented.authorization {
            let secret =
                token::bearer(value).map_err(|e| Refusal::Unauthenticated(e.to_string()))?;
            let hash = token::hash(secret);
            let store = self.store.clone();
            let now = crate::store::now_millis();
            return match blocking(move || store.token(&hash, now)).await {
                Ok(Some(t)) => Ok((
                    Caller::Operator {
                        name: t.name,
                        role: t.role,
                    },
                    None,
                )),
                Ok(None) => Err(Refusal::Unauthenticated(format!(
                    "the token is unknown, expired or revoked: {GET_A_TOKEN}"
                ))),
                Err(e) => Err(Refusal::Unavailable(crate::status::store_message(&e))),
            };
        }
        let Some(leaf) = &presented.leaf else {
            return Ok((Caller::Anonymous, None));
        };
        let named = cert::read(leaf)
            .map_err(|e| Refusal::Unauthenticated(format!("client certificate: {e}")))?;
        if let Caller::Agent { host } = &named.caller {
            self.not_revoked(host, &named.serial).await?;
        }
        Ok((named.caller, Some(named.serial)))
    }

    /// Refuses a certificate the fleet CA issued and an admin revoked since.
    async fn not_revoked(&self, host: &str, serial: &str) -> Result<(), Refusal> {
        let store = self.store.clone();
        let key = serial.to_owned();
        let issued = blocking(move || store.certificate(&key))
            .await
            .map_err(|e| Refusal::Unavailable(crate::status::store_message(&e)))?;
        match issued {
            Some(c) if c.revoked_at.is_some() => Err(Refusal::Unauthenticated(revoked(host, &c))),
            _ => Ok(()),
        }
    }
}

/// What a host whose certificate was revoked is told.
pub fn revoked(host: &str, c: &crate::store::IssuedCertificate) -> String {
    format!(
        "the certificate of host {host} (serial {}) was revoked at {}{}: the host must enroll \
         again (remove its certificate, <state directory>/enroll/host.crt, and give its agent a \
         new join token)",
        c.serial,
        crate::store::rfc3339(c.revoked_at.unwrap_or_default()),
        c.revoked_by
            .as_ref()
            .map(|by| format!(" by {by}"))
            .unwrap_or_default(),
    )
}

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The middleware in front of every route: refuses what the caller may not do, and hands
/// the [`Caller`] on to the handler in the request's extensions.
pub async fn guard(
    State(access): State<Arc<Access>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let decided = access
        .caller(Presented::of(&request))
        .await
        .and_then(|(caller, serial)| {
            access
                .decide(&caller, need(&path))
                .map(|()| (caller, serial))
        });
    match decided {
        Ok((caller, serial)) => {
            request.extensions_mut().insert(caller);
            if let Some(serial) = serial {
                request.extensions_mut().insert(ClientSerial(serial));
            }
            next.run(request).await
        }
        Err(refusal) => {
            let (kind, message) = match &refusal {
                Refusal::Unauthenticated(m) => ("unauthenticated", m),
                Refusal::Denied(m) => ("denied", m),
                Refusal::Unavailable(m) => ("unavailable", m),
            };
            access.metrics.refused(kind);
            tracing::info!(path, "Refused a call: {message}.");
            refuse(is_grpc(&request), refusal)
        }
    }
}

fn refuse(grpc: bool, refusal: Refusal) -> Response {
    if grpc {
        let status = match refusal {
            Refusal::Unauthenticated(m) => tonic::Status::unauthenticated(m),
            Refusal::Denied(m) => tonic::Status::permission_denied(m),
            Refusal::Unavailable(m) => tonic::Status::unavailable(m),
        };
        return status.into_http();
    }
    match refusal {
        Refusal::Unauthenticated(m) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({ "error": m })),
        )
            .into_response(),
        Refusal::Denied(m) => (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({ "error": m })),
        )
            .into_response(),
        Refusal::Unavailable(m) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": m })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(mtls: bool) -> Access {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("c.db")).unwrap();
        Access {
            mtls,
            require_auth: mtls,
            store: Arc::new(store),
            metrics: Arc::new(Metrics::default()),
        }
    }

    fn operator(role: Role) -> Caller {
        Caller::Operator {
            name: "ana".into(),
            role,
        }
    }

    #[test]
    fn paths_need_what_the_table_says() {
        assert_eq!(need("/driftwatch.v1.Ingest/Stream"), Need::Agent);
        assert_eq!(
            need("/driftwatch.v1.Iac/ImportState"),
            Need::Role(Role::Operator)
        );
        assert_eq!(
            need("/driftwatch.v1.Iac/ImportManifest"),
            Need::Role(Role::Operator)
        );
        assert_eq!(need("/driftwatch.v1.Iac/Status"), Need::Role(Role::Reader));
        assert_eq!(need("/driftwatch.v1.Fleet/Watch"), Need::Role(Role::Reader));
        assert_eq!(need("/api/v1/hosts"), Need::Role(Role::Reader));
        assert_eq!(need("/metrics"), Need::Role(Role::Reader));
        assert_eq!(need("/anything/else"), Need::Role(Role::Reader));
        assert_eq!(need("/grpc.health.v1.Health/Check"), Need::Nothing);
        assert_eq!(need("/healthz"), Need::Nothing);
        assert_eq!(need("/driftwatch.v1.Enrollment/Enroll"), Need::Nothing);
        assert_eq!(
            need("/driftwatch.v1.Enrollment/EnrollX"),
            Need::Role(Role::Admin)
        );
        assert_eq!(need("/driftwatch.v1.Enrollment/Renew"), Need::Agent);
        assert_eq!(
            need("/driftwatch.v1.Enrollment/CreateJoinToken"),
            Need::Role(Role::Admin)
        );
        assert_eq!(need("/healthzz"), Need::Role(Role::Reader));
    }

    #[test]
    fn an_agent_certificate_opens_the_agent_stream_only() {
        let a = access(true);
        let agent = Caller::Agent { host: "i-1".into() };
        assert_eq!(a.decide(&agent, Need::Agent), Ok(()));
        assert!(matches!(
            a.decide(&agent, Need::Role(Role::Reader)),
            Err(Refusal::Denied(m)) if m.contains("i-1")
        ));
        assert!(matches!(
            a.decide(&operator(Role::Admin), Need::Agent),
            Err(Refusal::Denied(_))
        ));
        assert_eq!(a.decide(&agent, Need::Nothing), Ok(()));
    }

    #[test]
    fn roles_include_the_ones_below() {
        let a = access(true);
        assert_eq!(
            a.decide(&operator(Role::Reader), Need::Role(Role::Reader)),
            Ok(())
        );
        assert!(matches!(
            a.decide(&operator(Role::Reader), Need::Role(Role::Operator)),
            Err(Refusal::Denied(m)) if m.contains("needs role operator")
        ));
        assert_eq!(
            a.decide(&operator(Role::Operator), Need::Role(Role::Operator)),
            Ok(())
        );
        assert_eq!(
            a.decide(&operator(Role::Admin), Need::Role(Role::Operator)),
            Ok(())
        );
    }

    #[test]
    fn without_mtls_nobody_is_asked_and_with_it_nobody_anonymous_passes() {
        assert_eq!(
            access(false).decide(&Caller::Anonymous, Need::Role(Role::Operator)),
            Ok(())
        );
        assert_eq!(
            access(false).decide(&Caller::Anonymous, Need::Agent),
            Ok(())
        );
        assert!(matches!(
            access(true).decide(&Caller::Anonymous, Need::Role(Role::Reader)),
            Err(Refusal::Unauthenticated(_))
        ));
        assert_eq!(
            access(true).decide(&Caller::Anonymous, Need::Nothing),
            Ok(())
        );
    }

    #[test]
    fn roles_parse_and_print() {
        for role in [Role::Reader, Role::Operator, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .to_string()
                .contains("reader, operator, admin")
        );
    }
}
