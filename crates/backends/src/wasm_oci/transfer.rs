//! Moving flavor artifacts to and from registries.
//!
//! Pushing goes through `oci-client`. Pulling uses `oci-client` only for the
//! login (the registry's token dance) and reads the manifest and the two
//! blobs itself, because `oci-client` reads a manifest whole, however large,
//! and has no redirect policy of its own. Here every read is bounded by what
//! the manifest declares (a 2 GB layer is refused before a byte of it is
//! read), and a registry's redirects (large registries send blob GETs to a
//! storage host) are followed by these rules:
//!
//! - at most [`MAX_REDIRECTS`] hops, never back to a URL already visited;
//! - http(s) only, and never from https down to plain http;
//! - never into this machine or its link-local network (a cloud metadata
//!   address) unless the registry itself is on this machine, whether the
//!   target is written as an address or as a name that resolves to one;
//! - the registry's credentials never leave its scheme, host and port
//!   (reqwest drops `Authorization` on any change of them);
//! - whatever host serves the bytes, they must have the manifest's digest.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use reqwest::{StatusCode, Url};

use super::artifact::{self, ArtifactBlobs, Blob, ComponentWorld, WasmConfig};
use super::bundle;
use super::keys::PrivateKey;
use super::signature::{self, Signature};
use super::{SCHEME, WasmOciError};
use crate::addresses;
use crate::images::registry::{self, Login};

/// The most redirects one request follows.
pub const MAX_REDIRECTS: usize = 5;
/// How long connecting to a registry (or a host it redirects to) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a registry may leave a read waiting.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one whole request may take, redirects and body included: a
/// registry trickling a byte a minute must not hold a registration forever.
/// (256 MiB, the largest component, in 10 minutes is 0.4 MiB/s.)
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// A flavor artifact pulled from a registry, checked against its digests.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// `REGISTRY/REPOSITORY`.
    pub repository: String,
    /// The tag it was named by, if any (with a digest too, the digest decided).
    pub tag: Option<String>,
    /// The manifest's digest: what the tag pointed to, and what is pinned.
    pub digest: String,
    /// The component's bytes.
    pub component: Vec<u8>,
    /// The signatures found beside it (when asked for), each checked
    /// against its payload digest but not yet verified.
    pub signatures: Vec<Signature>,
}

impl Pulled {
    /// `oci://REGISTRY/REPOSITORY[:TAG]@sha256:…`: where it came from, pinned.
    pub fn pinned(&self) -> String {
        match &self.tag {
            Some(tag) => format!("oci://{}:{tag}@{}", self.repository, self.digest),
            None => format!("oci://{}@{}", self.repository, self.digest),
        }
    }
}

/// A flavor artifact pushed to a registry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    /// `REGISTRY/REPOSITORY:TAG`.
    pub reference: String,
    /// `REGISTRY/REPOSITORY`.
    pub repository: String,
    /// The manifest's digest, to pin with `REGISTRY/REPOSITORY@DIGEST`.
    pub digest: String,
    /// The component layer's digest (the sha256 of the file).
    pub layer_digest: String,
    /// The component's size in bytes.
    pub size: u64,
}

/// An artifact signed in its registry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Signed {
    /// `REGISTRY/REPOSITORY`.
    pub repository: String,
    /// The signed manifest's digest.
    pub digest: String,
    /// The tag the signature was written to (`sha256-HEX.sig`).
    pub tag: String,
    /// The signing key's fingerprint.
    pub fingerprint: String,
    /// Whether this very signature was there already (nothing was pushed).
    pub already_there: bool,
}

/// Parse `REGISTRY/REPOSITORY:TAG` or `REGISTRY/REPOSITORY[:TAG]@sha256:…`
/// (an `oci://` prefix is allowed). The registry must be named and a tag or
/// digest given: nothing defaults to Docker Hub or to `latest`.
pub fn parse_reference(text: &str) -> Result<Reference, WasmOciError> {
    let bad = |message: &str| WasmOciError::Reference { reference: text.to_owned(), message: message.to_owned() };
    let bare = text.strip_prefix(SCHEME).unwrap_or(text);
    let (registry, rest) = bare.split_once('/').ok_or_else(|| bad("it names no registry"))?;
    if !(registry.contains(['.', ':']) || registry == "localhost") {
        return Err(bad(
            "its first part must be the registry's host (with a dot or a port), so that nothing defaults to Docker Hub",
        ));
    }
    let last = rest.rsplit('/').next().unwrap_or(rest);
    if !last.contains([':', '@']) {
        return Err(bad("it has no tag or digest (nothing defaults to `latest`)"));
    }
    Reference::from_str(bare).map_err(|error| bad(&error.to_string()))
}

