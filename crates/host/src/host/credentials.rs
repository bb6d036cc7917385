//! Credentials the host applies to a flavor's outgoing requests, after the
//! guest has built them: a static bearer token, an AWS Signature Version 4, a
//! Google service-account access token, or a Microsoft Entra ID
//! client-credentials token. The flavor never holds a key, a token or a
//! signature: it sees neither the secret nor the request as sent.
//!
//! Token exchanges (Google, Azure) go to the token endpoint through the same
//! egress rules as any request (the endpoint's origin must be granted with
//! `http-origin`), and the token is cached for the launch until a minute
//! before it expires. Nothing here writes a token or a signature anywhere:
//! the audit record only learns that a token was requested, and from where.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Deserialize;
use thiserror::Error;

use stepbox_backends::secrets::{SecretValue, Secrets};
use stepbox_store::policy::egress::{CredentialGrant, CredentialScheme};

/// The header a flavor uses to name the AWS signing scope, `REGION/SERVICE`,
/// for an origin whose host name does not say it (an emulator, a VPC
/// endpoint). The host removes it before the request is sent.
pub const AWS_SCOPE_HEADER: &str = "x-stepbox-aws-scope";

/// The OAuth2 scope asked of Google unless the secret says otherwise.
pub const GOOGLE_DEFAULT_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The scope asked of Entra ID unless the secret says otherwise.
pub const AZURE_DEFAULT_SCOPE: &str = "https://management.azure.com/.default";
/// Where Entra ID tokens come from unless the secret says otherwise.
pub const AZURE_DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// A token is used until this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// Why a credential could not be applied. The request is not sent.
#[derive(Debug, Error)]
pub enum CredentialError {
    #[error("the credential for {origin} is the secret `{secret}`, which cannot be read: {reason}")]
    Unreadable { origin: String, secret: String, reason: String },
    #[error(
        "the secret `{secret}` does not hold a {scheme} credential: {reason}. Store one with `stepbox secret set {secret}` (docs/SECURITY.md shows the format)"
    )]
    Malformed { secret: String, scheme: &'static str, reason: String },
    #[error(
        "cannot tell the AWS signing scope of {host}: send the header `{AWS_SCOPE_HEADER}: REGION/SERVICE` (e.g. us-east-1/sagemaker) with requests to it"
    )]
    AwsScope { host: String },
    #[error("signing the request for {origin}: {reason}")]
    Signing { origin: String, reason: String },
    #[error("getting a token from {endpoint} (for the secret `{secret}`): {reason}")]
    Token { endpoint: String, secret: String, reason: String },
}

/// Sends one token request (a form POST) under the launch's egress rules
/// and returns the status and body.
pub type TokenSender<'a> =
    &'a (dyn Fn(url::Url, String) -> Pin<Box<dyn Future<Output = Result<(u16, Bytes), String>> + Send>> + Sync);

/// The credentials of one launch: the token cache lives as long as it.
#[derive(Default)]
pub struct Credentials {
    tokens: tokio::sync::Mutex<HashMap<TokenKey, CachedToken>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    secret: String,
    scope: String,
}

struct CachedToken {
    token: SecretValue,
    use_until: Instant,
}

impl Credentials {
    /// Authenticate the request `parts` (whose body is `body`) with `grant`.
    pub async fn apply(
        &self,
        grant: &CredentialGrant,
        secrets: &Secrets,
        parts: &mut http::request::Parts,
        body: &Bytes,
        send_token_request: TokenSender<'_>,
    ) -> Result<(), CredentialError> {
        let origin = grant.origin.to_string();
        let secret = secrets.get(&grant.secret).map_err(|error| CredentialError::Unreadable {
            origin: origin.clone(),
            secret: grant.secret.clone(),
            reason: error.to_string(),
        })?;
        // Whatever the guest put in these headers, the host's values replace them.
        parts.headers.remove(http::header::AUTHORIZATION);
        match grant.scheme {
            CredentialScheme::Bearer => set_bearer(parts, &grant.secret, secret.expose()),
            CredentialScheme::AwsSigV4 => sign_aws(parts, body, &grant.secret, &secret, &origin),
            CredentialScheme::GoogleServiceAccount => {
                let key = GoogleKey::parse(&grant.secret, &secret)?;
                let token = self
                    .token(&grant.secret, key.scope(), || key.fetch_token(&grant.secret, send_token_request))
                    .await?;
                set_bearer(parts, &grant.secret, token.expose())
            }
            CredentialScheme::AzureClientCredentials => {
                let client = AzureClient::parse(&grant.secret, &secret)?;
                let token = self
                    .token(&grant.secret, client.scope(), || client.fetch_token(&grant.secret, send_token_request))
                    .await?;
                set_bearer(parts, &grant.secret, token.expose())
            }
        }
    }

