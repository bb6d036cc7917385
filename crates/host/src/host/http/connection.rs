//! The host's own HTTP/1 client for flavors' requests: resolve the host,
//! connect to an address the egress rules checked (so a second DNS answer
//! cannot redirect it), TLS with the platform's trust store, and bound each
//! pause in the response body. Written on hyper's connection API rather than
//! a client crate because the address must be the checked one, not one the
//! client resolves again.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::net::TcpStream;
use wasmtime_wasi_http::Error;
use wasmtime_wasi_http::io::TokioIo;

use super::{IoFuture, NoResponse, Timeouts, failed};
use stepbox_store::policy::egress::{EgressRules, OriginPattern};

/// Resolve, check the addresses, connect to the checked one, and send.
/// `pattern` is the allowed origin `url` matched (the caller checked it).
pub(super) async fn transmit(
    rules: &EgressRules,
    pattern: &OriginPattern,
    url: &url::Url,
    mut parts: http::request::Parts,
    body: Bytes,
    timeouts: Timeouts,
) -> Result<(http::Response<hyper::body::Incoming>, IoFuture), NoResponse> {
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses = resolve(url, port, timeouts.connect).await.map_err(|(error, message)| failed(error, message))?;
    rules.check_addresses(pattern, &host, &addresses).map_err(NoResponse::Denied)?;

    let address = SocketAddr::new(addresses[0], port);
    let stream = tokio::time::timeout(timeouts.connect, TcpStream::connect(address))
        .await
        .map_err(|_| failed(Error::ConnectionTimeout, format!("connecting to {address} timed out")))?
        .map_err(|e| failed(Error::ConnectionRefused, format!("cannot connect to {address}: {e}")))?;
    let io: Box<dyn Stream> = if url.scheme() == "https" {
        Box::new(tls(&host, stream).await.map_err(|message| failed(Error::TlsProtocolError, message))?)
    } else {
        Box::new(stream)
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| failed(Error::HttpProtocolError, format!("HTTP handshake with {host}: {e}")))?;
    let worker = tokio::spawn(connection);

    // On the wire the request line carries the path only (no proxy here).
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
        .parse()
        .map_err(|_| failed(Error::HttpRequestUriInvalid, "the request's path is not valid".to_owned()))?;
    let request = http::Request::from_parts(parts, Full::new(body));
    let response = tokio::time::timeout(timeouts.first_byte, sender.send_request(request))
        .await
        .map_err(|_| failed(Error::HttpResponseTimeout, format!("{host} sent no response in time")))?
        .map_err(|e| failed(Error::HttpProtocolError, format!("{host}: {e}")))?;
    let io: IoFuture = Box::new(async move {
        match worker.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Error::Hyper(error)),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    });
    Ok((response, io))
}

/// A response body that fails with `connection-read-timeout` when the
/// server sends nothing for `limit` (a stalled body would otherwise hold
/// the flavor until the launch's wall clock).
pub(super) struct BetweenBytes<B> {
    inner: B,
    limit: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<B> BetweenBytes<B> {
    pub(super) fn new(inner: B, limit: Duration) -> Self {
        Self { inner, limit, deadline: Box::pin(tokio::time::sleep(limit)) }
    }
}

impl<B> hyper::body::Body for BetweenBytes<B>
where
    B: hyper::body::Body<Error = Error> + Unpin,
{
    type Data = B::Data;
    type Error = Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + self.limit;
                self.deadline.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The addresses of the URL's host: the literal itself, or what DNS says.
async fn resolve(url: &url::Url, port: u16, timeout: Duration) -> Result<Vec<IpAddr>, (Error, String)> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Ok(vec![IpAddr::V4(ip)]),
        Some(url::Host::Ipv6(ip)) => Ok(vec![IpAddr::V6(ip)]),
        Some(url::Host::Domain(name)) => {
            let lookup = tokio::net::lookup_host((name, port));
            let found = tokio::time::timeout(timeout, lookup)
                .await
                .map_err(|_| (Error::DnsTimeout, format!("resolving {name} timed out")))?
                .map_err(|e| {
                    (Error::DnsError { rcode: None, info_code: None }, format!("cannot resolve {name}: {e}"))
                })?;
            Ok(found.map(|address| address.ip()).collect())
        }
        None => Err((Error::HttpRequestUriInvalid, "the URL has no host".to_owned())),
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// The TLS client configuration (platform trust store), made once per process:
/// building the verifier reads the system's certificates.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            use rustls_platform_verifier::BuilderVerifierExt;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .and_then(|builder| builder.with_platform_verifier())
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// TLS to `host` over `stream`, verified with the platform's trust store.
async fn tls(host: &str, stream: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
    tokio_rustls::TlsConnector::from(tls_config()?)
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// One frame, then silence.
    struct Stalls(bool);

    impl hyper::body::Body for Stalls {
        type Data = Bytes;
        type Error = Error;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Error>>> {
            if std::mem::replace(&mut self.0, true) {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(b"partial")))))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_with_a_read_timeout() {
        let mut body = BetweenBytes::new(Stalls(false), Duration::from_secs(60));
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().ok(), Some(Bytes::from_static(b"partial")));
        // Paused time jumps ahead to the deadline once everything is idle.
        let stalled = body.frame().await.expect("an outcome");
        assert!(matches!(stalled, Err(Error::ConnectionReadTimeout)), "{stalled:?}");
    }
}