/// Push `component` (the file `file_name`, whose world is `world`) to
/// `reference` as a Wasm artifact; the manifest's digest comes back.
pub async fn push(
    reference: &str,
    logins: &[Login],
    component: &[u8],
    file_name: &str,
    world: ComponentWorld,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Pushed, WasmOciError> {
    let target = parse_reference(reference)?;
    let Some(tag) = target.tag().filter(|_| target.digest().is_none()).map(str::to_owned) else {
        return Err(WasmOciError::Reference {
            reference: reference.to_owned(),
            message: "a push names a tag, not a digest (the digest is the push's result)".to_owned(),
        });
    };
    let built = artifact::build(component, file_name, world, &crate::timestamps::now())?;
    let client = registry::client(&[target.registry()]);
    let auth = registry::auth_for(logins, target.registry());
    let push_error = |error: oci_client::errors::OciDistributionError| push_failure(&target, logins, error);
    client.auth(&target, &auth, RegistryOperation::Push).await.map_err(push_error)?;
    let blobs = [(component, &built.layer_digest, "component"), (&built.config[..], &built.config_digest, "config")];
    for (bytes, digest, what) in blobs {
        if client.blob_exists(&target, digest).await.unwrap_or(false) {
            continue;
        }
        progress(&format!(
            "pushing the {what} {} ({})",
            registry::short(digest),
            bytesize::ByteSize::b(bytes.len() as u64)
        ));
        client.push_blob(&target, bytes.to_vec(), digest).await.map_err(push_error)?;
    }
    let content_type = http::HeaderValue::from_static(artifact::MANIFEST_MEDIA_TYPE);
    client.push_manifest_raw(&target, built.manifest.clone(), content_type).await.map_err(push_error)?;
    let repository = format!("{}/{}", target.registry(), target.repository());
    Ok(Pushed {
        reference: format!("{repository}:{tag}"),
        repository,
        digest: built.manifest_digest,
        layer_digest: built.layer_digest,
        size: component.len() as u64,
    })
}

fn push_failure(target: &Reference, logins: &[Login], error: oci_client::errors::OciDistributionError) -> WasmOciError {
    use oci_client::errors::OciDistributionError as E;
    let registry = target.registry().to_owned();
    let unauthorized = matches!(&error, E::UnauthorizedError { .. } | E::AuthenticationFailure(_))
        || matches!(&error, E::ServerError { code: 401, .. });
    match error {
        _ if unauthorized && !logins.iter().any(|login| login.registry.eq_ignore_ascii_case(&registry)) => {
            WasmOciError::LoginRequired { registry }
        }
        other if unauthorized => WasmOciError::Denied { registry, detail: format!("pushing: {other}") },
        E::RequestError(error) if error.is_connect() || error.is_timeout() => {
            WasmOciError::Unreachable { registry, message: chain(&error) }
        }
        other => WasmOciError::Push { reference: target.whole(), message: other.to_string() },
    }
}

/// The manifest kinds asked for: a Wasm artifact's, and the kinds a
/// container image might be, to say so rather than fail obscurely.
const MANIFEST_KINDS: &[&str] = &[
    artifact::MANIFEST_MEDIA_TYPE,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Read the manifest `source` names and check it is a flavor artifact whose
/// component is at most `max_component_bytes`; its digest and blobs.
async fn artifact_manifest(
    session: &Session,
    source: &Reference,
    max_component_bytes: u64,
) -> Result<(String, ArtifactBlobs), WasmOciError> {
    let what_manifest = format!("manifest of {}", source.whole());
    let by = source.digest().or(source.tag()).unwrap_or_default();
    let manifest =
        session.get(&format!("manifests/{by}"), MANIFEST_KINDS, artifact::MAX_MANIFEST_BYTES, &what_manifest).await?;
    let digest = artifact::digest_of(&manifest);
    if let Some(expected) = source.digest()
        && expected != digest
    {
        return Err(WasmOciError::DigestMismatch {
            what: what_manifest,
            expected: expected.to_owned(),
            actual: digest,
        });
    }
    let blobs = artifact::check_manifest(&source.whole(), &manifest, max_component_bytes)?;
    Ok((digest, blobs))
}

/// The signature manifest beside `digest`, if there is one.
async fn signature_manifest(session: &Session, digest: &str) -> Result<Option<Vec<u8>>, WasmOciError> {
    let tag = signature::tag_for(digest);
    session
        .get_if_there(
            &format!("manifests/{tag}"),
            &[artifact::MANIFEST_MEDIA_TYPE, "application/vnd.docker.distribution.manifest.v2+json"],
            signature::MAX_MANIFEST_BYTES,
            &format!("signatures at {tag}"),
        )
        .await
}

/// The signatures beside `digest`: the layers of cosign's `.sig` tag, and
/// the Sigstore bundles among its referrers (cosign v3's default), every
/// blob checked against its digest.
async fn signatures(session: &Session, digest: &str) -> Result<Vec<Signature>, WasmOciError> {
    let shown = format!("{}@{digest}", session.shown);
    let bad = |why: String| WasmOciError::BadSignatures { reference: shown.clone(), why };
    let mut found = Vec::new();
    if let Some(manifest) = signature_manifest(session, digest).await? {
        for signature::Listed { blob, signature } in signature::list(&shown, &manifest).map_err(bad)? {
            let payload = session.blob(&blob, "signature payload").await?;
            found.push(Signature::simple(payload, signature));
        }
    }
    for referrer in bundle_referrers(session, digest, &shown).await? {
        let what = "signature bundle manifest";
        let manifest = session
            .get(&format!("manifests/{}", referrer.digest), &[artifact::MANIFEST_MEDIA_TYPE], referrer.size, what)
            .await?;
        artifact::check_blob(what, &referrer, &manifest)?;
        let Some(layer) = bundle::bundle_layer(&shown, &manifest).map_err(bad)? else { continue };
        let bytes = session.blob(&layer, "signature bundle").await?;
        found.extend(bundle::signatures_of(&shown, &bytes).map_err(bad)?);
    }
    Ok(found)
}

/// The Sigstore bundles referring to `digest`: listed by the registry's
/// referrers API, or, where it has none (404; some answer 400, 405 or
/// 501), by the index at the fallback tag `sha256-HEX`.
async fn bundle_referrers(session: &Session, digest: &str, shown: &str) -> Result<Vec<Blob>, WasmOciError> {
    let accept = [bundle::INDEX_MEDIA_TYPE];
    let artifact_type: String = url::form_urlencoded::byte_serialize(bundle::BUNDLE_MEDIA_TYPE.as_bytes()).collect();
    let api = format!("referrers/{digest}?artifactType={artifact_type}");
    let listed = match session.get_if_there(&api, &accept, bundle::MAX_INDEX_BYTES, "referrers list").await {
        Ok(Some(index)) => Some(index),
        Ok(None) | Err(WasmOciError::Registry { status: 400 | 405 | 501, .. }) => {
            let tag = bundle::fallback_tag(digest);
            let what = format!("referrers at {tag}");
            session.get_if_there(&format!("manifests/{tag}"), &accept, bundle::MAX_INDEX_BYTES, &what).await?
        }
        Err(error) => return Err(error),
    };
    match listed {
        Some(index) => bundle::bundle_referrers(shown, &index)
            .map_err(|why| WasmOciError::BadSignatures { reference: shown.to_owned(), why }),
        None => Ok(Vec::new()),
    }
}

/// Pull the flavor artifact `reference` (by tag or digest) with `logins`:
/// its manifest, checked to be a Wasm artifact whose component is at most
/// `max_component_bytes`, its config and its component, each checked
/// against its digest; with `read_signatures`, the cosign signatures
/// beside it too.
pub async fn pull(
    reference: &str,
    logins: &[Login],
    max_component_bytes: u64,
    read_signatures: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Pulled, WasmOciError> {
    let source = parse_reference(reference)?;
    let session = Session::open(&source, logins, RegistryOperation::Pull).await?;
    let (digest, ArtifactBlobs { config, layer }) = artifact_manifest(&session, &source, max_component_bytes).await?;
    let config_bytes = session.blob(&config, "artifact config").await?;
    // Read for its shape only: a config that is not one means the artifact is not what it claims.
    serde_json::from_slice::<WasmConfig>(&config_bytes).map_err(|error| WasmOciError::NotAWasmArtifact {
        reference: source.whole(),
        why: format!("its config is not a Wasm artifact config ({error})"),
    })?;
    progress(&format!(
        "pulling the component {} ({})",
        registry::short(&layer.digest),
        bytesize::ByteSize::b(layer.size)
    ));
    let component = session.blob(&layer, "component layer").await?;
    let signatures = if read_signatures { signatures(&session, &digest).await? } else { Vec::new() };
    Ok(Pulled {
        repository: format!("{}/{}", source.registry(), source.repository()),
        tag: source.tag().map(str::to_owned),
        digest,
        component,
        signatures,
    })
}

/// Sign the flavor artifact `reference` (by tag or digest) with `key`, as
/// `cosign sign --key` does: a simple-signing payload naming its digest,
/// added to the signatures at the tag `sha256-HEX.sig` in its repository.
pub async fn sign(
    reference: &str,
    logins: &[Login],
    key: &PrivateKey,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Signed, WasmOciError> {
    let source = parse_reference(reference)?;
    let session = Session::open(&source, logins, RegistryOperation::Push).await?;
    let (digest, _) = artifact_manifest(&session, &source, u64::MAX).await?;
    let repository = format!("{}/{}", source.registry(), source.repository());
    let existing = signature_manifest(&session, &digest).await?;
    let payload = signature::payload(&repository, &digest);
    let signature_bytes = key.sign(&payload);
    let tag = signature::tag_for(&digest);
    let fingerprint = key.public().fingerprint();
    let built = signature::build_manifest(existing.as_deref(), payload, &signature_bytes)
        .map_err(|why| WasmOciError::BadSignatures { reference: format!("{repository}@{digest}"), why })?;
    let Some(built) = built else {
        return Ok(Signed { repository, digest, tag, fingerprint, already_there: true });
    };
    progress(&format!("signing {} as {repository}:{tag}", registry::short(&digest)));
    let target = Reference::with_tag(source.registry().to_owned(), source.repository().to_owned(), tag.clone());
    let client = registry::client(&[target.registry()]);
    let auth = registry::auth_for(logins, target.registry());
    let push_error = |error: oci_client::errors::OciDistributionError| push_failure(&target, logins, error);
    client.auth(&target, &auth, RegistryOperation::Push).await.map_err(push_error)?;
    for (bytes, digest) in [(built.payload, &built.payload_digest), (built.config, &built.config_digest)] {
        if !client.blob_exists(&target, digest).await.unwrap_or(false) {
            client.push_blob(&target, bytes, digest).await.map_err(push_error)?;
        }
    }
    let content_type = http::HeaderValue::from_static(artifact::MANIFEST_MEDIA_TYPE);
    client.push_manifest_raw(&target, built.manifest, content_type).await.map_err(push_error)?;
    Ok(Signed { repository, digest, tag, fingerprint, already_there: false })
}

/// How requests to one registry authenticate.
enum Credential {
    Anonymous,
    Basic(String, String),
    Bearer(String),
}

/// Reads from one repository of one registry.
struct Session {
    http: reqwest::Client,
    base: String,
    registry: String,
    shown: String,
    credential: Credential,
    has_login: bool,
}

impl Session {
    /// Log in to `source`'s registry for `operation` (a push login reads too).
    async fn open(source: &Reference, logins: &[Login], operation: RegistryOperation) -> Result<Self, WasmOciError> {
        let registry = source.resolve_registry().to_owned();
        let scheme = if registry::is_loopback(&registry) { "http" } else { "https" };
        let auth = registry::auth_for(logins, source.registry());
        let has_login = matches!(auth, RegistryAuth::Basic(..));
        let client = registry::client(&[source.registry()]);
        let credential = match client.auth(source, &auth, operation).await {
            Ok(Some(token)) => Credential::Bearer(token),
            Ok(None) => match auth {
                RegistryAuth::Basic(user, password) => Credential::Basic(user, password),
                _ => Credential::Anonymous,
            },
            Err(oci_client::errors::OciDistributionError::RequestError(error)) => {
                return Err(WasmOciError::Unreachable { registry, message: chain(&error) });
            }
            Err(error) => return Err(WasmOciError::Denied { registry, detail: format!("logging in: {error}") }),
        };
        let base = format!("{scheme}://{registry}/v2/{}", source.repository());
        let http = reqwest::Client::builder()
            .redirect(redirect_policy())
            .dns_resolver(Arc::new(RedirectTargets::of(&base)))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| WasmOciError::Internal(format!("cannot make an HTTP client: {error}")))?;
        Ok(Self { http, base, registry, shown: source.whole(), credential, has_login })
    }

    /// A blob, bounded by and checked against its descriptor.
    async fn blob(&self, blob: &Blob, what: &str) -> Result<Vec<u8>, WasmOciError> {
        let bytes = self.get(&format!("blobs/{}", blob.digest), &[], blob.size, what).await?;
        artifact::check_blob(what, blob, &bytes)?;
        Ok(bytes)
    }

    /// GET `BASE/path`, reading at most `limit` bytes of the answer.
    async fn get(&self, path: &str, accept: &[&str], limit: u64, what: &str) -> Result<Vec<u8>, WasmOciError> {
        self.get_if_there(path, accept, limit, what)
            .await?
            .ok_or_else(|| WasmOciError::NotFound { reference: self.shown.clone() })
    }

    /// GET `BASE/path` like [`Session::get`], with `None` for a 404.
    async fn get_if_there(
        &self,
        path: &str,
        accept: &[&str],
        limit: u64,
        what: &str,
    ) -> Result<Option<Vec<u8>>, WasmOciError> {
        let mut request = self.http.get(format!("{}/{path}", self.base));
        request = match &self.credential {
            Credential::Anonymous => request,
            Credential::Basic(user, password) => request.basic_auth(user, Some(password)),
            Credential::Bearer(token) => request.bearer_auth(token),
        };
        if !accept.is_empty() {
            request = request.header(reqwest::header::ACCEPT, accept.join(", "));
        }
        let mut response = request.send().await.map_err(|error| self.send_failure(what, &error))?;
        let status = response.status();
        if status.is_redirection() {
            // A redirect the HTTP client would not follow at all (to another scheme) comes back as is.
            return Err(WasmOciError::Redirect { what: what.to_owned(), why: unfollowed(&response) });
        }
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.refusal(status, what, response).await);
        }
        if let Some(length) = response.content_length()
            && length > limit
        {
            return Err(WasmOciError::Oversent { what: what.to_owned(), declared: limit });
        }
        let mut body = Vec::with_capacity(limit.min(1 << 20) as usize);
        while let Some(chunk) = response.chunk().await.map_err(|error| self.send_failure(what, &error))? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(WasmOciError::Oversent { what: what.to_owned(), declared: limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }

    async fn refusal(&self, status: StatusCode, what: &str, mut response: reqwest::Response) -> WasmOciError {
        let registry = self.registry.clone();
        match status {
            StatusCode::UNAUTHORIZED if !self.has_login => WasmOciError::LoginRequired { registry },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                WasmOciError::Denied { registry, detail: format!("{status} reading the {what}") }
            }
            _ => {
                // The first line of its first chunk: an error page can be large, or never end.
                let first = tokio::time::timeout(Duration::from_secs(5), response.chunk()).await;
                let message = match first {
                    Ok(Ok(Some(chunk))) => {
                        String::from_utf8_lossy(&chunk[..chunk.len().min(300)]).lines().next().unwrap_or("").to_owned()
                    }
                    _ => String::new(),
                };
                WasmOciError::Registry { registry, what: what.to_owned(), status: status.as_u16(), message }
            }
        }
    }

    fn send_failure(&self, what: &str, error: &reqwest::Error) -> WasmOciError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<RedirectRefused>() {
                return WasmOciError::Redirect { what: what.to_owned(), why: refused.0.clone() };
            }
            source = cause.source();
        }
        if error.is_redirect() {
            return WasmOciError::Redirect { what: what.to_owned(), why: chain(error) };
        }
        WasmOciError::Unreachable { registry: self.registry.clone(), message: chain(error) }
    }
}

