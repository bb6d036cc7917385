//! A small client for the Ray Jobs REST API (the dashboard's `/api/jobs/`
//! and `/api/packages/`): the calls the Ray backend makes, with the
//! cluster's token applied, and errors sorted into "did not answer" and
//! "refused".

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use crate::backends::remote::EngineError;
use crate::secrets::SecretValue;

/// Connecting to the dashboard may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request, uploads included, may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Most bytes of an error body quoted in a message.
const QUOTED_BODY: usize = 500;

/// One Ray cluster's Jobs API.
#[derive(Clone)]
pub struct RayApi {
    http: reqwest::Client,
    /// `http://host:port`, as granted.
    address: String,
    token: Option<SecretValue>,
}

/// What `GET /api/jobs/<id>` says about a job (the fields stepbox reads).
#[derive(Debug, Clone, Deserialize)]
pub struct JobDetails {
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub driver_exit_code: Option<i32>,
}

#[derive(Deserialize)]
struct Logs {
    logs: String,
}

impl RayApi {
    /// A client for the cluster at `address`, sending `token` if given.
    pub fn new(address: &str, token: Option<SecretValue>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| format!("cannot set up an HTTP client: {error}"))?;
        Ok(Self { http, address: address.trim_end_matches('/').to_owned(), token })
    }

    /// The cluster's address, for messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.address));
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    /// Submit a job; the body is the Jobs API's submit request.
    pub async fn submit(&self, body: &serde_json::Value) -> Result<(), EngineError> {
        let response =
            self.send(self.request(reqwest::Method::POST, "/api/jobs/").json(body), "submit the job").await?;
        self.expect_success(response, "submit the job").await.map(|_| ())
    }

    /// The job's details.
    pub async fn job(&self, submission_id: &str) -> Result<JobDetails, EngineError> {
        let what = "read the job's status";
        let response =
            self.send(self.request(reqwest::Method::GET, &format!("/api/jobs/{submission_id}")), what).await?;
        let body = self.expect_success(response, what).await?;
        serde_json::from_str(&body)
            .map_err(|error| EngineError::Refused(format!("Ray sent job details stepbox cannot read: {error}")))
    }

    /// The job's whole log so far (stdout and stderr together).
    pub async fn logs(&self, submission_id: &str) -> Result<String, EngineError> {
        let what = "read the job's logs";
        let response =
            self.send(self.request(reqwest::Method::GET, &format!("/api/jobs/{submission_id}/logs")), what).await?;
        let body = self.expect_success(response, what).await?;
        serde_json::from_str::<Logs>(&body)
            .map(|logs| logs.logs)
            .map_err(|error| EngineError::Refused(format!("Ray sent logs stepbox cannot read: {error}")))
    }

    /// Ask Ray to stop the job (SIGTERM, then SIGKILL after Ray's own wait).
    pub async fn stop(&self, submission_id: &str) -> Result<(), EngineError> {
        let what = "stop the job";
        let response =
            self.send(self.request(reqwest::Method::POST, &format!("/api/jobs/{submission_id}/stop")), what).await?;
        self.expect_success(response, what).await.map(|_| ())
    }

    /// Whether the cluster already has the package `gcs://NAME`.
    pub async fn has_package(&self, name: &str) -> Result<bool, EngineError> {
        let what = "look for the working-directory package";
        let response =
            self.send(self.request(reqwest::Method::GET, &format!("/api/packages/gcs/{name}")), what).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.expect_success(response, what).await.map(|_| true)
    }

    /// Upload the package `gcs://NAME`.
    pub async fn upload_package(&self, name: &str, zip: Vec<u8>) -> Result<(), EngineError> {
        let what = "upload the working-directory package";
        let request = self.request(reqwest::Method::PUT, &format!("/api/packages/gcs/{name}")).body(zip);
        let response = self.send(request, what).await?;
        self.expect_success(response, what).await.map(|_| ())
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response, EngineError> {
        request.send().await.map_err(|error| {
            let detail = std::error::Error::source(&error)
                .map_or_else(|| error.to_string(), |source| format!("{error}: {source}"));
            EngineError::Unreachable(format!("cannot reach the Ray cluster at {} to {what}: {detail}", self.address))
        })
    }

    /// The body of a 2xx response; an error naming the status otherwise
    /// (5xx is worth a retry, 4xx is not).
    async fn expect_success(&self, response: reqwest::Response, what: &str) -> Result<String, EngineError> {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(body);
        }
        let quoted: String = body.trim().chars().take(QUOTED_BODY).collect();
        let mut message = format!("the Ray cluster at {} refused to {what}: HTTP {status}: {quoted}", self.address);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            message.push_str(if self.token.is_some() {
                " (the token in the step operator's token-secret was not accepted)"
            } else {
                " (the cluster wants a token: store it with `stepbox secret set NAME`, grant it with --grant secret=NAME, \
                 and have the flavor pass the backend option token-secret=NAME)"
            });
        }
        Err(if status.is_server_error() { EngineError::Unreachable(message) } else { EngineError::Refused(message) })
    }
}
