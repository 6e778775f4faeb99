//! The EC2 instance metadata service (IMDSv2: a token PUT, then GETs), over a minimal
//! HTTP/1.1 client: a client crate for a handful of link-local requests would weigh more than
//! these lines.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{HostIdentity, IMDS_TAGS, source};

/// One metadata request's time limit: the service is link-local and answers in milliseconds;
/// off the cloud nothing answers at all, and start-up must not wait on it.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an unreachable metadata service is asked before the next source is used.
const IMDS_ATTEMPTS: u32 = 3;
/// Largest metadata response read (user data is at most 16 KiB).
const IMDS_MAX_RESPONSE: usize = 1 << 20;

/// Asks EC2's instance metadata service (IMDSv2, falling back to v1 when the token is refused)
/// who this instance is. Retries a little while the service does not answer at all: right
/// after boot the network may not be up yet, and falling through would name the host by its
/// machine-id instead of its instance id.
pub(super) async fn query_imds(addr: SocketAddr) -> Result<HostIdentity, String> {
    let mut attempt = 1;
    loop {
        match query_imds_once(addr).await {
            Err(ImdsError::Unreachable(e)) if attempt < IMDS_ATTEMPTS => {
                tracing::debug!(%addr, error = %e, attempt, "Metadata service did not answer; retrying.");
                tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                attempt += 1;
            }
            Err(e) => return Err(e.to_string()),
            Ok(id) => return Ok(id),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ImdsError {
    #[error("no answer: {0}")]
    Unreachable(std::io::Error),
    #[error("{0}")]
    Refused(String),
}

async fn query_imds_once(addr: SocketAddr) -> Result<HostIdentity, ImdsError> {
    let token = match http_request(
        addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "300")],
    )
    .await
    {
        Ok((200, body)) => Some(String::from_utf8_lossy(&body).trim().to_owned()),
        // IMDSv1 only (or a proxy that refuses PUT): plain GETs may still work.
        Ok((status, _)) => {
            tracing::debug!(status, "Metadata service refused a token; trying IMDSv1.");
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
            match http_request(addr, "GET", &path, &headers).await {
                Ok((200, body)) => Ok(Some(body)),
                Ok((404, _)) => Ok(None),
                Ok((status, _)) => Err(ImdsError::Refused(format!("GET {path}: HTTP {status}"))),
                Err(e) => Err(ImdsError::Unreachable(e)),
            }
        }
    };
    let text = |body: Option<Vec<u8>>| {
        body.map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .unwrap_or_default()
    };
    let meta = |key: &str| get(format!("/latest/meta-data/{key}"));
    let instance_id = text(meta("instance-id").await?);
    if instance_id.is_empty() {
        return Err(ImdsError::Refused("no instance-id".into()));
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

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), with a time limit;
/// returns the status and the body (chunked encoding decoded). A client crate for a handful of
/// link-local requests would weigh more than these lines.
async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, Vec<u8>)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", addr.ip());
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        if method != "GET" {
            request.push_str("Content-Length: 0\r\n");
        }
        request.push_str("Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        (&mut stream)
            .take(IMDS_MAX_RESPONSE as u64 + 1)
            .read_to_end(&mut response)
            .await?;
        if response.len() > IMDS_MAX_RESPONSE {
            return Err(std::io::Error::other("response too large"));
        }
        parse_response(&response)
    };
    tokio::time::timeout(IMDS_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))?
}

fn parse_response(response: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let malformed = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed HTTP response: {what}"),
        )
    };
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    let head =
        std::str::from_utf8(&response[..split]).map_err(|_| malformed("headers not UTF-8"))?;
    let body = &response[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| malformed("status line"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    if chunked {
        return Ok((
            status,
            dechunk(body).ok_or_else(|| malformed("chunked body"))?,
        ));
    }
    let body = match length {
        Some(n) if n <= body.len() => &body[..n],
        Some(_) => return Err(malformed("body shorter than its Content-Length")),
        None => body,
    };
    Ok((status, body.to_vec()))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses_parse() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abc"[..]));
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abcde"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
        assert!(parse_response(b"garbage").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }
}
