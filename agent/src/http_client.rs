//! The agent's HTTP client, for the two plain-HTTP services it asks: the cloud's instance
//! metadata service and the agent's own status socket (`driftwatch-agent status`).
//!
//! hyper's HTTP/1.1 client connection (hyper is in the tree for tonic and axum): one request on
//! one fresh connection, with a time limit on the whole exchange and a cap on the body. The
//! connection is any byte stream, so the same client speaks over a TCP socket
//! ([`request_tcp`]) or a unix socket ([`request_on`] with a `tokio::net::UnixStream`).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// A request: no body (both services are asked with GETs, and IMDS's token with an empty PUT).
pub type EmptyRequest = Request<Empty<Bytes>>;

/// A response, read whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A header value the request cannot carry (say, a token with a line break).
    #[error("invalid request: {0}")]
    Request(#[source] hyper::http::Error),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP: {0}")]
    Http(#[source] hyper::Error),
    #[error("the response is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the response body: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A request without a body, to `host` (the `Host` header) for `path`, with `headers`. It says
/// `Connection: close` (each connection carries one request), and for a method other than GET
/// `Content-Length: 0`, as some servers want for an empty PUT.
pub fn empty_request(
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<EmptyRequest, HttpError> {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::HOST, host)
        .header(header::CONNECTION, "close");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if method != Method::GET {
        request = request.header(header::CONTENT_LENGTH, "0");
    }
    request.body(Empty::new()).map_err(HttpError::Request)
}

/// Sends `request` on a new TCP connection to `addr`; the time limit covers connecting as well
/// as the answer.
pub async fn request_tcp(
    addr: SocketAddr,
    request: EmptyRequest,
    timeout: Duration,
    max_body: usize,
) -> Result<Response, HttpError> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| HttpError::Connect { addr, source })?;
        exchange(stream, request, max_body).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

/// Sends `request` on an open connection (TCP or unix socket), which it then closes.
pub async fn request_on<IO>(
    io: IO,
    request: EmptyRequest,
    timeout: Duration,
    max_body: usize,
) -> Result<Response, HttpError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::time::timeout(timeout, exchange(io, request, max_body))
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

async fn exchange<IO>(io: IO, request: EmptyRequest, max_body: usize) -> Result<Response, HttpError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(HttpError::Http)?;
    let answer = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(HttpError::Http)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => HttpError::Http(*e),
                Err(e) if e.is::<LengthLimitError>() => HttpError::TooLarge { limit: max_body },
                Err(e) => HttpError::Body(e),
            })?
            .to_bytes();
        Ok(Response { status, body })
        // `sender` drops here: the connection closes once the exchange is over.
    };
    // The connection is driven beside the exchange; a failure of it fails the exchange too,
    // which is the error reported (what follows a complete answer does not matter).
    let (answer, _) = tokio::join!(answer, connection);
    answer
}

/// Runs an HTTP exchange from blocking code: on a runtime of its own, on a thread of its own
/// when this thread already runs async tasks (which must not block in a nested runtime).
pub fn block_on<T: Send>(exchange: impl Future<Output = T> + Send) -> std::io::Result<T> {
    let run = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| runtime.block_on(exchange))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|s| s.spawn(run).join())
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Answers one connection with `response`, whatever was asked; returns the request.
    async fn answer_once<S>(mut conn: S, response: &'static [u8]) -> String
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut buf = vec![0; 4096];
        let n = conn.read(&mut buf).await.unwrap_or(0);
        let _ = conn.write_all(response).await;
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn get(path: &str) -> EmptyRequest {
        empty_request(Method::GET, "localhost", path, &[]).unwrap()
    }

    async fn over_tcp(response: &'static [u8]) -> Result<(u16, Vec<u8>), HttpError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            answer_once(conn, response).await
        });
        let r = request_tcp(addr, get("/x"), Duration::from_secs(5), 1 << 20).await?;
        Ok((r.status.as_u16(), r.body.to_vec()))
    }

    #[tokio::test]
    async fn http_responses_parse() {
        let (s, b) = over_tcp(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef")
            .await
            .unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abc"[..]));
        let (s, b) = over_tcp(b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").await.unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abcde"[..]));
        assert!(
            over_tcp(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
                .await
                .is_err()
        );
        assert!(over_tcp(b"garbage").await.is_err());
        assert!(
            over_tcp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_body_over_the_cap_and_a_silent_server_are_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            answer_once(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef").await;
            // Accepts, then never answers.
            let (_silent, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let err = request_tcp(addr, get("/"), Duration::from_secs(5), 5).await;
        assert!(
            matches!(err, Err(HttpError::TooLarge { limit: 5 })),
            "{err:?}"
        );
        let err = request_tcp(addr, get("/"), Duration::from_millis(200), 5).await;
        assert!(matches!(err, Err(HttpError::Timeout(_))), "{err:?}");
    }

    /// The same client over a unix socket (the status socket).
    #[tokio::test]
    async fn speaks_over_a_unix_socket() {
        let (client, server) = tokio::net::UnixStream::pair().unwrap();
        let served = tokio::spawn(answer_once(
            server,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n",
        ));
        let r = request_on(client, get("/status"), Duration::from_secs(5), 1 << 20)
            .await
            .unwrap();
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"ok\n"[..]));
        let request = served.await.unwrap();
        assert!(request.starts_with("GET /status HTTP/1.1\r\n"), "{request}");
        let lower = request.to_ascii_lowercase();
        assert!(lower.contains("\r\nhost: localhost\r\n"), "{request}");
        assert!(lower.contains("\r\nconnection: close\r\n"), "{request}");
    }

    #[test]
    fn block_on_works_inside_and_outside_a_runtime() {
        assert_eq!(block_on(async { 7 }).unwrap(), 7);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async { assert_eq!(block_on(async { 8 }).unwrap(), 8) });
    }
}