/// Why a redirect answer that came back unfollowed was not followed.
fn unfollowed(response: &reqwest::Response) -> String {
    let location = response.headers().get(reqwest::header::LOCATION).and_then(|value| value.to_str().ok());
    let Some(location) = location else {
        return format!("the registry answered {} without a Location", response.status());
    };
    match response.url().join(location) {
        Ok(next) => refused_redirect(&next, std::slice::from_ref(response.url()))
            .unwrap_or_else(|| format!("it points to {}, which the HTTP client does not follow", without_query(&next))),
        Err(error) => format!("its Location is not a URL ({error})"),
    }
}

/// An error and its causes, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Why a redirect was not followed; found again in reqwest's error chain.
#[derive(Debug)]
struct RedirectRefused(String);

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectRefused {}

fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| match refused_redirect(attempt.url(), attempt.previous()) {
        Some(why) => attempt.error(RedirectRefused(why)),
        None => attempt.follow(),
    })
}

/// Why the redirect to `next` after `previous` (the first is the URL asked
/// for) must not be followed, if it must not.
fn refused_redirect(next: &Url, previous: &[Url]) -> Option<String> {
    let trail = || previous.iter().map(without_query).collect::<Vec<_>>().join(" → ");
    if previous.contains(next) {
        return Some(format!("it loops ({} → {})", trail(), without_query(next)));
    }
    if previous.len() > MAX_REDIRECTS {
        return Some(format!("more than {MAX_REDIRECTS} redirects ({} → …)", trail()));
    }
    let (first, last) = (previous.first()?, previous.last()?);
    match next.scheme() {
        "https" => {}
        "http" if last.scheme() == "http" => {}
        "http" => return Some(format!("it would go from https down to plain http ({})", without_query(next))),
        other => return Some(format!("it points to a `{other}:` URL; only http and https are followed")),
    }
    if is_local(next) && !is_local(first) {
        return Some(format!(
            "it points into this machine or its link-local network ({}), where a remote registry may not send stepbox",
            without_query(next)
        ));
    }
    None
}

