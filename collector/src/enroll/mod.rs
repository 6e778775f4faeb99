//! Enrollment: the fleet CA ([`authority`]) issues hosts their client certificates, with a
//! join token the first time and with the certificate itself before it expires
//! (`driftwatch.v1.Enrollment`, `proto/proto/driftwatch/v1/enroll.proto`). Admins make and
//! revoke join tokens and revoke hosts through the same service.
//!
//! ```text
//!  agent: key (0600, never leaves) ─ CSR + join token ─► Enroll ─► sign ─► store.enroll ─► certificate
//!  agent: CSR over mTLS (its certificate) ─────────────► Renew  ─► sign ─► store.renew  ─► certificate
//! ```
//!
//! The store decides in one transaction (a token's uses, the identity's key); a certificate
//! signed for a request the store refuses is dropped unsent. The access check in front of
//! every call refuses revoked certificates ([`crate::access`]).

use std::sync::Arc;
use std::time::Duration;

use driftwatch_proto::v1::{self, enrollment_server::Enrollment};
use tonic::{Request, Response, Status};

use crate::access::{Caller, ClientSerial, token};
use crate::metrics::{KindLabel, Metrics, ReasonLabel};
use crate::store::{
    self, EnrollRefusal, EnrolledHost, Enrollment as Enrolling, JoinToken, Millis, NewJoinToken,
    Store, blocking, rfc3339,
};

pub mod authority;

pub use authority::Authority;

/// The longest a join token may live.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// `driftwatch.v1.Enrollment`.
pub struct EnrollmentService<S> {
    store: Arc<S>,
    /// `None`: this collector holds no fleet CA and enrolls nobody.
    authority: Option<Arc<Authority>>,
    metrics: Arc<Metrics>,
}

impl<S: Store> EnrollmentService<S> {
    pub fn new(store: Arc<S>, authority: Option<Arc<Authority>>, metrics: Arc<Metrics>) -> Self {
        EnrollmentService {
            store,
            authority,
            metrics,
        }
    }

    pub fn into_server(self) -> v1::enrollment_server::EnrollmentServer<Self> {
        v1::enrollment_server::EnrollmentServer::new(self)
    }

    fn authority(&self) -> Result<&Authority, Status> {
        self.authority.as_deref().ok_or_else(|| {
            Status::failed_precondition(
                "this collector enrolls no hosts: start it with --enroll-ca-cert and \
                 --enroll-ca-key (a CA certificate and its key)",
            )
        })
    }

    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> store::Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        blocking(move || f(&store))
            .await
            .map_err(crate::status::store)
    }

    fn refused(&self, host: &str, refusal: EnrollRefusal) -> Status {
        let reason = match &refusal {
            EnrollRefusal::UnknownToken => "unknown_token",
            EnrollRefusal::TokenRevoked(_) => "token_revoked",
            EnrollRefusal::TokenExpired(_) => "token_expired",
            EnrollRefusal::TokenUsedUp { .. } => "token_used_up",
            EnrollRefusal::WrongImage { .. } => "wrong_image",
            EnrollRefusal::IdentityTaken(_) => "identity_taken",
            EnrollRefusal::NotEnrolled(_) => "not_enrolled",
            EnrollRefusal::KeyChanged(_) => "key_changed",
        };
        self.metrics
            .enrollments_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
        tracing::warn!(host, reason, "Refused to issue a certificate: {refusal}.");
        match refusal {
            EnrollRefusal::IdentityTaken(_)
            | EnrollRefusal::WrongImage { .. }
            | EnrollRefusal::KeyChanged(_) => Status::permission_denied(refusal.to_string()),
            _ => Status::unauthenticated(refusal.to_string()),
        }
    }

    fn issued(&self, kind: &'static str, signed: authority::Signed) -> v1::Certificate {
        self.metrics
            .certificates_issued
            .get_or_create(&KindLabel { kind })
            .inc();
        let c = &signed.issued;
        tracing::info!(host = %c.host, serial = %c.serial, not_after = %rfc3339(c.not_after), "Issued a certificate ({kind}).");
        v1::Certificate {
            certificate_pem: signed.pem,
            ca_pem: self
                .authority
                .as_deref()
                .map(|a| a.ca_pem().to_owned())
                .unwrap_or_default(),
            not_before: rfc3339(signed.not_before),
            not_after: rfc3339(c.not_after),
            serial: c.serial.clone(),
        }
    }
}

