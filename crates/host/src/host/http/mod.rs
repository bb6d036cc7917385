//! Outgoing HTTP for flavors: the standard `wasi:http/outgoing-handler`, so
//! guests in every language use their usual HTTP client, with every request
//! sent by the host under the step operator's egress rules.
//!
//! For each request: the origin must be allowed (`http-origin` grants, see
//! [`stepbox_store::policy::egress`]); the name is resolved here and every address
//! checked (no loopback, link-local or metadata address, private ranges only
//! with `http-private`); the connection goes to the address that was checked,
//! so a second DNS answer cannot redirect it; request and response bodies are
//! bounded, and so are connecting, waiting for the response, each pause in
//! its body, and the number of requests a launch makes. Redirects are
//! not followed: the guest gets the 3xx, and a request to where it points is
//! checked like any other. A credential the step operator configured for the
//! origin (`http-credential`) is applied here (see [`crate::host::credentials`]),
//! after the guest built the request, so the guest never holds it. Every
//! request is in the audit record, with the query string's values and all
//! header values left out.
//!
//! This module is the capability (its state, the `wasi:http` hooks, the
//! checks, the audit); `connection` is the client that sends a checked
//! request to the checked address.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use bytes::Bytes;

mod connection;

use self::connection::{BetweenBytes, transmit};
use crate::bindings::log::Level;
use crate::host::audit::Decision;
use crate::host::credentials::{Credentials, TokenSender};
use crate::host::{FlavorLogger, LaunchContext};
use stepbox_store::policy::egress::{EgressError, EgressRules};

/// Largest request body a flavor may send.
pub const MAX_REQUEST_BYTES: usize = 8 << 20;
/// Largest response body a flavor may read.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Time to resolve and connect, and (separately) to wait for the response's
/// headers, unless the guest asks for less.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The `wasi:http` hooks of one flavor instance: requests go out only during
/// a launch, under its step operator's rules.
pub struct EgressHooks {
    launch: Option<Arc<HttpCtx>>,
    logger: Arc<FlavorLogger>,
}

/// The `http` capability's state for one launch: its rules (parsed once,
/// not per request), its credentials' token cache and its request count.
pub struct HttpCtx {
    launch: Arc<LaunchContext>,
    rules: EgressRules,
    credentials: Credentials,
    /// Requests made so far, against the `http-requests` limit.
    requests: std::sync::atomic::AtomicU64,
}

impl HttpCtx {
    /// The `http` state of `launch`, from its grants.
    pub fn new(launch: Arc<LaunchContext>) -> Self {
        let rules = launch.grants.egress_rules();
        Self { launch, rules, credentials: Credentials::default(), requests: Default::default() }
    }

    /// Count one request, or refuse it past the launch's `http-requests` limit.
    fn count_request(&self) -> Result<(), NoResponse> {
        let limit = self.launch.limits.http_requests;
        let made = self.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if made >= limit {
            return Err(failed(
                Error::HttpRequestDenied,
                format!(
                    "this launch has made its {limit} outgoing HTTP requests (limit `http-requests`); if it really needs more: stepbox step-operator update NAME --limit http-requests=N"
                ),
            ));
        }
        Ok(())
    }
}

impl EgressHooks {
    /// Hooks for an instance; without a launch granted `http` (`metadata`,
    /// `validate-config`) every request is denied.
    pub fn new(launch: Option<Arc<HttpCtx>>, logger: Arc<FlavorLogger>) -> Self {
        Self { launch, logger }
    }
}

