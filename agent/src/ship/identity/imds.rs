//! The clouds' instance metadata services, over the agent's HTTP client: EC2's (IMDSv2: a
//! token PUT, then GETs), GCE's metadata server (`Metadata-Flavor: Google`) and Azure's IMDS
//! (`Metadata: true`). All three answer on 169.254.169.254; which one is asked follows the
//! cloud the identity source named (EC2's when none did).

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;

use super::{HostIdentity, IMDS_TAGS, source};
use crate::http_client::{self, HttpError};

/// One metadata request's time limit: the service is link-local and answers in milliseconds;
/// off the cloud nothing answers at all, and start-up must not wait on it.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an unreachable metadata service is asked before the next source is used.
const IMDS_ATTEMPTS: u32 = 3;
/// Largest metadata response read (user data is at most 16 KiB).
const IMDS_MAX_RESPONSE: usize = 1 << 20;

/// Asks the metadata service of `cloud` (cloud-init's `cloud_name`: `gce`, `azure`; anything
/// else is EC2's) who this instance is.
pub(super) async fn query_metadata(
    addr: SocketAddr,
    cloud: &str,
) -> Result<HostIdentity, ImdsError> {
    match cloud.to_ascii_lowercase().as_str() {
        "gce" => retrying(addr, || query_gce_once(addr)).await,
        "azure" | "azure-china" => retrying(addr, || query_azure_once(addr)).await,
        _ => query_imds(addr).await,
    }
}

