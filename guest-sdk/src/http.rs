//! Outgoing HTTP for flavors that call a service's API (feature `http`):
//! a small blocking client over the standard `wasi:http/outgoing-handler`.
//!
//! The host sends every request under the step operator's egress rules
//! (`http-origin` grants) and adds the origin's credential itself
//! (`http-credential`): a flavor builds requests without any key or token.
//! Refusals come back as [`HttpError::Denied`] (the `wasi:http` error code
//! `HttpRequestDenied` or `DestinationIpProhibited`), other failures as
//! [`HttpError::Transport`], which says whether trying again may work; the
//! flavor's log has the host's explanation.
//!
//! ```no_run
//! use stepbox_guest::http::Request;
//!
//! let reply = Request::post("https://api.example.com/v1/jobs")
//!     .header("content-type", "application/json")
//!     .body(br#"{"name":"train"}"#.to_vec())
//!     .send()?;
//! let job: serde_json::Value = reply.json()?;
//! # Ok::<(), stepbox_guest::http::HttpError>(())
//! ```

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::streams::StreamError;

/// Largest response body this client reads (the host's own limit is larger).
pub const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// Why a request got no usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL, method or a header is not acceptable.
    Invalid(String),
    /// The host refused the request: an origin or address the step
    /// operator does not allow. Holds the `wasi:http` error code.
    Denied(String),
    /// The request could not complete: the `wasi:http` error code (or what
    /// failed), and whether trying again later may work (a dropped
    /// connection may; a host name that does not resolve will not).
    Transport { code: String, transient: bool },
    /// The response body is not what the caller expected.
    Decode(String),
}

impl HttpError {
    /// The error for a `wasi:http` error code.
    fn of_code(code: ErrorCode) -> Self {
        let text = format!("{code:?}");
        match code {
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => HttpError::Denied(text),
            ErrorCode::DestinationNotFound => HttpError::Transport { code: text, transient: false },
            _ => HttpError::Transport { code: text, transient: true },
        }
    }

    /// A failure while the request or response was under way (a body
    /// stream broke): worth trying again.
    fn interrupted(what: String) -> Self {
        HttpError::Transport { code: what, transient: true }
    }

    /// Whether the host refused the request.
    pub fn is_denied(&self) -> bool {
        matches!(self, HttpError::Denied(_))
    }

    /// Whether trying again later may work.
    pub fn is_transient(&self) -> bool {
        matches!(self, HttpError::Transport { transient: true, .. })
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Invalid(message) => write!(f, "invalid request: {message}"),
            HttpError::Denied(code) => write!(f, "request denied: {code} (the flavor log has the host's reason)"),
            HttpError::Transport { code, .. } => {
                write!(f, "request failed: {code} (the flavor log has the host's reason)")
            }
            HttpError::Decode(message) => write!(f, "unexpected response: {message}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<std::time::Duration>,
}

impl Request {
    /// A request with any method.
    pub fn new(method: &str, url: &str) -> Self {
        Self { method: method.to_owned(), url: url.to_owned(), headers: Vec::new(), body: Vec::new(), timeout: None }
    }

    /// A GET request.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A POST request.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// A PUT request.
    pub fn put(url: &str) -> Self {
        Self::new("PUT", url)
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// Set a JSON body and its content type.
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.header("content-type", "application/json").body(value.to_string().into_bytes())
    }

    /// Wait at most this long for the response to start (the host caps it).
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Send it and read the whole response.
    pub fn send(&self) -> Result<Response, HttpError> {
        let invalid = |what: &str| HttpError::Invalid(format!("{what} in {} {}", self.method, self.url));
        let (scheme, rest) = self.url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let headers = Fields::new();
        for (name, value) in &self.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|error| HttpError::Invalid(format!("header `{name}`: {error:?}")))?;
        }
        let request = OutgoingRequest::new(headers);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "HEAD" => Method::Head,
            other => Method::Other(other.to_owned()),
        };
        request.set_method(&method).map_err(|()| invalid("a bad method"))?;
        let scheme = match scheme {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            _ => return Err(invalid("a scheme other than http or https")),
        };
        request.set_scheme(Some(&scheme)).map_err(|()| invalid("a bad scheme"))?;
        request.set_authority(Some(authority)).map_err(|()| invalid("a bad host"))?;
        request.set_path_with_query(Some(path)).map_err(|()| invalid("a bad path"))?;
        let body = request.body().map_err(|()| invalid("no body"))?;
        if !self.body.is_empty() {
            let stream = body.write().map_err(|()| invalid("no body stream"))?;
            for chunk in self.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|error| HttpError::interrupted(format!("writing the body: {error:?}")))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(HttpError::of_code)?;
        let options = self.timeout.map(|timeout| {
            let options = RequestOptions::new();
            let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
            let _ = options.set_first_byte_timeout(Some(nanos));
            options
        });
        let future = outgoing_handler::handle(request, options).map_err(HttpError::of_code)?;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(HttpError::of_code(code)),
            Some(Err(())) | None => return Err(HttpError::interrupted("no response".to_owned())),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|()| HttpError::interrupted("no response body".to_owned()))?;
        let stream = incoming.stream().map_err(|()| HttpError::interrupted("no response body stream".to_owned()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(bytes) if body.len() + bytes.len() > MAX_RESPONSE_BYTES => {
                    return Err(HttpError::Decode(format!("the body is over {MAX_RESPONSE_BYTES} bytes")));
                }
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(StreamError::Closed) => break,
                Err(error) => {
                    return Err(HttpError::interrupted(format!(
                        "reading the body after {} bytes: {error:?}",
                        body.len()
                    )));
                }
            }
        }
        Ok(Response { status, headers, body })
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of a header (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded as JSON, whatever the content type says.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|error| {
            let start: String = self.text().chars().take(200).collect();
            HttpError::Decode(format!("HTTP {}: {error}; the body starts: {start}", self.status))
        })
    }
}