/// Link `wasi:http`'s outgoing handler (the `http` capability); its
/// requests go through [`EgressHooks`].
pub(super) fn add_to_linker(linker: &mut wasmtime::component::Linker<super::HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _body_written: IoFuture,
    ) -> SendFuture {
        let egress = self.launch.clone();
        let logger = Arc::clone(&self.logger);
        Box::new(async move {
            let Some(egress) = egress else {
                logger.note(Level::Warn, "outgoing HTTP is only available while a step is being launched");
                return Err(Error::HttpRequestDenied);
            };
            let summary = RequestSummary::of(request.method().as_str(), &request.uri().to_string());
            let record = |status, decision| egress.launch.audit.record("http.request", summary.json(status), decision);
            match send_checked(&egress, request, Timeouts::from(options)).await {
                Ok((response, io)) => {
                    record(Some(response.status().as_u16()), Decision::Allowed);
                    Ok((response, io))
                }
                Err(NoResponse::Denied(error)) => {
                    record(None, Decision::Denied(error.to_string()));
                    logger.note(Level::Warn, &format!("http: {} {}: denied: {error}", summary.method, summary.url));
                    Err(match error {
                        EgressError::AddressRefused { .. } => Error::DestinationIpProhibited,
                        EgressError::NoAddress { .. } => Error::DestinationNotFound,
                        _ => Error::HttpRequestDenied,
                    })
                }
                Err(NoResponse::Failed(error, message)) => {
                    record(None, Decision::Failed(message.clone()));
                    logger.note(Level::Warn, &format!("http: {} {}: {message}", summary.method, summary.url));
                    Err(error)
                }
            }
        })
    }
}

/// Why a request did not get a response.
enum NoResponse {
    /// The egress rules said no.
    Denied(EgressError),
    /// It was allowed but did not work; the message is for the log and audit.
    Failed(Error, String),
}

fn failed(error: Error, message: String) -> NoResponse {
    NoResponse::Failed(error, message)
}

/// What the audit record keeps of a request: method, and the URL with the
/// query's values removed (they may be signatures or SAS tokens).
struct RequestSummary {
    method: String,
    url: String,
}

impl RequestSummary {
    fn of(method: &str, uri: &str) -> Self {
        let (url, query) = match uri.split_once('?') {
            Some((url, query)) => (url.to_owned(), Some(query)),
            None => (uri.to_owned(), None),
        };
        let mut url = url.split_once('#').map_or(url.clone(), |(url, _)| url.to_owned());
        if let Some(query) = query {
            let query = query.split_once('#').map_or(query, |(query, _)| query);
            let keys: Vec<&str> = query.split('&').map(|pair| pair.split('=').next().unwrap_or("")).collect();
            url.push('?');
            url.push_str(&keys.iter().map(|key| format!("{key}=…")).collect::<Vec<_>>().join("&"));
        }
        Self { method: method.to_owned(), url }
    }

    fn json(&self, status: Option<u16>) -> serde_json::Value {
        serde_json::json!({ "method": self.method, "url": self.url, "status": status })
    }
}

/// How long to wait to connect, then for the response's headers, then for
/// each next piece of the body.
#[derive(Clone, Copy)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

impl From<Option<RequestOptions>> for Timeouts {
    /// The guest's timeouts, capped at [`TIMEOUT`].
    fn from(options: Option<RequestOptions>) -> Self {
        Self {
            connect: options.and_then(|o| o.connect_timeout).unwrap_or(TIMEOUT).min(TIMEOUT),
            first_byte: options.and_then(|o| o.first_byte_timeout).unwrap_or(TIMEOUT).min(TIMEOUT),
            between_bytes: options.and_then(|o| o.between_bytes_timeout).unwrap_or(TIMEOUT).min(TIMEOUT),
        }
    }
}