/// A URL without its query: presigned storage URLs carry signatures there.
fn without_query(url: &Url) -> String {
    url[..url::Position::AfterPath].to_owned()
}

/// Whether `url` names this machine, its link-local network (where cloud
/// metadata services answer) or no server at all, by its literal host; a
/// name is checked again once resolved, by [`RedirectTargets`].
fn is_local(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost") || name.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => addresses::classify(ip.into()).is_local(),
        Some(url::Host::Ipv6(ip)) => addresses::classify(ip.into()).is_local(),
        None => false,
    }
}

/// The resolver of a pull's HTTP client. The registry's own host, the one
/// the user named, resolves as the system says. Any other host (a storage
/// host a redirect points to) must not resolve to this machine, its
/// link-local network or a metadata service, unless the registry is on this
/// machine itself: a name must not open what its address written out could
/// not ([`refused_redirect`]). The connection then goes to the addresses
/// checked here: there is no second lookup.
struct RedirectTargets {
    registry_host: String,
    registry_is_local: bool,
}

impl RedirectTargets {
    /// The resolver for a session whose requests start at `base`.
    fn of(base: &str) -> Self {
        let url = Url::parse(base).ok();
        Self {
            registry_host: url.as_ref().and_then(Url::host_str).unwrap_or_default().to_owned(),
            registry_is_local: url.as_ref().is_some_and(is_local),
        }
    }