/// Retries a query while the service does not answer at all (see [`query_imds`]).
async fn retrying<F, Fut>(addr: SocketAddr, query: F) -> Result<HostIdentity, ImdsError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<HostIdentity, ImdsError>>,
{
    let mut attempt = 1;
    loop {
        match query().await {
            Err(ImdsError::Unreachable(e)) if attempt < IMDS_ATTEMPTS => {
                tracing::debug!(%addr, error = %e, attempt, "Metadata service did not answer; retrying.");
                tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// GCE's metadata server: the numeric instance id, the image
/// (`projects/P/global/images/NAME`), zone, host name and first internal IP.
async fn query_gce_once(addr: SocketAddr) -> Result<HostIdentity, ImdsError> {
    const FLAVOR: (&str, &str) = ("Metadata-Flavor", "Google");
    let get = |key: &str| {
        let path = format!("/computeMetadata/v1/instance/{key}");
        async move {
            match http_request(addr, Method::GET, &path, &[FLAVOR]).await {
                Ok((StatusCode::OK, body)) => Ok(String::from_utf8_lossy(&body).trim().to_owned()),
                Ok((StatusCode::NOT_FOUND, _)) => Ok(String::new()),
                Ok((status, _)) => Err(ImdsError::Refused { path, status }),
                Err(e) => Err(ImdsError::Unreachable(e)),
            }
        }
    };
    let instance_id = get("id").await?;
    if instance_id.is_empty() {
        return Err(ImdsError::NoInstanceId);
    }
    // `projects/123/zones/europe-west1-b`: the zone is the last part, its region the zone
    // without its letter.
    let zone = get("zone")
        .await?
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let region = zone
        .rsplit_once('-')
        .map(|(region, _)| region.to_owned())
        .unwrap_or_default();
    Ok(HostIdentity {
        host: instance_id.clone(),
        source: source::IMDS.into(),
        cloud: "gce".into(),
        instance_id,
        image_id: get("image").await?,
        region,
        availability_zone: zone,
        hostname: get("hostname").await?,
        private_ip: get("network-interfaces/0/ip").await?,
        ..HostIdentity::default()
    })
}

/// Azure's IMDS: one JSON document (`/metadata/instance`), read as cloud-init keeps it under
/// `ds.meta_data.imds` (see [`super::azure_compute`]).
async fn query_azure_once(addr: SocketAddr) -> Result<HostIdentity, ImdsError> {
    let path = "/metadata/instance?api-version=2021-02-01".to_owned();
    let body = match http_request(addr, Method::GET, &path, &[("Metadata", "true")]).await {
        Ok((StatusCode::OK, body)) => body,
        Ok((status, _)) => return Err(ImdsError::Refused { path, status }),
        Err(e) => return Err(ImdsError::Unreachable(e)),
    };
    let doc: Value = serde_json::from_slice(&body).map_err(|_| ImdsError::NoInstanceId)?;
    let mut id = HostIdentity {
        source: source::IMDS.into(),
        cloud: "azure".into(),
        ..HostIdentity::default()
    };
    let compute = doc.get("compute").ok_or(ImdsError::NoInstanceId)?;
    super::azure_compute(&mut id, compute);
    if id.instance_id.is_empty() {
        return Err(ImdsError::NoInstanceId);
    }
    id.host = id.instance_id.clone();
    id.hostname = compute
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    id.private_ip = doc
        .get("network")
        .and_then(super::azure_private_ip)
        .unwrap_or_default();
    Ok(id)
}

/// Asks EC2's instance metadata service (IMDSv2, falling back to v1 when the token is refused)
/// who this instance is. Retries a little while the service does not answer at all: right
/// after boot the network may not be up yet, and falling through would name the host by its
/// machine-id instead of its instance id.
async fn query_imds(addr: SocketAddr) -> Result<HostIdentity, ImdsError> {
    retrying(addr, || query_imds_once(addr)).await
}

/// Why the metadata service named no instance.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("no answer: {0}")]
    Unreachable(#[source] HttpError),
    #[error("GET {path}: HTTP {status}")]
    Refused { path: String, status: StatusCode },
    #[error("no instance-id")]
    NoInstanceId,
}

async fn query_imds_once(addr: SocketAddr) -> Result<HostIdentity, ImdsError> {
    let token = match http_request(
        addr,
        Method::PUT,
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "300")],
    )
    .await
    {
        Ok((StatusCode::OK, body)) => Some(String::from_utf8_lossy(&body).trim().to_owned()),
        // IMDSv1 only (or a proxy that refuses PUT): plain GETs may still work.
        Ok((status, _)) => {
            tracing::debug!(%status, "Metadata service refused a token; trying IMDSv1.");
            None
        }
        Err(e) => return Err(ImdsError::Unreachable(e)),
    };
    let headers: Vec<(&str, &str)> = token
        .as_deref()
        .map(|t| vec![("X-aws-ec2-metadata-token", t)])
        .unwrap_or_default();
    let get = |path: String| {
        let headers = headers.clone();
        async move {
            match http_request(addr, Method::GET, &path, &headers).await {
                Ok((StatusCode::OK, body)) => Ok(Some(body)),
                Ok((StatusCode::NOT_FOUND, _)) => Ok(None),
                Ok((status, _)) => Err(ImdsError::Refused { path, status }),
                Err(e) => Err(ImdsError::Unreachable(e)),
            }
        }
    };
    let text = |body: Option<Bytes>| {
        body.map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .unwrap_or_default()
    };
    let meta = |key: &str| get(format!("/latest/meta-data/{key}"));
    let instance_id = text(meta("instance-id").await?);
    if instance_id.is_empty() {
        return Err(ImdsError::NoInstanceId);
    }
    let mut id = HostIdentity {
        host: instance_id.clone(),
        source: source::IMDS.into(),
        cloud: "aws".into(),
        instance_id,
        image_id: text(meta("ami-id").await?),
        region: text(meta("placement/region").await?),
        availability_zone: text(meta("placement/availability-zone").await?),
        private_ip: text(meta("local-ipv4").await?),
        hostname: text(meta("local-hostname").await?),
        ..HostIdentity::default()
    };
    // Terraform records user data as the hex SHA-1 of its decoded bytes, which is what the
    // service returns.
    if let Some(user_data) = get("/latest/user-data".into()).await? {
        use sha1::Digest as _;
        id.user_data_sha1 = hex::encode(sha1::Sha1::digest(&user_data));
    }
    // 404 unless the instance allows tags in its metadata.
    for key in IMDS_TAGS {
        let value = text(meta(&format!("tags/instance/{key}")).await?);
        if !value.is_empty() {
            id.tags.insert((*key).to_owned(), value);
        }
    }
    let document = get("/latest/dynamic/instance-identity/document".into()).await?;
    if let Some(doc) = document.and_then(|d| serde_json::from_slice::<Value>(&d).ok()) {
        id.account_id = doc["accountId"].as_str().unwrap_or_default().to_owned();
    }
    Ok(id)
}

/// One request on a fresh connection, within [`IMDS_TIMEOUT`] and [`IMDS_MAX_RESPONSE`];
/// returns the status and the body.
async fn http_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, Bytes), HttpError> {
    let request = http_client::empty_request(method, &addr.ip().to_string(), path, headers)?;
    let response = http_client::request_tcp(addr, request, IMDS_TIMEOUT, IMDS_MAX_RESPONSE).await?;
    Ok((response.status, response.body))
}