fn sign(authority: &Authority, csr_pem: &str) -> Result<authority::Signed, Status> {
    authority
        .sign(csr_pem, store::now_millis())
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// An admin call's caller, for the record.
fn who<T>(request: &Request<T>) -> String {
    Caller::of(request).to_string()
}

#[tonic::async_trait]
impl<S: Store> Enrollment for EnrollmentService<S> {
    async fn enroll(
        &self,
        request: Request<v1::EnrollRequest>,
    ) -> Result<Response<v1::Certificate>, Status> {
        let authority = self.authority()?;
        let r = request.into_inner();
        let secret = r.join_token.trim();
        if !secret.starts_with(token::JOIN_PREFIX) {
            return Err(Status::unauthenticated(format!(
                "that is not a join token (they start with {})",
                token::JOIN_PREFIX
            )));
        }
        for (name, value) in [("image_id", &r.image_id), ("image_name", &r.image_name)] {
            if value.len() > 256 || value.chars().any(char::is_control) {
                return Err(Status::invalid_argument(format!(
                    "{name} is longer than 256 bytes or holds control characters"
                )));
            }
        }
        let signed = sign(authority, &r.csr_pem)?;
        let hash = token::hash(secret);
        let issued = signed.issued.clone();
        let decided = self
            .store(move |s| {
                s.enroll(&Enrolling {
                    token_sha256: &hash,
                    image_id: &r.image_id,
                    image_name: &r.image_name,
                    certificate: &issued,
                })
            })
            .await?;
        match decided {
            Ok(token) => {
                tracing::info!(host = %signed.issued.host, token, "Enrolled a host.");
                Ok(Response::new(self.issued("enroll", signed)))
            }
            Err(refusal) => Err(self.refused(&signed.issued.host, refusal)),
        }
    }

    async fn renew(
        &self,
        request: Request<v1::RenewRequest>,
    ) -> Result<Response<v1::Certificate>, Status> {
        let authority = self.authority()?;
        let caller = Caller::of(&request);
        let serial = request.extensions().get::<ClientSerial>().cloned();
        let (Caller::Agent { host }, Some(ClientSerial(serial))) = (caller, serial) else {
            return Err(Status::unauthenticated(
                "a renewal is made with the host's current certificate (mTLS); a host without \
                 one enrolls with a join token",
            ));
        };
        let signed = sign(authority, &request.into_inner().csr_pem)?;
        if signed.issued.host != host {
            return Err(Status::permission_denied(format!(
                "the certificate presented is host {host}'s; the request names host {}",
                signed.issued.host
            )));
        }
        let issued = signed.issued.clone();
        match self.store(move |s| s.renew(&serial, &issued)).await? {
            Ok(()) => Ok(Response::new(self.issued("renew", signed))),
            Err(refusal) => Err(self.refused(&host, refusal)),
        }
    }

    async fn create_join_token(
        &self,
        request: Request<v1::CreateJoinTokenRequest>,
    ) -> Result<Response<v1::CreateJoinTokenResponse>, Status> {
        self.authority()?;
        let created_by = who(&request);
        let r = request.into_inner();
        let ttl = Duration::from_secs(r.ttl_seconds);
        if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
            return Err(Status::invalid_argument(
                "a join token lives more than 0 seconds and at most 365 days (--ttl)",
            ));
        }
        if r.uses == 0 {
            return Err(Status::invalid_argument(
                "a join token allows at least one use (--uses)",
            ));
        }
        let (secret, sha256) = token::generate_with(token::JOIN_PREFIX)
            .map_err(|e| Status::internal(e.to_string()))?;
        let name = match r.name.trim() {
            "" => format!("join-{}", &hex::encode(sha256)[..8]),
            name if name.len() > 128 || name.chars().any(char::is_control) => {
                return Err(Status::invalid_argument(
                    "a join token's name is at most 128 bytes, without control characters",
                ));
            }
            name => name.to_owned(),
        };
        let image = Some(r.image.trim().to_owned()).filter(|i| !i.is_empty());
        let now = store::now_millis();
        let new = NewJoinToken {
            name,
            sha256,
            created_at: now,
            expires_at: now.saturating_add(ttl.as_millis() as Millis),
            uses: r.uses,
            image,
            created_by,
        };
        let info = join_token(&JoinToken {
            name: new.name.clone(),
            created_at: new.created_at,
            expires_at: new.expires_at,
            uses: new.uses,
            used: 0,
            image: new.image.clone(),
            created_by: new.created_by.clone(),
            revoked_at: None,
        });
        self.store(move |s| s.create_join_token(&new)).await?;
        tracing::info!(name = %info.name, uses = info.uses, expires_at = %info.expires_at, created_by = %info.created_by, "Join token created.");
        Ok(Response::new(v1::CreateJoinTokenResponse {
            token: secret,
            info: Some(info),
        }))
    }

    async fn list_join_tokens(
        &self,
        _: Request<v1::ListJoinTokensRequest>,
    ) -> Result<Response<v1::ListJoinTokensResponse>, Status> {
        let tokens = self.store(|s| s.join_tokens()).await?;
        Ok(Response::new(v1::ListJoinTokensResponse {
            tokens: tokens.iter().map(join_token).collect(),
        }))
    }

    async fn revoke_join_token(
        &self,
        request: Request<v1::RevokeJoinTokenRequest>,
    ) -> Result<Response<v1::RevokeJoinTokenResponse>, Status> {
        let by = who(&request);
        let name = request.into_inner().name;
        let now = store::now_millis();
        let key = name.clone();
        let revoked = self.store(move |s| s.revoke_join_token(&key, now)).await?;
        if revoked {
            tracing::info!(name, by, "Join token revoked.");
        }
        Ok(Response::new(v1::RevokeJoinTokenResponse { revoked }))
    }

    async fn list_enrolled(
        &self,
        _: Request<v1::ListEnrolledRequest>,
    ) -> Result<Response<v1::ListEnrolledResponse>, Status> {
        let hosts = self.store(|s| s.enrolled()).await?;
        Ok(Response::new(v1::ListEnrolledResponse {
            hosts: hosts.iter().map(enrolled_host).collect(),
        }))
    }

    async fn revoke_host(
        &self,
        request: Request<v1::RevokeHostRequest>,
    ) -> Result<Response<v1::RevokeHostResponse>, Status> {
        let by = who(&request);
        let host = request.into_inner().host;
        let now = store::now_millis();
        let (key, who) = (host.clone(), by.clone());
        let (enrolled, certificates) = self.store(move |s| s.revoke_host(&key, &who, now)).await?;
        if enrolled || certificates > 0 {
            tracing::warn!(
                host,
                by,
                certificates,
                "Host revoked: its certificates are refused from their next connection."
            );
        }
        Ok(Response::new(v1::RevokeHostResponse {
            enrolled,
            certificates,
        }))
    }
}

fn join_token(t: &JoinToken) -> v1::JoinToken {
    v1::JoinToken {
        name: t.name.clone(),
        created_at: rfc3339(t.created_at),
        expires_at: rfc3339(t.expires_at),
        uses: t.uses,
        used: t.used,
        image: t.image.clone().unwrap_or_default(),
        created_by: t.created_by.clone(),
        revoked_at: t.revoked_at.map(rfc3339).unwrap_or_default(),
    }
}

fn enrolled_host(h: &EnrolledHost) -> v1::EnrolledHost {
    v1::EnrolledHost {
        host: h.host.clone(),
        enrolled_at: rfc3339(h.enrolled_at),
        token: h.token.clone(),
        key_sha256: hex::encode(h.key_sha256),
        serial: h.serial.clone(),
        not_after: rfc3339(h.not_after),
        certificates: h.certificates,
    }
}