/// A guest's request: bounded body, the host's credential, then out.
async fn send_checked(
    egress: &Arc<HttpCtx>,
    request: http::Request<WasiBody>,
    timeouts: Timeouts,
) -> Result<(http::Response<WasiBody>, IoFuture), NoResponse> {
    let url = url::Url::parse(&request.uri().to_string())
        .map_err(|_| NoResponse::Denied(EgressError::BadUrl(request.uri().to_string())))?;
    // Refuse an unlisted origin before reading the body or fetching a token.
    let pattern = egress.rules.check_origin(&url).map_err(NoResponse::Denied)?;
    egress.count_request()?;
    let (mut parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_REQUEST_BYTES).collect().await.map_err(|_| {
        failed(
            Error::HttpRequestBodySize(Some(MAX_REQUEST_BYTES as u64)),
            format!("the request body is over the {} MiB limit, or could not be read", MAX_REQUEST_BYTES >> 20),
        )
    })?;
    let body = body.to_bytes();
    if let Some(grant) = egress.rules.credential_for(&url) {
        let token_egress = Arc::clone(egress);
        let send_token_request: TokenSender<'_> = &move |url, form| {
            let egress = Arc::clone(&token_egress);
            Box::pin(async move { token_request(&egress, url, form).await })
        };
        egress
            .credentials
            .apply(grant, &egress.launch.home.secrets(), &mut parts, &body, send_token_request)
            .await
            .map_err(|error| failed(Error::HttpRequestDenied, error.to_string()))?;
    }
    let (response, io) = transmit(&egress.rules, pattern, &url, parts, body, timeouts).await?;
    let response = response.map(|incoming| {
        let limited =
            Limited::new(incoming, MAX_RESPONSE_BYTES).map_err(|error| match error.downcast::<hyper::Error>() {
                Ok(hyper) => Error::Hyper(*hyper),
                Err(_) => Error::HttpResponseBodySize(Some(MAX_RESPONSE_BYTES as u64)),
            });
        BetweenBytes::new(limited, timeouts.between_bytes).boxed_unsync()
    });
    Ok((response, io))
}

/// Largest token-endpoint reply the host reads.
const MAX_TOKEN_REPLY_BYTES: usize = 1 << 20;

/// The host's own request for an access token: a form POST to `url`, under
/// the same egress rules as the guest's requests, audited as `http.token`
/// (URL and status; never the form or the reply).
async fn token_request(egress: &HttpCtx, url: url::Url, form: String) -> Result<(u16, Bytes), String> {
    let summary = RequestSummary::of("POST", url.as_str());
    let record = |status, decision| egress.launch.audit.record("http.token", summary.json(status), decision);
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = http::Method::POST;
    parts.uri = url.as_str().parse().map_err(|_| format!("{url} is not a valid request URI"))?;
    if let Some(authority) = parts.uri.authority() {
        let host = http::HeaderValue::from_str(authority.as_str()).map_err(|_| format!("{url}: bad host"))?;
        parts.headers.insert(http::header::HOST, host);
    }
    parts
        .headers
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-www-form-urlencoded"));
    parts.headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("application/json"));
    let outcome = async {
        let pattern = egress.rules.check_origin(&url).map_err(NoResponse::Denied)?;
        egress.count_request()?;
        let timeouts = Timeouts { connect: TIMEOUT, first_byte: TIMEOUT, between_bytes: TIMEOUT };
        let (response, io) = transmit(&egress.rules, pattern, &url, parts, Bytes::from(form), timeouts).await?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_TOKEN_REPLY_BYTES).collect().await.map_err(|_| {
            failed(Error::HttpResponseBodySize(None), "the token reply is too large or was cut off".to_owned())
        })?;
        drop(io);
        Ok::<_, NoResponse>((status, body.to_bytes()))
    }
    .await;
    match outcome {
        Ok((status, body)) => {
            record(Some(status), Decision::Allowed);
            Ok((status, body))
        }
        Err(NoResponse::Denied(error)) => {
            record(None, Decision::Denied(error.to_string()));
            Err(format!("denied: {error}"))
        }
        Err(NoResponse::Failed(_, message)) => {
            record(None, Decision::Failed(message.clone()));
            Err(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_summary_keeps_query_keys_but_not_values() {
        let summary =
            RequestSummary::of("GET", "https://acct.blob.core.windows.net/logs/std_log.txt?sv=2021&sig=SECRET&se=2030");
        assert_eq!(summary.url, "https://acct.blob.core.windows.net/logs/std_log.txt?sv=…&sig=…&se=…");
        assert!(!summary.json(Some(200)).to_string().contains("SECRET"));
    }
}