    /// The cached token for (secret, scope), or a fresh one from `fetch`.
    /// The lock is held while fetching, so concurrent requests ask once.
    async fn token<F, Fut>(&self, secret: &str, scope: &str, fetch: F) -> Result<SecretValue, CredentialError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretValue, Duration), CredentialError>>,
    {
        let key = TokenKey { secret: secret.to_owned(), scope: scope.to_owned() };
        let mut tokens = self.tokens.lock().await;
        if let Some(cached) = tokens.get(&key).filter(|cached| Instant::now() < cached.use_until) {
            return Ok(cached.token.clone());
        }
        let (token, lifetime) = fetch().await?;
        let use_until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        tokens.insert(key, CachedToken { token: token.clone(), use_until });
        Ok(token)
    }
}

fn set_bearer(parts: &mut http::request::Parts, secret: &str, token: &str) -> Result<(), CredentialError> {
    let mut header =
        http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| CredentialError::Malformed {
            secret: secret.to_owned(),
            scheme: "bearer",
            reason: "the token is not a valid header value".to_owned(),
        })?;
    header.set_sensitive(true);
    parts.headers.insert(http::header::AUTHORIZATION, header);
    Ok(())
}

/// Parse a secret's JSON into `T`, naming what is wrong without showing it.
fn parse_json<T: serde::de::DeserializeOwned>(
    secret: &str,
    scheme: &'static str,
    value: &SecretValue,
) -> Result<T, CredentialError> {
    serde_json::from_str(value.expose()).map_err(|error| CredentialError::Malformed {
        secret: secret.to_owned(),
        scheme,
        // serde's message names the missing field or the position, never the value.
        reason: error.to_string(),
    })
}

/// An AWS access key, as stored in an `aws-sigv4` secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AwsKeys {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

/// Sign with SigV4. The region and service come from the `x-stepbox-aws-scope`
/// header when the flavor sent one, else from the host name.
fn sign_aws(
    parts: &mut http::request::Parts,
    body: &Bytes,
    secret: &str,
    value: &SecretValue,
    origin: &str,
) -> Result<(), CredentialError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};

    let keys: AwsKeys = parse_json(secret, "aws-sigv4", value)?;
    let (region, service) = aws_scope(parts)?;
    for header in ["x-amz-date", "x-amz-security-token"] {
        parts.headers.remove(header);
    }
    let identity = aws_credential_types::Credentials::new(
        keys.access_key_id,
        keys.secret_access_key,
        keys.session_token,
        None,
        "stepbox",
    )
    .into();
    let signing_error = |reason: String| CredentialError::Signing { origin: origin.to_owned(), reason };
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name(&service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|error| signing_error(error.to_string()))?
        .into();
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let value = value
            .to_str()
            .map_err(|_| signing_error(format!("the header `{name}` is not text and cannot be signed")))?;
        headers.push((name.as_str(), value));
    }
    let uri = parts.uri.to_string();
    let signable =
        SignableRequest::new(parts.method.as_str(), uri.as_str(), headers.into_iter(), SignableBody::Bytes(body))
            .map_err(|error| signing_error(error.to_string()))?;
    let (instructions, _signature) =
        sign(signable, &params).map_err(|error| signing_error(error.to_string()))?.into_parts();
    let mut request = http::Request::from_parts(std::mem::replace(parts, http::Request::new(()).into_parts().0), ());
    instructions.apply_to_request_http1x(&mut request);
    *parts = request.into_parts().0;
    if let Some(header) = parts.headers.get_mut(http::header::AUTHORIZATION) {
        header.set_sensitive(true);
    }
    Ok(())
}

/// The (region, service) to sign for: the flavor's header, or the labels of
/// `SERVICE.REGION.amazonaws.com` (`api.sagemaker.us-east-1…` → sagemaker).
fn aws_scope(parts: &mut http::request::Parts) -> Result<(String, String), CredentialError> {
    let host = parts.uri.host().unwrap_or_default().to_owned();
    if let Some(header) = parts.headers.remove(AWS_SCOPE_HEADER) {
        let text = header.to_str().unwrap_or_default();
        return match text.split_once('/') {
            Some((region, service)) if !region.is_empty() && !service.is_empty() && !service.contains('/') => {
                Ok((region.to_owned(), service.to_owned()))
            }
            _ => Err(CredentialError::AwsScope { host }),
        };
    }
    let labels = [".amazonaws.com", ".amazonaws.com.cn"]
        .iter()
        .find_map(|suffix| host.strip_suffix(suffix))
        .map(|prefix| prefix.split('.').collect::<Vec<_>>());
    match labels.as_deref() {
        Some([.., service, region]) => Ok(((*region).to_owned(), (*service).to_owned())),
        _ => Err(CredentialError::AwsScope { host }),
    }
}