/// Why a JSON API call failed.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The service answered with a non-2xx status.
    Status {
        status: u16,
        /// The error body as JSON (`Null` when it is not JSON).
        body: serde_json::Value,
        /// The error body as text.
        text: String,
    },
    /// No usable answer.
    Http(HttpError),
}

impl CallError {
    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            CallError::Http(_) => None,
        }
    }

    /// Whether the host refused the request (an origin or address not allowed).
    pub fn is_denied(&self) -> bool {
        matches!(self, CallError::Http(error) if error.is_denied())
    }

    /// The launch's error for this failure of `what` (e.g. `Vertex AI
    /// customJobs.create`): `denied` when the host refused the request.
    pub fn into_launch_error(self, what: &str) -> crate::LaunchError {
        if self.is_denied() {
            crate::LaunchError::Denied(format!("{what}: {self}"))
        } else {
            crate::LaunchError::Failed(format!("{what}: {self}"))
        }
    }

    /// Whether trying again later may work: 429, 5xx, a dropped connection.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Status { status, .. } => *status == 429 || *status >= 500,
            CallError::Http(error) => error.is_transient(),
        }
    }
}

impl std::fmt::Display for CallError {
    /// Google's `{"error":{"code":404,"status":"NOT_FOUND","message":…}}` and
    /// Azure's `{"error":{"code":"UserError","message":…}}` both read as
    /// `NOT_FOUND (HTTP 404): message`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status { status, body, text } => {
                let error = &body["error"];
                let code = error["status"].as_str().or_else(|| error["code"].as_str());
                let message = error["message"].as_str();
                match (code, message) {
                    (Some(code), Some(message)) => write!(f, "{code} (HTTP {status}): {message}"),
                    (None, Some(message)) => write!(f, "HTTP {status}: {message}"),
                    _ => write!(f, "HTTP {status}: {}", text.chars().take(300).collect::<String>()),
                }
            }
            CallError::Http(error) => write!(f, "{error}"),
        }
    }
}

/// Call a JSON API: `body` sent as JSON, the reply decoded (`{}` when empty).
pub fn call_json(method: &str, url: &str, body: Option<&serde_json::Value>) -> Result<serde_json::Value, CallError> {
    let mut request = Request::new(method, url).header("accept", "application/json");
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().map_err(CallError::Http)?;
    if !response.is_success() {
        return Err(CallError::Status {
            status: response.status,
            body: serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null),
            text: response.text(),
        });
    }
    if response.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    response.json().map_err(CallError::Http)
}