    /// Whether a redirect target named `host` may resolve to anywhere.
    fn trusts(&self, host: &str) -> bool {
        self.registry_is_local || host.trim_end_matches('.').eq_ignore_ascii_case(&self.registry_host)
    }
}

impl reqwest::dns::Resolve for RedirectTargets {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let trusted = self.trusts(&host);
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !trusted && let Some(local) = found.iter().find(|address| addresses::classify(address.ip()).is_local()) {
                let ip = local.ip();
                let refused = RedirectRefused(format!(
                    "it points to `{host}`, which resolves to {ip} ({}): into this machine or its link-local \
                     network, where a remote registry may not send stepbox",
                    addresses::classify(ip)
                ));
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter().map(|u| Url::parse(u).expect("a URL")).collect()
    }

    #[test]
    fn redirects_are_followed_only_within_the_rules() {
        let blob = "https://registry.example.com/v2/f/blobs/sha256:aa";
        let cases: &[(&[&str], &str, Option<&str>)] = &[
            (&[blob], "https://storage.example.net/b?X-Amz-Signature=secret", None),
            (&[blob], "https://registry.example.com/other", None),
            (&["http://127.0.0.1:5000/v2/x"], "http://127.0.0.1:5001/b", None),
            (&[blob], "http://storage.example.net/b", Some("from https down to plain http")),
            (&[blob], "ftp://storage.example.net/b", Some("`ftp:` URL")),
            (&[blob], "file:///etc/passwd", Some("`file:` URL")),
            (&[blob], "https://169.254.169.254/latest/meta-data", Some("link-local")),
            (&[blob], "https://127.0.0.1/x", Some("this machine")),
            (&[blob], "https://[::1]/x", Some("this machine")),
            (&[blob], "https://localhost/x", Some("this machine")),
            (&[blob], "https://100.100.100.200/latest/meta-data", Some("this machine")),
            (&[blob], "https://0.0.0.0/x", Some("this machine")),
            (&[blob], "https://[::ffff:169.254.169.254]/x", Some("this machine")),
            (&[blob], "https://10.0.0.7/b", None),
            (&[blob, "https://a.example.net/1?sig=1"], "https://a.example.net/1?sig=1", Some("it loops")),
            // The same path with a new query is no loop (a storage host renewing a signature).
            (&[blob, "https://a.example.net/1?sig=1"], "https://a.example.net/1?sig=2", None),
            (&[blob, "https://a.example.net/1"], blob, Some("it loops")),
            (
                &[blob, "https://a/1", "https://a/2", "https://a/3", "https://a/4", "https://a/5"],
                "https://a/6",
                Some("more than 5 redirects"),
            ),
        ];
        for (previous, next, expected) in cases {
            let refusal = refused_redirect(&Url::parse(next).expect("a URL"), &urls(previous));
            match expected {
                None => assert_eq!(refusal, None, "{previous:?} → {next}"),
                Some(expected) => {
                    let refusal = refusal.unwrap_or_else(|| panic!("{previous:?} → {next} was followed"));
                    assert!(refusal.contains(expected), "{previous:?} → {next}: {refusal}");
                    assert!(!refusal.contains("secret") && !refusal.contains("sig="), "no query in: {refusal}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_storage_host_whose_name_resolves_into_this_machine_is_refused_before_connecting() {
        use reqwest::dns::Resolve;
        let name = || "localhost".parse::<reqwest::dns::Name>().expect("a name");
        // `localhost` resolves to loopback from /etc/hosts, without a DNS server: it stands
        // for any name a storage host could have that resolves into this machine.
        let remote = RedirectTargets::of("https://registry.example.com/v2/flavors/local");
        let refused = remote.resolve(name()).await.err().map(|error| error.to_string());
        let refused = refused.unwrap_or_else(|| panic!("a remote registry's redirect target resolved to loopback"));
        assert!(refused.contains("`localhost`, which resolves to") && refused.contains("loopback"), "{refused}");

        // The registry's own name, and any name when the registry is on this machine, resolve.
        for trusting in
            [RedirectTargets::of("https://localhost/v2/x"), RedirectTargets::of("http://127.0.0.1:5000/v2/x")]
        {
            let found: Vec<_> = trusting.resolve(name()).await.expect("resolves").collect();
            assert!(found.iter().all(|address| address.ip().is_loopback()) && !found.is_empty(), "{found:?}");
        }

        // Through the client, the refusal is a refused redirect, not an unreachable registry.
        let session = Session {
            http: reqwest::Client::builder()
                .redirect(redirect_policy())
                .dns_resolver(Arc::new(remote))
                .build()
                .expect("a client"),
            base: "http://localhost:9/v2/flavors/local".to_owned(),
            registry: "registry.example.com".to_owned(),
            shown: "registry.example.com/flavors/local:1".to_owned(),
            credential: Credential::Anonymous,
            has_login: false,
        };
        match session.get("blobs/sha256:aa", &[], 10, "component layer").await {
            Err(WasmOciError::Redirect { why, .. }) => assert!(why.contains("which resolves to"), "{why}"),
            other => panic!("expected a refused redirect, got {other:?}"),
        }
    }

    #[test]
    fn references_name_a_registry_and_a_tag_or_digest() {
        let digest = format!("sha256:{}", "b".repeat(64));
        for good in [
            "oci://127.0.0.1:5000/flavors/local:1",
            "registry.example.com/team/local:1.0",
            &format!("localhost/f@{digest}"),
        ] {
            parse_reference(good).unwrap_or_else(|error| panic!("{good}: {error}"));
        }
        for (bad, expected) in [
            ("local:1", "names no registry"),
            ("flavors/local:1", "registry's host"),
            ("oci://registry.example.com/flavors/local", "no tag or digest"),
            ("registry.example.com:5000/flavors/local", "no tag or digest"),
            ("registry.example.com/Flavors/local:1", "not a registry reference"),
        ] {
            let error = parse_reference(bad).expect_err(bad).to_string();
            assert!(error.contains(expected), "{bad}: {error}");
        }
    }
}