/// The fields stepbox uses from a Google service-account key file.
#[derive(Deserialize)]
struct GoogleKey {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default = "google_token_uri")]
    token_uri: String,
    /// Not in Google's file: lets a step operator ask for a narrower scope.
    #[serde(default)]
    scope: Option<String>,
}

fn google_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_owned()
}

impl GoogleKey {
    fn parse(secret: &str, value: &SecretValue) -> Result<Self, CredentialError> {
        parse_json(secret, "google-service-account", value)
    }

    fn scope(&self) -> &str {
        self.scope.as_deref().unwrap_or(GOOGLE_DEFAULT_SCOPE)
    }

    /// The JWT-bearer grant: a JWT signed with the key, exchanged at `token_uri`.
    async fn fetch_token(
        &self,
        secret: &str,
        send: TokenSender<'_>,
    ) -> Result<(SecretValue, Duration), CredentialError> {
        let token_error = |reason: String| CredentialError::Token {
            endpoint: self.token_uri.clone(),
            secret: secret.to_owned(),
            reason,
        };
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.private_key.as_bytes()).map_err(|error| {
            CredentialError::Malformed {
                secret: secret.to_owned(),
                scheme: "google-service-account",
                reason: format!("`private_key` is not an RSA private key in PEM: {error}"),
            }
        })?;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": self.scope(),
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let assertion =
            jsonwebtoken::encode(&header, &claims, &key).map_err(|error| token_error(format!("signing: {error}")))?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let url = url::Url::parse(&self.token_uri).map_err(|_| token_error("`token_uri` is not a URL".to_owned()))?;
        exchange(url, form, send).await.map_err(token_error)
    }
}

/// An Entra ID application, as stored in an `azure-client-credentials` secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AzureClient {
    tenant_id: String,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    authority_host: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

impl AzureClient {
    fn parse(secret: &str, value: &SecretValue) -> Result<Self, CredentialError> {
        parse_json(secret, "azure-client-credentials", value)
    }

    fn scope(&self) -> &str {
        self.scope.as_deref().unwrap_or(AZURE_DEFAULT_SCOPE)
    }

    /// The client-credentials grant at `{authority}/{tenant}/oauth2/v2.0/token`.
    async fn fetch_token(
        &self,
        secret: &str,
        send: TokenSender<'_>,
    ) -> Result<(SecretValue, Duration), CredentialError> {
        let authority = self.authority_host.as_deref().unwrap_or(AZURE_DEFAULT_AUTHORITY).trim_end_matches('/');
        let endpoint = format!("{authority}/{}/oauth2/v2.0/token", self.tenant_id);
        let token_error =
            |reason: String| CredentialError::Token { endpoint: endpoint.clone(), secret: secret.to_owned(), reason };
        let url = url::Url::parse(&endpoint)
            .map_err(|_| token_error("`authority_host` and `tenant_id` do not make a URL".to_owned()))?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", &self.client_secret)
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", self.scope())
            .finish();
        exchange(url, form, send).await.map_err(token_error)
    }
}

/// An OAuth2 token response (RFC 6749 §5.1), or its error (§5.2).
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// POST the form and read the access token and its lifetime.
async fn exchange(url: url::Url, form: String, send: TokenSender<'_>) -> Result<(SecretValue, Duration), String> {
    let (status, body) = send(url, form).await?;
    let response: Option<TokenResponse> = serde_json::from_slice(&body).ok();
    let response = match response {
        Some(response) if (200..300).contains(&status) => response,
        Some(TokenResponse { error: Some(error), error_description, .. }) => {
            let description = error_description.map(|d| format!(": {d}")).unwrap_or_default();
            return Err(format!("HTTP {status}, {error}{description}"));
        }
        _ => return Err(format!("HTTP {status}, and the reply is not an OAuth2 token response")),
    };
    let token = response.access_token.filter(|token| !token.is_empty()).ok_or("the reply has no access_token")?;
    // Seconds, as a number (Google, Entra ID) or a string (some older servers).
    let lifetime = match response.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(0);
    Ok((SecretValue::new(token), Duration::from_secs(lifetime)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().method("POST").uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a request").into_parts().0
    }

    #[test]
    fn the_aws_scope_comes_from_the_header_or_the_host_name() {
        // (URL, headers, expected (region, service)).
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            ("https://api.sagemaker.us-east-1.amazonaws.com/", &[], Some(("us-east-1", "sagemaker"))),
            ("https://logs.eu-west-1.amazonaws.com/", &[], Some(("eu-west-1", "logs"))),
            ("https://api.sagemaker.cn-north-1.amazonaws.com.cn/", &[], Some(("cn-north-1", "sagemaker"))),
            ("http://127.0.0.1:5001/", &[(AWS_SCOPE_HEADER, "us-east-1/logs")], Some(("us-east-1", "logs"))),
            ("http://127.0.0.1:5001/", &[], None),
            ("https://amazonaws.com/", &[], None),
            ("http://127.0.0.1:5001/", &[(AWS_SCOPE_HEADER, "us-east-1")], None),
            ("http://127.0.0.1:5001/", &[(AWS_SCOPE_HEADER, "/logs")], None),
        ];
        for (uri, headers, expected) in cases {
            let mut request = parts(uri, headers);
            let scope = aws_scope(&mut request).ok();
            assert_eq!(scope, expected.map(|(r, s)| (r.to_owned(), s.to_owned())), "{uri} {headers:?}");
            assert!(request.headers.get(AWS_SCOPE_HEADER).is_none(), "the header is never sent on");
        }
    }

    #[test]
    fn a_sigv4_signature_names_the_key_and_scope_and_replaces_the_guests() {
        let keys = SecretValue::new(
            r#"{"access_key_id":"AKIDEXAMPLE","secret_access_key":"wJalrXUtnFEMI","session_token":"SESSION"}"#.into(),
        );
        let mut request = parts(
            "https://api.sagemaker.us-east-1.amazonaws.com/",
            &[
                ("host", "api.sagemaker.us-east-1.amazonaws.com"),
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", "SageMaker.DescribeTrainingJob"),
                ("x-amz-date", "19700101T000000Z"),
            ],
        );
        sign_aws(&mut request, &Bytes::from_static(b"{}"), "aws", &keys, "origin").expect("signs");
        let authorization = request.headers[http::header::AUTHORIZATION].to_str().expect("text");
        assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{authorization}");
        assert!(authorization.contains("/us-east-1/sagemaker/aws4_request"), "{authorization}");
        assert!(authorization.contains("x-amz-target"), "the target header is signed: {authorization}");
        assert!(!authorization.contains("wJalrXUtnFEMI"), "the secret key is never sent");
        assert_eq!(request.headers["x-amz-security-token"], "SESSION");
        assert_ne!(request.headers["x-amz-date"], "19700101T000000Z", "the guest's date is replaced");
        assert!(request.headers[http::header::AUTHORIZATION].is_sensitive());
    }

    #[tokio::test]
    async fn malformed_secrets_name_the_problem_but_not_the_value() {
        let not_keys = SecretValue::new(r#"{"access_key_id":"AKID","secret":"hunter2"}"#.into());
        let error = sign_aws(
            &mut parts("https://logs.us-east-1.amazonaws.com/", &[]),
            &Bytes::new(),
            "aws",
            &not_keys,
            "origin",
        )
        .expect_err("refused")
        .to_string();
        assert!(error.contains("does not hold a aws-sigv4 credential"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");

        let not_a_key = SecretValue::new(r#"{"client_email":"a@b","private_key":"hunter2"}"#.into());
        let key = GoogleKey::parse("gcp", &not_a_key).expect("parses");
        assert_eq!(key.token_uri, "https://oauth2.googleapis.com/token");
        assert_eq!(key.scope(), GOOGLE_DEFAULT_SCOPE);
        let no_sender: TokenSender<'_> = &|_, _| Box::pin(async { Err("not called".to_owned()) });
        let error = key.fetch_token("gcp", no_sender).await.expect_err("refused").to_string();
        assert!(error.contains("not an RSA private key"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[tokio::test]
    async fn token_errors_carry_the_servers_words_and_tokens_are_cached() {
        let refused: TokenSender<'_> = &|_, _| {
            Box::pin(async {
                Ok((401, Bytes::from_static(br#"{"error":"invalid_client","error_description":"AADSTS7000215"}"#)))
            })
        };
        let client = AzureClient::parse(
            "azure",
            &SecretValue::new(r#"{"tenant_id":"t","client_id":"c","client_secret":"s"}"#.into()),
        )
        .expect("parses");
        let error = client.fetch_token("azure", refused).await.expect_err("refused").to_string();
        assert!(error.contains("login.microsoftonline.com/t/oauth2/v2.0/token"), "{error}");
        assert!(error.contains("HTTP 401, invalid_client: AADSTS7000215"), "{error}");

        let calls = std::sync::atomic::AtomicUsize::new(0);
        let credentials = Credentials::default();
        for _ in 0..3 {
            let token = credentials
                .token("azure", AZURE_DEFAULT_SCOPE, || async {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok((SecretValue::new("t1".into()), Duration::from_secs(3600)))
                })
                .await
                .expect("a token");
            assert_eq!(token.expose(), "t1");
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "asked once, then cached");
        // A token about to expire is not reused.
        for _ in 0..2 {
            credentials
                .token("short", AZURE_DEFAULT_SCOPE, || async {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok((SecretValue::new("t2".into()), Duration::from_secs(30)))
                })
                .await
                .expect("a token");
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
